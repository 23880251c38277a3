"""ksqlDB's ``ATM_POSSIBLE_FRAUD`` self-join as a pure step function per account.

For every pair T1, T2 of one account with different transaction ids, different
locations and ``0 < T2.time − T1.time ≤ window`` (event time), one finding, T1 the
earlier. Each pair is found when the second of its two transactions arrives,
whichever that is, so the set of findings does not depend on arrival order (a late
T1 pairs with the T2s already seen) and no pair is reported twice. Distance, time
and speed are computed with the seed query's own arithmetic.

Every pair the join finds is alerted, as ksqlDB's is; what the speed adds is how bad
it is (:func:`severity_of`): two neighbouring ATMs at walking pace are ``low``, a
pair no airliner could make ``critical``.

State per account, a small JSON value kept by the caller::

    {"txns": [[timestamp_ms, transaction_id, lat, lon, amount, atm, origin], ...]}  # by (ts, id)

``origin`` is where that delivery of the transaction was read. A transaction read again
from the same origin (a replay after a crash, whose alerts may never have left) gets
every pair it is part of again, under the same alert ids; one sent twice by a producer
(another origin) is recognised and counted once.

Nothing here imports faust, aiokafka or asyncio.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fraudapp.atm.models import Txn
from fraudapp.core.alerts import make_alert
from fraudapp.core.geo import geo_distance_km, java_double_str
from fraudapp.core.rulebook import default_params, grade

RULE_NAME = "atm_impossible_travel"

AccountState = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TravelPair:
    """Two transactions of one account the rule pairs; ``t1`` is the earlier."""

    account_id: str
    t1: tuple[Any, ...]  # (ts, id, lat, lon, amount, atm), as stored
    t2: tuple[Any, ...]

    @property
    def distance_km(self) -> float:
        return geo_distance_km(self.t1[2], self.t1[3], self.t2[2], self.t2[3])

    def evidence(self) -> dict[str, Any]:
        """The seed stream's columns, lower-case, flat beside the alert envelope."""
        t1, t2 = self.t1, self.t2
        elapsed = float(t2[0]) - float(t1[0])
        distance = self.distance_km
        return {
            "account_id": self.account_id,
            "t1_timestamp": t1[0],
            "t2_timestamp": t2[0],
            "t1_transaction_id": t1[1],
            "t2_transaction_id": t2[1],
            "t1_amount": t1[4],
            "t2_amount": t2[4],
            "t1_atm": t1[5],
            "t2_atm": t2[5],
            "t1_location": f"{java_double_str(t1[2])},{java_double_str(t1[3])}",
            "t2_location": f"{java_double_str(t2[2])},{java_double_str(t2[3])}",
            "distance_between_txn_km": distance,
            "milliseconds_difference": t2[0] - t1[0],
            "minutes_difference": elapsed / 1000 / 60,
            "kmh_required": distance / (elapsed / 1000 / 60 / 60),
        }


@dataclass(slots=True)
class AtmStep:
    """What one transaction did: the pairs it completed, or that it was a repeat."""

    duplicate: bool = False
    #: The same record again (same origin): ``pairs`` are all the pairs it is part of.
    replay: bool = False
    pairs: list[TravelPair] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TravelRule:
    """Parameters of the rule; ``version`` is reported with every alert."""

    window_ms: int = 600_000
    lateness_ms: int = 3_600_000
    version: int = 1

    @property
    def retention_ms(self) -> int:
        """A transaction ``lateness_ms`` late still pairs with ones ``window_ms`` older."""
        return self.window_ms + self.lateness_ms

    # The keyed-rule interface (fraudapp.core.keyed.KeyedRule): state is per account.

    def key(self, txn: Txn) -> bytes:
        return txn.account_id.encode("utf-8")

    def event_time(self, txn: Txn) -> int:
        return txn.timestamp

    def apply(self, state: AccountState | None, txn: Txn) -> tuple[AccountState, AtmStep]:
        return step(state, txn, self)

    def prune(self, state: AccountState, horizon: int) -> AccountState | None:
        return prune(state, horizon)

    def latest_time(self, state: AccountState) -> int:
        return int(state["txns"][-1][0])

    def seen(self, state: AccountState, txn: Txn) -> bool:
        return any(entry[1] == txn.transaction_id for entry in state["txns"])


def step(state: AccountState | None, txn: Txn, rule: TravelRule) -> tuple[AccountState, AtmStep]:
    """Apply one transaction to its account's state (mutated and returned)."""
    state = state if state is not None else {"txns": []}
    txns: list[list[Any]] = state["txns"]
    for entry in txns:
        if entry[1] == txn.transaction_id:
            if txn.origin and len(entry) > 6 and entry[6] == txn.origin:
                pairs = [
                    pair
                    for pair in pairs_in(txn.account_id, state, rule)
                    if txn.transaction_id in (pair.t1[1], pair.t2[1])
                ]
                return state, AtmStep(duplicate=True, replay=True, pairs=pairs)
            return state, AtmStep(duplicate=True)
    new = [txn.timestamp, txn.transaction_id, txn.lat, txn.lon, txn.amount, txn.atm, txn.origin]
    times = [entry[0] for entry in txns]
    lo = bisect_left(times, txn.timestamp - rule.window_ms)
    hi = bisect_right(times, txn.timestamp + rule.window_ms)
    pairs = []
    for other in txns[lo:hi]:
        if other[0] == txn.timestamp or (other[2] == txn.lat and other[3] == txn.lon):
            continue
        first, second = (other, new) if other[0] < txn.timestamp else (new, other)
        pairs.append(TravelPair(txn.account_id, tuple(first), tuple(second)))
    insort(txns, new)
    pairs.sort(key=lambda pair: (pair.t1[0], pair.t1[1], pair.t2[0], pair.t2[1]))
    return state, AtmStep(pairs=pairs)


def prune(state: AccountState, horizon: int) -> AccountState | None:
    """Drop transactions older than ``horizon``; ``None`` when the account went quiet."""
    txns = state["txns"]
    keep = bisect_left([entry[0] for entry in txns], horizon)
    del txns[:keep]
    return state if txns else None


def pairs_in(account_id: str, state: AccountState, rule: TravelRule) -> list[TravelPair]:
    """All pairs among the transactions still held: an account's recent alerts,
    derived from its state instead of stored twice."""
    pairs = []
    txns = state["txns"]
    for i, first in enumerate(txns):
        for second in txns[i + 1 :]:
            elapsed = second[0] - first[0]
            if elapsed > rule.window_ms:
                break
            if elapsed > 0 and (first[2] != second[2] or first[3] != second[3]):
                pairs.append(TravelPair(account_id, tuple(first), tuple(second)))
    return pairs


CUSTOMER_FIELDS = ("first_name", "last_name", "email", "phone", "address", "country")


def customer_evidence(record: dict[str, Any] | None) -> dict[str, Any]:
    """Customer fields for an alert, flat and prefixed like the seed's enriched stream
    (a left join: an unknown account still gets its alert)."""
    if record is None:
        return {"customer_known": False}
    first, last = record.get("first_name") or "", record.get("last_name") or ""
    return {
        "customer_known": True,
        "customer_name": f"{first} {last}".strip(),
        **{f"customer_{name}": record.get(name) for name in CUSTOMER_FIELDS},
    }


def severity_of(kmh: float, params: Mapping[str, Any]) -> str:
    """How bad a pair is, by the speed it needs against the version's ``medium_kmh``,
    ``high_kmh`` and ``critical_kmh`` (inclusive): the join alerts neighbouring ATMs
    a few minutes apart as it alerts two cities, and an analyst must see which."""
    return grade(kmh, params, "kmh")


def travel_alert(
    pair: TravelPair,
    version: int,
    customer: dict[str, Any],
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One alert per pair, its id fixed by the account and the two transaction ids;
    ``customer`` is the enrichment (the account's record) laid beside the evidence.
    ``params``: the version's parameters, whose thresholds grade it (without: the
    shipped ones)."""
    evidence = pair.evidence()
    grades = default_params(RULE_NAME) if params is None else params
    return make_alert(
        rule=RULE_NAME,
        rule_version=version,
        key=pair.account_id,
        event_time=pair.t2[0],
        identity=(pair.account_id, pair.t1[1], pair.t2[1]),
        evidence={**evidence, **customer},
        severity=severity_of(evidence["kmh_required"], grades),
    )
