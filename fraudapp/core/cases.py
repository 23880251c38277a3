"""Cases: every alert folded into one case per rule and entity, with a lifecycle in event time.

Why: a rule raises an alert per click that trips it, which is right for verdicts and
wrong for the people who act on alerts (a click farm over the rate limit is one
matter, not 145). Peers do the same: Marble groups decisions into cases per entity,
Alertmanager and PagerDuty group by a deduplication key.

**Lifecycle.** A case opens with its first alert; it is *resolved* once its entity
has been quiet for ``quiet_ms`` of event time, and a later alert *reopens* it (a new
episode of the same case). Resolution waits until the stage's watermark has passed
``last_seen + quiet_ms + lateness_ms``: ``lateness_ms`` is the most an alert can
arrive behind the watermark (the rules refuse later events), so no alert inside the
quiet period can still come once a case is resolved, and whether a case resolved or
reopened does not depend on the order alerts arrived in. A resolved case is kept
``keep_ms`` more, then deleted (a tombstone on the ``cases`` topic).

**Records.** The ``cases`` topic gets a case's whole state at each *transition*:
``opened``, ``reopened``, ``escalated`` (a higher severity than the episode had),
``resolved``, ``expired`` (the tombstone), and ``updated`` at most once per
``update_every_ms`` of event time while alerts keep coming, so the topic stays a
small fraction of the alerts while the table holds the live count.

**Actions.** A rule version may ask to block the source's IP when a case opens or
reopens (:class:`Action`), for ``ttl_ms`` of event time: the block is lifted when
the watermark passes its end, so a backlog replayed fast blocks the same span of
traffic as the live stream would. An IP already blocked, or a source that is a
device, is left alone and the case says why.

**Repeats.** A record read again after a crash re-sends its alerts; each alert id
seen leaves a marker for ``quiet_ms + lateness_ms`` of event time (longer than a
repeat can come), so a repeat changes nothing.

State layout, one JSON value per key in any ``MutableMapping[bytes, bytes]`` (the
worker's RocksDB table partition, or a dict in replay and tests)::

    b"c/" + case_id   -> the case (see :func:`new_case` for its fields)
    b"a/" + alert_id  -> {"t": event_time, "c": case_id}      # the repeat marker

Pure: no faust, Kafka or asyncio.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fraudapp.core.alerts import ENVELOPE_FIELDS
from fraudapp.core.caseids import case_of, entity_of
from fraudapp.core.eventtime import PartitionClock
from fraudapp.core.rulebook import SEVERITIES

Store = MutableMapping[bytes, bytes]
Case = dict[str, Any]

RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
#: Transitions that change what a person should know (notifications go out on these).
NOTIFYING = ("opened", "reopened", "escalated", "resolved")
#: Alerts of a case listed in its state, newest last.
RECENT = 20
#: Evidence values longer than this (lists of click ids, ...) stay on the alerts.
_SUMMARY_MAX = 200
#: Decoded cases kept per partition: an active case is read on each of its alerts, and
#: decoding its JSON was a third of the stage's cost (``bench`` note in docs/cases.md).
CACHED = 4096

CASE_PREFIX = b"c/"
MARKER_PREFIX = b"a/"


@dataclass(frozen=True, slots=True)
class CasePolicy:
    """The case stage's times, all event time (ms)."""

    quiet_ms: int
    lateness_ms: int
    update_every_ms: int
    keep_ms: int

    @property
    def hold_ms(self) -> int:
        """How long after its last alert a case is still open (and a marker kept)."""
        return self.quiet_ms + self.lateness_ms


@dataclass(frozen=True, slots=True)
class Action:
    """What the rule version in force asks for when a case opens."""

    kind: str  # "block_ip"
    ttl_ms: int
    rule_version: int


@dataclass(slots=True)
class Change:
    """One transition of one case. ``case`` None: the case was deleted (expired).
    ``effects`` are the actions to carry out (``block_ip``, ``lift_ip``); ``record``
    says whether it goes to the ``cases`` topic."""

    transition: str
    case_id: str
    case: Case | None
    at: int
    effects: list[dict[str, Any]] = field(default_factory=list)
    record: bool = True

    def as_record(self) -> dict[str, Any] | None:
        """The ``cases`` topic value: the case with its transition (None: tombstone)."""
        if self.case is None:
            return None
        return {**self.case, "transition": self.transition, "transition_at": self.at}


def _snapshot(case: Case) -> Case:
    """The case as it is now: the cached one goes on changing with later alerts, and a
    change may be sent after them. Its mutable parts are copied (``summary`` is only
    ever replaced, never changed in place)."""
    action = case.get("action")
    return {**case, "recent": list(case["recent"]), "action": action and dict(action)}


def case_key(case_id: str) -> bytes:
    return CASE_PREFIX + case_id.encode("utf-8")


def marker_key(alert_id: str) -> bytes:
    return MARKER_PREFIX + alert_id.encode("utf-8")


def summary_of(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert's evidence, short values only: what a person reads in a list."""
    out = {}
    for name, value in alert.items():
        if name in ENVELOPE_FIELDS or name in ("notify", "case_id", "severity"):
            continue
        if isinstance(value, dict | list) and len(orjson.dumps(value)) > _SUMMARY_MAX:
            continue
        out[name] = value
    return out


def new_case(alert: dict[str, Any], case_id: str) -> Case:
    """A case as its first alert opens it. Fields: who (``case_id``, ``rule``,
    ``entity``, ``key``), when in event time (``first_seen``: its first alert ever;
    ``opened_at``: the current episode's first; ``last_seen``; ``resolved_at``), how
    much (``alert_count`` ever, ``episode_alerts``, ``episode``), how bad
    (``severity``: the episode's highest), the rule (``rule_version``, ``notify``), the
    alerts (``first_alert_id``, ``last_alert_id``, ``recent``), ``summary`` (the last
    alert's evidence), ``action`` and ``last_record_at`` (event time of the last
    record written)."""
    t = int(alert["event_time"])
    return {
        "case_id": case_id,
        "rule": alert["rule"],
        "entity": entity_of(alert),
        "key": alert["key"],
        "status": "open",
        "episode": 1,
        "first_seen": t,
        "opened_at": t,
        "last_seen": t,
        "resolved_at": None,
        "alert_count": 0,
        "episode_alerts": 0,
        "severity": alert.get("severity") or "medium",
        "rule_version": alert.get("rule_version"),
        "notify": bool(alert.get("notify")),
        "first_alert_id": alert["alert_id"],
        "last_alert_id": alert["alert_id"],
        "recent": [],
        "summary": {},
        "action": None,
        "last_record_at": t,
    }


def ip_of(case: Case) -> str | None:
    """The IP a block would list: the source of a rate-limit, stacked-ads or
    heavy-hitter case, when that source is an IP (``ip:...``), not a device."""
    entity = str(case["entity"])
    source = entity.rsplit("|", 1)[-1] if case["rule"] == "heavy_hitter" else entity
    return source[3:] if source.startswith("ip:") else None


class CasePartition:
    """The cases of one partition (and one event-time domain), kept in ``store``.

    ``seed`` is the partition's recovered state (key, value pairs) after a restart
    or a rebalance: it rebuilds the indexes of what falls due, so resolutions,
    lifts and expiries carry on where the previous owner stopped.
    ``is_blocked(ip)`` says whether an IP is on the blocklist already.
    """

    def __init__(
        self,
        policy: CasePolicy,
        store: Store,
        seed: Iterable[tuple[bytes, bytes]] = (),
        is_blocked: Any = None,
    ) -> None:
        self.policy = policy
        self.store = store
        self.is_blocked = is_blocked or (lambda ip: False)
        self.watermark: int | None = None
        #: The cases as last written, decoded (this object is the partition's only
        #: writer while it lives; the store stays the truth for everyone else).
        self._cache: dict[bytes, Case] = {}
        self.markers = PartitionClock(policy.hold_ms)
        self._due: dict[bytes, int] = {}
        self._heap: list[tuple[int, bytes]] = []
        for key, value in seed:
            state = orjson.loads(value)
            if key.startswith(MARKER_PREFIX):
                self.markers.touch(key, int(state["t"]))
            elif key.startswith(CASE_PREFIX):
                self._schedule(key, state)

    # -- the index of what falls due ------------------------------------------------------

    def _next_due(self, case: Case) -> int | None:
        action = case.get("action")
        times = []
        if action and action.get("status") == "active":
            times.append(int(action["until"]))
        if case["status"] == "open":
            times.append(int(case["last_seen"]) + self.policy.hold_ms)
        elif self.policy.keep_ms and not (action and action.get("status") == "active"):
            times.append(int(case["resolved_at"]) + self.policy.keep_ms)
        return min(times) if times else None

    def _schedule(self, key: bytes, case: Case | None) -> None:
        due = None if case is None else self._next_due(case)
        if due is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) != due:
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))

    # -- alerts ------------------------------------------------------------------------------

    def add(
        self, alert: dict[str, Any], watermark: int | None, action: Action | None = None
    ) -> tuple[str, list[Change]]:
        """Fold one alert into its case; returns what happened to the alert
        (``added``, ``repeat`` or ``late``) and the changes, this case's and those the
        watermark made due elsewhere in the partition."""
        self._advance(watermark)
        alert_id = str(alert["alert_id"])
        t = int(alert["event_time"])
        marker = marker_key(alert_id)
        if self.store.get(marker) is not None:
            return "repeat", self.sweep(watermark) if self._sweep_due() else []
        if self.watermark is not None and t < self.watermark - self.policy.hold_ms:
            # Older than any marker kept: a repeat cannot be told from a new alert, and
            # no rule lets a new one come this late (see the module's docstring).
            return "late", self.sweep(watermark) if self._sweep_due() else []
        case_id = alert.get("case_id") or case_of(alert)
        key = case_key(case_id)
        case = self._load(key)
        changes: list[Change] = []
        transition = None
        if case is None:
            case = new_case(alert, case_id)
            transition = "opened"
        elif case["status"] == "resolved" and t > int(case["last_seen"]) + self.policy.quiet_ms:
            case.update(
                status="open",
                episode=case["episode"] + 1,
                opened_at=t,
                resolved_at=None,
                episode_alerts=0,
                severity=alert.get("severity") or case["severity"],
            )
            transition = "reopened"
        elif RANK.get(alert.get("severity"), -1) > RANK.get(case["severity"], -1):
            case["severity"] = alert["severity"]
            if case["status"] == "open":
                transition = "escalated"
        self._fold(case, alert, t)
        effects = []
        if transition in ("opened", "reopened") and action is not None:
            effects = self._act(case, action, t)
        if transition is None and t - int(case["last_record_at"]) >= self.policy.update_every_ms:
            transition = "updated"
        if transition is not None:
            case["last_record_at"] = max(int(case["last_record_at"]), t)
            changes.append(Change(transition, case_id, _snapshot(case), t, effects))
        self._store(key, case)
        self.store[marker] = orjson.dumps({"t": t, "c": case_id})
        self.markers.touch(marker, t)
        self._schedule(key, case)
        return "added", changes + self.sweep(watermark) if self._sweep_due() else changes

    def _sweep_due(self) -> bool:
        """Whether :meth:`sweep` has anything to do at the watermark now."""
        due = self.next_due()
        return self.markers.sweep_due() or (
            due is not None and self.watermark is not None and due <= self.watermark
        )

    def _load(self, key: bytes) -> Case | None:
        case = self._cache.get(key)
        if case is None:
            raw = self.store.get(key)
            if raw is None:
                return None
            case = orjson.loads(raw)
        return case

    def _store(self, key: bytes, case: Case) -> None:
        self.store[key] = orjson.dumps(case)
        cache = self._cache
        cache.pop(key, None)  # the newest last, so the oldest go first
        cache[key] = case
        if len(cache) > CACHED:
            del cache[next(iter(cache))]

    def _fold(self, case: Case, alert: dict[str, Any], t: int) -> None:
        case["alert_count"] += 1
        case["episode_alerts"] += 1
        case["first_seen"] = min(int(case["first_seen"]), t)
        case["opened_at"] = min(int(case["opened_at"]), t)
        if t >= int(case["last_seen"]):
            case["last_seen"] = t
            case["last_alert_id"] = alert["alert_id"]
            case["summary"] = summary_of(alert)
        case["rule_version"] = alert.get("rule_version", case["rule_version"])
        case["notify"] = bool(alert.get("notify", case["notify"]))
        recent = case["recent"]
        recent.append(
            {
                "alert_id": alert["alert_id"],
                "event_time": t,
                "severity": alert.get("severity"),
                "rule_version": alert.get("rule_version"),
            }
        )
        recent.sort(key=lambda entry: entry["event_time"])
        del recent[:-RECENT]

    def _act(self, case: Case, action: Action, t: int) -> list[dict[str, Any]]:
        """Carry out the rule's action for a case that (re)opened at ``t``."""
        if action.kind != "block_ip":
            return []
        ip = ip_of(case)
        current = case.get("action")
        base = {"type": "block_ip", "ttl_ms": action.ttl_ms, "rule_version": action.rule_version}
        if ip is None:
            case["action"] = {**base, "status": "skipped", "reason": "the source is not an IP"}
            return []
        if current and current.get("status") == "active":
            current["until"] = max(int(current["until"]), t + action.ttl_ms)
            return [{**current, "case_id": case["case_id"], "extended": True}]
        if self.is_blocked(ip):
            case["action"] = {**base, "ip": ip, "status": "skipped", "reason": "already blocked"}
            return []
        case["action"] = {**base, "ip": ip, "from": t, "until": t + action.ttl_ms}
        case["action"]["status"] = "active"
        return [{**case["action"], "case_id": case["case_id"]}]

    # -- the watermark ---------------------------------------------------------------------

    def _advance(self, watermark: int | None) -> None:
        if watermark is not None and (self.watermark is None or watermark > self.watermark):
            self.watermark = watermark
        self.markers.advance(watermark)

    def next_due(self) -> int | None:
        """The event time at which something in the partition falls due (None: nothing)."""
        while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def sweep(self, watermark: int | None) -> list[Change]:
        """Resolve, lift and expire what the watermark has passed; forget old markers."""
        self._advance(watermark)
        for marker in self.markers.due():
            self.store.pop(marker, None)
            self.markers.forget(marker)
        w = self.watermark
        changes: list[Change] = []
        while w is not None:
            due = self.next_due()
            if due is None or due > w:
                break
            _, key = heapq.heappop(self._heap)
            self._due.pop(key, None)
            case = self._load(key)
            if case is not None:
                changes.extend(self._fall_due(key, case, w))
        return changes

    def _fall_due(self, key: bytes, case: Case, w: int) -> list[Change]:
        case_id = case["case_id"]
        changes = []
        action = case.get("action")
        if action and action.get("status") == "active" and w >= int(action["until"]):
            action["status"] = "lifted"
            lift = {"type": "lift_ip", "ip": action["ip"], "case_id": case_id}
            changes.append(
                Change("lifted", case_id, _snapshot(case), int(action["until"]), [lift], False)
            )
        if case["status"] == "open" and w >= int(case["last_seen"]) + self.policy.hold_ms:
            case["status"] = "resolved"
            case["resolved_at"] = int(case["last_seen"]) + self.policy.quiet_ms
            case["last_record_at"] = case["resolved_at"]
            changes.append(Change("resolved", case_id, _snapshot(case), case["resolved_at"]))
        active = case.get("action") and case["action"].get("status") == "active"
        if (
            case["status"] == "resolved"
            and self.policy.keep_ms
            and not active
            and w >= int(case["resolved_at"]) + self.policy.keep_ms
        ):
            del self.store[key]
            self._cache.pop(key, None)
            self._due.pop(key, None)
            at = int(case["resolved_at"]) + self.policy.keep_ms
            return [*changes, Change("expired", case_id, None, at)]
        self._store(key, case)
        self._schedule(key, case)
        return changes

    def case(self, case_id: str) -> Case | None:
        """A copy of the case as it stands."""
        raw = self.store.get(case_key(case_id))
        return None if raw is None else orjson.loads(raw)
