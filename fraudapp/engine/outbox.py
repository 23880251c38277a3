"""Records leave a worker in aiokafka batches, not one faust send at a time.

Why: ``bench/wall.py`` measures faust's produce path as the worker's wall. A faust
agent that reads raw values does ~14 500 events/s here; one ``Topic.send`` per
event brings it to ~3 800/s, one table write (its changelog record goes the same
way) to ~3 100/s, both to ~2 600/s, while handing aiokafka whole batches keeps
~13 700/s (bench/RESULTS.md). Each faust send builds a ``FutureMessage``, a
pending-message tuple and futures, goes through faust's producer buffer and then
aiokafka's per-message ``send``; here a record is one ``append`` to the open batch of
its topic-partition.

What stays as faust does it:

- at-least-once: faust flushes its producer before it commits offsets; the outbox
  hooks that flush, so every record queued for an acknowledged event is handed to
  aiokafka, and delivered, before the event's offset is committed. A delivery that
  fails makes that flush raise, so its offsets are never committed (faust then
  stops the worker, which starts again from its last commit). Whichever way it
  fails: aiokafka refusing the batch (``send_batch`` raises, e.g. a metadata
  timeout; the batch stays first in line), or the broker refusing it; and whenever:
  from a send started by the linger or a full batch, which no commit awaits, or
  while the flush runs (it waits for every batch's answer, not for the event loop
  to have run their callbacks);
- order: one open batch per topic-partition, batches sent in the order they closed,
  so a key's changelog records and a topic's records keep their order;
- tables: state-table changelogs go through the outbox too and still keep each
  RocksDB partition's persisted changelog offset, which recovery reads from, up to
  date (see :class:`fraudapp.engine.statetable.StateTable`).

A batch goes when it is full, when ``linger`` has passed since the last send, or when
faust flushes before a commit or a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from fraudapp.core.partitioning import partition_for

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
#: Called with (base offset, record count) of a batch once the broker has it.
OnSent = Callable[[int, int], None]


@dataclass(slots=True)
class _Batch:
    topic: str
    partition: int
    builder: Any
    count: int = 0
    on_sent: list[OnSent] = field(default_factory=list)


def _nothing() -> None:
    return None


class Outbox:
    """One worker's queue of outgoing records, sent as one batch per topic-partition.

    ``producer_of`` gives faust's producer service (``app.producer``, made when the
    worker starts, so asked for late); its aiokafka producer
    builds and sends the batches, and its ``flush`` is wrapped once so that faust's
    own flush (before every offset commit) sends this outbox first.
    """

    def __init__(
        self, producer_of: Callable[[], Any], linger_s: float, max_ready: int = 64
    ) -> None:
        self.producer_of = producer_of
        self.linger_s = linger_s
        self.max_ready = max_ready
        self.open: dict[tuple[str, int], _Batch] = {}
        self.ready: list[_Batch] = []
        self.failures: list[BaseException] = []
        #: Batches handed to aiokafka, by the future of the broker's answer.
        self.in_flight: dict[asyncio.Future[Any], _Batch] = {}
        self.counts = {"records": 0, "batches": 0}
        self._lock = asyncio.Lock()
        self._partitions: dict[str, int] = {}
        self._aio: Any = None
        self._timer: asyncio.TimerHandle | None = None
        self._hooked = False
        #: Called before any batch is handed to aiokafka: the state tables' pending
        #: writes go to RocksDB before their changelog records leave
        #: (:mod:`fraudapp.engine.statewrites`).
        self.before_send: Callable[[], None] = _nothing

    # -- queueing (no await: table writes are synchronous) ------------------------------

    def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        on_sent: OnSent | None = None,
    ) -> None:
        """Queue one record for ``topic``'s ``partition``; it is sent within ``linger``."""
        self._hook()
        record = {"key": key, "value": value, "timestamp": None, "headers": list(headers or ())}
        batch = self.open.get((topic, partition)) or self._new_batch(topic, partition)
        if batch.builder.append(**record) is None:
            # Full: it closes as it is and the record opens the next batch.
            self._close(batch)
            batch = self._new_batch(topic, partition)
            if batch.builder.append(**record) is None:
                raise ValueError(f"one record too large for a batch of {topic}")
        batch.count += 1
        self.counts["records"] += 1
        if on_sent is not None and on_sent not in batch.on_sent:
            batch.on_sent.append(on_sent)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.linger_s, self._linger_due)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: Headers | None = None,
    ) -> None:
        """Queue one record; without ``partition``, Kafka's default partitioner decides
        (murmur2 of the key, any partition for no key). Waits only when too many
        closed batches are still to send, which is the agent's backpressure."""
        if partition is None:
            count = self._partitions.get(topic)
            if count is None:
                count = await self._partition_count(topic)
            partition = partition_for(key, count) if key else random.randrange(count)
        self.add(topic, partition, key, value, headers)
        if len(self.ready) >= self.max_ready:
            await self._send_ready()

    async def learn(self, topics: Sequence[str]) -> None:
        """Fetch the producer's metadata for ``topics`` now, not on their first send:
        aiokafka learns a topic's partitions when a batch for it is sent, a metadata
        round trip plus up to a 100 ms retry backoff, and the outbox sends one batch
        at a time, so every record queued behind the first one of a topic waits too."""
        for topic in topics:
            await self._partition_count(topic)

    # -- sending ---------------------------------------------------------------------

    async def flush(self) -> None:
        """Hand every queued record to aiokafka (not waiting for the broker's answer;
        faust's own flush, which follows, waits for that)."""
        for batch in list(self.open.values()):
            self._close(batch)
        await self._send_ready()

    def send_soon(self) -> None:
        """Send what is queued now rather than at the linger's end: when the input is
        caught up, no more records are coming to fill the batches."""
        if self.open or self.ready:
            asyncio.ensure_future(self._guarded(self.flush))

    def raise_failures(self) -> None:
        """Raise the first failed delivery since the last call: nothing behind it may
        have its offset committed."""
        if self.failures:
            error, self.failures = self.failures[0], []
            raise ProducerSendError(f"outbox delivery failed: {error!r}") from error

    def _new_batch(self, topic: str, partition: int) -> _Batch:
        batch = self.open[(topic, partition)] = _Batch(
            topic, partition, self._producer().create_batch()
        )
        return batch

    def _close(self, batch: _Batch) -> None:
        del self.open[(batch.topic, batch.partition)]
        batch.builder.close()
        self.ready.append(batch)
        if len(self.ready) == 1:
            asyncio.ensure_future(self._guarded(self._send_ready))

    def _linger_due(self) -> None:
        self._timer = None
        if self.open or self.ready:
            asyncio.ensure_future(self._guarded(self.flush))

    async def _guarded(self, send: Callable[[], Awaitable[None]]) -> None:
        """``send`` (a flush, or the ready batches) started where no commit awaits it:
        a failure is in ``failures``, and the next commit's flush raises it."""
        try:
            await send()
        except Exception:  # noqa: BLE001 - logged here, raised by the next flush
            log.exception("outbox: sending a batch failed")

    async def _send_ready(self) -> None:
        async with self._lock:
            producer = self._producer()
            while self.ready:
                self.before_send()
                batch = self.ready[0]
                try:
                    future = await producer.send_batch(
                        batch.builder, batch.topic, partition=batch.partition
                    )
                except Exception as error:
                    # Not handed over: the batch stays first in line (the next send
                    # tries it again) and no commit may pass until a flush raised it.
                    log.error("outbox: %s[%s] not sent: %r", batch.topic, batch.partition, error)
                    self.failures.append(error)
                    raise
                self.ready.pop(0)
                self.counts["batches"] += 1
                self.in_flight[future] = batch
                future.add_done_callback(self._settle)

    def _settle(self, future: asyncio.Future[Any]) -> None:
        """A batch's answer: its offsets to the tables, or a failure to the next flush.
        Once per batch, whether its callback or :meth:`delivered` comes first."""
        batch = self.in_flight.pop(future, None)
        if batch is None:
            return
        if future.cancelled():
            self.failures.append(asyncio.CancelledError())
            return
        error = future.exception()
        if error is not None:
            log.error("outbox: %s[%s] lost a batch: %r", batch.topic, batch.partition, error)
            self.failures.append(error)
            return
        offset = future.result().offset
        for callback in batch.on_sent:
            callback(offset, batch.count)

    async def delivered(self) -> None:
        """Wait for the broker's answer to every batch handed over so far and settle
        them here, not relying on their callbacks having run by the time this returns
        (aiokafka's futures are shielded; their callbacks come a loop turn later)."""
        pending = list(self.in_flight)
        if pending:
            await asyncio.wait(pending)
        for future in pending:
            self._settle(future)

    def _producer(self) -> Any:
        if self._aio is None:
            self._aio = self.producer_of()._ensure_producer()
        return self._aio

    async def _partition_count(self, topic: str) -> int:
        try:
            partitions = await self._producer().partitions_for(topic)
        except KafkaError as error:
            raise ProducerSendError(f"no metadata for {topic}: {error!r}") from error
        count = self._partitions[topic] = len(partitions)
        return count

    def _hook(self) -> None:
        """faust flushes its producer before committing offsets and when partitions are
        revoked: make that flush send this outbox first."""
        if self._hooked:
            return
        self._hooked = True
        producer = self.producer_of()
        original = producer.flush

        async def flush() -> None:
            try:
                await self.flush()
            except Exception as error:  # noqa: BLE001 - raised below, after faust's flush
                if error not in self.failures:
                    self.failures.append(error)
            await original()
            await self.delivered()
            self.raise_failures()

        producer.flush = flush
