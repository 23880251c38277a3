"""How a domain's record handler becomes a faust agent, and a bulk handler.

Every domain agent does the same: run its handler, guarded, on each record of its
topics. With ``FRAUDAPP_DELIVERY=bulk`` (the default) the consumer hands the records
to the handler straight from its fetches (:mod:`fraudapp.engine.bulkfeed` says why); the
faust agent is still declared, so faust subscribes the topics, assigns their
partitions and checks their tables' partition counts as for any agent, and it is
the path the records take with ``FRAUDAPP_DELIVERY=faust``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import EventT

from fraudapp.app import app, settings
from fraudapp.live import liverules, livewatermarks
from fraudapp.live.send import guarded

RecordHandler = Callable[[EventT], Awaitable[None]]


def record_agent(channel: faust.TopicT, name: str, handle: RecordHandler) -> Any:
    """The faust agent ``name`` running ``handle`` on every record of ``channel``
    (and the bulk handler of its topics when delivery is ``bulk``)."""

    async def run(event: EventT) -> None:
        if livewatermarks.is_marker(event):
            # Another worker's watermarks, or ours read back: not a record to handle.
            livewatermarks.receive(event)
            return
        liverules.current()  # the rules the local store holds, loaded on first use
        await guarded(event, handle)
        message = event.message
        livewatermarks.read(message.topic, message.partition, message.offset)

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            await run(event)

    agent.__name__ = agent.__qualname__ = name.replace("-", "_")
    agent.__doc__ = handle.__doc__
    if settings.delivery == "bulk":
        for topic in channel.topics:
            app.bulk_handlers[topic] = run
    return app.agent(channel, name=name)(agent)
