"""``GET /watermarks``: this worker's event time, for an operator asking why state
grows, why alerts of a backlog seem slow, or why a partition is paused.

Each domain's levels (the watermark each stage judges lateness and expiry by), each
source partition's newest read and committed event times, the channels a frozen
level waits on, and the partitions paused for alignment. Every worker answers for
itself (``served_by``): a level waiting on another worker's slot names it.
"""

from __future__ import annotations

from faust.web import Request, Response, View

from fraudapp.app import app, watermarks


@app.page("/watermarks")
class Watermarks(View):
    """Levels, sources, what is unknown, what is paused."""

    async def get(self, request: Request) -> Response:
        paused = getattr(app.consumer, "held", None) or {}
        return self.json(
            {
                "levels": watermarks.describe(),
                "sources": {
                    f"{topic}[{partition}]": {"read": clock.seen, "committed": clock.safe}
                    for (topic, partition), clock in sorted(watermarks.sources.items())
                },
                "waiting_on": watermarks.unknown(),
                "paused_for_alignment": sorted(f"{tp.topic}[{tp.partition}]" for tp in paused),
                "generation": watermarks.generation,
                "served_by": str(app.conf.canonical_url),
            }
        )
