"""Records handed to fraudapp's handlers straight from the consumer's fetches, below
faust's per-event path.

Why: ``bench/wall.py`` measures a faust agent that does nothing at ~14 500 events/s
here, while a bare aiokafka consumer reads ~360 000/s. Between the two, faust takes
every record through its fetch generator (a ``ConsumerMessage``, monitor calls), its
drain loop (``wait_first``: two futures per record), the conductor (flow-control and
producer-buffer awaits, an ``Event``, a queue put) and the stream iterator (a queue
get, acks, sensors). That per-record path was a third of the click rule's profile.

Here a worker's consumer keeps faust's fetch loop but hands a fetched partition's
records to the topic's handler one after the other in the same task, each as a
light :class:`BulkEvent`, and acks them through faust's own bookkeeping when they are
handled. What stays faust's, unchanged:

- the consumer (aiokafka in faust's consumer thread), subscription (the agents still
  declare their topics), partition assignment and rebalances;
- read offsets (records behind the read offset after a seek are skipped, as faust
  does), offset gaps, acks and commits: an offset is acked only after its handler
  returned, so everything the handler queued in the outbox is sent by the producer
  flush faust runs before it commits that offset (at-least-once as before);
- rebalances: a fetch that arrives after the flow stopped is dropped and read again
  from the committed offsets, a partition's batch stops at the first record after
  the flow stopped, and faust's wait for in-flight records before a rebalance waits
  for the batch under way;
- tables: faust's current event is set for each record, so a table write goes to the
  record's partition and its changelog, exactly as in an agent.

Topics without a bulk handler (changelogs being recovered, rules, notifications...)
go through faust's path record by record, as before. Not kept for bulk topics:
faust's per-message sensors (its monitor's message counts); fraudapp's ``/metrics``
counts every record itself.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP
from mode.utils.futures import notify

from fraudapp.changelogpause import PausesChangelogFetches
from fraudapp.settings import DEFAULT_COMMIT_EVERY
from fraudapp.statewrites import StateWrites

#: The fetch wait faust gives its worker consumers (ms), fixed in its aiokafka driver.
FAUST_FETCH_MAX_WAIT_MS = 1500

#: Records acked after which a long batch stops to commit (``COMMIT_EVERY``; see
#: ``BulkConsumer._deliver_bulk``).
BATCH_COMMIT_EVERY = DEFAULT_COMMIT_EVERY

#: Records handled between two yields to the event loop (faust's drain loop uses 100
#: too), so the web server and timers answer during a long backlog.
YIELD_EVERY = 100


@dataclass(slots=True)
class BulkMessage:
    """The parts of faust's ``Message`` that handlers read; the timestamp in float
    seconds, as faust gives it."""

    topic: str
    partition: int
    offset: int
    timestamp: float | None
    key: bytes | None
    value: bytes | None
    headers: Any


@dataclass(slots=True, weakref_slot=True)
class BulkEvent:
    """What a handler gets for one record: ``event.message``, as from a faust stream
    (weak-referenceable: faust's current event is a weak reference)."""

    message: BulkMessage


Handler = Callable[[Any], Awaitable[None]]


class _InFlight:
    """Stands for a batch under way in the consumer's set of unacked messages, so
    faust's wait before a rebalance or a stop (``wait_empty``) waits for it."""

    __slots__ = ("acked", "refcount", "__weakref__")

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1


class _FetchWaitThread(AIOKafkaConsumerThread):
    """faust's consumer thread, whose aiokafka consumer long-polls the broker for
    the consumer's ``fetch_max_wait_ms`` instead of faust's fixed 1 500 ms.

    Why: aiokafka leaves a partition out of its next fetch while that partition's
    fetched records wait to be read, and sends no other fetch to a broker while one
    is under way. So a fetch sent while the input partitions are buffered asks only
    for quiet ones (rules, accounts, other domains' topics), and the broker holds it
    until the wait runs out: the input is not fetched again for up to 1.5 s after
    its buffer is read. The verdicts' timestamps of one worker behind on 30 000
    clicks showed it: no output at all for 1.1 s, three runs out of three."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts, to build its fetcher.
        consumer._fetch_max_wait_ms = self.consumer.fetch_max_wait_ms
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, including those
        aiokafka leaves alone: its ``seek_to_committed`` seeks only to offsets above 0,
        so a partition with no commit yet (or one at 0) stays where the fetcher got to.
        faust drops the records fetched after its flow stops and reads them again from
        the committed offsets; for such a partition they were lost (a worker SIGKILLed
        early in a backlog: ~8 000 clicks never judged in 6 runs of 14). Those go to
        their committed offset, or where the reset policy starts a new group.
        Changelog partitions are faust's recovery's to place, and left alone."""
        return await self.call_thread(self._seek_to_committed)

    async def _seek_to_committed(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        changelogs = self.consumer.app.tables.changelog_topics
        unplaced = [
            tp
            for tp, offset in committed.items()
            if (offset is None or offset <= 0) and tp.topic not in changelogs
        ]
        earliest = self.consumer.app.conf.consumer_auto_offset_reset == "earliest"
        for tp in unplaced:
            offset = committed[tp]
            if offset == 0:
                consumer.seek(tp, 0)
            elif earliest:
                await consumer.seek_to_beginning(tp)
            else:
                await consumer.seek_to_end(tp)
        return committed


class BulkConsumer(PausesChangelogFetches):
    """faust's aiokafka consumer, whose fetch loop hands records of topics with a
    bulk handler to that handler directly (module docstring)."""

    handlers: Mapping[str, Handler] = {}
    on_caught_up: Callable[[], None] | None = None
    writes: StateWrites | None = None
    #: The longest the broker may hold a fetch that finds no records (ms).
    fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS
    batch_commit_every: int = BATCH_COMMIT_EVERY

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _FetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    def use(
        self,
        handlers: Mapping[str, Handler],
        on_caught_up: Callable[[], None] | None = None,
        writes: StateWrites | None = None,
        fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS,
        batch_commit_every: int = BATCH_COMMIT_EVERY,
    ) -> None:
        """``on_caught_up`` is called when a fetch's records are all handled and they
        were everything the broker had: the app sends its outputs then instead of
        waiting for the producer linger, which only pays when more records follow.
        ``writes`` gathers the state tables' writes while records are handed over and
        is written at each yield and before the records are acked
        (:mod:`fraudapp.statewrites`). ``fetch_max_wait_ms``: see
        :class:`_FetchWaitThread`. ``batch_commit_every``: see ``_deliver_bulk``."""
        self.handlers = handlers
        self.on_caught_up = on_caught_up
        self.writes = writes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.batch_commit_every = batch_commit_every

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - loop
        if not self.handlers:
            return await super()._drain_messages(fetcher)
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        app = self.app
        handlers = self.handlers
        self.log.info("Records of %s handed over in bulk", ", ".join(sorted(handlers)))
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                records, active = await self._wait_next_records(1.0)
                await self.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # As faust's getmany: records fetched after the flow stopped are
                    # dropped and read again from the committed offsets.
                    await self._seek_back()
                    continue
                generation = app.consumer_generation_id
                handled_any, caught_up = False, True
                for tp, batch in records.items():
                    if not self.flow_active or app.consumer_generation_id != generation:
                        break
                    if not (active is None or tp in active or tp in self._buffered_partitions):
                        continue
                    tp = TP(tp.topic, tp.partition)
                    app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    handler = handlers.get(tp.topic)
                    if handler is None:
                        await self._deliver_each(tp, batch)
                    else:
                        last = await self._deliver_bulk(tp, batch, handler)
                        if last is not None:
                            handled_any = True
                            caught_up = caught_up and last + 1 >= (self.highwater(tp) or 0)
                if handled_any and caught_up and self.on_caught_up is not None:
                    self.on_caught_up()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    async def _seek_back(self) -> None:
        try:
            await self.perform_seek()
        except Exception as exc:  # as faust's getmany: logged, the loop goes on
            self.log.warning("exception performing seek when flow not active %r", exc)

    async def _commit_if_due(self, commit_every: int | None) -> None:
        """Commit once ``commit_every`` records were acked since the last such commit
        (faust's ``_commit_every`` between batches, ``batch_commit_every`` within one)."""
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()

    async def _deliver_bulk(self, tp: TP, batch: Iterable[Any], handler: Handler) -> int | None:
        """Hand a partition's fetched records to ``handler`` in order; ack each one
        that was handled (not one cut short by a rebalance or a stop). Returns the
        last offset handled, if any."""
        await self._commit_if_due(self._commit_every)
        acks = self.app.topics.acks_enabled_for(tp.topic)
        r_offset = self._read_offset[tp]
        in_flight = _InFlight()
        self._unacked_messages.add(in_flight)
        handled: list[int] = []
        last: int | None = None
        since_yield = 0
        writes = self.writes
        if writes is not None:
            writes.begin()
        try:
            for record in batch:
                offset = record.offset
                if r_offset is not None and offset < r_offset:
                    continue  # behind the read offset (after a seek): faust drops it too
                if acks and r_offset and offset - r_offset > 1:
                    await self._add_gap(tp, r_offset + 1, offset)
                if not self.flow_active:
                    break
                timestamp = record.timestamp
                event = BulkEvent(
                    BulkMessage(
                        tp.topic,
                        tp.partition,
                        offset,
                        None if timestamp is None else timestamp / 1000.0,
                        record.key,
                        record.value,
                        record.headers,
                    )
                )
                _current_event.set(weakref.ref(event))
                await handler(event)
                handled.append(offset)
                r_offset = offset
                since_yield += 1
                if since_yield >= YIELD_EVERY:
                    since_yield = 0
                    if writes is not None:
                        writes.flush()
                    # Acked as the batch goes, and committed every batch_commit_every
                    # records acked, not at its end: a worker catching up fetches
                    # thousands of records a partition, event time runs far ahead of
                    # the clock, and a record read again after a crash must still be
                    # in its key's state. Only inside long batches: a worker keeping up
                    # gets short ones and faust's timed commit suffices (committing
                    # every 2 000 records there too raised the p99 at 2 000 clicks/s
                    # from 39-50 to 56-101 ms).
                    # Awaited: run in the background, as faust's timed commit is, it
                    # let the batch run on past that state (test_crash's SIGKILL run
                    # failed 3 times of 3).
                    last = self._ack_handled(tp, handled, acks)
                    handled = []
                    _current_event.set(None)
                    await self._commit_if_due(self.batch_commit_every)
                    await asyncio.sleep(0)
        finally:
            _current_event.set(None)
            try:
                if writes is not None:
                    # Before the acks: an acked record's state is written. If RocksDB
                    # refuses, nothing is acked and the error ends the fetch loop.
                    writes.end()
                if handled:
                    last = self._ack_handled(tp, handled, acks)
            finally:
                in_flight.acked = True
                self._unacked_messages.discard(in_flight)
                notify(self._waiting_for_ack)
        return last

    def _ack_handled(self, tp: TP, handled: list[int], acks: bool) -> int:
        """Mark ``handled`` (a partition's offsets, in order) read, and acked if the
        topic acks; returns the last one."""
        last = handled[-1]
        self._read_offset[tp] = last
        if acks:
            self._ack_offsets(tp, handled)
        return last

    def _ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        """faust's ``Consumer.ack`` for many offsets of one partition at once."""
        committed = self._committed_offset[tp]
        if committed is not None:
            offsets = [offset for offset in offsets if offset >= committed]
        index = self._acked_index[tp]
        fresh = [offset for offset in offsets if offset not in index]
        index.update(fresh)
        self._acked[tp].extend(fresh)
        self._n_acked += len(fresh)

    async def _deliver_each(self, tp: TP, batch: Iterable[Any]) -> None:
        """faust's own path, record by record, for topics without a bulk handler."""
        callback = self.callback
        since_yield = 0
        for record in batch:
            if not self.flow_active:
                return
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            message = self._to_message(tp, record)
            offset = message.offset
            r_offset = self._read_offset[tp]
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and self.app.topics.acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                await self._commit_if_due(self._commit_every)
                await self.wait_first(callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = offset
