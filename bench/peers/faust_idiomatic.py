"""Peer: faust-streaming as its documentation suggests, a windowed table of counts.

The pattern of faust's user guide ("Windowing") and ``examples/windowed_aggregation``:
a :class:`faust.Record` for the value, one agent, a table of counts made hopping
(10 s windows every 1 s, expiring after the lateness) and relative to the event's
own time, RocksDB as the store the guide recommends for production. For each click
``counts[key] += 1`` and an alert when ``counts[key].value() >= 3``: ``value()`` is the
read that follows the table's time-relativity; ``current()``, the name the guide
shows most, uses the Kafka record's timestamp whatever the table was made relative
to (here the time the click was produced, so it never finds the window just written).

It is not the rule: the window ``value()`` picks is the latest one holding the event,
which for hopping windows starts at the event's own second and reaches 10 s
*forward*, so it misses bursts whose earlier clicks fell in earlier seconds, and it
counts a click sent twice twice. The suite reports its precision and recall against
the oracle instead of a "matches". The topic is keyed by session id, so (session,
url) keys live in the session's partition and no ``group_by`` (another topic hop) is
needed.

    python bench/peers/faust_idiomatic.py --bootstrap 127.0.0.1:9092 --topic clicks \
        --count 10000 --out /tmp/idiomatic.json --workdir /tmp/idiomatic
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import faust

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers.common import Clock, parse_args, write_result  # noqa: E402
from bench.peers.faustrun import make_app, run_worker  # noqa: E402


class Click(faust.Record, serializer="json"):
    click_id: str
    session_id: str
    url: str
    timestamp: int  # epoch ms


def event_seconds(event: faust.EventT | None = None) -> float:
    """The click's own time in seconds, faust's unit for windows (the field is ms)."""
    return (event or faust.current_event()).value.timestamp / 1000


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    app = make_app(args, store="rocksdb://")
    clicks_topic = app.topic(args.topic, key_type=str, value_type=Click)
    counts = (
        app.Table("click-counts", default=int)
        .hopping(10, 1, expires=timedelta(seconds=40))
        .relative_to(event_seconds)
    )
    clock = Clock()
    alerts: list[str] = []
    seen = 0

    @app.agent(clicks_topic)
    async def detect(clicks):  # type: ignore[no-untyped-def]
        nonlocal seen
        async for click in clicks:
            clock.tick()
            key = f"{click.session_id}|{click.url}"
            counts[key] += 1
            if counts[key].value() >= 3:
                alerts.append(click.click_id)
            seen += 1
            if seen == args.count:
                write_result(args.out, seen, clock.elapsed, alerts)

    run_worker(app)


if __name__ == "__main__":
    main()
