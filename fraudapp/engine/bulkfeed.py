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

Event time (:mod:`fraudapp.core.watermarks`), on top of faust's bookkeeping:

- every commit stores, beside each source partition's offset, the partition's
  watermark at that offset (the commit's metadata, as Kafka Streams keeps its stream
  time there), and moves the partition's committed watermark on success;
- inside a long batch a worker also commits when a source partition has read its
  domain's ``commit_span_ms`` of event time past its last commit, so sparse traffic
  read fast holds the stages' state for a bounded stretch of event time, not
  thousands of records;
- a source partition that runs its domain's ``max_drift_ms`` of event time ahead of
  the domain's slowest source partition stops at that record: the rest of its fetched batch is
  held here and the partition paused (in faust and in aiokafka's fetcher); the held
  records are handed over once the slowest has caught up half way, then fetching
  resumes (Flink's watermark alignment). Held in memory rather than sought back and
  fetched again: on sparse traffic a partition is held every few dozen records, and
  a fetch round trip each time made a two-worker backlog 2.6 times slower.

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
from time import monotonic
from typing import Any

from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import OffsetAndMetadata
from faust.streams import _current_event
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, ensure_aiokafka_TP
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from fraudapp.core.settings import DEFAULT_COMMIT_EVERY
from fraudapp.core.watermarks import Watermarks, ahead
from fraudapp.engine import bulkrestore
from fraudapp.engine.changelogpause import PausesChangelogFetches
from fraudapp.engine.statewrites import StateWrites

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


@dataclass(slots=True)
class _Held:
    """A source partition's fetched records not handed over yet (alignment)."""

    domain: str
    records: list[Any]


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

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """faust's ``AIOKafkaConsumerThread._commit`` (faust-streaming 0.15.3), with
        each partition's commit metadata from the consumer (its watermark there)
        instead of faust's empty string."""
        consumer = self._ensure_consumer()
        now = monotonic()
        metadata = self.consumer.commit_metadata
        commitable_offsets = {
            tp: offset for tp, offset in offsets.items() if tp in self.assignment()
        }
        try:
            aiokafka_offsets = {
                ensure_aiokafka_TP(tp): OffsetAndMetadata(offset, metadata.get(tp, ""))
                for tp, offset in commitable_offsets.items()
            }
            self.tp_last_committed_at.update({tp: now for tp in commitable_offsets})
            await consumer.commit(aiokafka_offsets)
        except CommitFailedError as exc:
            if "already rebalanced" in str(exc):
                return False
            self.log.exception("Committing raised exception: %r", exc)
            await self.crash(exc)
            return False
        except IllegalStateError as exc:
            self.log.exception("Got exception: %r\nCurrent assignment: %r", exc, self.assignment())
            await self.crash(exc)
            return False
        except Exception as exc:
            self.log.exception("Got exception: %r\nCurrent assignment: %r", exc, self.assignment())
            await self.crash(exc)
            return False
        return True


class BulkConsumer(PausesChangelogFetches):
    """faust's aiokafka consumer, whose fetch loop hands records of topics with a
    bulk handler to that handler directly (module docstring)."""

    handlers: Mapping[str, Handler] = {}
    on_caught_up: Callable[[], None] | None = None
    writes: StateWrites | None = None
    #: The longest the broker may hold a fetch that finds no records (ms).
    fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS
    batch_commit_every: int = BATCH_COMMIT_EVERY
    watermarks: Watermarks | None = None
    #: Metadata of the commit under way, per partition (read by the consumer thread).
    commit_metadata: Mapping[TP, str] = {}
    #: Source partitions paused for alignment, with the records fetched and not handed over.
    held: dict[TP, _Held]

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _FetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    def use(
        self,
        handlers: Mapping[str, Handler],
        on_caught_up: Callable[[], None] | None = None,
        writes: StateWrites | None = None,
        fetch_max_wait_ms: int = FAUST_FETCH_MAX_WAIT_MS,
        batch_commit_every: int = BATCH_COMMIT_EVERY,
        watermarks: Watermarks | None = None,
    ) -> None:
        """``on_caught_up`` is called when a fetch's records are all handled and they
        were everything the broker had: the app sends its outputs then instead of
        waiting for the producer linger, which only pays when more records follow.
        ``writes`` gathers the state tables' writes while records are handed over and
        is written at each yield and before the records are acked
        (:mod:`fraudapp.engine.statewrites`). ``fetch_max_wait_ms``: see
        :class:`_FetchWaitThread`. ``batch_commit_every`` and ``watermarks`` (whose
        domains carry their commit span and drift): see the module docstring and
        ``_deliver_bulk``."""
        self.handlers = handlers
        self.on_caught_up = on_caught_up
        self.writes = writes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.batch_commit_every = batch_commit_every
        self.watermarks = watermarks
        self.held = {}

    async def _commit(self, offsets: Mapping[TP, int]) -> bool:
        """faust's commit, with each source partition's watermark at its offset stored
        beside it; on success the partitions' committed watermarks move."""
        marks = self.watermarks
        if marks is None:
            return await super()._commit(offsets)
        self.commit_metadata = {
            tp: marks.commit_metadata(tp.topic, tp.partition, offset)
            for tp, offset in offsets.items()
        }
        try:
            done = await super()._commit(offsets)
        finally:
            self.commit_metadata = {}
        if done:
            marks.committed({(tp.topic, tp.partition): offset for tp, offset in offsets.items()})
        return done

    def _drift_limit(self, domain: str) -> float | None:
        """The event time a source partition of ``domain`` may read up to before it
        is held for alignment (None: no bound now)."""
        marks = self.watermarks
        if marks is None:
            return None
        floor = marks.align_floor(domain)
        return None if floor is None else floor + marks.domain(domain).max_drift_ms

    def _hold(self, tp: TP, domain: str, records: list[Any]) -> None:
        """Keep ``records`` (the rest of ``tp``'s batch) until its domain catches up,
        and fetch no more of ``tp`` meanwhile."""
        held = self.held.get(tp)
        if held is not None:
            held.records[:0] = records
            return
        self.held[tp] = _Held(domain, records)
        self.pause_partitions([tp])
        self._fetcher_apply([tp], pause=True)

    async def _release_held(self) -> bool:
        """Hand over the held records of partitions whose domain has caught up half
        way; resume fetching a partition once all its held records are handed over.
        True if anything was handed over."""
        if not self.held or not self.flow_active:
            return False
        marks = self.watermarks
        assigned = self.assignment()
        delivered = False
        for tp, held in list(self.held.items()):
            if self.held.get(tp) is not held or not self.flow_active:
                continue  # dropped meanwhile (a rebalance came during a hand-over)
            clock = None if marks is None else marks.source(tp.topic, tp.partition)
            if tp not in assigned or clock is None or marks is None:
                self._drop_held([tp])
                continue
            floor = marks.align_floor(held.domain)
            if ahead(clock, floor, marks.domain(held.domain).max_drift_ms // 2):
                continue
            del self.held[tp]
            await self._deliver_bulk(tp, held.records, self.handlers[tp.topic])
            delivered = True
            if tp not in self.held:  # all handed over: fetch it again
                self.resume_partitions([tp])
                self._fetcher_apply([tp], pause=False)
        if not delivered and self.held:
            # Every partition with records is held: what moves the floor is a commit
            # of the slowest one (its committed watermark is the floor).
            await self.commit()
        return delivered

    def _drop_held(self, tps: Iterable[TP] | None = None) -> None:
        """Forget held records (read again from the committed offsets after a
        rebalance or a stopped flow) and let faust fetch their partitions again."""
        dropped = [tp for tp in (list(self.held) if tps is None else tps) if tp in self.held]
        for tp in dropped:
            del self.held[tp]
        if dropped:
            self.resume_partitions(dropped)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Finish and commit what was taken before faust forgets it (faust-streaming
        #502).

        faust's ``on_partitions_revoked`` drops the revoked partitions' acked offsets
        *before* its app stops the flow, waits for what is in flight and commits, so
        everything handled since the last timed commit (up to
        ``broker_commit_interval``, 2.8 s) was read and handled again by whoever got
        the partition; aiokafka's eager rebalance revokes every partition, moving or
        not. A worker joining a busy group re-handled seconds of traffic
        (``tests/integration/test_rebalance_load.py``: 188 clicks at the join, 602 at
        a restart, before). So the same steps, in faust's order, come first here:
        stop the flow, let the batch in flight finish, commit (``wait_empty`` does
        both; the generation is still valid in the listener, and outputs are flushed
        first as in every commit); faust's own then find nothing left to do.
        """
        self._drop_held()
        if not self.app.should_stop and self.assignment():
            self.stop_flow()
            self.app.flow_control.suspend()
            await self.wait_empty()
        await super().on_partitions_revoked(revoked)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - loop
        if not self.handlers:
            return await super()._drain_messages(fetcher)
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        app = self.app
        handlers = self.handlers
        changelogs = app.tables.changelog_topics
        self.log.info("Records of %s handed over in bulk", ", ".join(sorted(handlers)))
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                released = await self._release_held()
                # While records are held, look again soon: a commit or a marker may
                # let them go before anything new is fetched.
                wait = 0.0 if released else 0.02 if self.held else 1.0
                records, active = await self._wait_next_records(wait)
                await self.sleep(0)
                if not records or self.should_stop:
                    continue
                if not self.flow_active:
                    # As faust's getmany: records fetched after the flow stopped are
                    # dropped and read again from the committed offsets.
                    self._drop_held()
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
                    if tp in self.held:  # fetched before its pause reached the fetcher
                        self.held[tp].records.extend(batch)
                        continue
                    handler = handlers.get(tp.topic)
                    if handler is None:
                        if tp.topic in changelogs:
                            # A state table's changelog under recovery: in bulk.
                            batch = bulkrestore.restore(app.tables.recovery, tp, batch)
                        await self._deliver_each(tp, batch)
                    else:
                        last = await self._deliver_bulk(tp, batch, handler, generation)
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

    async def _deliver_bulk(
        self, tp: TP, batch: Iterable[Any], handler: Handler, generation: int | None = None
    ) -> int | None:
        """Hand a partition's fetched records to ``handler`` in order; ack each one
        that was handled (not one cut short by a rebalance or a stop; one cut short by
        alignment is held with the rest of the batch). Returns the last offset
        handled, if any.

        ``generation``: the consumer generation the records were fetched in (default:
        the current one). A record is handed over only while it still is, as the
        fetch loop checks between partitions: the commit awaited first, or one inside
        the batch, can take a whole rebalance, after which faust has resumed the flow
        and the partition may be another worker's. What is cut short is neither
        handled nor acked; faust's seek to the committed offsets after the rebalance
        reads it again (no seek here: one from this loop while the group coordinator
        is in a rebalance listener can wait on it for ever)."""
        app = self.app
        if generation is None:
            generation = app.consumer_generation_id
        await self._commit_if_due(self._commit_every)
        acks = self.app.topics.acks_enabled_for(tp.topic)
        r_offset = self._read_offset[tp]
        in_flight = _InFlight()
        self._unacked_messages.add(in_flight)
        handled: list[int] = []
        last: int | None = None
        since_yield = 0
        writes = self.writes
        marks = self.watermarks
        clock = None if marks is None else marks.source(tp.topic, tp.partition)
        domain = None if clock is None or marks is None else marks.domain_of(tp.topic)
        span_ms = 0 if domain is None else domain.commit_span_ms
        drift_ms = 0 if domain is None else domain.max_drift_ms
        aligned = bool(drift_ms) and clock is not None and domain is not None
        limit = self._drift_limit(domain.name) if aligned and domain is not None else None
        cut: int | None = None
        if writes is not None:
            writes.begin()
        records = batch if isinstance(batch, list) else list(batch)
        try:
            for index, record in enumerate(records):
                offset = record.offset
                if r_offset is not None and offset < r_offset:
                    continue  # behind the read offset (after a seek): faust drops it too
                if acks and r_offset and offset - r_offset > 1:
                    await self._add_gap(tp, r_offset + 1, offset)
                if not self.flow_active or app.consumer_generation_id != generation:
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
                spanned = clock is not None and span_ms and clock.span() >= span_ms
                if since_yield >= YIELD_EVERY or spanned:
                    since_yield = 0
                    if writes is not None:
                        writes.flush()
                    # Acked as the batch goes, and committed every batch_commit_every
                    # records acked, not at its end: a worker catching up fetches
                    # thousands of records a partition, event time runs far ahead of
                    # the clock, and the stages' state is held until records are
                    # committed. Also once commit_span_ms of event time was read past
                    # the last commit: sparse traffic spans much event time in few
                    # records. Only inside long batches: a worker keeping up gets
                    # short ones and faust's timed commit suffices (committing every
                    # 2 000 records there too raised the p99 at 2 000 clicks/s from
                    # 39-50 to 56-101 ms).
                    # Awaited: run in the background, as faust's timed commit is, it
                    # let the batch run on past that state (test_crash's SIGKILL run
                    # failed 3 times of 3).
                    last = self._ack_handled(tp, handled, acks)
                    handled = []
                    _current_event.set(None)
                    if spanned:
                        self._n_acked = 0
                        await self.commit()
                    else:
                        await self._commit_if_due(self.batch_commit_every)
                        await asyncio.sleep(0)
                seen = None if clock is None else clock.seen
                if limit is not None and seen is not None and seen >= limit:
                    # Ahead of the limit set at the batch's start: look again (the
                    # floor may have moved), and stop here if it still is.
                    assert domain is not None
                    limit = self._drift_limit(domain.name)
                    if limit is not None and seen >= limit:
                        cut = index + 1
                        break
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
        if cut is not None and domain is not None and self.flow_active:
            self._hold(tp, domain.name, records[cut:])
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
        """faust's ``Consumer.ack`` for many offsets of one partition at once, under
        faust's ``ack_lock`` as faust's is (the index, the list and the count are one
        step; a thread finishing a message of faust's own path may ack meanwhile)."""
        with ack_lock:
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
