"""Where a delivery of a record was first read, and how far its source had got.

``origin`` is ``partition:offset`` on its source topic. Rules keep it beside their
state to tell a record read again after a crash from a producer's duplicate, and
explanations of alerts name it. ``seen`` is the newest event time its source
partition had read before it: a record is late by its own stream when it is more
than the lateness behind that (:mod:`fraudapp.core.watermarks`). Re-keyed copies carry
both in headers, so they survive the detour through the re-key topic.
"""

from __future__ import annotations

from typing import Any

from faust.types import EventT

#: Header a re-keyed record carries: the origin of the record it was re-keyed from.
ORIGIN_HEADER = "fraudapp-origin"
#: Header a re-keyed record carries: its source partition's newest event time before it.
SEEN_HEADER = "fraudapp-seen"


def header(message: Any, name: str) -> bytes | None:
    """One header's value (faust gives headers as a dict or as (name, value) pairs)."""
    headers = getattr(message, "headers", None)
    if headers:
        items = headers.items() if isinstance(headers, dict) else headers
        for key, value in items:
            if key == name and value:
                return bytes(value)
    return None


def origin_of(event: EventT) -> str:
    """Where this delivery was first read: ``partition:offset`` on the source topic.

    Re-keyed records keep their source record's origin (a header), so a source record
    re-read after a crash and re-keyed again is still known for the same delivery.
    """
    message = event.message
    carried = header(message, ORIGIN_HEADER)
    if carried is not None:
        return carried.decode("ascii", "replace")
    return f"{message.partition}:{message.offset}"


def carried_seen(event: EventT) -> int | None:
    """The newest event time of a re-keyed record's source partition before it."""
    carried = header(event.message, SEEN_HEADER)
    if carried is None:
        return None
    try:
        return int(carried)
    except ValueError:
        return None


def rekey_headers(event: EventT, seen: int | None) -> list[tuple[str, bytes]]:
    """The headers of a record's copy sent to its key's partition."""
    headers = [(ORIGIN_HEADER, origin_of(event).encode("ascii"))]
    if seen is not None:
        headers.append((SEEN_HEADER, str(seen).encode("ascii")))
    return headers
