"""fraudapp's event-time domains: which topic feeds which stage's watermark.

A click crosses the session stage, the ad-network stages in their order, the area
stage's counts from neighbouring regions and the alert index; an ATM transaction,
the account stage and the index. Each of those reads its records from an internal
topic (or inline, when this worker owns the partition it would be sent to), and its
watermark is a level of its domain (:mod:`fraudapp.core.watermarks`). Each domain also
gets its commit span and alignment drift, from how long its state is kept. Pure:
names and numbers only.
"""

from __future__ import annotations

from fraudapp.core.settings import Settings, SettingsError
from fraudapp.core.watermarks import Domain


def time_bounds(settings: Settings, retention_ms: int) -> tuple[int, int]:
    """(commit span, max drift) of a domain whose shortest-kept state lives
    ``retention_ms`` of event time: the settings when set; else the span is three
    quarters of the retention (a record not committed yet holds state at most that
    much longer than its rule keeps it) and the drift four spans (the skew between
    sources then holds at most three retentions' more state). An explicit drift with
    a derived span caps the span at half the drift, so alignment never holds a
    partition for records it has yet to commit."""
    span = settings.commit_span_ms
    drift = settings.max_drift_ms
    if span is None:
        span = max(1, retention_ms * 3 // 4)
        if drift:
            span = min(span, max(1, drift // 2))
    if drift is None:
        drift = 4 * span
    if drift and drift <= span:
        raise SettingsError(
            f"WATERMARK_MAX_DRIFT_MS={drift} must be 0 or more than the commit span {span}"
        )
    return span, drift


def _domain(
    settings: Settings, name: str, source: str, levels: tuple[tuple[str, str], ...], kept_ms: int
) -> Domain:
    """A domain whose shortest-kept rule state lives ``kept_ms`` (window + lateness);
    the alert index keeps entries ``alert_index_retention_ms`` (0: forever), the
    shorter of the two bounding the commit span and the drift. Its last two levels
    are the alert index and the cases (:mod:`fraudapp.core.cases`), whose state
    outlives every rule's."""
    index = settings.alert_index_retention_ms
    span, drift = time_bounds(settings, min(kept_ms, index) if index else kept_ms)
    levels = (
        *levels,
        ("index", settings.alert_index_topic),
        ("cases", settings.case_feed_topic),
    )
    return Domain(name, source, levels, commit_span_ms=span, max_drift_ms=drift)


def click_domain(settings: Settings) -> Domain:
    """Clicks: read from ``clicks`` (level 0), then each stage by its topic."""
    topics = settings.topics
    rule = settings.click_burst
    return _domain(
        settings,
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
        ),
        rule.window_ms + rule.lateness_ms,
    )


def alert_lateness_ms(settings: Settings, domain: str) -> int:
    """The most an alert of ``domain`` can arrive behind the case stage's watermark:
    the largest lateness its rules accept (an alert is raised by an event at most
    that late at its stage, whose level is at or above the case stage's)."""
    if domain == "atm":
        return settings.atm.lateness_ms
    return max(settings.click_burst.lateness_ms, settings.adnet.lateness_ms)


def atm_domain(settings: Settings) -> Domain:
    """ATM transactions: read from ``atm-txns``, then the account stage and the index."""
    rule = settings.atm
    return _domain(
        settings,
        "atm",
        settings.topics.atm_txns,
        (("account", settings.topics.atm_by_account),),
        rule.window_ms + rule.lateness_ms,
    )
