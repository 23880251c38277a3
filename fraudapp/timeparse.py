"""Event timestamps as producers really send them, turned into epoch milliseconds.

Windows are judged in event time, so a timestamp read wrongly is a wrong verdict.
Producers send epoch ms, ISO-8601 with or without a zone, and ksqlDB's
``yyyy-MM-dd HH:mm:ss X`` form; anything outside a plausible range (most often epoch
*seconds* sent where ms were meant, which lands in January 1970) is refused rather
than silently put in the wrong window.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta, timezone

#: Plausible range for an event: refuse 1970-ish values (epoch seconds sent as ms)
#: and far-future typos instead of opening windows nobody will ever close.
MIN_EVENT_MS = 631_152_000_000  # 1990-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
#: How far ahead of the wall clock an event time may be (producers' clock skew).
FUTURE_TOLERANCE_MS = 3_600_000

_KSQL_FORM = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?)\s*"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)


class TimestampError(ValueError):
    """A timestamp that cannot be placed in event time; the message says why."""


def _zone(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise TimestampError(f"zone offset {text!r} is out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _parse_text(text: str) -> int:
    stripped = text.strip()
    if re.fullmatch(r"-?\d+(\.\d+)?", stripped):
        return _from_number(float(stripped) if "." in stripped else int(stripped))
    match = _KSQL_FORM.match(stripped)
    if match is None:
        raise TimestampError(f"timestamp {text!r} is neither epoch ms nor ISO-8601")
    date_part, time_part, zone_part = match.groups()
    fraction = ""
    if "." in time_part:
        time_part, fraction = time_part.split(".")
    try:
        naive = datetime.fromisoformat(f"{date_part}T{time_part}")
    except ValueError as exc:
        raise TimestampError(f"timestamp {text!r}: {exc}") from None
    moment = naive.replace(tzinfo=_zone(zone_part))
    whole_ms = int(moment.timestamp()) * 1000
    millis = int((fraction + "000")[:3]) if fraction else 0
    return whole_ms + millis


def _from_number(value: int | float) -> int:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TimestampError(f"timestamp {value!r} is not a finite number")
        value = int(value)
    return value


def parse_event_time(value: object) -> int:
    """Return ``value`` as epoch milliseconds (UTC) or raise :class:`TimestampError`."""
    if isinstance(value, bool):
        raise TimestampError("timestamp is a boolean, expected epoch ms or ISO-8601")
    if isinstance(value, int | float):
        millis = _from_number(value)
    elif isinstance(value, str):
        millis = _parse_text(value)
    elif value is None:
        raise TimestampError("timestamp is missing")
    else:
        raise TimestampError(
            f"timestamp has type {type(value).__name__}, expected epoch ms or ISO-8601"
        )
    if not MIN_EVENT_MS <= millis < MAX_EVENT_MS:
        raise TimestampError(
            f"timestamp {value!r} is {format_ms(millis)}, outside 1990..2100"
            " (epoch seconds where milliseconds were meant?)"
        )
    if millis > time.time_ns() // 1_000_000 + FUTURE_TOLERANCE_MS:
        # One event dated years ahead would carry its partition's watermark with it
        # and make every honest event after it "late": refuse it instead.
        raise TimestampError(
            f"timestamp {value!r} is {format_ms(millis)}, more than"
            f" {FUTURE_TOLERANCE_MS // 60_000} min ahead of this worker's clock"
        )
    return millis


def format_ms(millis: int) -> str:
    """ISO-8601 UTC text for logs and messages; never raises."""
    try:
        return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return f"{millis} ms"
