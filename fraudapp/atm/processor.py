"""The ATM rule as one partition's processor (see :mod:`fraudapp.keyed`)."""

from __future__ import annotations

from collections.abc import Iterable

from fraudapp.atm.detect import AtmStep, TravelRule
from fraudapp.atm.models import Txn
from fraudapp.keyed import KeyedPartition, Store

AtmPartition = KeyedPartition[Txn, AtmStep]


def atm_partition(
    rule: TravelRule, store: Store, seed: Iterable[tuple[bytes, bytes]] = ()
) -> AtmPartition:
    """A partition of account state in ``store`` (a faust table live, a dict in replay)."""
    return KeyedPartition(rule, store, seed)
