"""The click-burst rule as a pure step function over one session's state.

A click is fraud when its session has ``threshold`` or more clicks on the same URL
with event timestamps in ``[t - window, t]`` (inclusive), ``t`` being the click's own
timestamp. The window is exact (sliding, in event time), so the verdict does not
depend on arrival order: a late click that completes a burst makes the later clicks
of that burst fraud, and they are reported at that moment. Each click is reported at
most once; a click id sent again by a producer is recognised and not counted twice.

How bad a burst is grows with it (:func:`severity_of`): the clicks in the window
against the threshold, so the clicks that just make a burst are ``low`` and the
later clicks of a long one climb to ``critical``.

The same record read again after a crash is another matter (at-least-once): its
state change may have reached the table while its alerts never left the worker. So
each entry keeps the origin of its own delivery and of the record that condemned it
(:attr:`Click.origin`); a repeat with the click's own origin is a replay, and gets
back the findings that record made, recomputed from the state, under the same ids.

State per session is a small JSON-serialisable dict, kept by the caller (a faust
table live, a plain dict in replay and tests)::

    {"urls": {url: [[timestamp_ms, click_id, condemned_by, origin], ...]}}  # by (ts, id)

``condemned_by`` is 0 for a click not (yet) found fraud, else the origin of the
record that found it (1 when that had none); state from before origins has no
fourth field.

Nothing here imports faust, aiokafka or asyncio.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fraudapp.clicks.models import Click
from fraudapp.core.alerts import make_alert
from fraudapp.core.rulebook import default_params, grade

RULE_NAME = "click_burst"

SessionState = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BurstRule:
    """Parameters of the rule; ``version`` is reported with every alert."""

    threshold: int = 3
    window_ms: int = 10_000
    lateness_ms: int = 30_000
    version: int = 1

    @property
    def retention_ms(self) -> int:
        """How far behind the watermark a click must be kept: a click may still
        arrive ``lateness_ms`` late and look back ``window_ms`` from there."""
        return self.window_ms + self.lateness_ms

    # The keyed-rule interface (fraudapp.core.keyed.KeyedRule): state is per session.

    def key(self, click: Click) -> bytes:
        return click.session_id.encode("utf-8")

    def event_time(self, click: Click) -> int:
        return click.timestamp

    def apply(self, state: SessionState | None, click: Click) -> tuple[SessionState, BurstStep]:
        result = step(state, click, self)
        return result.state, result

    def prune(self, state: SessionState, horizon: int) -> SessionState | None:
        return prune(state, horizon)

    def latest_time(self, state: SessionState) -> int:
        return latest_time(state)

    def seen(self, state: SessionState, click: Click) -> bool:
        entries = state["urls"].get(click.url, ())
        return any(entry[1] == click.click_id for entry in entries)


@dataclass(frozen=True, slots=True)
class BurstFinding:
    """One fraudulent click with the window that condemned it."""

    click_id: str
    session_id: str
    url: str
    event_time: int
    count: int
    window_start: int
    window_end: int
    click_ids: tuple[str, ...]
    #: The rule's threshold when it was found: how far past it ``count`` went.
    threshold: int

    def evidence(self) -> dict[str, Any]:
        """The alert's rule-specific fields, flat beside the common envelope."""
        return {
            "click_id": self.click_id,
            "session_id": self.session_id,
            "url": self.url,
            "count": self.count,
            "threshold": self.threshold,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "click_ids": list(self.click_ids),
        }


@dataclass(slots=True)
class BurstStep:
    """What one click did: the new state, its own verdict and any findings.

    ``findings`` may name earlier-arrived clicks (a late click completing their burst)
    as well as this one.
    """

    state: SessionState
    fraud: bool
    duplicate: bool = False
    #: A duplicate that is the same record read again (same origin): its findings are
    #: the ones it made the first time, to be sent again.
    replay: bool = False
    findings: list[BurstFinding] = field(default_factory=list)


def step(state: SessionState | None, click: Click, rule: BurstRule) -> BurstStep:
    """Apply one click to its session's state.

    The caller (:class:`fraudapp.core.keyed.KeyedPartition`) has already refused clicks
    that are too late and pruned expired entries; ``state`` is mutated and returned.
    """
    state = state if state is not None else {"urls": {}}
    entries: list[list[Any]] = state["urls"].setdefault(click.url, [])
    origin = click.origin
    for entry in entries:
        if entry[1] == click.click_id:
            replay = bool(origin) and len(entry) > 3 and entry[3] == origin
            return BurstStep(
                state=state,
                fraud=bool(entry[2]),
                duplicate=True,
                replay=replay,
                findings=_made_by(entries, origin, click.session_id, click.url, rule)
                if replay
                else [],
            )

    mark = origin or 1
    insort(entries, [click.timestamp, click.click_id, 0, origin])
    times = [entry[0] for entry in entries]
    findings: list[BurstFinding] = []
    # Only clicks at or after this one have it inside their window.
    first = bisect_left(times, click.timestamp)
    last = bisect_right(times, click.timestamp + rule.window_ms)
    for index in range(first, last):
        entry = entries[index]
        if entry[2]:
            continue
        window_start = entry[0] - rule.window_ms
        lo = bisect_left(times, window_start)
        hi = bisect_right(times, entry[0])
        if hi - lo >= rule.threshold:
            entry[2] = mark
            findings.append(_finding(entry, entries[lo:hi], click.session_id, click.url, rule))
    own = next(e for e in entries if e[1] == click.click_id)
    return BurstStep(state=state, fraud=bool(own[2]), findings=findings)


def _finding(
    entry: list[Any], window: list[list[Any]], session_id: str, url: str, rule: BurstRule
) -> BurstFinding:
    """The finding for ``entry``, whose window holds the clicks ``window``."""
    return BurstFinding(
        click_id=entry[1],
        session_id=session_id,
        url=url,
        event_time=entry[0],
        count=len(window),
        window_start=entry[0] - rule.window_ms,
        window_end=entry[0],
        click_ids=tuple(e[1] for e in window),
        threshold=rule.threshold,
    )


def _made_by(
    entries: list[list[Any]], origin: str, session_id: str, url: str, rule: BurstRule
) -> list[BurstFinding]:
    """The findings the record from ``origin`` made, with their windows as they
    stand now (the alert ids depend only on the clicks, so they are the same)."""
    times = [entry[0] for entry in entries]
    findings = []
    for entry in entries:
        if entry[2] == origin:
            lo = bisect_left(times, entry[0] - rule.window_ms)
            hi = bisect_right(times, entry[0])
            findings.append(_finding(entry, entries[lo:hi], session_id, url, rule))
    return findings


def prune(state: SessionState, horizon: int) -> SessionState | None:
    """Drop clicks older than ``horizon`` (event time); ``None`` when nothing is left,
    so the caller deletes the session's key and a quiet session costs nothing."""
    urls: dict[str, list[list[Any]]] = state["urls"]
    for url in list(urls):
        entries = urls[url]
        if entries and entries[0][0] < horizon:
            keep = bisect_left([entry[0] for entry in entries], horizon)
            del entries[:keep]
        if not entries:
            del urls[url]
    return state if urls else None


def latest_time(state: SessionState) -> int:
    """The newest event time in the state: when the whole session may expire."""
    return max(entries[-1][0] for entries in state["urls"].values())


def severity_of(finding: BurstFinding, params: Mapping[str, Any]) -> str:
    """How bad a burst is: its clicks in the window over the threshold, against the
    version's ``medium_ratio``, ``high_ratio`` and ``critical_ratio`` (inclusive).
    Relative, so a threshold raised for a noisy site does not make every burst look
    worse than it is."""
    return grade(finding.count / finding.threshold, params, "ratio")


def burst_alert(
    finding: BurstFinding,
    version: int,
    location: dict[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One alert per fraudulent click; its id depends only on the click. ``params``:
    the version's parameters, whose thresholds grade it (without: the shipped ones)."""
    return make_alert(
        rule=RULE_NAME,
        rule_version=version,
        key=finding.session_id,
        event_time=finding.event_time,
        identity=(finding.session_id, finding.url, finding.click_id),
        evidence={**finding.evidence(), "location": location},
        severity=severity_of(finding, default_params(RULE_NAME) if params is None else params),
    )
