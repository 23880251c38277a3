"""What travels between the ad-network stages, and the verdict it ends as.

Each check needs the click keyed differently (session, source, campaign, area), so a
click crosses up to four partitioned stages, each on an internal topic keyed for it.
The envelope carries the validated click and what earlier stages found, so the
last stage can write one verdict listing every check that fired, with one score.
Pure: no faust.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from fraudapp.adnet.geoip import GeoIpTable
from fraudapp.clicks.models import Click

CLICK_FIELDS = Click.__slots__  # type: ignore[attr-defined]


@dataclass(slots=True)
class Checked:
    """A click part-way through the checks."""

    click: Click
    reasons: list[str] = field(default_factory=list)
    lat: float | None = None
    lon: float | None = None
    located_by: str | None = None
    #: Checks not applied to this click, with why (e.g. too late for a stage's window).
    skipped: dict[str, str] = field(default_factory=dict)
    #: When the session stage took the click (epoch s): detection latency of alerts
    #: raised stages later runs from there, across the hops between workers.
    received: float | None = None
    #: The click was read again from the same record (a replay after a crash): the
    #: stages re-send what they found, but count it nowhere a second time.
    repeat: bool = False

    def fired(self, rule: str) -> None:
        if rule not in self.reasons:
            self.reasons.append(rule)

    def location(self) -> dict[str, Any] | None:
        """Where the click was, as verdicts and alerts give it (maps plot it)."""
        if self.lat is None:
            return None
        return {"lat": self.lat, "lon": self.lon, "by": self.located_by}

    def encode(self) -> bytes:
        click = self.click
        return orjson.dumps(
            {
                "click": {name: getattr(click, name) for name in CLICK_FIELDS},
                "reasons": self.reasons,
                "location": None if self.lat is None else [self.lat, self.lon, self.located_by],
                "skipped": self.skipped,
                "received": self.received,
                "repeat": self.repeat,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> Checked:
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Checked:
        location = data["location"] or (None, None, None)
        return cls(
            click=Click(**data["click"]),
            reasons=data["reasons"],
            lat=location[0],
            lon=location[1],
            located_by=location[2],
            skipped=data["skipped"],
            received=data.get("received"),
            repeat=bool(data.get("repeat")),
        )


def place(checked: Checked, geoip: GeoIpTable) -> None:
    """The click's own coordinates, else its IP's from the geo-IP table."""
    click = checked.click
    if click.lat is not None and click.lon is not None:
        checked.lat, checked.lon, checked.located_by = click.lat, click.lon, "click"
    elif click.ip:
        point = geoip.lookup(click.ip)
        if point is not None:
            checked.lat, checked.lon, checked.located_by = point.lat, point.lon, "geoip"


def risk_score(reasons: list[str], weights: dict[str, float]) -> float:
    """1 - prod(1 - w): each firing check is independent evidence, so the score
    rises with every one, stays in [0, 1] and is 0 when nothing fired."""
    remaining = 1.0
    for reason in reasons:
        remaining *= 1.0 - weights.get(reason, 0.5)
    return round(1.0 - remaining, 6)


def verdict(
    checked: Checked, weights: dict[str, float], *, duplicate: bool | None = None
) -> dict[str, Any]:
    """The click's record on ``click-verdicts``: every check that fired, as known
    when the click passed each stage (a later click can still condemn it; that
    comes as an alert)."""
    click = checked.click
    return {
        "click_id": click.click_id,
        "session_id": click.session_id,
        "url": click.url,
        "timestamp": click.timestamp,
        "fraud": bool(checked.reasons),
        "reasons": checked.reasons,
        "risk_score": risk_score(checked.reasons, weights),
        "duplicate": checked.repeat if duplicate is None else duplicate,
        "location": checked.location(),
        "skipped": checked.skipped,
    }
