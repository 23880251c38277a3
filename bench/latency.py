"""Detection latency at a steady rate: event produced -> alert received, beside the
broker's own produce -> consume round trip measured in the same run.

    .venv/bin/python bench/latency.py --rates 2000 10000 --seconds 20

Every third click completes a click burst (three clicks of a new session on one URL,
stamped with the wall clock), so alerts flow at a third of the rate. For each alert
the latency is the time its alert arrived at a plain aiokafka consumer minus the time
its completing click was handed to the producer. The floor is the same path without
a worker: records produced at the same rate and consumed from the same broker. One
worker, the click rule alone, embedded Apache Kafka. A rate the worker cannot keep
up with shows as latency growing over the run (see "max").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import CLICK_RULE_ONLY  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from fraudapp.cli.workerproc import WorkerProcess  # noqa: E402
from tests.integration.helpers import AppSpace, running  # noqa: E402


def now_ms() -> float:
    return time.time_ns() / 1e6


async def pace(
    producer: AIOKafkaProducer, topic: str, rate: float, seconds: float, sent: dict[str, float]
) -> None:
    """Produce at ``rate`` clicks/s in 10 ms ticks; remember when each burst completed."""
    started, total, n = time.perf_counter(), int(rate * seconds), 0
    while n < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while n < due:
            session = f"lat-{n // 3}"
            click_id = f"{session}-{n % 3}"
            value = {
                "click_id": click_id,
                "session_id": session,
                "url": "u",
                "timestamp": int(now_ms()),
            }
            await producer.send(topic, orjson.dumps(value), key=session.encode())
            if n % 3 == 2:
                sent[click_id] = now_ms()
            n += 1
        await asyncio.sleep(0.002)


async def collect(
    ready: asyncio.Event,
    bootstrap: str,
    topic: str,
    field: str,
    until: int,
    received: dict[str, float],
    timeout_s: float,
    stamped: dict[str, float],
) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
        group_id=f"lat-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    deadline = time.perf_counter() + timeout_s
    try:
        # Join the group before anything is produced, so no latency includes a join.
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        ready.set()
        while len(received) < until and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=100)
            arrived = now_ms()
            for messages in batch.values():
                for message in messages:
                    record = orjson.loads(message.value)
                    key = record.get(field)
                    # Only the clicks that complete a burst (the floor reads them all).
                    if isinstance(key, str) and key.endswith("-2"):
                        received.setdefault(key, arrived)
                        stamped.setdefault(key, float(message.timestamp))
    finally:
        await consumer.stop()


async def measure(
    bootstrap: str, source: str, sink: str, field: str, rate: float, seconds: float
) -> list[Point]:
    """(epoch ms the completing click was sent, latency ms, ms until the output's
    record timestamp) of each alert received."""
    sent: dict[str, float] = {}
    received: dict[str, float] = {}
    stamped: dict[str, float] = {}
    expected = int(rate * seconds) // 3
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    try:
        ready = asyncio.Event()
        reader = asyncio.create_task(
            collect(ready, bootstrap, sink, field, expected, received, seconds + 120, stamped)
        )
        await asyncio.wait_for(ready.wait(), 60)
        await pace(producer, source, rate, seconds, sent)
        await producer.flush()
        await reader
        print(f"  {source} -> {sink}: {len(received):,} of {expected:,}", flush=True)
    finally:
        await producer.stop()
    return [(t, received[k] - t, stamped[k] - t) for k, t in sent.items() if k in received]


def gc_pauses(worker: WorkerProcess) -> Counter[tuple[int, str]]:
    """The worker's garbage-collector pauses so far, per (generation, figure):
    ``count``, ``sum`` (s) and ``slow`` (those over 10 ms). A collection stops the
    loop, and a full one walks every live object."""
    status, text = worker.get("/metrics", timeout=5)
    if status != 200 or not isinstance(text, str):
        raise RuntimeError(f"/metrics answered {status}")
    found: Counter[tuple[int, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "fraudapp_gc_pause_seconds":
            continue
        for sample in family.samples:
            generation = int(sample.labels["generation"])
            figure = sample.name.removeprefix(family.name + "_")
            if figure in ("count", "sum"):
                found[generation, figure] += sample.value
            elif figure == "bucket" and float(sample.labels["le"]) == 0.01:
                found[generation, "slow"] -= sample.value
    for generation in range(3):
        found[generation, "slow"] += found[generation, "count"]
    return found


def gc_during(before: Counter[tuple[int, str]], after: Counter[tuple[int, str]]) -> str:
    """What the collector cost the worker while latency was measured."""
    spent = after.copy()
    spent.subtract(before)
    return "; ".join(
        f"gen{g} {spent[g, 'count']:,.0f} ({spent[g, 'sum'] * 1000:,.0f} ms,"
        f" {spent[g, 'slow']:,.0f} over 10 ms)"
        for g in range(3)
    )


#: One output received: (epoch ms its input was sent, ms until it was received, ms
#: until its record's timestamp, which the producer that wrote it stamps as the
#: record is added to a batch; for a worker's alert, the part of the latency spent
#: before the worker queued it, the rest being the send and the fetch).
Point = tuple[float, float, float]


def write_trace(path: Path, points: list[Point]) -> None:
    """Each alert's send time (ms from the first), latency and time to its record's
    timestamp, to see whether the slow ones come together (the loop stopped) or
    alone, and on which side of the worker's queueing the time goes."""
    start = points[0][0] if points else 0.0
    path.write_text(
        "sent_ms,latency_ms,queued_ms\n"
        + "".join(f"{t - start:.1f},{lat:.2f},{queued:.2f}\n" for t, lat, queued in points)
    )


def summary(points: list[Point], expected: int) -> str:
    latencies = [lat for _, lat, _ in points]
    q = statistics.quantiles(latencies, n=100)
    return f"{q[49]:.1f} | {q[98]:.1f} | {max(latencies):.1f} | {len(latencies):,} of {expected:,}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[2000.0, 10000.0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the worker alone (repeatable)",
    )
    parser.add_argument(
        "--trace", type=Path, help="write each worker alert's latency to TRACE-<rate>.csv"
    )
    args = parser.parse_args()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="fraudapp-latency-"))
    with KafkaBroker() as broker:
        for rate in args.rates:
            floor = AppSpace(broker.bootstrap, "lat-floor")
            floor.create_topics()
            topic = floor.topics["clicks"]
            base = asyncio.run(
                measure(broker.bootstrap, topic, topic, "click_id", rate, args.seconds)
            )
            expected = int(rate * args.seconds) // 3
            rows.append(
                f"| broker round trip (produce -> consume) | {rate:,.0f} | "
                f"{summary(base, expected)} | — |"
            )
            space = AppSpace(broker.bootstrap, "lat-worker", **CLICK_RULE_ONLY)
            space.create_topics()
            worker = space.worker(
                work / space.name, **dict(item.split("=", 1) for item in args.worker_env)
            )
            worker.log_level = "warn"
            with running(worker):
                before = gc_pauses(worker)
                lat = asyncio.run(
                    measure(
                        broker.bootstrap,
                        space.topics["clicks"],
                        space.topics["alerts"],
                        "click_id",
                        rate,
                        args.seconds,
                    )
                )
                collections = gc_during(before, gc_pauses(worker))
            if args.trace:
                write_trace(Path(f"{args.trace}-{rate:.0f}.csv"), lat)
            rows.append(
                f"| fraudapp worker, click rule (click -> alert) | {rate:,.0f} | "
                f"{summary(lat, expected)} | {collections} |"
            )
            print(rows[-2], rows[-1], sep="\n", flush=True)
    print(
        "| path | clicks/s | p50 ms | p99 ms | max ms | alerts measured"
        " | worker's garbage collections meanwhile |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
