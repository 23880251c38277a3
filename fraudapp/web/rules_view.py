"""``GET /rules``: the version of every rule in force on this worker.

Every worker reads the whole ``rules`` topic, so any of them answers; ``served_by``
tells which one, so an operator can check that a change has reached them all.
"""

from __future__ import annotations

from faust.web import Request, Response, View

from fraudapp.app import app
from fraudapp.live import liverules


@app.page("/rules")
class Rules(View):
    """The rules in force, by name, each with its version and parameters."""

    async def get(self, request: Request) -> Response:
        book = liverules.current()
        return self.json(
            {
                "rules": [record.as_dict() for record in book.records()],
                "served_by": str(app.conf.canonical_url),
            }
        )
