"""The ATM transaction as fraudapp reads it, in the ksqlDB seed's format.

``location`` carries ``lat``/``lon`` as strings or numbers (the seed's generator
sends strings). A transaction without a ``timestamp`` field takes the Kafka
record's timestamp, as ksqlDB's ROWTIME does for the seed's first example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fraudapp.core.badinput import BadInput, decode_object, require_str
from fraudapp.core.timeparse import TimestampError, parse_event_time


@dataclass(frozen=True, slots=True)
class Txn:
    """One ATM withdrawal; ``timestamp`` is event time in epoch ms (UTC)."""

    account_id: str
    transaction_id: str
    atm: str
    amount: float | int
    lat: float
    lon: float
    timestamp: int
    #: Where this delivery was read ("partition:offset"), as for clicks
    #: (:attr:`fraudapp.clicks.models.Click.origin`).
    origin: str = ""


def _coordinate(location: dict[str, Any], name: str, limit: float) -> float:
    value = location.get(name)
    if value is None:
        raise BadInput("missing_field", f"field 'location.{name}' is missing")
    if isinstance(value, bool):
        raise BadInput("bad_location", f"field 'location.{name}' is a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput("bad_location", f"location.{name}={value!r} is not a number") from None
    if not math.isfinite(number) or abs(number) > limit:
        raise BadInput("bad_location", f"location.{name}={value!r} is outside ±{limit}")
    return number


def _amount(obj: dict[str, Any]) -> float | int:
    value = obj.get("amount")
    if value is None:
        raise BadInput("missing_field", "field 'amount' is missing")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadInput("bad_field_type", f"field 'amount' is {type(value).__name__}")
    try:
        number = float(value) if isinstance(value, str) else value
    except ValueError:
        raise BadInput("bad_field_type", f"amount={value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise BadInput("bad_field_type", f"amount={value!r} must be a finite number >= 0")
    return int(number) if float(number).is_integer() else number


def txn_from_dict(
    obj: dict[str, Any], record_timestamp: int | None = None, origin: str = ""
) -> Txn:
    """Validate a decoded transaction; raises :class:`BadInput` naming the field."""
    account_id = require_str(obj, "account_id", max_len=256)
    transaction_id = require_str(obj, "transaction_id", max_len=256)
    atm = require_str(obj, "atm", max_len=512)
    amount = _amount(obj)
    location = obj.get("location")
    if location is None:
        raise BadInput("missing_field", "field 'location' is missing")
    if not isinstance(location, dict):
        raise BadInput("bad_location", "field 'location' must be an object with lat and lon")
    lat = _coordinate(location, "lat", 90.0)
    lon = _coordinate(location, "lon", 180.0)
    raw_time = obj.get("timestamp")
    if raw_time is None and record_timestamp is None:
        raise BadInput("missing_field", "field 'timestamp' is missing")
    try:
        timestamp = parse_event_time(record_timestamp if raw_time is None else raw_time)
    except TimestampError as exc:
        raise BadInput("bad_timestamp", str(exc)) from None
    return Txn(account_id, transaction_id, atm, amount, lat, lon, timestamp, origin)


def decode_txn(
    raw: bytes | str | None,
    max_bytes: int,
    record_timestamp: int | None = None,
    origin: str = "",
) -> Txn:
    """Bytes off the wire to a :class:`Txn`, or :class:`BadInput` with the reason."""
    return txn_from_dict(decode_object(raw, max_bytes), record_timestamp, origin)
