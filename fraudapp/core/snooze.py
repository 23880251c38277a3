"""Snoozes: a case's notifications silenced for a while, its alerts still counted.

Why a snooze and not a paused rule: an analyst who knows a source is a partner's
load test wants to stop hearing about that one case, not to blind the rule for
everyone (Marble snoozes a rule per entity; Jube suppresses actions per key while its
counters keep counting). A snooze is in wall-clock time: it is a person's "not for
the next hour", and notifications go out in wall-clock time too. Each one is a
record on the compacted ``snoozes`` topic keyed by the case id (the one in force)
and an audit record on ``actions`` (all of them, kept). Pure.
"""

from __future__ import annotations

import re
from typing import Any

from fraudapp.core.caseids import ENTITY_KINDS, case_id

_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
#: The longest snooze: a case silenced for ever is a rule to change instead.
MAX_MS = 30 * 86_400_000


class SnoozeError(ValueError):
    """A snooze that cannot be taken; the message says why."""


def parse_duration(text: str | int | float) -> int:
    """``90s``, ``30m``, ``1h``, ``2d`` (or a number of seconds) in ms; 0 lifts a snooze."""
    if isinstance(text, bool):
        raise SnoozeError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        ms = int(float(text) * 1000)
    else:
        match = _DURATION.match(text)
        if match is None:
            if text.strip().isdigit():
                return parse_duration(int(text.strip()))
            raise SnoozeError(f"not a duration: {text!r} (say 90s, 30m, 1h or 2d)")
        ms = int(float(match.group(1)) * _UNITS[match.group(2)])
    if ms < 0 or ms > MAX_MS:
        raise SnoozeError(f"a snooze lasts 0 to 30 days, not {text!r}")
    return ms


def snooze_record(
    *,
    rule: str,
    entity: str,
    for_ms: int,
    now_ms: int,
    by: str,
    reason: str = "",
) -> dict[str, Any]:
    """The snooze of ``entity``'s case under ``rule`` from ``now_ms`` for ``for_ms``."""
    if rule not in ENTITY_KINDS:
        raise SnoozeError(f"no rule named {rule!r}; known: {sorted(ENTITY_KINDS)}")
    if not entity:
        raise SnoozeError("say which entity (a session, account, source, IP or area)")
    return {
        "case_id": case_id(rule, entity),
        "rule": rule,
        "entity": entity,
        "from": now_ms,
        "until": now_ms + for_ms,
        "by": by or "unknown",
        "reason": reason,
    }


def audit_record(snooze: dict[str, Any]) -> dict[str, Any]:
    """Its line in the ``actions`` audit log."""
    kind = "snooze" if snooze["until"] > snooze["from"] else "unsnooze"
    return {"action": kind, **snooze, "at": snooze["from"]}


def in_force(snooze: dict[str, Any] | None, now_ms: int) -> bool:
    return snooze is not None and int(snooze.get("until", 0)) > now_ms
