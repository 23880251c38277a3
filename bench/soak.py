"""Bounded memory: millions of clicks and ATM transactions through one worker, its RSS
and RocksDB size sampled while windows expire.

One embedded Apache Kafka broker, one fraudapp worker with every check on (the
default configuration), on a fresh data directory. The events are made as they are
sent, never held in a list: clicks (:func:`fraudapp.clicks.generate.live_clicks`:
every session new, most sources new) and ATM transactions
(:func:`fraudapp.atm.generate.txn_stream`, with account ids that are renamed after a
while, so new accounts keep arriving and old ones go quiet), five clicks to one
transaction. Event time is synthetic: it advances ``1 / --event-rate`` s per event,
far faster than the wall clock, so every window and retention (click state 40 s,
ad-network stages 5 min lateness + up to 1 h, ATM state 70 min) turns over many
times in a run; events are delivered up to ``--disorder-ms`` out of order, within
every lateness. Now and then a malformed record is sent on purpose: those, and
nothing else, must end up on dead-letter.

The producer keeps at most ``--max-lead`` records ahead of what the worker has read
(its ``/metrics``), so the run measures the worker in a steady state, not a backlog
in the broker. Every ``--sample-s`` seconds it records the events read, the worker's
RSS (``/proc/<pid>/status``) and the size on disk of its RocksDB directories.

    .venv/bin/python bench/soak.py --events 3000000 --sample-s 10 --out bench/soak.csv

Writes the curve to ``--out`` (CSV) and a table with the reading between the
``soak`` markers of ``bench/RESULTS.md``; exits non-zero when the worker is not
healthy at the end or the dead letters are not exactly the ones meant.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import heapq
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fraudapp.atm.generate import txn_stream  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from fraudapp.cli.workerproc import WorkerProcess  # noqa: E402
from fraudapp.clicks.generate import live_clicks  # noqa: E402
from fraudapp.core.settings import RocksDBBudget  # noqa: E402
from tests.integration.helpers import AppSpace, running  # noqa: E402

#: 2026-01-01T00:00:00Z, where synthetic event time starts.
START_MS = 1_767_225_600_000
#: Clicks per event (the rest are ATM transactions): five clicks to one transaction.
CLICK_SHARE = 5 / 6
#: Prefix of the generator's fraudulent ATM transactions (see ``txn_stream``).
FRAUD_PREFIX = "xxx"
#: Fractions of the run the summary reports the curve at.
CHECKPOINTS = (0.10, 0.25, 0.50, 0.75, 1.00)
MB = 1024 * 1024

#: (topic role in :class:`AppSpace`, key, value) of one record to send.
Record = tuple[str, bytes | None, bytes]


class EventClock:
    """Synthetic event time: a fixed step per event, monotone, much faster than real
    time, so that windows expire at a rate set by the event count, not the wall clock."""

    def __init__(self, start_ms: int, events_per_s: float) -> None:
        self.t = float(start_ms)
        self.step_ms = 1000.0 / events_per_s

    def tick(self) -> None:
        self.t += self.step_ms

    def now(self) -> int:
        return int(self.t)


def sliding_accounts(
    txns: Iterator[dict[str, Any]], clock: EventClock, *, population: int, lifetime_ms: int
) -> Iterator[dict[str, Any]]:
    """The generator's transactions on accounts that come and go: at any moment
    ``population`` accounts are in use, each for ``lifetime_ms`` of event time, new
    ones arriving as old ones go quiet (the shipped 615 customers would each withdraw
    every half minute of event time and never leave). A fraudulent transaction stays
    on the account of the one it follows: it is that account's, by construction."""
    rng = random.Random(population)
    previous = ""
    for txn in txns:
        txn = dict(txn)  # the generator still reads its own copy for the fraud
        if txn["transaction_id"].startswith(FRAUD_PREFIX):
            txn["account_id"] = previous
        else:
            newest = int((clock.t - START_MS) * population / lifetime_ms) + population
            previous = f"acct-{rng.randrange(newest - population, newest)}"
            txn["account_id"] = previous
        yield txn


def bad_record(number: int) -> tuple[Record, str]:
    """A malformed record meant for dead-letter, and the reason it must get there with;
    alternately a click that is not JSON and a transaction without a location."""
    if number % 2:
        return ("clicks", f"bad-{number}".encode(), b"{not json"), "not_json"
    txn = {"account_id": f"bad-{number}", "transaction_id": f"bad-{number}", "atm": "x"}
    return ("atm", f"bad-{number}".encode(), orjson.dumps({**txn, "amount": 1})), "missing_field"


def in_order(
    events: int, *, seed: int, clock: EventClock, account_lifetime_ms: int, per_account: float
) -> Iterator[Record]:
    """``events`` clicks and transactions in event-time order, the clock ticking once
    per event."""
    rng = random.Random(seed)
    clicks = live_clicks(seed=seed, now_ms=clock.now)
    population = max(
        1, round(account_lifetime_ms * (1 - CLICK_SHARE) / clock.step_ms / per_account)
    )
    txns = sliding_accounts(
        txn_stream(seed=seed + 1, clock=clock.now),
        clock,
        population=population,
        lifetime_ms=account_lifetime_ms,
    )
    for _ in range(events):
        clock.tick()
        if rng.random() < CLICK_SHARE:
            click = next(clicks)
            yield "clicks", click["session_id"].encode(), orjson.dumps(click)
        else:
            txn = next(txns)
            yield "atm", txn["account_id"].encode(), orjson.dumps(txn)


def synthetic_records(
    events: int,
    *,
    seed: int,
    clock: EventClock,
    disorder_ms: float,
    account_lifetime_ms: int,
    per_account: float,
    bad_every: int,
    meant: Counter[str],
) -> Iterator[Record]:
    """The stream to send, made as it is consumed: each event delayed by up to
    ``disorder_ms`` of event time behind the ones made after it (a heap holds only
    that many), one malformed record every ``bad_every`` events, counted in ``meant``
    by the dead-letter reason it must get."""
    rng = random.Random(seed + 2)
    pending: list[tuple[float, int, Record]] = []
    ordered = in_order(
        events,
        seed=seed,
        clock=clock,
        account_lifetime_ms=account_lifetime_ms,
        per_account=per_account,
    )
    for number, record in enumerate(ordered, 1):
        heapq.heappush(pending, (clock.t + rng.uniform(0, disorder_ms), number, record))
        while pending and pending[0][0] <= clock.t:
            yield heapq.heappop(pending)[2]
        if bad_every and number % bad_every == 0:
            bad, reason = bad_record(number // bad_every)
            meant[reason] += 1
            yield bad
    while pending:
        yield heapq.heappop(pending)[2]


# -- what the worker says about itself -----------------------------------------------

_SERIES = re.compile(r"^(\w+)(?:\{([^}]*)\})? (\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition as (name, labels, value) rows."""
    return [
        (name, dict(_LABEL.findall(labels or "")), float(value))
        for name, labels, value in _SERIES.findall(text)
    ]


def by_label(rows: list[tuple[str, dict[str, str], float]], name: str, label: str) -> Counter[str]:
    """One metric's values summed per value of one of its labels."""
    out: Counter[str] = Counter()
    for row_name, labels, value in rows:
        if row_name == name:
            out[labels.get(label, "")] += value
    return out


def scrape(worker: WorkerProcess) -> list[tuple[str, dict[str, str], float]] | None:
    """The worker's /metrics, None when it does not answer (it is busy or gone)."""
    try:
        status, text = worker.get("/metrics", timeout=10)
    except OSError:
        return None
    return parse_metrics(text) if status == 200 and isinstance(text, str) else None


def memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and RssAnon of a process in MB: all resident memory, and the part that is
    the heap (Python objects, RocksDB memtables and caches) rather than mapped files."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "RssAnon"):
            fields[name] = int(rest.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("RssAnon", 0.0)


def file_kind(name: str) -> str:
    """RocksDB's files by what they hold: sorted tables, write-ahead logs, the rest
    (info LOG, MANIFEST, OPTIONS), so growth can be traced to one of them."""
    if name.endswith(".sst"):
        return "sst"
    if re.fullmatch(r"\d+\.log", name):
        return "wal"
    return "meta"


def table_of(path: Path, root: Path) -> str:
    """The table a RocksDB file belongs to: its directory's name without the partition
    suffix (faust keeps one database per table partition, ``…-<table>-<n>.db``)."""
    for part in path.relative_to(root).parts:
        if part.endswith(".db"):
            return re.sub(r"-\d+\.db$", "", part).removeprefix(f"{root.name}-")
    return "other"


def disk_usage(root: Path) -> tuple[Counter[str], Counter[str], Counter[str]]:
    """Bytes on disk under ``root`` (allocated blocks, as du counts them) per table,
    per kind of file, and the write-ahead logs per table (a table's WAL holds what its
    memtables hold, in memory, until they are flushed). Files may vanish mid-walk:
    compaction and flushes delete them."""
    tables: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    wal: Counter[str] = Counter()
    for path in root.rglob("*"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if not path.is_file():
            continue
        size, table, kind = stat.st_blocks * 512, table_of(path, root), file_kind(path.name)
        tables[table] += size
        kinds[kind] += size
        if kind == "wal":
            wal[table] += size
    return tables, kinds, wal


def rocksdb_memory(rows: list[tuple[str, dict[str, str], float]]) -> dict[str, Counter[str]]:
    """The worker's own RocksDB figures (``fraudapp_rocksdb_bytes``) in MB per kind
    (memtables, block_cache, table_readers, sst), each per table."""
    out: dict[str, Counter[str]] = {}
    for name, labels, value in rows:
        if name == "fraudapp_rocksdb_bytes":
            out.setdefault(labels.get("kind", ""), Counter())[labels.get("table", "")] += value / MB
    return out


def rocksdb_memory_mb(memory: dict[str, Counter[str]]) -> float:
    """What RocksDB holds in memory: memtables, block cache, index and filter blocks."""
    return sum(
        sum(memory.get(kind, Counter()).values())
        for kind in ("memtables", "block_cache", "table_readers")
    )


# -- the run ----------------------------------------------------------------------------


@dataclass
class Sample:
    """One point of the curve."""

    elapsed_s: float
    produced: int
    processed: int
    lag: int
    rss_mb: float
    rss_anon_mb: float
    python_blocks: int
    rocksdb_memory_mb: float
    rocksdb_mb: float
    kinds_mb: dict[str, float]
    tables_mb: dict[str, float]
    wal_mb: dict[str, float]


@dataclass
class Progress:
    """What the producer and the monitor share: records sent, records the worker read."""

    produced: int = 0
    processed: int = 0
    lag: int = 0
    rocksdb: dict[str, Counter[str]] = field(default_factory=dict)
    python_blocks: int = 0
    metrics_at: float = 0.0
    done_producing: bool = False
    samples: list[Sample] = field(default_factory=list)


def processed_of(rows: list[tuple[str, dict[str, str], float]], inputs: set[str]) -> int:
    """Records taken from the two input topics (re-keyed copies and later stages'
    internal topics are not events of their own)."""
    counts = by_label(rows, "fraudapp_events_in_total", "topic")
    return int(sum(v for topic, v in counts.items() if topic in inputs))


def take_sample(
    worker: WorkerProcess, state_dir: Path, progress: Progress, started: float
) -> Sample:
    rss, anon = memory_mb(worker.pid or 0)
    tables, kinds, wal = disk_usage(state_dir)
    return Sample(
        elapsed_s=time.monotonic() - started,
        produced=progress.produced,
        processed=progress.processed,
        lag=progress.lag,
        rss_mb=rss,
        rss_anon_mb=anon,
        python_blocks=progress.python_blocks,
        rocksdb_memory_mb=rocksdb_memory_mb(progress.rocksdb),
        rocksdb_mb=sum(kinds.values()) / MB,
        kinds_mb={k: v / MB for k, v in kinds.items()},
        tables_mb={k: v / MB for k, v in tables.items()},
        wal_mb={k: v / MB for k, v in wal.items()},
    )


async def monitor(
    worker: WorkerProcess,
    inputs: set[str],
    progress: Progress,
    sample_s: float,
    started: float,
    total: int,
) -> None:
    """Poll the worker's metrics twice a second (the producer paces on them) and take
    a sample every ``sample_s`` seconds, until cancelled."""
    next_sample = time.monotonic()
    state_dir = worker.datadir / "state"
    while True:
        rows = await asyncio.to_thread(scrape, worker)
        if rows is not None:
            progress.processed = processed_of(rows, inputs)
            progress.lag = int(sum(by_label(rows, "fraudapp_consumer_lag", "topic").values()))
            progress.rocksdb = rocksdb_memory(rows)
            progress.python_blocks = int(
                sum(v for name, _, v in rows if name == "fraudapp_python_allocated_blocks")
            )
            progress.metrics_at = time.monotonic()
        if time.monotonic() >= next_sample:
            sample = await asyncio.to_thread(take_sample, worker, state_dir, progress, started)
            progress.samples.append(sample)
            print(
                f"{sample.elapsed_s:7.0f} s  read {sample.processed:>9,} of {total:,}"
                f"  lag {sample.lag:>6,}  RSS {sample.rss_mb:7.1f} MB"
                f" (RocksDB {sample.rocksdb_memory_mb:6.1f},"
                f" Python blocks {sample.python_blocks / 1e6:5.2f} M)"
                f"  RocksDB {sample.rocksdb_mb:7.1f} MB",
                flush=True,
            )
            next_sample += sample_s
        await asyncio.sleep(0.5)


async def produce(
    bootstrap: str,
    topics: dict[str, str],
    records: Iterator[Record],
    progress: Progress,
    max_lead: int,
) -> None:
    """Send every record, waiting whenever the worker is ``max_lead`` records behind
    (read from the input topics) or its consumers lag more than twice that overall."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    try:
        for role, key, value in records:
            await producer.send(topics[role], value, key=key)
            progress.produced += 1
            if progress.produced % 200 == 0:
                while (
                    progress.produced - progress.processed > max_lead or progress.lag > 2 * max_lead
                ):
                    await asyncio.sleep(0.05)
        await producer.flush()
    finally:
        await producer.stop()
        progress.done_producing = True


async def drain(progress: Progress, timeout_s: float) -> bool:
    """Wait until the worker has read everything and no consumer lags."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        asked = time.monotonic()
        await asyncio.sleep(1.0)
        while progress.metrics_at < asked and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if progress.processed >= progress.produced and progress.lag == 0:
            return True
    return False


async def soak(
    space: AppSpace, worker: WorkerProcess, records: Iterator[Record], args: argparse.Namespace
) -> tuple[Progress, bool]:
    """Produce while monitoring; then drain and take the last sample."""
    progress = Progress()
    started = time.monotonic()
    inputs = {space.topics["clicks"], space.topics["atm"]}
    total = args.events
    watch = asyncio.create_task(monitor(worker, inputs, progress, args.sample_s, started, total))
    try:
        await produce(space.bootstrap, space.topics, records, progress, args.max_lead)
        drained = await drain(progress, timeout_s=600)
    finally:
        watch.cancel()
    state_dir = worker.datadir / "state"
    progress.samples.append(
        await asyncio.to_thread(take_sample, worker, state_dir, progress, started)
    )
    return progress, drained


# -- the reading --------------------------------------------------------------------------


def at_share(samples: list[Sample], share: float) -> Sample:
    """The first sample at or past ``share`` of the records the run ended with; the
    last one (everything read, nothing lagging) for the whole run."""
    if share >= 1.0:
        return samples[-1]
    target = share * samples[-1].processed
    return next(s for s in samples if s.processed >= target)


def growth(samples: list[Sample], attr: str, frm: float = 0.25) -> tuple[float, float, float]:
    """(value at ``frm``, value at the end, growth in %) of one column."""
    first, last = getattr(at_share(samples, frm), attr), getattr(samples[-1], attr)
    return first, last, (last - first) / first * 100 if first else float("nan")


def summary(samples: list[Sample]) -> list[str]:
    """The plain-text reading: both curves at fixed fractions of the run, and their
    growth from a quarter of the way (well after expiry begins) to the end."""
    lines = []
    for attr, label in (
        ("rss_mb", "worker RSS"),
        ("rocksdb_memory_mb", "RocksDB in memory"),
        ("rocksdb_mb", "RocksDB on disk"),
    ):
        points = ", ".join(
            f"{share:.0%} {getattr(at_share(samples, share), attr):,.0f}" for share in CHECKPOINTS
        )
        first, last, pct = growth(samples, attr)
        peak = max(
            getattr(s, attr) for s in samples if s.processed >= at_share(samples, 0.25).processed
        )
        lines.append(
            f"{label} (MB) at {points}; from 25 % to 100 %: {last - first:+,.1f} MB"
            f" ({pct:+.1f} %), highest after 25 %: {peak:,.0f} MB"
        )
    return lines


def markdown_table(samples: list[Sample], rows: int, event_rate: float) -> str:
    """About ``rows`` samples, evenly spread over the events read."""
    picks: list[Sample] = []
    for i in range(1, rows + 1):
        sample = at_share(samples, i / rows)
        if sample not in picks:
            picks.append(sample)
    lines = [
        "| events read | wall time | event time | consumer lag | RSS MB | RocksDB in memory MB"
        " | RocksDB on disk MB (sst / wal / other) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in picks:
        kinds = " / ".join(f"{s.kinds_mb.get(k, 0):,.0f}" for k in ("sst", "wal", "meta"))
        lines.append(
            f"| {s.processed:,} | {s.elapsed_s / 60:,.1f} min"
            f" | {s.processed / event_rate / 3600:,.1f} h | {s.lag:,} | {s.rss_mb:,.0f}"
            f" | {s.rocksdb_memory_mb:,.0f} | {s.rocksdb_mb:,.0f} ({kinds}) |"
        )
    return "\n".join(lines)


def tables_line(sample: Sample) -> str:
    return ", ".join(f"{k} {v:,.1f}" for k, v in sorted(sample.tables_mb.items()))


def slope_per_million(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (events, MB) points, in MB per million events."""
    if len(points) < 2:
        return 0.0
    xs = [x / 1e6 for x, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def write_csv(samples: list[Sample], path: Path) -> None:
    tables = sorted({name for s in samples for name in s.tables_mb})
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "elapsed_s",
                "produced",
                "processed",
                "consumer_lag",
                "rss_mb",
                "rss_anon_mb",
                "python_blocks",
                "rocksdb_memory_mb",
                "rocksdb_mb",
                "sst_mb",
                "wal_mb",
                "other_mb",
                *(f"table_{t}_mb" for t in tables),
                *(f"wal_{t}_mb" for t in tables),
            ]
        )
        for s in samples:
            writer.writerow(
                [
                    f"{s.elapsed_s:.1f}",
                    s.produced,
                    s.processed,
                    s.lag,
                    f"{s.rss_mb:.1f}",
                    f"{s.rss_anon_mb:.1f}",
                    s.python_blocks,
                    f"{s.rocksdb_memory_mb:.1f}",
                    f"{s.rocksdb_mb:.2f}",
                    *(f"{s.kinds_mb.get(k, 0):.2f}" for k in ("sst", "wal", "meta")),
                    *(f"{s.tables_mb.get(t, 0):.2f}" for t in tables),
                    *(f"{s.wal_mb.get(t, 0):.2f}" for t in tables),
                ]
            )


#: RocksDB's figures per table in the report, as ``fraudapp_rocksdb_bytes`` names them.
KINDS = ("memtables", "block_cache", "table_readers", "sst")

#: The longest any state outlives its key's last event: the ATM state's window +
#: lateness (the ad-network stages keep up to 1 h + 5 min).
LONGEST_RETENTION_MS = 70 * 60_000


def turnover_ms(account_lifetime_ms: int) -> int:
    """Event time from which the worker holds a steady population of keys. The
    accounts in use at the start have short lives (they are already half-way
    through); only once an account that lived its whole lifetime has also outlived
    its retention does the number of accounts with state stop rising. Counting
    from the retention alone (70 min) put the turnover at a third of that, inside
    the climb, and judged the climb as growth."""
    return account_lifetime_ms + LONGEST_RETENTION_MS


START_MARK = "<!-- soak:start -->"
END_MARK = "<!-- soak:end -->"


def write_results(path: Path, section: str) -> None:
    """Replace what lies between the soak markers, and nothing else."""
    text = path.read_text()
    head, start, rest = text.partition(START_MARK)
    _, end, tail = rest.partition(END_MARK)
    if not start or not end:
        raise SystemExit(f"{path} lacks the {START_MARK} … {END_MARK} markers")
    path.write_text(f"{head}{START_MARK}\n{section.strip()}\n{END_MARK}{tail}")


# -- main ---------------------------------------------------------------------------------


def final_checks(
    worker: WorkerProcess, meant: Counter[str]
) -> tuple[bool, dict[str, Counter[str]]]:
    """Healthy at the end, and dead letters exactly the malformed records sent."""
    status, _ = worker.get("/health")
    rows = scrape(worker) or []
    found = {
        "dead letters": by_label(rows, "fraudapp_dead_letters_total", "reason"),
        "late events": by_label(rows, "fraudapp_late_events_total", "where"),
        "alerts": by_label(rows, "fraudapp_alerts_total", "rule"),
    }
    dead = +found["dead letters"]
    ok = status == 200 and worker.proc is not None and worker.proc.poll() is None
    ok &= {k: int(v) for k, v in dead.items()} == dict(meant)
    return ok, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("soak.csv")))
    parser.add_argument("--results", default=str(Path(__file__).with_name("RESULTS.md")))
    parser.add_argument(
        "--event-rate", type=float, default=100.0, help="events per second of event time"
    )
    parser.add_argument("--disorder-ms", type=float, default=10_000.0)
    parser.add_argument("--account-lifetime-min", type=float, default=120.0)
    parser.add_argument("--txns-per-account", type=float, default=2.0)
    parser.add_argument("--bad-every", type=int, default=100_000)
    parser.add_argument("--max-lead", type=int, default=4_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set in the worker's environment only (an allocator to compare, a setting)",
    )
    args = parser.parse_args()
    worker_env = dict(item.split("=", 1) for item in args.worker_env)
    # A SIGTERM unwinds like Ctrl-C, so the worker, the broker and their temporary
    # directories go too (background jobs of a script ignore SIGINT).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    meant: Counter[str] = Counter()
    clock = EventClock(START_MS, args.event_rate)
    records = synthetic_records(
        args.events,
        seed=args.seed,
        clock=clock,
        disorder_ms=args.disorder_ms,
        account_lifetime_ms=int(args.account_lifetime_min * 60_000),
        per_account=args.txns_per_account,
        bad_every=args.bad_every,
        meant=meant,
    )
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-soak-"))
    try:
        with KafkaBroker() as broker:
            space = AppSpace(broker.bootstrap, "soak")
            space.create_topics()
            worker = space.worker(workdir / space.name, **worker_env)
            worker.log_level = "warn"
            with running(worker):
                progress, drained = asyncio.run(soak(space, worker, records, args))
                ok, found = final_checks(worker, meant)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report(args, progress, drained, ok, found, meant, space.partitions)


def report(
    args: argparse.Namespace,
    progress: Progress,
    drained: bool,
    ok: bool,
    found: dict[str, Counter[str]],
    meant: Counter[str],
    partitions: int,
) -> int:
    samples = progress.samples
    write_csv(samples, Path(args.out))
    last = samples[-1]
    table = markdown_table(samples, 12, args.event_rate)
    reading = summary(samples)
    counts = {
        k: ", ".join(f"{n} {int(v):,}" for n, v in sorted(c.items()) if v) or "none"
        for k, c in found.items()
    }
    hours = args.events / args.event_rate / 3600
    turned_ms = turnover_ms(int(args.account_lifetime_min * 60_000))
    turned = int(turned_ms / 1000 * args.event_rate)
    memory = progress.rocksdb
    tables = sorted(memory.get("memtables", {}))
    rocks = "; ".join(
        f"{t} " + " / ".join(f"{memory.get(k, {}).get(t, 0):,.1f}" for k in KINDS) for t in tables
    )
    budget = RocksDBBudget()
    databases = len(tables) * partitions
    after = [s for s in samples if s.processed >= turned]
    low, high = (min(s.rss_mb for s in after), max(s.rss_mb for s in after)) if after else (0, 0)
    rest = [(s.processed, s.rss_mb - s.rocksdb_memory_mb) for s in after]
    slope = slope_per_million(rest)
    span = (after[-1].processed - after[0].processed) / 1e6 if after else 0.0
    # Flat: what is not RocksDB's grows by less than a tenth over the run after the
    # turnover, and RocksDB stays inside its budget.
    flat = bool(rest) and slope * span < 0.1 * rest[0][1]
    flat &= max((s.rocksdb_memory_mb for s in samples), default=0) <= budget.bound_mb(databases)
    verdict = "yes" if ok and drained else "**NO**"
    section = "\n".join(
        [
            f"## Bounded memory (`bench/soak.py --events {args.events}"
            f" --sample-s {args.sample_s:g}"
            + "".join(f" --worker-env {item}" for item in args.worker_env)
            + "`)",
            "",
            f"{args.events:,} events (5 clicks : 1 ATM transaction, every session new,"
            f" each account in use for {args.account_lifetime_min:g} min of event time,"
            f" {args.txns_per_account:g} transactions on average)"
            f" through one worker with every check on, embedded Apache Kafka, 4 partitions;"
            f" synthetic event time at {args.event_rate:g} events/s covers {hours:,.1f} h,"
            f" delivered up to {args.disorder_ms / 1000:g} s out of order; the producer kept"
            f" at most {args.max_lead:,} records ahead of the worker."
            f" Run took {last.elapsed_s / 60:,.1f} min ({last.processed / last.elapsed_s:,.0f}"
            f" events/s). Every window and retention has turned over from about {turned:,}"
            f" events on ({turned_ms / 60_000:g} min of event time: an account's"
            f" {args.account_lifetime_min:g} min in use and then its ATM state's"
            f" {LONGEST_RETENTION_MS / 60_000:g} min retention). The full curve is in"
            f" `{Path(args.out).name}`.",
            "",
            table,
            "",
            *(f"- {line}" for line in reading),
            f"- RocksDB on disk per table at the end (MB): {tables_line(last)}",
            f"- RocksDB in memory per table at the end, MB ({' / '.join(KINDS)}): {rocks}",
            f"- RocksDB's memory budget: {databases} databases ({len(tables)} tables x"
            f" {partitions} partitions) x {budget.per_database_mb()} MB"
            f" ({budget.write_buffers} memtables of {budget.write_buffer_mb} MB and a"
            f" {budget.block_cache_mb} MB block cache each) = {budget.bound_mb(databases):,} MB",
            "- Python allocator blocks (live Python objects; the rest of RSS is native) at "
            + ", ".join(
                f"{share:.0%} {at_share(samples, share).python_blocks / 1e6:,.2f} M"
                for share in CHECKPOINTS
            ),
            f"- worker RSS once every retention had turned over ({turned:,} events on):"
            f" {low:,.0f}–{high:,.0f} MB",
            f"- dead letters: {counts['dead letters']} (meant: "
            + (", ".join(f"{k} {v:,}" for k, v in sorted(meant.items())) or "none")
            + f"); late events: {counts['late events']}; alerts: {counts['alerts']}",
            f"- worker healthy at the end and everything read: {verdict}",
            f"- RSS outside RocksDB after the turnover: {rest[0][1] if rest else 0:,.0f} MB,"
            f" trend {slope:+,.1f} MB per million events; flat (under a tenth of growth,"
            f" RocksDB within budget): {'yes' if flat else '**NO**'}",
        ]
    )
    print(section)
    write_results(Path(args.results), section)
    return 0 if ok and drained and flat else 1


if __name__ == "__main__":
    sys.exit(main())
