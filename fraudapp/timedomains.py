"""fraudapp's event-time domains: which topic feeds which stage's watermark.

A click crosses the session stage, the ad-network stages in their order, the area
stage's counts from neighbouring regions and the alert index; an ATM transaction,
the account stage and the index. Each of those reads its records from an internal
topic (or inline, when this worker owns the partition it would be sent to), and its
watermark is a level of its domain (:mod:`fraudapp.watermarks`). Pure: names only.
"""

from __future__ import annotations

from fraudapp.settings import Settings
from fraudapp.watermarks import Domain


def click_domain(settings: Settings) -> Domain:
    """Clicks: read from ``clicks`` (level 0), then each stage by its topic."""
    topics = settings.topics
    return Domain(
        "clicks",
        topics.clicks,
        (
            ("session", topics.clicks_by_session),
            ("source", topics.stage("source")),
            ("campaign", topics.stage("campaign")),
            # Two levels on one topic: the clicks the earlier stages send there, and
            # the counts the area stage sends to neighbouring regions, which the area
            # stage judges by the first (so no worker's level waits on its own).
            ("area_in", topics.stage("area")),
            ("area", topics.stage("area")),
            ("index", settings.alert_index_topic),
        ),
    )


def atm_domain(settings: Settings) -> Domain:
    """ATM transactions: read from ``atm-txns``, then the account stage and the index."""
    topics = settings.topics
    return Domain(
        "atm",
        topics.atm_txns,
        (("account", topics.atm_by_account), ("index", settings.alert_index_topic)),
    )
