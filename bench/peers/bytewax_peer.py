"""Peer: Bytewax, the exact rule in a ``stateful_map`` keyed by (session, url).

The shape of Bytewax's own examples (``anomaly_detector.py``): a Kafka source that
stops at the end of the topic, a decode ``map``, ``key_on`` (session, url), and a
``stateful_map`` whose state is the same :class:`bench.peers.burst.Group` the
hand-written peer keeps, so the rows differ only in what carries the records to it.
One worker, run the way ``python -m bytewax.run`` runs a flow; no recovery store is
configured, so, like the hand-written loop, its state is not recoverable.

Runs in the suite's peers virtualenv (``bench/.venv-peers``), not fraudapp's.

    bench/.venv-peers/bin/python bench/peers/bytewax_peer.py --bootstrap 127.0.0.1:9092 \
        --topic clicks --count 200000 --out /tmp/bytewax.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax._bytewax import cli_main
from bytewax.connectors.kafka import KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.burst import Group  # noqa: E402
from bench.peers.common import Clock, parse_args, write_result  # noqa: E402


def detect(group: Group | None, click: dict[str, Any]) -> tuple[Group, list[str]]:
    group = group or Group()
    return group, group.add(click["timestamp"], click["click_id"])


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    clock = Clock()
    seen = 0

    def decode(message: Any) -> dict[str, Any]:
        nonlocal seen
        clock.tick()
        seen += 1
        return orjson.loads(message.value)

    alerts: list[str] = []
    flow = Dataflow("click-bursts")
    messages = op.input(
        "clicks", flow, KafkaSource([args.bootstrap], [args.topic], tail=False, batch_size=5000)
    )
    clicks = op.map("decode", messages, decode)
    keyed = op.key_on("session-url", clicks, lambda c: f"{c['session_id']}|{c['url']}")
    found = op.stateful_map("burst", keyed, detect)
    condemned = op.flat_map("ids", found, lambda key_ids: key_ids[1])
    op.output("alerts", condemned, TestingSink(alerts))
    cli_main(flow, workers_per_process=1)
    write_result(args.out, seen, clock.elapsed, alerts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
