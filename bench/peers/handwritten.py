"""Peer: a hand-written aiokafka loop with the exact click-burst rule in a dict of groups.

What a developer writes without a framework: one consumer (no group, every
partition), orjson, a dict per partition of :class:`bench.peers.burst.Group` keyed by
(session, url). The answer is exact (late clicks condemn later ones, redelivered ids
count once) and state is bounded (groups whose newest click is past the partition's
lateness horizon are dropped), but nothing is recoverable: a crash loses it all,
which is the price of this row's speed.

    python bench/peers/handwritten.py --bootstrap 127.0.0.1:9092 --topic clicks \
        --count 200000 --out /tmp/handwritten.json
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.burst import RETENTION_MS, Group  # noqa: E402
from bench.peers.common import Clock, parse_args, write_result  # noqa: E402

#: Records between sweeps of groups nobody touched within the retention.
SWEEP_EVERY = 50_000


async def detect(bootstrap: str, topic: str, count: int) -> tuple[int, float, list[str]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=5000,
    )
    await consumer.start()
    # Timed like bench/throughput.py's bare consumer, from the consumer's start, so the
    # two rows differ only by the detection.
    clock = Clock()
    clock.tick()
    groups: dict[int, dict[tuple[str, str], Group]] = {}
    newest: dict[int, int] = {}
    alerts: list[str] = []
    seen = next_sweep = 0
    try:
        while seen < count:
            batch = await consumer.getmany(timeout_ms=500)
            for tp, messages in batch.items():
                part = groups.setdefault(tp.partition, {})
                top = newest.get(tp.partition, 0)
                for message in messages:
                    click = orjson.loads(message.value)
                    ts = click["timestamp"]
                    key = (click["session_id"], click["url"])
                    group = part.get(key)
                    if group is None:
                        group = part[key] = Group()
                    found = group.add(ts, click["click_id"])
                    if found:
                        alerts.extend(found)
                    if ts > top:
                        top = ts
                newest[tp.partition] = top
                seen += len(messages)
            if seen >= next_sweep:
                next_sweep = seen + SWEEP_EVERY
                for partition, part in groups.items():
                    horizon = newest.get(partition, 0) - RETENTION_MS
                    for key in [k for k, g in part.items() if g.newest < horizon]:
                        del part[key]
        clock.tick()
    finally:
        await consumer.stop()
    return seen, clock.elapsed, alerts


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    seen, elapsed, alerts = asyncio.run(detect(args.bootstrap, args.topic, args.count))
    write_result(args.out, seen, elapsed, alerts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
