"""Peer: one faust building block per run, to show where a faust worker's time goes.

``--mode`` picks what the agent does with each record of the clicks topic (raw
bytes, no decoding): nothing (``values``), nothing but through ``stream.events()``,
one ``Topic.send`` of the record to an output topic (``send``), one write of it to a
RocksDB-backed table with its changelog (``table``), both (``send+table``: what a
stateful rule does at the least), the same send straight to faust's aiokafka
producer (``producer-send``), or the records taken in batches with ``stream.take``
and sent as one aiokafka batch per partition (``take+batch``). Each figure is this
machine's ceiling for a worker that does that much per event through faust.

    python bench/peers/faust_wall.py --mode send --bootstrap 127.0.0.1:9092 \
        --topic clicks --count 100000 --out /tmp/wall.json --workdir /tmp/wall
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.common import Clock, parse_args, write_result  # noqa: E402
from bench.peers.faustrun import make_app, run_worker  # noqa: E402

MODES = ("values", "events", "send", "table", "send+table", "producer-send", "take+batch")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], modes=MODES)
    app = make_app(args, store="rocksdb://", key_serializer="raw", value_serializer="raw")
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    topic = app.topic(args.topic, **raw)
    out = app.topic(f"{args.app_id}-out", partitions=4, internal=True, **raw)
    table = app.Table("wall", partitions=4, key_type=bytes, value_type=bytes)
    clock = Clock()
    seen = 0
    mode = args.mode

    def tick(n: int = 1) -> None:
        nonlocal seen
        clock.tick()
        seen += n
        if seen == args.count:
            write_result(args.out, seen, clock.elapsed, [])

    @app.agent(topic)
    async def wall(stream: Any) -> None:
        if mode == "values":
            async for _value in stream:
                tick()
        elif mode == "take+batch":
            await take_and_batch(stream)
        else:
            await per_event(stream)

    async def per_event(stream: Any) -> None:
        producer = None
        async for event in stream.events():
            message = event.message
            if mode in ("send", "send+table"):
                await out.send(key=message.key, value=message.value)
            if mode in ("table", "send+table"):
                table[message.key] = message.value
            if mode == "producer-send":
                producer = producer or app.producer
                await producer.send(
                    out.get_topic_name(), message.key, message.value, None, None, None
                )
            tick()

    async def take_and_batch(stream: Any) -> None:
        aio = app.producer._ensure_producer()
        name = out.get_topic_name()
        # send_batch, unlike Topic.send, neither creates the topic nor fetches metadata.
        await out.maybe_declare()
        await aio.partitions_for(name)
        async for values in stream.take(500, within=0.05):
            batches: dict[int, Any] = defaultdict(aio.create_batch)
            for index, value in enumerate(values):
                batches[index % 4].append(key=None, value=value, timestamp=None)
            for partition, batch in batches.items():
                batch.close()
                await aio.send_batch(batch, name, partition=partition)
            tick(len(values))

    run_worker(app)


if __name__ == "__main__":
    main()
