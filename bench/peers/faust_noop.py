"""Peer: a faust agent that does nothing, the wall of faust's per-event stream path.

Raw bytes in (no decoding, no model), ``async for value in stream``, no table, no
output: whatever rate this reaches is the most any faust agent handling one event at
a time can do on this machine, fraudapp's worker included.

    python bench/peers/faust_noop.py --bootstrap 127.0.0.1:9092 --topic clicks \
        --count 200000 --out /tmp/noop.json --workdir /tmp/noop
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.common import Clock, parse_args, write_result  # noqa: E402
from bench.peers.faustrun import make_app, run_worker  # noqa: E402


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    app = make_app(args, store="memory://", key_serializer="raw", value_serializer="raw")
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    clock = Clock()
    seen = 0

    @app.agent(topic)
    async def nothing(stream):  # type: ignore[no-untyped-def]
        nonlocal seen
        async for _value in stream:
            clock.tick()
            seen += 1
            if seen == args.count:
                write_result(args.out, seen, clock.elapsed, [])

    run_worker(app)


if __name__ == "__main__":
    main()
