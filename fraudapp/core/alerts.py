"""The alert envelope and the dead-letter record, shared by every detector.

Alerts are flat JSON objects so that any Kafka client (kcat, a Java service, a SIEM
connector) can read them without a schema: the envelope fields below, and beside
them at the top level the rule's own evidence. ``alert_id`` is derived from what
was found, not from when, so a retried or replayed detection yields the same id and
consumers can drop repeats by keeping the ids they have seen.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

ENVELOPE_FIELDS = ("alert_id", "rule", "rule_version", "key", "event_time", "detected_at")


def alert_id(rule: str, *identity: str) -> str:
    """Deterministic id of a finding: the rule and what identifies the finding
    (e.g. the fraudulent click's id, or both transaction ids of an ATM pair)."""
    digest = hashlib.blake2b("\x1f".join((rule, *identity)).encode(), digest_size=12)
    return f"{rule}-{digest.hexdigest()}"


def now_ms() -> int:
    """Wall-clock time in epoch ms, for ``detected_at``."""
    return time.time_ns() // 1_000_000


def make_alert(
    *,
    rule: str,
    rule_version: int,
    key: str,
    event_time: int,
    identity: tuple[str, ...],
    evidence: dict[str, Any],
    detected_at: int | None = None,
    severity: str | None = None,
) -> dict[str, Any]:
    """One alert: the common envelope plus the rule's evidence at the top level.

    ``severity``: the rule's grade of this finding from its evidence; without one the
    rule book gives the version's fixed severity when it routes the alert. It is a
    keyword, not evidence, so no evidence field can pass for a grade."""
    clash = set(evidence) & {*ENVELOPE_FIELDS, "severity"}
    if clash:
        raise ValueError(f"evidence must not overwrite envelope fields {sorted(clash)}")
    graded = {} if severity is None else {"severity": severity}
    return {
        "alert_id": alert_id(rule, *identity),
        "rule": rule,
        "rule_version": rule_version,
        "key": key,
        "event_time": event_time,
        "detected_at": now_ms() if detected_at is None else detected_at,
        **graded,
        **evidence,
    }


def dead_letter(
    *,
    raw: bytes | str | None,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    message: str,
    key: bytes | str | None = None,
) -> dict[str, Any]:
    """A dead-letter record: the original bytes (text when they are UTF-8, else
    base64) with where they came from and why they were refused, so nothing is lost
    and an operator can fix and replay it."""
    record: dict[str, Any] = {
        "reason": reason,
        "message": message,
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "received_at": now_ms(),
    }
    record.update(_payload("value", raw))
    record.update(_payload("key", key))
    return record


def _payload(name: str, data: bytes | str | None) -> dict[str, Any]:
    if data is None:
        return {name: None}
    if isinstance(data, str):
        return {name: data}
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}
