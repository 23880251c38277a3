"""What faust's consumer knows and has no public reader for: the offsets read and
committed per partition, and whether its group coordinator is known.

Read by the ``/metrics`` lag gauge and by ``/health``. faust keeps the offsets in
``Consumer._read_offset`` and ``Consumer._committed_offset`` (dicts by TP, faust's own
bookkeeping, also written by :mod:`fraudapp.engine.bulkfeed`); the coordinator is
aiokafka's, in its consumer that runs in faust's consumer thread. On upgrade: check
that both dicts still exist and are keyed by faust's TP, and that aiokafka's consumer
still keeps ``_coordinator.coordinator_id`` (``tests/unit/test_engine_contract.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from faust.exceptions import ConsumerNotStarted


def positions(consumer: Any) -> Iterator[tuple[str, int, int, int]]:
    """(topic, partition, end offset, next offset to read) per assigned partition.

    The next offset is the further of (read + 1) and committed: faust 0.15.3 resumes
    the flow before it seeks to the committed offsets after a rebalance, so records
    delivered meanwhile are read, acked and committed, and the seek then sets the read
    offset back to the older commit (they are delivered again, or were committed)."""
    try:
        assigned = sorted(consumer.assignment())
    except ConsumerNotStarted:  # asked while the worker starts
        return
    read = consumer._read_offset
    committed = consumer._committed_offset
    for tp in assigned:
        end = consumer.highwater(tp)
        last_read = read.get(tp)
        done = committed.get(tp)
        known = [p for p in (None if last_read is None else last_read + 1, done) if p is not None]
        if end is not None and known:
            yield tp.topic, tp.partition, end, max(known)


def coordinator_known(consumer: Any) -> bool:
    """Whether the consumer is in touch with the broker: its group coordinator is known.

    aiokafka marks the coordinator dead as soon as a heartbeat cannot be sent or the
    session timeout passes without an answer, and finds it again only through a broker
    that answers, so this covers a broker that is down and one that hangs. Cheap: it
    reads the client's own state, no request. True when that state cannot be read
    (consumer not started yet: ``/health``'s other checks cover that)."""
    thread = getattr(consumer, "_thread", None) if consumer is not None else None
    aio = getattr(thread, "_consumer", None)
    coordinator = getattr(aio, "_coordinator", None)
    if coordinator is None or not hasattr(coordinator, "coordinator_id"):
        return True
    return coordinator.coordinator_id is not None
