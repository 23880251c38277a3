"""What case an alert belongs to: its rule and the entity it is about.

An analyst acts on an entity (a session, an account, a traffic source, a campaign's
source, an area), not on each click that tripped a rule, so every alert belongs to
exactly one case, named by its rule and that entity. The id is derived, never
assigned: every worker, a replay and a label written months later compute the same
one, as :func:`fraudapp.core.alerts.alert_id` does for alerts. Pure.
"""

from __future__ import annotations

import hashlib
from typing import Any

PREFIX = "case-"

#: The entity of each rule's alerts, as the analyst names it (docs/cases.md).
ENTITY_KINDS = {
    "click_burst": "session",
    "atm_impossible_travel": "account",
    "stacked_ads": "source",
    "rate_limit": "source",
    "ip_blocklist": "ip",
    "heavy_hitter": "campaign and source",
    "suspicious_location": "area",
}


def entity_of(alert: dict[str, Any]) -> str:
    """The entity an alert is about: its key (the session, account, source, IP or
    area its rule is keyed by), and for a heavy hitter its campaign and source
    (``cmp-1|ip:10.0.0.1``, named like the other rules' sources), since one campaign
    can have several heavy sources and each is its own matter."""
    if alert["rule"] == "heavy_hitter":
        return f"{alert['key']}|{alert.get('kind', 'ip')}:{alert['source']}"
    return str(alert["key"])


def case_id(rule: str, entity: str) -> str:
    """The case of ``entity`` under ``rule``: ``case-<rule>-<24 hex digits>``."""
    digest = hashlib.blake2b(f"{rule}\x1f{entity}".encode(), digest_size=12)
    return f"{PREFIX}{rule}-{digest.hexdigest()}"


def case_of(alert: dict[str, Any]) -> str:
    """The id of the case an alert belongs to."""
    return case_id(alert["rule"], entity_of(alert))


def rule_of(some_id: str) -> str | None:
    """The rule named in an alert id (``<rule>-<hex>``) or a case id
    (``case-<rule>-<hex>``); None when it names no rule."""
    body = some_id[len(PREFIX) :] if some_id.startswith(PREFIX) else some_id
    rule, sep, digest = body.rpartition("-")
    if not sep or rule not in ENTITY_KINDS or not digest:
        return None
    return rule


def is_case_id(some_id: str) -> bool:
    return some_id.startswith(PREFIX) and rule_of(some_id) is not None
