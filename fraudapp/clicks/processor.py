"""One partition's click-burst processing over any key-value store.

The faust agent hands it the worker's RocksDB table; replay and tests hand it a
dict. Both therefore run the same code (lateness check, pruning, the rule, expiry)
and give the same alerts for the same input, which is what makes a backtest worth
trusting. Pure Python: no faust, no Kafka, no asyncio.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from fraudapp.clicks.detect import BurstFinding, BurstRule, latest_time, prune, step
from fraudapp.clicks.models import Click
from fraudapp.eventtime import PartitionClock

Store = MutableMapping[bytes, bytes]


def encode_state(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state)


def decode_state(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else orjson.loads(raw)


@dataclass(slots=True)
class ClickOutcome:
    """What one click produced: refused as late, or a verdict and any findings."""

    click: Click
    late: bool = False
    fraud: bool = False
    duplicate: bool = False
    findings: list[BurstFinding] = field(default_factory=list)


class ClickBurstPartition:
    """The rule applied to one partition's clicks, state kept in ``store``.

    ``seed`` is the partition's recovered state (key, value pairs) after a restart
    or rebalance: it rebuilds the watermark and the expiry index, so expiry and the
    lateness check carry on where the previous owner stopped.
    """

    def __init__(
        self, rule: BurstRule, store: Store, seed: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        self.rule = rule
        self.store = store
        self.clock = PartitionClock(rule.retention_ms)
        self.clock.seed((key, latest_time(orjson.loads(value))) for key, value in seed)

    @property
    def watermark(self) -> int | None:
        return self.clock.watermark

    def process(self, click: Click) -> ClickOutcome:
        """Apply one click (already on its session's partition)."""
        clock = self.clock
        if self.rule.is_too_late(click.timestamp, clock.watermark):
            return ClickOutcome(click=click, late=True)
        clock.observe(click.timestamp)
        key = click.session_id.encode("utf-8")
        state = decode_state(self.store.get(key))
        if state is not None and clock.horizon is not None:
            state = prune(state, clock.horizon)
        result = step(state, click, self.rule)
        self.store[key] = encode_state(result.state)
        clock.touch(key, latest_time(result.state))
        for expired in clock.due():
            self._expire(expired)
        return ClickOutcome(
            click=click, fraud=result.fraud, duplicate=result.duplicate, findings=result.findings
        )

    def _expire(self, key: bytes) -> None:
        state = decode_state(self.store.get(key))
        horizon = self.clock.horizon
        remaining = None if state is None or horizon is None else prune(state, horizon)
        if remaining is None:
            self.store.pop(key, None)
            self.clock.forget(key)
        else:
            self.store[key] = encode_state(remaining)
            self.clock.touch(key, latest_time(remaining))
