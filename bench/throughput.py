"""Events per second through one fraudapp worker, beside a bare consumer, on real Kafka.

Every figure is the median of ``--runs`` runs taken in this same process against the
same embedded Apache Kafka broker, with the bare aiokafka consumer (decode only, the
limit of any Python consumer here) measured in between as the baseline, so the
ratio holds however fast or busy the machine is. Each worker run is checked against
the brute-force oracle: a fast wrong answer does not count.

    .venv/bin/python bench/throughput.py --clicks 50000 --txns 20000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpuuse import CpuMeter  # noqa: E402
from bench.results import rate_table, write_section  # noqa: E402
from fraudapp.adnet.oracle import over_limit_click_ids, stacked_click_ids  # noqa: E402
from fraudapp.atm.generate import generate_txns  # noqa: E402
from fraudapp.atm.oracle import expected_pairs  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402
from fraudapp.clicks.oracle import fraudulent_click_ids  # noqa: E402
from fraudapp.core.timeparse import parse_event_time  # noqa: E402
from fraudapp.engine import kafkaio  # noqa: E402
from tests.integration.helpers import AppSpace, running  # noqa: E402


async def bare_consumer(bootstrap: str, topic: str, count: int) -> float:
    """Seconds for a plain aiokafka consumer to read and JSON-decode ``count`` records."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < count:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    orjson.loads(message.value)
                seen += len(messages)
    finally:
        await consumer.stop()
    return time.perf_counter() - started


#: The click-burst rule alone: every ad-network check switched off.
CLICK_RULE_ONLY = {
    "STACKED_ADS_ENABLED": "0",
    "RATE_LIMIT_ENABLED": "0",
    "IP_BLOCKLIST_ENABLED": "0",
    "LOCATION_ENABLED": "0",
    "HEAVY_HITTERS_ENABLED": "0",
}


def stamped_seconds(bootstrap: str, topic: str, *later: str) -> float:
    """Seconds from the first record of ``topic`` to the last of ``topic`` and
    ``later``, by their timestamps.

    Why: the worker's producer stamps each output record as it is queued, right after
    its input was handled, so the span of a topic the worker writes once per input
    (verdicts, a rule's changelog) is the worker's own time from its first record to
    its last, the way the peers time themselves: start-up, group join and the reading
    client's fetches left out, on the worker's own clock. ``later`` are topics the
    worker writes for the same inputs afterwards, which must end the span too, such
    as the alert index's changelog. While its entries went through a topic, many were
    stored after the last input was handled, and timing ATM by its account changelog
    alone left that work out (a259d9a, 6 runs: median 16 400 transactions/s timed
    so, 12 900 to the index's last record)."""
    stamps = [r.timestamp for r in asyncio.run(kafkaio.read_topic(bootstrap, topic))]
    if len(stamps) < 2:
        raise RuntimeError(f"{topic} holds {len(stamps)} records: nothing to time")
    last = max(stamps)
    for other in later:
        records = asyncio.run(kafkaio.read_topic(bootstrap, other))
        last = max([last, *(r.timestamp for r in records)])
    return (last - min(stamps)) / 1000.0


def run_clicks(
    bootstrap: str,
    clicks: list[dict],
    workdir: Path,
    *,
    all_checks: bool = False,
    env: dict[str, str] | None = None,
    workers: int = 1,
    backlog: bool = False,
    cpu: dict[str, int] | None = None,
    code: Path | None = None,
    partitions: int = 4,
) -> tuple[float, bool, CpuMeter | None]:
    """Clicks through ``workers`` workers of one app (timed once all have their
    partitions); correct when the exact checks' alerts equal their oracles (with all
    checks: click bursts, stacked ads and the rate limit). ``code`` runs the workers
    from another checkout (bench/ab.py). ``env`` adds settings to
    the workers' environment (to compare one setting's effect). ``cpu`` names other
    processes (the broker) whose CPU time is measured over the timed window with the
    workers' (``worker-N``) and this process's: the returned meter, else None.

    With ``backlog`` the clicks are in the topic before the worker starts and the
    worker is timed from its first verdict to its last (:func:`stamped_seconds`), as
    the suite's peers are timed on input already there; without it, from the first
    click produced to the last verdict read back, producing included."""
    if backlog and workers != 1:
        raise ValueError("a backlog is timed on one worker: a second would join mid-run")
    space = AppSpace(bootstrap, "bench-checks" if all_checks else "bench-clicks", partitions)
    space.create_topics()
    if backlog:
        space.produce([(c["session_id"], c) for c in clicks])
    expected = {"click_burst": fraudulent_click_ids(clicks)}
    if all_checks:
        expected["stacked_ads"] = stacked_click_ids(clicks)
        expected["rate_limit"] = over_limit_click_ids(clicks)
    with ExitStack() as stack:
        started_workers = []
        for number in range(workers):
            worker = space.worker(
                workdir / f"{space.name}-{number}",
                **({} if all_checks else CLICK_RULE_ONLY),
                **(env or {}),
            )
            worker.log_level = "warn"
            worker.code = code
            started_workers.append(stack.enter_context(running(worker)))
        for worker in started_workers:  # each joining worker rebalanced the others
            worker.wait_ready(120.0)
        meter = None
        if cpu is not None:
            pids = {f"worker-{n}": w.pid for n, w in enumerate(started_workers) if w.pid}
            meter = CpuMeter({**cpu, **pids})
            meter.start()
        started = time.perf_counter()
        if not backlog:
            space.produce([(c["session_id"], c) for c in clicks])
        space.consume("verdicts", until=len(clicks), timeout_s=900)
        elapsed = time.perf_counter() - started
        if meter is not None:
            meter.stop()
        alerts = space.consume("alerts", idle_s=2.0)["alerts"]
    if backlog:
        elapsed = stamped_seconds(
            bootstrap, space.topics["verdicts"], f"{space.name}-alert-index-changelog"
        )
    ok = True
    for rule, ids in expected.items():
        found = [a["click_id"] for a in alerts if a["rule"] == rule]
        ok &= len(found) == len(set(found)) and set(found) == ids
    return elapsed, ok, meter


def run_group(
    bootstrap: str,
    clicks: list[dict],
    workdir: Path,
    *,
    workers: int,
    env: dict[str, str] | None = None,
    partitions: int = 4,
) -> tuple[float, float, bool]:
    """One all-checks run of ``workers`` workers of one app (:func:`run_clicks`):
    clicks/s, the workers' CPU seconds per 1 000 clicks together, and whether the
    alerts matched the oracle (bench/standby.py, bench/cpuscaling.py)."""
    seconds, ok, meter = run_clicks(
        bootstrap,
        clicks,
        workdir,
        all_checks=True,
        workers=workers,
        env=env,
        cpu={},
        partitions=partitions,
    )
    assert meter is not None
    used = sum(v for name, v in meter.used.items() if name.startswith("worker-"))
    return len(clicks) / seconds, used / len(clicks) * 1000, ok


def run_atm(
    bootstrap: str,
    txns: list[dict],
    workdir: Path,
    *,
    backlog: bool = False,
    code: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[float, bool]:
    """Transactions through one worker; correct when its alerts equal the oracle's
    pairs. ``backlog`` and ``env`` as for :func:`run_clicks`, timed by the account table's
    changelog (one record per transaction handled), as the ATM rule sends no
    verdict per transaction."""
    space = AppSpace(bootstrap, "bench-atm")
    space.create_topics()
    if backlog:
        space.produce([(t["account_id"], t) for t in txns], topic="atm")
    expected = expected_pairs(
        [
            {
                "account_id": t["account_id"],
                "transaction_id": t["transaction_id"],
                "lat": float(t["location"]["lat"]),
                "lon": float(t["location"]["lon"]),
                "timestamp": parse_event_time(t["timestamp"]),
            }
            for t in txns
        ]
    )
    worker = space.worker(workdir / space.name, **(env or {}))
    worker.log_level = "warn"
    worker.code = code
    with running(worker):
        started = time.perf_counter()
        if not backlog:
            space.produce([(t["account_id"], t) for t in txns], topic="atm")
        alerts = space.consume("alerts", until=len(expected), timeout_s=900)["alerts"]
        elapsed = time.perf_counter() - started
        alerts += space.consume("alerts", idle_s=2.0)["alerts"][len(alerts) :]
    if backlog:
        elapsed = stamped_seconds(
            bootstrap, f"{space.name}-atm-accounts-changelog", f"{space.name}-alert-index-changelog"
        )
    keys = [(a["account_id"], a["t1_transaction_id"], a["t2_transaction_id"]) for a in alerts]
    return elapsed, len(keys) == len(set(keys)) and set(keys) == set(expected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=50_000)
    parser.add_argument("--txns", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args()

    clicks = arrival_order(generate_clicks(args.clicks, seed=7), max_delay_ms=30_000, seed=8)
    txns = generate_txns(args.txns, seed=9)
    rows: dict[str, list[float]] = {"bare": [], "clicks": [], "checks": [], "atm": []}
    correct = {"clicks": True, "checks": True, "atm": True}
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-bench-"))
    with KafkaBroker() as broker:
        baseline_space = AppSpace(broker.bootstrap, "bench-bare")
        baseline_space.create_topics()
        baseline_space.produce([(c["session_id"], c) for c in clicks])
        topic = baseline_space.topics["clicks"]
        for run in range(args.runs):
            rows["bare"].append(
                args.clicks / asyncio.run(bare_consumer(broker.bootstrap, topic, args.clicks))
            )
            seconds, ok, _ = run_clicks(broker.bootstrap, clicks, workdir)
            rows["clicks"].append(args.clicks / seconds)
            correct["clicks"] &= ok
            seconds, ok, _ = run_clicks(broker.bootstrap, clicks, workdir, all_checks=True)
            rows["checks"].append(args.clicks / seconds)
            correct["checks"] &= ok
            seconds, ok = run_atm(broker.bootstrap, txns, workdir)
            rows["atm"].append(args.txns / seconds)
            correct["atm"] &= ok
            print(
                f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rows.items()),
                flush=True,
            )

    labels = {
        "bare": f"bare aiokafka consumer, decode only ({args.clicks:,} clicks)",
        "clicks": f"fraudapp worker, click rule alone ({args.clicks:,} clicks, shuffled)",
        "checks": f"fraudapp worker, all click checks ({args.clicks:,} clicks, shuffled)",
        "atm": f"fraudapp worker, ATM rule ({args.txns:,} transactions)",
    }
    lines = rate_table(rows, labels, correct)
    table = "\n".join(lines)
    print(table)
    checks, alone = statistics.median(rows["checks"]), statistics.median(rows["clicks"])
    ratio = (
        f"\nAll click checks run at {checks / alone:.2f}x the click rule alone"
        f" ({checks:,.0f} vs {alone:,.0f} clicks/s, same run).\n"
    )
    body = RESULTS_HEAD + table + "\n" + ratio + RESULTS_TAIL.format(runs=args.runs)
    write_section("throughput", body, Path(args.out))
    return 0 if all(correct.values()) else 1


RESULTS_HEAD = """## Throughput of the worker (`bench/throughput.py`)

Produced by `bench/throughput.py` (see its docstring for the method): one worker
process, 4 partitions, embedded Apache Kafka 3.9.1 (one KRaft node), on this
project's 2-core machine. Figures are whole-pipeline rates: from the first record
produced to the last verdict (clicks) or alert (ATM) read back by a consumer.

"""

RESULTS_TAIL = """
Medians of {runs} runs, the baseline measured in the same run between them.
Every worker run's alerts were compared with the brute-force oracles (with all
checks on: click bursts, stacked ads and the rate limit, which are exact).

Reading: the worker's consumer hands each fetched partition's records to the
handlers directly (`FRAUDAPP_DELIVERY=bulk`, `fraudapp/engine/bulkfeed.py`), below faust's
per-event stream path (about 14 000 events/s at most on this machine,
`bench/wall.py`), and acks them through faust's consumer. Per click it does one
RocksDB read and write, one changelog record and one or two output records; those
records leave through the outbox (`fraudapp/engine/outbox.py`) as aiokafka batches. With
all click checks a click crosses up to four stages (session, source, campaign,
area), each keyed differently: a stage whose partition of the key this worker owns
runs inline (`fraudapp/engine/owned.py`; a lone worker owns them all), any other goes
through the stage's topic to the worker that does. The difference to the click rule
alone is the checks' own work ("What stands in the way" has the profile).
"""


if __name__ == "__main__":
    sys.exit(main())
