"""Why an input record cannot be used, as a machine-readable reason code.

Every domain decodes its own records but reports failure the same way, so the
dead-letter topic has one vocabulary of reasons that operators can count and alert
on (see docs/guarantees.md, "Dead letters").
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from fraudapp.core.timeparse import format_ms

#: The reason codes a dead-letter record can carry.
REASONS = (
    "not_json",
    "not_object",
    "missing_field",
    "bad_field_type",
    "bad_timestamp",
    "bad_location",
    "oversized",
    "late_event",
    "notify_failed",
    "bad_rule",
    "unknown_rule",
    "stale_rule",
    "internal_error",
)


class BadInput(ValueError):
    """A record that cannot be used; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def decode_object(raw: bytes | str | None, max_bytes: int) -> dict[str, Any]:
    """Decode one JSON object, refusing what no detector can use."""
    if raw is None:
        raise BadInput("not_json", "record has no value (null or tombstone)")
    if len(raw) > max_bytes:
        raise BadInput("oversized", f"record is {len(raw)} bytes, the limit is {max_bytes}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput("not_json", f"value is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadInput("not_object", f"value is JSON {type(value).__name__}, expected an object")
    return value


def require_str(obj: dict[str, Any], name: str, *, max_len: int = 2048) -> str:
    """A non-empty string field; ids and URLs are never numbers in disguise."""
    if name not in obj or obj[name] is None:
        raise BadInput("missing_field", f"field {name!r} is missing")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput(
            "bad_field_type", f"field {name!r} is {type(value).__name__}, expected a string"
        )
    text = str(value)
    if not text or len(text) > max_len:
        raise BadInput("bad_field_type", f"field {name!r} must be 1..{max_len} characters")
    return text


def optional_str(obj: dict[str, Any], name: str, *, max_len: int = 2048) -> str | None:
    """Like :func:`require_str` for fields a record may leave out."""
    if obj.get(name) is None:
        return None
    return require_str(obj, name, max_len=max_len)


def optional_coordinate(obj: dict[str, Any], name: str, limit: float) -> float | None:
    """A latitude (limit 90) or longitude (limit 180) given as a number or numeric text."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInput("bad_location", f"field {name!r} is a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput("bad_location", f"field {name!r}={value!r} is not a number") from None
    if not math.isfinite(number) or abs(number) > limit:
        raise BadInput("bad_location", f"field {name!r}={value!r} is outside ±{limit}")
    return number


def late_event(what: str, timestamp: int, lateness_ms: int, watermark: int | None) -> BadInput:
    """The refusal of an event that arrived after its window may have expired."""
    return BadInput(
        "late_event",
        f"{what} at {format_ms(timestamp)} is more than {lateness_ms} ms behind"
        f" {format_ms(watermark or 0)}, the newest event time its source partition had"
        " read before it (or the stage's watermark, if later)",
    )
