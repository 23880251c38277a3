"""Peer: Quix Streams, a sliding window per (session, url) as its docs show windows.

The clicks are re-keyed by (session, url) with ``group_by`` (Quix windows are per
message key; this goes through a repartition topic Quix makes), event time comes
from the click's ``timestamp`` field through the topic's ``timestamp_extractor``, and
``sliding_window(10 s, grace 30 s)`` keeps, per window, the distinct clicks in it
(``reduce``). Quix's sliding windows are inclusive at both ends and one ends at each
message, so the window ending at a click's time is exactly the rule's ``[t - 10 s, t]``:
a click is condemned when the window ending at its own time holds three or more
distinct clicks. ``current()`` emits every window a message updates, late ones too.
State is Quix's own (RocksDB with changelog topics, its defaults), so it is
recoverable.

Runs in the suite's peers virtualenv (``bench/.venv-peers``), not fraudapp's.

    bench/.venv-peers/bin/python bench/peers/quix.py --bootstrap 127.0.0.1:9092 \
        --topic clicks --count 200000 --out /tmp/quix.json --workdir /tmp/quix
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from quixstreams import Application

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.burst import LATENESS_MS, THRESHOLD, WINDOW_MS  # noqa: E402
from bench.peers.common import Clock, parse_args, write_result  # noqa: E402


def click_time(value: Any, headers: Any, timestamp: int, timestamp_type: Any) -> int:
    return int(value["timestamp"])


def first_click(value: dict[str, Any]) -> list[list[Any]]:
    return [[value["timestamp"], value["click_id"]]]


def add_click(clicks: list[list[Any]], value: dict[str, Any]) -> list[list[Any]]:
    """A click sent twice is one click: the rule counts distinct ids."""
    if all(click_id != value["click_id"] for _, click_id in clicks):
        clicks.append([value["timestamp"], value["click_id"]])
    return clicks


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.app_id,
        auto_offset_reset="earliest",
        state_dir=str(args.workdir / "state"),
        loglevel="WARNING",
    )
    topic = app.topic(
        args.topic,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=click_time,
    )
    clock = Clock()
    alerts: set[str] = set()
    seen = 0

    def count(value: dict[str, Any]) -> None:
        nonlocal seen
        clock.tick()
        seen += 1
        if seen == args.count:
            app.stop()  # after this message has gone through the window

    def condemn(window: dict[str, Any]) -> None:
        clicks = window["value"]
        if len(clicks) >= THRESHOLD:
            alerts.update(click_id for ts, click_id in clicks if ts == window["end"])

    sdf = app.dataframe(topic)
    sdf = sdf.group_by(lambda click: f"{click['session_id']}|{click['url']}", name="session-url")
    sdf = sdf.update(count)
    sdf = (
        sdf.sliding_window(duration_ms=WINDOW_MS, grace_ms=LATENESS_MS)
        .reduce(add_click, first_click)
        .current()
    )
    sdf = sdf.update(condemn)
    app.run()
    write_result(args.out, seen, clock.elapsed, alerts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
