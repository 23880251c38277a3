"""Stacked ads and the rate limit: the two checks whose state is one click source.

A *source* is the click's ``device_id``, else its ``ip``. Both checks keep the
source's recent clicks, sorted by ``(timestamp, click_id)``, in one small state so
one table read and one write serve both::

    {"c": [[ts, click_id, ad, stacked, over, tat, origin], ...], "base": tat_or_null}

``stacked`` and ``over`` are 0, or the origin of the click record that condemned the
entry (1 when it had none); ``origin`` is the entry's own delivery. A click read again
from the same origin (a replay after a crash) gets back the findings its record made,
as :mod:`fraudapp.clicks.detect` does.

**Stacked ads** (the seed's sorted-set range query, made exact): a click is stacked
when some interval of ``window_ms`` (default 200 ms, often 0 in practice) holds it and
at least ``threshold`` clicks of its source on at least ``min_ads`` different ads.
The definition only grows with the set of clicks, so a late click can condemn earlier
ones (reported when it arrives) but never clear one: no alert is ever retracted, and
the final set does not depend on arrival order.

**Rate limit**: a GCRA (the generic cell rate algorithm behind token buckets and
redis-cell) with emission interval ``T = 60 000 / per_minute`` ms and burst ``b``.
A click at ``t`` is over the limit when ``TAT - t > (b - 1) * T``. Unlike the textbook
GCRA, every click moves the theoretical arrival time (``TAT' = min(max(TAT, t) + T,
t + b * T)``): a click over the limit still counts against its source, capped so a
flood costs at most one full burst of waiting. That keeps the verdict a monotone
function of the event set, so it can be computed exactly in event time: a late click
re-runs the GCRA from its place in the sorted list, which can only raise later TATs
and turn later clicks over the limit, never back.

**Severity** (:meth:`StackFinding.severity`, :meth:`RateFinding.severity`): a stack
by how many different ads it hides; a click over the limit by the source's clicks in
the minute ending at it against the allowed rate. Not by the GCRA's excess: capped at
one burst, it lies within one emission interval of the cap for every click over the
limit, the source's slightly quick burst and the flood alike. The minute's count is
taken from the clicks held when the finding is made, as the stack's clicks are.

Nothing here imports faust, aiokafka or asyncio.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fraudapp.clicks.models import Click
from fraudapp.core.rulebook import grade

STACKED = "stacked_ads"
RATE_LIMIT = "rate_limit"
#: The span a click over the limit is graded by: the limit is per minute.
RATE_WINDOW_MS = 60_000

SourceState = dict[str, Any]
# Entry fields, by position (lists keep the JSON state small and fast to decode).
TS, ID, AD, STACK, OVER, TAT, ORIGIN = range(7)


def source_of(click: Click) -> str | None:
    """The device when the click names one (many users share an IP), else the IP."""
    if click.device_id:
        return f"device:{click.device_id}"
    if click.ip:
        return f"ip:{click.ip}"
    return None


@dataclass(frozen=True, slots=True)
class StackFinding:
    click_id: str
    source: str
    event_time: int
    clicks: tuple[tuple[int, str, str], ...]  # (ts, click_id, ad) of the stacking window
    window_ms: int

    rule = STACKED

    def severity(self, params: Mapping[str, Any]) -> str:
        """By the different ads stacked, against the version's ``medium_ads``,
        ``high_ads`` and ``critical_ads`` (inclusive): each is an advertiser billed
        for a click no one saw."""
        return grade(len({c[2] for c in self.clicks}), params, "ads")

    def evidence(self) -> dict[str, Any]:
        times = [c[0] for c in self.clicks]
        return {
            "click_id": self.click_id,
            "source": self.source,
            "window_ms": self.window_ms,
            "interval_ms": max(times) - min(times),
            "ads": sorted({c[2] for c in self.clicks}),
            "clicks": [{"click_id": c[1], "timestamp": c[0], "ad_id": c[2]} for c in self.clicks],
        }


@dataclass(frozen=True, slots=True)
class RateFinding:
    click_id: str
    source: str
    event_time: int
    per_minute: float
    burst: int
    tat_ms: float
    #: The source's clicks in the minute ending at this one (itself included).
    clicks_last_minute: int

    rule = RATE_LIMIT

    def severity(self, params: Mapping[str, Any]) -> str:
        """By the source's clicks in the minute ending at this one over the allowed
        ``per_minute``, against the version's ``medium_ratio``, ``high_ratio`` and
        ``critical_ratio`` (inclusive)."""
        return grade(self.clicks_last_minute / self.per_minute, params, "ratio")

    def evidence(self) -> dict[str, Any]:
        return {
            "click_id": self.click_id,
            "source": self.source,
            "limit_per_minute": self.per_minute,
            "burst": self.burst,
            # How far the source ran ahead of its allowance when this click came.
            "excess_ms": round(self.tat_ms - self.event_time, 3),
            "clicks_last_minute": self.clicks_last_minute,
        }


Finding = StackFinding | RateFinding


@dataclass(slots=True)
class SourceStep:
    """This click's own verdicts (as known now) and every finding it caused."""

    stacked: bool = False
    over_limit: bool = False
    duplicate: bool = False
    #: The same record again (same origin): ``findings`` are the ones it made before.
    replay: bool = False
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SourceRule:
    """Both checks' parameters; either can be switched off."""

    stacked_enabled: bool = True
    stacked_threshold: int = 3
    stacked_window_ms: int = 200
    stacked_min_ads: int = 2
    rate_enabled: bool = True
    per_minute: float = 20.0
    burst: int = 5
    lateness_ms: int = 30_000
    version: int = 1

    @property
    def interval_ms(self) -> float:
        return 60_000.0 / self.per_minute

    @property
    def retention_ms(self) -> int:
        """A late click looks back one stacking window; the GCRA forgets a source
        after ``burst * T`` of quiet (its TAT is then in the past), and a click over
        the limit is graded by the minute before it, so nothing older matters once it
        is ``lateness_ms`` behind the watermark."""
        reach = max(self.stacked_window_ms, int(self.burst * self.interval_ms) + 1)
        if self.rate_enabled:
            reach = max(reach, RATE_WINDOW_MS)
        return self.lateness_ms + reach

    # fraudapp.core.keyed.KeyedRule: the event is a click whose source is known.

    def key(self, click: Click) -> bytes:
        return (source_of(click) or "").encode("utf-8")

    def event_time(self, click: Click) -> int:
        return click.timestamp

    def apply(self, state: SourceState | None, click: Click) -> tuple[SourceState, SourceStep]:
        state = state if state is not None else {"c": [], "base": None}
        entries: list[list[Any]] = state["c"]
        source = source_of(click) or ""
        origin = click.origin
        for entry in entries:
            if entry[ID] == click.click_id:
                replay = bool(origin) and len(entry) > ORIGIN and entry[ORIGIN] == origin
                return state, SourceStep(
                    stacked=bool(entry[STACK]),
                    over_limit=bool(entry[OVER]),
                    duplicate=True,
                    replay=replay,
                    findings=self._made_by(state, origin, source) if replay else [],
                )
        new = [click.timestamp, click.click_id, click.ad_id or click.url, 0, 0, 0.0, origin]
        insort(entries, new)
        index = _index_of(entries, new)
        result = SourceStep()
        mark = origin or 1
        if self.stacked_enabled:
            result.findings.extend(self._stack(entries, click.timestamp, source, mark))
        if self.rate_enabled:
            result.findings.extend(self._rate(state, index, source, mark))
        result.stacked, result.over_limit = bool(new[STACK]), bool(new[OVER])
        return state, result

    def prune(self, state: SourceState, horizon: int) -> SourceState | None:
        entries = state["c"]
        keep = bisect_left(entries, [horizon])
        if keep:
            state["base"] = entries[keep - 1][TAT]
            del entries[:keep]
        return state if entries else None

    def latest_time(self, state: SourceState) -> int:
        return state["c"][-1][TS]

    def seen(self, state: SourceState, click: Click) -> bool:
        return any(entry[ID] == click.click_id for entry in state["c"])

    def _windows(self, entries: list[list[Any]], t: int) -> Iterator[list[list[Any]]]:
        """The stacking windows that start at a click and hold ``t``."""
        window = self.stacked_window_ms
        times = [e[TS] for e in entries]
        for start in range(bisect_left(times, t - window), bisect_right(times, t)):
            end = bisect_right(times, times[start] + window)
            members = entries[start:end]
            if len(members) < self.stacked_threshold:
                continue
            if len({m[AD] for m in members}) < self.stacked_min_ads:
                continue
            yield members

    def _stack(
        self, entries: list[list[Any]], t: int, source: str, mark: str | int
    ) -> list[StackFinding]:
        """Check every window that starts at a click and holds ``t``: the only new ones."""
        findings: list[StackFinding] = []
        for members in self._windows(entries, t):
            shown = tuple((m[TS], m[ID], m[AD]) for m in members)
            for member in members:
                if not member[STACK]:
                    member[STACK] = mark
                    findings.append(
                        StackFinding(member[ID], source, member[TS], shown, self.stacked_window_ms)
                    )
        return findings

    def _made_by(self, state: SourceState, origin: str, source: str) -> list[Finding]:
        """The findings the record from ``origin`` made, as the state shows them now."""
        entries: list[list[Any]] = state["c"]
        findings: list[Finding] = []
        for index, entry in enumerate(entries):
            if entry[STACK] == origin:
                members = next(self._windows(entries, entry[TS]), None)
                if members is not None:  # always, unless the rule's settings changed
                    shown = tuple((m[TS], m[ID], m[AD]) for m in members)
                    findings.append(
                        StackFinding(entry[ID], source, entry[TS], shown, self.stacked_window_ms)
                    )
            if entry[OVER] == origin:
                tat = entries[index - 1][TAT] if index else state["base"]
                tat = entry[TS] if tat is None else tat
                findings.append(
                    RateFinding(
                        entry[ID],
                        source,
                        entry[TS],
                        self.per_minute,
                        self.burst,
                        float(tat),
                        _last_minute(entries, entry[TS]),
                    )
                )
        return findings

    def _rate(
        self, state: SourceState, index: int, source: str, mark: str | int
    ) -> list[RateFinding]:
        """Re-run the GCRA from the new click's place; stop once TATs agree again."""
        entries = state["c"]
        interval, burst = self.interval_ms, self.burst
        tolerance = (burst - 1) * interval
        tat = entries[index - 1][TAT] if index else state["base"]
        findings: list[RateFinding] = []
        for position in range(index, len(entries)):
            entry = entries[position]
            t = entry[TS]
            over = tat is not None and tat - t > tolerance
            if over and not entry[OVER]:
                entry[OVER] = mark
                findings.append(
                    RateFinding(
                        entry[ID],
                        source,
                        t,
                        self.per_minute,
                        burst,
                        float(tat),
                        _last_minute(entries, t),
                    )
                )
            new_tat = min(max(tat if tat is not None else t, t) + interval, t + burst * interval)
            if position > index and new_tat == entry[TAT]:
                break
            entry[TAT] = new_tat
            tat = new_tat
        return findings


def _last_minute(entries: list[list[Any]], t: int) -> int:
    """The clicks held at ``(t - 1 min, t]`` (entries sort by timestamp first)."""
    return bisect_left(entries, [t + 1]) - bisect_left(entries, [t - RATE_WINDOW_MS + 1])


def _index_of(entries: list[list[Any]], entry: list[Any]) -> int:
    index = bisect_left(entries, entry)
    while entries[index] is not entry:
        index += 1
    return index
