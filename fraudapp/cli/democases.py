"""What ``fraudapp demo`` prints about cases: each case's transitions as they happen,
and how many case records the alerts made (the point of cases: a person reads a
few dozen case lines where the rules raised hundreds of alerts)."""

from __future__ import annotations

from collections import Counter
from typing import Any

#: Transitions printed (``updated`` is a refresh of the count, not news).
SHOWN = ("opened", "reopened", "escalated", "resolved")


class CaseTally:
    """Alerts and case records seen since the demo began."""

    def __init__(self) -> None:
        self.alerts = 0
        self.records = 0
        self.transitions: Counter[str] = Counter()
        self.status: dict[str, str] = {}

    def alert(self) -> None:
        self.alerts += 1

    def record(self, case: dict[str, Any] | None, case_id: str) -> None:
        self.records += 1
        if case is None:
            self.transitions["expired"] += 1
            self.status.pop(case_id, None)
            return
        self.transitions[str(case.get("transition"))] += 1
        self.status[case_id] = str(case.get("status"))

    def summary(self) -> str:
        open_ = sum(1 for status in self.status.values() if status == "open")
        share = f"{100 * self.records / self.alerts:.1f} %" if self.alerts else "-"
        return (
            f"CASES {open_} open, {len(self.status) - open_} resolved: {self.alerts} alerts"
            f" made {self.records} case records ({share} of the alerts)"
        )


def describe_case(case: dict[str, Any], web: str) -> str:
    """One line per case transition, with the link to the case."""
    count = case.get("alert_count", 0)
    episode = f", episode {case['episode']}" if case.get("episode", 1) > 1 else ""
    action = case.get("action") or {}
    block = (
        f", {action['ip']} blocked" if action.get("status") == "active" and action.get("ip") else ""
    )
    return (
        f"CASE {case.get('transition')} {case.get('rule')} {case.get('entity')}"
        f" [{case.get('severity')}]: {count} alert{'s' if count != 1 else ''}{episode}{block}"
        f" -> {web}/cases/{case.get('case_id')}"
    )
