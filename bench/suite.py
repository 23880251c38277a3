"""The whole benchmark suite in one command: fraudapp beside the bare consumer and its peers.

    .venv/bin/python bench/suite.py --clicks 200000 --runs 3 --broker both

For each broker (the embedded Apache Kafka and the Tansu fallback, started here) the
clicks are produced once onto a 4-partition topic keyed by session id; then, round
by round, the bare aiokafka consumer (decode only: the limit) is measured, and after
it every implementation once, so each figure is a median of ``--runs`` runs taken
in the same rounds as its baseline, and the ratio to that baseline holds however
busy this shared machine is. Every run's alerts are compared with the brute-force
oracle; a run that disagrees is marked, and the faust-as-documented peer, which is
approximate by design, gets its precision and recall instead. The tables go into
``bench/RESULTS.md`` between ``<!-- suite:start -->`` and ``<!-- suite:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers.launch import (  # noqa: E402
    PEERS_VENV,
    PeakRss,
    prepare_peers_venv,
    run_peer,
)
from bench.results import write_section  # noqa: E402
from bench.throughput import bare_consumer, run_atm, run_clicks  # noqa: E402
from fraudapp.atm.generate import generate_txns  # noqa: E402
from fraudapp.cli.brokers import KAFKA_VERSION, EmbeddedBroker, make_broker  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402
from fraudapp.clicks.oracle import fraudulent_click_ids  # noqa: E402
from fraudapp.engine import kafkaio  # noqa: E402

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
MAIN_PYTHON = Path(sys.executable)
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
BROKER_LABELS = {
    "kafka": f"embedded Apache Kafka {KAFKA_VERSION} (one KRaft node)",
    "tansu": "embedded Tansu (the zero-JVM fallback, memory storage)",
}


@dataclass
class Dataset:
    """One click stream on the broker, and the oracle's verdict on it."""

    topic: str
    clicks: list[dict]
    fraud: set[str]

    @property
    def count(self) -> int:
        return len(self.clicks)


@dataclass
class Run:
    rate: float
    rss_mb: float | None = None
    #: True/False: alerts equal the oracle's; None: precision/recall in ``note``.
    exact: bool | None = None
    note: str = ""


@dataclass
class Row:
    """One line of the table: an implementation and its runs on one broker."""

    name: str
    label: str
    runs: list[Run] = field(default_factory=list)
    failure: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(r.rate for r in self.runs) if self.runs else None


def clicks_for(count: int) -> list[dict]:
    """The same stream bench/throughput.py uses: ad-network traffic, delivered up to
    30 s late (within the rule's allowed lateness)."""
    return arrival_order(generate_clicks(count, seed=7), max_delay_ms=30_000, seed=8)


async def create_topic(bootstrap: str, name: str) -> None:
    """4 partitions, retention set explicitly: Tansu describes only the settings a topic
    was created with, and Quix Streams refuses a source topic without ``retention.ms``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 4, 1, topic_configs={"retention.ms": "-1"})])
    finally:
        await admin.close()


def produce(bootstrap: str, name: str, clicks: list[dict]) -> Dataset:
    asyncio.run(create_topic(bootstrap, name))
    asyncio.run(kafkaio.produce_json(bootstrap, name, [(c["session_id"], c) for c in clicks]))
    return Dataset(name, clicks, fraudulent_click_ids(clicks))


def judge(alerts: set[str], fraud: set[str], exact: bool) -> tuple[bool | None, str]:
    if exact:
        return alerts == fraud, ""
    hits = len(alerts & fraud)
    precision = hits / len(alerts) if alerts else 0.0
    return None, f"precision {precision:.2f}, recall {hits / len(fraud):.2f}"


@dataclass
class Peer:
    name: str
    label: str
    script: str
    #: "exact": must equal the oracle; "approx": precision/recall; "none": no detection.
    answer: str
    python: Path = MAIN_PYTHON
    needs: str | None = None  # package of the peers' venv
    slowest_rate: float = 1_000.0  # for its time limit only
    small: bool = False  # reads --idiomatic-clicks, too slow for the full stream


PEERS_TABLE = [
    Peer("noop", "faust agent that does nothing (raw values, `async for`)", "faust_noop", "none"),
    Peer(
        "idiomatic",
        "faust-streaming as its docs suggest (hopping windowed table, RocksDB)",
        "faust_idiomatic",
        "approx",
        slowest_rate=50.0,
        small=True,
    ),
    Peer(
        "handwritten",
        "hand-written aiokafka loop, dict of sorted lists, state not recoverable",
        "handwritten",
        "exact",
    ),
    Peer(
        "bytewax",
        "Bytewax, `stateful_map` (same per-group state), no recovery",
        "bytewax_peer",
        "exact",
        PEERS_PYTHON,
        "bytewax",
    ),
    Peer(
        "quix",
        "Quix Streams, `group_by` + sliding window (RocksDB + changelog)",
        "quix",
        "exact",
        PEERS_PYTHON,
        "quixstreams",
    ),
]


class Suite:
    """All rounds on one broker."""

    def __init__(
        self,
        broker: EmbeddedBroker,
        args: argparse.Namespace,
        peers_status: dict[str, str | None],
    ) -> None:
        self.broker = broker
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix=f"fraudapp-suite-{broker.kind}-"))
        self.main = produce(broker.bootstrap, "suite-clicks", clicks_for(args.clicks))
        small = min(args.idiomatic_clicks, args.clicks)
        self.small = (
            self.main
            if small == args.clicks
            else produce(broker.bootstrap, "suite-clicks-small", clicks_for(small))
        )
        self.checks = clicks_for(args.checks_clicks) if args.checks_clicks else self.main.clicks
        self.txns = generate_txns(args.txns, seed=9)
        n, m, k = f"{args.clicks:,}", f"{small:,}", f"{len(self.checks):,}"
        self.rows = {
            "bare": Row("bare", f"bare aiokafka consumer, decode only — the limit ({n} clicks)"),
            "clicks": Row("clicks", f"**fraudapp worker, click rule alone** ({n} clicks)"),
            "checks": Row("checks", f"**fraudapp worker, all click checks** ({k} clicks)"),
            "atm": Row("atm", f"**fraudapp worker, ATM rule** ({args.txns:,} transactions)"),
        }
        for peer in PEERS_TABLE:
            count = m if peer.small else n
            self.rows[peer.name] = Row(peer.name, f"{peer.label} ({count} clicks)")
            if peer.needs and peers_status.get(peer.needs):
                self.rows[peer.name].failure = f"`{peer.needs}` {peers_status[peer.needs]}"

    def measure(self, row: Row, work: Callable[[], Run]) -> None:
        if row.failure:
            return
        started = time.monotonic()
        try:
            row.runs.append(work())
            print(f"  {row.name}: {time.monotonic() - started:.0f} s", flush=True)
        except Exception as error:  # one implementation failing must not end the suite
            traceback.print_exc()
            row.failure = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:160]}"

    def round(self, number: int) -> None:
        bootstrap, main = self.broker.bootstrap, self.main
        rows = self.rows
        self.measure(
            rows["bare"],
            lambda: Run(main.count / asyncio.run(bare_consumer(bootstrap, main.topic, main.count))),
        )
        self.measure(rows["clicks"], lambda: self.fraudapp_clicks(all_checks=False))
        self.measure(rows["checks"], lambda: self.fraudapp_clicks(all_checks=True))
        self.measure(rows["atm"], self.fraudapp_atm)
        for peer in PEERS_TABLE:
            self.measure(rows[peer.name], lambda p=peer, n=number: self.peer(p, n))
        print(
            f"[{self.broker.kind}] round {number}: "
            + ", ".join(
                f"{r.name} {r.runs[-1].rate:,.0f}/s" if len(r.runs) == number else f"{r.name} —"
                for r in rows.values()
            ),
            flush=True,
        )

    def fraudapp_clicks(self, *, all_checks: bool) -> Run:
        clicks = self.checks if all_checks else self.main.clicks
        with PeakRss(exclude=(self.broker.pid,)) as rss:
            seconds, ok, _ = run_clicks(
                self.broker.bootstrap, clicks, self.workdir, all_checks=all_checks, backlog=True
            )
        return Run(len(clicks) / seconds, rss.mb, ok)

    def fraudapp_atm(self) -> Run:
        with PeakRss(exclude=(self.broker.pid,)) as rss:
            seconds, ok = run_atm(self.broker.bootstrap, self.txns, self.workdir, backlog=True)
        return Run(len(self.txns) / seconds, rss.mb, ok)

    def peer(self, peer: Peer, number: int) -> Run:
        data = self.small if peer.small else self.main
        app_id = f"suite-{peer.name}-{number}-{time.monotonic_ns() % 10**9}"
        result = run_peer(
            peer.python,
            PEERS / f"{peer.script}.py",
            bootstrap=self.broker.bootstrap,
            topic=data.topic,
            count=data.count,
            workdir=self.workdir / app_id,
            app_id=app_id,
            timeout_s=120 + data.count / peer.slowest_rate,
        )
        exact, note = (
            (None, "")
            if peer.answer == "none"
            else judge(result.alerts, data.fraud, peer.answer == "exact")
        )
        return Run(data.count / result.elapsed_s, result.rss_mb, exact, note)


def render(suite: Suite) -> str:
    rows = suite.rows
    bare = rows["bare"].median
    lines = [
        f"### {BROKER_LABELS[suite.broker.kind]}",
        "",
        "| implementation | events/s (median) | min–max | vs. bare consumer | peak RSS"
        " | matches oracle |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        if row.failure and not row.runs:
            lines.append(f"| {row.label} | — | — | — | — | {row.failure} |")
            continue
        rates = [r.rate for r in row.runs]
        median = statistics.median(rates)
        rss = [r.rss_mb for r in row.runs if r.rss_mb is not None]
        ratio = f"{median / bare:.4f}" if bare else "—"
        lines.append(
            f"| {row.label} | {median:,.0f} | {min(rates):,.0f}–{max(rates):,.0f} | {ratio}"
            f" | {f'{max(rss):,.0f} MB' if rss else '—'} | {verdict(row)} |"
        )
    lines += ["", *targets(rows), ""]
    return "\n".join(lines)


def verdict(row: Row) -> str:
    runs = row.runs
    extra = f" ({row.failure} after {len(runs)} run(s))" if row.failure else ""
    if row.name == "bare":
        return "—"
    if all(r.exact is None and not r.note for r in runs):
        return "no detection (reads only)" + extra
    if all(r.exact is None for r in runs):
        return "no: approximate; " + "; ".join(sorted({r.note for r in runs})) + extra
    wrong = sum(1 for r in runs if not r.exact)
    return ("yes" if not wrong else f"**NO** ({wrong} of {len(runs)} runs)") + extra


def targets(rows: dict[str, Row]) -> list[str]:
    """The performance issue's targets, each computed from this broker's medians."""
    clicks = rows["clicks"].median

    def line(text: str, a: float | None, b: float | None, goal: float) -> str:
        if not a or not b:
            return f"- {text}: not measured (target ≥ {goal:g}x)"
        ratio = a / b
        met = "**met**" if ratio >= goal else "**not met**"
        return f"- {text}: {ratio:.2f}x (target ≥ {goal:g}x): {met}"

    exact = [
        r
        for n, r in rows.items()
        if n in ("handwritten", "bytewax", "quix")
        and r.runs
        and not r.failure
        and all(run.exact for run in r.runs)
    ]
    fastest = max(exact, key=lambda r: r.median or 0.0, default=None)
    return [
        line("click rule vs faust as documented", clicks, rows["idiomatic"].median, 50),
        line("click rule vs the no-op faust agent", clicks, rows["noop"].median, 0.8),
        line("all click checks vs the click rule alone", rows["checks"].median, clicks, 0.5),
        line("ATM rule (transactions/s) vs the click rule", rows["atm"].median, clicks, 1),
        line(
            "click rule vs the fastest peer that matches the oracle"
            + (f" ({fastest.name}, {fastest.median:,.0f}/s)" if fastest else ""),
            clicks,
            fastest.median if fastest else None,
            1,
        ),
    ]


METHOD = """\
Method. One command starts each broker itself, produces the clicks once onto a
4-partition topic keyed by session id (the generator of `bench/throughput.py`:
ad-network traffic, on average {size:.0f} bytes of JSON a click, delivered up to 30
s late, with redelivered duplicates), then runs {runs} round(s); in each round the
bare consumer is measured first and every implementation once after it. Figures are
medians of the rounds; "vs. bare consumer" divides by the bare consumer's median on
the same broker in the same rounds (for the ATM row: transactions/s by clicks/s).
Peers run as their own processes: the framework peers are timed from their first
record to their last (start-up and group joins excluded), the hand-written loop like
the bare consumer, from its consumer's start; each writes the click ids it condemns
to a file. The fraudapp rows are `bench/throughput.py`'s `run_clicks` / `run_atm`
with `backlog=True`: a real worker started on input already in its topic, timed as
the framework peers are, from its first record to its last: by the timestamps its
own producer gives its first verdict (clicks) or account-state changelog record
(ATM), one per input, and the last of those and of the alert index's changelog
records, so start-up and the group join are left out and the indexing of the last
alerts is in; it still pays for writing a verdict per click, its changelog and the
alerts to Kafka. Peak
RSS is the worker's or peer's own high-water mark (`VmHWM`, sampled while it runs;
peers also read it themselves at their last record). Every run is checked against
the oracle of its rule; faust as documented is approximate by design (its window is
not the rule's), so it gets precision and recall. Quix Streams and Bytewax run from
a virtualenv of their own (`bench/.venv-peers`, made by the suite). The fastest-peer
target (≥ 1x) is this suite's reading of "fraudapp vs the fastest peer"; the issue
names no figure.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--broker", choices=["kafka", "tansu", "both"], default="both")
    parser.add_argument(
        "--idiomatic-clicks",
        type=int,
        default=10_000,
        help="clicks for faust as documented (a few hundred a second)",
    )
    parser.add_argument(
        "--checks-clicks", type=int, default=0, help="clicks for all checks (default: --clicks)"
    )
    parser.add_argument("--txns", type=int, default=20_000, help="ATM transactions")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument(
        "--machine-note",
        default="",
        help="how busy the machine was, for the heading (e.g. ', nothing else running')",
    )
    args = parser.parse_args()

    started = time.monotonic()
    peers_status = prepare_peers_venv()
    for name, why in peers_status.items():
        print(f"peers venv: {name}: {why or 'ok'}", flush=True)
    kinds = ["kafka", "tansu"] if args.broker == "both" else [args.broker]
    tables = []
    wrong = False
    for kind in kinds:
        with make_broker(kind) as broker:
            suite = Suite(broker, args, peers_status)
            for number in range(1, args.runs + 1):
                suite.round(number)
        shutil.rmtree(suite.workdir, ignore_errors=True)
        tables.append(render(suite))
        wrong |= any(r.exact is False for row in suite.rows.values() for r in row.runs)
        print(tables[-1], flush=True)
    minutes = (time.monotonic() - started) / 60
    size = statistics.mean(len(orjson.dumps(c)) for c in suite.main.clicks[:5000])
    command = " ".join([".venv/bin/python bench/suite.py", *map(shlex.quote, sys.argv[1:])])
    section = "\n".join(
        [
            "## The suite: fraudapp beside the limit and its peers (`bench/suite.py`)",
            "",
            f"Last run {time.strftime('%Y-%m-%d')}, {minutes:.0f} min on this 2-core"
            f" machine{args.machine_note}:",
            "",
            "    " + command,
            "",
            METHOD.format(size=size, runs=args.runs),
            *tables,
        ]
    )
    write_section("suite", section, args.out)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
