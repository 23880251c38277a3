"""The ad-network checks' alerts, built from what a stage found.

One place for each alert's envelope and evidence, shared by the live stages and by
``fraudapp replay``, so a backtest writes the very alerts (same ids, same evidence,
same severity) the stream would. Each is graded by its finding's evidence against
the parameters of the version in force (``params``); the checks whose modules hold
no finding of their own (the blocklist, the location) are graded here. Pure: no faust.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fraudapp.adnet.area import AreaGrid, LocationRule
from fraudapp.adnet.blocklist import BlockMatch
from fraudapp.adnet.envelope import Checked
from fraudapp.adnet.heavy import HeavyFinding
from fraudapp.core.alerts import make_alert
from fraudapp.core.rulebook import SEVERITIES, grade

HEAVY = "heavy_hitter"
LOCATION = "suspicious_location"


def check_alert(
    rule: str,
    version: int,
    key: str,
    checked: Checked,
    identity: tuple[str, ...],
    evidence: dict[str, Any],
    severity: str | None = None,
) -> dict[str, Any]:
    """An alert about the click at hand (blocklisted IP, suspicious location)."""
    click = checked.click
    return make_alert(
        rule=rule,
        rule_version=version,
        key=key,
        event_time=click.timestamp,
        identity=(key, *identity),
        evidence={"session_id": click.session_id, "location": checked.location(), **evidence},
        severity=severity,
    )


def blocklist_severity(match: BlockMatch, severity: str) -> str:
    """An exact match (a listed range, or an IP listed at run time) has the version's
    ``severity``; a Bloom-filter match one step lower (not below ``low``), since it
    may be a false positive (``false_positive_rate`` in its evidence) and accuse an
    IP no one listed."""
    if not match.probabilistic:
        return severity
    return SEVERITIES[max(0, SEVERITIES.index(severity) - 1)]


def source_alert(
    finding: Any, source: str, version: int, checked: Checked, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Stacked ads or the rate limit: one alert per condemned click of a source,
    graded by the finding (:mod:`fraudapp.adnet.source`) against ``params``."""
    return make_alert(
        rule=finding.rule,
        rule_version=version,
        key=source,
        event_time=finding.event_time,
        identity=(source, finding.click_id),
        evidence={
            **finding.evidence(),
            # Where the click is the one at hand (not one it condemned late).
            "location": checked.location() if finding.click_id == checked.click.click_id else None,
        },
        severity=finding.severity(params),
    )


def heavy_alert(
    finding: HeavyFinding,
    campaign: str,
    bucket: int,
    checked: Checked,
    version: int,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """One alert per heavy source per campaign per time bucket, graded by its share."""
    click = checked.click
    return make_alert(
        rule=HEAVY,
        rule_version=version,
        key=campaign,
        event_time=click.timestamp,
        identity=(campaign, finding.kind, finding.source, str(bucket)),
        evidence={
            "campaign_id": campaign,
            "click_id": click.click_id,
            "location": checked.location(),
            **finding.evidence(),
        },
        severity=finding.severity(params),
    )


def location_severity(clicks: int, frauds: int, params: Mapping[str, Any]) -> str:
    """By the share of fraud among the clicks nearby (exact, as the rule fires on it,
    not the rounded ``fraud_share`` shown), against the version's ``medium_share``,
    ``high_share`` and ``critical_share`` (inclusive)."""
    return grade(frauds / clicks, params, "share")


def location_alert(
    checked: Checked,
    cell: str,
    clicks: int,
    frauds: int,
    rule: LocationRule,
    grid: AreaGrid,
    version: int,
    params: Mapping[str, Any],
) -> dict[str, Any]:
    """A click in a place where too large a share of the clicks around were fraud."""
    click = checked.click
    return check_alert(
        LOCATION,
        version,
        cell,
        checked,
        (click.click_id,),
        {
            "click_id": click.click_id,
            "lat": checked.lat,
            "lon": checked.lon,
            "located_by": checked.located_by,
            "cell": cell,
            "clicks_nearby": clicks,
            "fraud_nearby": frauds,
            "fraud_share": round(frauds / clicks, 4),
            "threshold": rule.threshold,
            "min_clicks": rule.min_clicks,
            "radius_km": rule.radius_km,
            "max_reach_km": round(grid.max_reach_km, 1),
            "window_ms": rule.window_ms,
        },
        location_severity(clicks, frauds, params),
    )
