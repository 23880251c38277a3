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
from datetime import UTC, date, datetime
from functools import lru_cache

#: Plausible range for an event: refuse 1970-ish values (epoch seconds sent as ms)
#: and far-future typos instead of opening windows nobody will ever close.
MIN_EVENT_MS = 631_152_000_000  # 1990-01-01T00:00:00Z
MAX_EVENT_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
#: How far ahead of the wall clock an event time may be (producers' clock skew).
FUTURE_TOLERANCE_MS = 3_600_000

_KSQL_FORM = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class TimestampError(ValueError):
    """A timestamp that cannot be placed in event time; the message says why."""


@lru_cache(maxsize=64)
def _zone_ms(text: str | None) -> int:
    """The zone's offset from UTC in ms. Cached, as are days: a stream repeats the
    same few zones and days, and the text form is ~5 us a record without them."""
    if text is None or text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[:2])
    minutes = int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise TimestampError(f"zone offset {text!r} is out of range")
    return sign * (hours * 60 + minutes) * 60_000


@lru_cache(maxsize=1024)
def _day_ms(text: str) -> int:
    """Epoch ms of a ``yyyy-mm-dd`` day's midnight (UTC); ValueError for no such day."""
    year, month, day = int(text[:4]), int(text[5:7]), int(text[8:10])
    return (date(year, month, day).toordinal() - _EPOCH_ORDINAL) * 86_400_000


def _parse_text(text: str) -> int:
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return _from_number(float(stripped) if "." in stripped else int(stripped))
    match = _KSQL_FORM.match(stripped)
    if match is None:
        raise TimestampError(f"timestamp {text!r} is neither epoch ms nor ISO-8601")
    day, hour, minute, second, fraction, zone = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise TimestampError(f"timestamp {text!r}: time {hour}:{minute}:{second} is out of range")
    try:
        midnight = _day_ms(day)
    except ValueError as exc:
        raise TimestampError(f"timestamp {text!r}: {exc}") from None
    millis = int((fraction + "000")[:3]) if fraction else 0
    return midnight + ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis - _zone_ms(zone)


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
