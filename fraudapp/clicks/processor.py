"""The click-burst rule as one partition's processor (see :mod:`fraudapp.keyed`)."""

from __future__ import annotations

from collections.abc import Iterable

from fraudapp.clicks.detect import BurstRule, BurstStep
from fraudapp.clicks.models import Click
from fraudapp.keyed import KeyedPartition, Store

ClickPartition = KeyedPartition[Click, BurstStep]


def click_partition(
    rule: BurstRule, store: Store, seed: Iterable[tuple[bytes, bytes]] = ()
) -> ClickPartition:
    """A partition of session state in ``store`` (a faust table live, a dict in replay)."""
    return KeyedPartition(rule, store, seed)
