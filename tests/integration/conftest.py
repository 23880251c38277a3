"""One real Apache Kafka broker (and a Tansu one on demand) for the whole test session;
the longest test files first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fraudapp.cli.brokers import KafkaBroker, TansuBroker

#: The files that take longest (``--durations``, 2026-12-04: event time ~260 s, the
#: crash tests ~150 s, the demo's two minutes, the rebalance scenario ~140 s). The
#: suite runs in two processes that take whole files in collection order
#: (``-n 2 --dist loadfile``); alphabetically these came last and one process ran
#: them alone at the end. Longest first leaves the short ones to even out the tail.
LONGEST_FIRST = (
    "test_eventtime.py",
    "test_crash.py",
    "test_rebalance_load.py",
    "test_demo.py",
    "test_recovery.py",
    "test_fuzz.py",
    "test_scaling.py",
    "test_rules.py",
    "test_outage.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    broker = KafkaBroker()
    broker.start(timeout=180)
    print(f"\nApache Kafka ready at {broker.bootstrap} in {broker.ready_after_s:.1f} s")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def tansu_broker() -> Iterator[TansuBroker]:
    broker = TansuBroker()
    broker.start(timeout=60)
    try:
        yield broker
    finally:
        broker.stop()
