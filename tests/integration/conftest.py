"""One real Apache Kafka broker (and a Tansu one on demand) for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fraudapp.cli.brokers import KafkaBroker, TansuBroker


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
