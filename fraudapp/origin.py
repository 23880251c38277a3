"""Where a delivery of a record was first read: ``partition:offset`` on its source topic.

Rules keep it beside their state to tell a record read again after a crash from a
producer's duplicate, and explanations of alerts name it; re-keyed copies carry it
in a header, so it survives the detour.
"""

from __future__ import annotations

from faust.types import EventT

#: Header a re-keyed record carries: the origin of the record it was re-keyed from.
ORIGIN_HEADER = "fraudapp-origin"


def origin_of(event: EventT) -> str:
    """Where this delivery was first read: ``partition:offset`` on the source topic.

    Re-keyed records keep their source record's origin (a header), so a source record
    re-read after a crash and re-keyed again is still known for the same delivery.
    """
    message = event.message
    headers = getattr(message, "headers", None)
    if headers:
        items = headers.items() if isinstance(headers, dict) else headers
        for name, value in items:
            if name == ORIGIN_HEADER and value:
                return bytes(value).decode("ascii", "replace")
    return f"{message.partition}:{message.offset}"
