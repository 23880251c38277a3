"""The click-burst rule, exact, in plain Python: what a hand-written peer keeps per group.

A click is fraud when the clicks of its session and URL with event times in
``[t - window, t]`` (both ends included) number ``threshold`` or more, ``t`` being its
own time; a click id seen again is not counted twice. So a late click can condemn
clicks that arrived before it: every click within ``window`` after it gets one more
in its window. Same definition as ``fraudapp.clicks.oracle``, computed incrementally.

One :class:`Group` per (session, url): timestamps kept sorted, so the count in a
window is two bisections. Nothing is recoverable: state lives in this process only,
which is what "hand-written loop" means in the comparison. Standard library only
(the Bytewax peer uses it from its own virtualenv).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

THRESHOLD = 3
WINDOW_MS = 10_000
#: As fraudapp's default: a click may arrive this late behind its partition's newest.
LATENESS_MS = 30_000
#: Clicks older than the newest by more than this can no longer be in a late click's window.
RETENTION_MS = WINDOW_MS + LATENESS_MS


class Group:
    """One session's clicks on one URL: sorted times, their ids, which are condemned."""

    __slots__ = ("times", "ids", "condemned", "seen")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.ids: list[str] = []
        self.condemned: list[bool] = []
        self.seen: set[str] = set()

    @property
    def newest(self) -> int:
        return self.times[-1] if self.times else -(2**62)

    def add(self, ts: int, click_id: str) -> list[str]:
        """Take one click; returns the ids it condemns (possibly its own, possibly
        earlier arrivals with later times), each id once over the group's life."""
        if click_id in self.seen:
            return []
        self.seen.add(click_id)
        times = self.times
        if times and times[0] < max(times[-1], ts) - RETENTION_MS:
            self._prune(max(times[-1], ts) - RETENTION_MS)
        at = bisect_right(times, ts)
        times.insert(at, ts)
        self.ids.insert(at, click_id)
        self.condemned.insert(at, False)
        if len(times) < THRESHOLD:
            return []
        found = []
        # The clicks whose window [t_i - w, t_i] now holds this one: t <= t_i <= t + w.
        for i in range(bisect_left(times, ts), bisect_right(times, ts + WINDOW_MS)):
            if self.condemned[i]:
                continue
            t_i = times[i]
            if bisect_right(times, t_i, i) - bisect_left(times, t_i - WINDOW_MS, 0, i) >= THRESHOLD:
                self.condemned[i] = True
                found.append(self.ids[i])
        return found

    def _prune(self, horizon: int) -> None:
        cut = bisect_left(self.times, horizon)
        self.seen.difference_update(self.ids[:cut])
        del self.times[:cut], self.ids[:cut], self.condemned[:cut]
