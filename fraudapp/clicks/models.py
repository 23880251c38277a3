"""The click event as fraudapp reads it from any producer.

A plain slotted dataclass, not a ``faust.Record``: records are decoded by the agent
itself (orjson), so a malformed one becomes a dead letter with a reason instead of an
exception inside faust's decoder, and decoding stays cheap on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fraudapp.core.badinput import (
    BadInput,
    decode_object,
    optional_coordinate,
    optional_str,
    require_str,
)
from fraudapp.core.timeparse import TimestampError, parse_event_time


@dataclass(frozen=True, slots=True)
class Click:
    """One ad click; ``timestamp`` is event time in epoch milliseconds (UTC)."""

    click_id: str
    session_id: str
    url: str
    timestamp: int
    ip: str | None = None
    user_agent: str | None = None
    ad_id: str | None = None
    campaign_id: str | None = None
    device_id: str | None = None
    lat: float | None = None
    lon: float | None = None
    #: Where this delivery of the click was read ("partition:offset" of the input
    #: topic; empty when not from Kafka). The rules keep it beside their state, so a
    #: record re-read after a crash (same origin) re-sends what it caused, while the
    #: same click sent twice by a producer (another origin) is only counted once.
    origin: str = ""


def click_from_dict(obj: dict[str, Any], origin: str = "") -> Click:
    """Validate a decoded JSON object; raises :class:`BadInput` naming the field."""
    click_id = require_str(obj, "click_id", max_len=256)
    session_id = require_str(obj, "session_id", max_len=256)
    url = require_str(obj, "url")
    if obj.get("timestamp") is None:
        raise BadInput("missing_field", "field 'timestamp' is missing")
    try:
        timestamp = parse_event_time(obj["timestamp"])
    except TimestampError as exc:
        raise BadInput("bad_timestamp", str(exc)) from None
    lat = optional_coordinate(obj, "lat", 90.0)
    lon = optional_coordinate(obj, "lon", 180.0)
    if (lat is None) != (lon is None):
        raise BadInput("bad_location", "lat and lon must be given together")
    return Click(
        click_id=click_id,
        session_id=session_id,
        url=url,
        timestamp=timestamp,
        ip=optional_str(obj, "ip", max_len=64),
        user_agent=optional_str(obj, "user_agent"),
        ad_id=optional_str(obj, "ad_id", max_len=256),
        campaign_id=optional_str(obj, "campaign_id", max_len=256),
        device_id=optional_str(obj, "device_id", max_len=256),
        lat=lat,
        lon=lon,
        origin=origin,
    )


def decode_click(raw: bytes | str | None, max_bytes: int, origin: str = "") -> Click:
    """Bytes off the wire to a :class:`Click`, or :class:`BadInput` with the reason."""
    return click_from_dict(decode_object(raw, max_bytes), origin)
