"""The worker's watermarks (:mod:`fraudapp.core.watermarks`), wired to faust and Kafka.

What is here and why:

- the two event-time domains, clicks and ATM transactions, and the internal topic
  that feeds each level (the stage that reads it judges by that level);
- on every assignment: the source partitions' watermarks read back from the
  committed offsets' metadata (a commit stores the partition's watermark beside its
  offset; the bulk consumer writes it, :mod:`fraudapp.engine.bulkfeed`), and a marker into
  every internal partition this worker owns, whose reading back retires the
  channels of its own slots; on a partition with nothing unread (committed offset
  at its end) they are retired at once, as no record of a previous owner of those
  slots can come (a worker catching up reads the marker back only behind its
  sources' first fetches, seconds in which the stages expire nothing);
- a marker with this worker's levels into every internal partition another worker
  owns, as soon as they change (other workers' levels and alignment wait on them),
  and at least once a second so a restarted peer learns them;
- every ``WATERMARK_INTERVAL_MS``: which source partitions are idle;
- markers read from internal topics (:func:`receive`), source records read
  (:func:`read`) and their event times (:func:`observe`).

Markers go through the outbox like every other record, so each lands behind the
records this worker sent to the same partition before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faust.types import TP, EventT

from fraudapp.app import app, outbox, settings, watermarks
from fraudapp.core.timedomains import atm_domain, click_domain
from fraudapp.core.watermarks import MARKER_HEADER, MARKER_KEY, Domain, Marker
from fraudapp.engine import kafkaio

log = logging.getLogger(__name__)

CLICKS = click_domain(settings)
ATM = atm_domain(settings)
MARKER_TOPICS = frozenset(watermarks.internal_topics())
_HEADERS = [(MARKER_HEADER, b"1")]
#: Seconds after which a marker is sent again though nothing changed.
HEARTBEAT_S = 1.0


#: Each level's index in its domain, looked up once: stages ask per record.
_LEVELS = {(d.name, n): i for d in (CLICKS, ATM) for i, n in enumerate(d.names)}


def level(domain: Domain, name: str) -> int | None:
    """The watermark the stage using level ``name`` of ``domain`` judges by now."""
    return watermarks.level(domain.name, _LEVELS[(domain.name, name)])


def observe(topic: str, partition: int, offset: int, timestamp: int) -> int | None:
    """A source record's event time: returns its partition's newest event time before
    it (what the record is judged late against), None if not known or not a source."""
    clock = watermarks.sources.get((topic, partition))
    return None if clock is None else clock.observe(timestamp, offset)


def read(topic: str, partition: int, offset: int) -> None:
    """A record of a source partition was handled (decodable or not): where the
    partition's reading stands, and that it is not idle."""
    clock = watermarks.sources.get((topic, partition))
    if clock is not None:
        clock.last_record = time.monotonic()
        _positions[(topic, partition)] = offset + 1


def is_marker(event: EventT) -> bool:
    message = event.message
    return message.key == MARKER_KEY and message.topic in MARKER_TOPICS


def receive(event: EventT) -> None:
    """A marker read from an internal topic: a channel's watermarks (or our own,
    read back). A marker that cannot be read is logged and skipped: it only ever
    holds levels back, never lets them run ahead."""
    message = event.message
    try:
        marker = Marker.decode(message.value)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        where = f"{message.topic}[{message.partition}]@{message.offset}"
        log.error("unreadable watermark marker in %s: %r", where, error)
        return
    watermarks.receive(message.topic, message.partition, marker)


#: Next offset to read per source partition, as far as this worker knows.
_positions: dict[tuple[str, int], int] = {}
_last_sent: dict[tuple[str, int], tuple[bytes, float]] = {}


def _send_marker(topic: str, partition: int, payload: bytes) -> None:
    outbox.add(topic, partition, MARKER_KEY, payload, headers=_HEADERS)


async def _committed(
    tps: list[tuple[str, int]],
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """The group's committed offsets of ``tps`` and the watermarks stored with them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafkaio.bootstrap_of(settings.broker_url))
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(
            app.conf.id, partitions=[TopicPartition(t, p) for t, p in tps]
        )
    finally:
        await admin.close()
    offsets, marks = {}, {}
    for tp, meta in found.items():
        key = (tp.topic, tp.partition)
        if meta.offset is not None and meta.offset >= 0:
            offsets[key] = meta.offset
        if meta.metadata:
            try:
                marks[key] = int(orjson.loads(meta.metadata)["wm"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("commit metadata of %s[%s] is not ours: %r", *key, meta.metadata)
    return offsets, marks


async def _end_offsets(tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafkaio.bootstrap_of(settings.broker_url), enable_auto_commit=False
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, p) for t, p in tps])
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}


@app.on_partitions_assigned.connect
async def _on_assigned(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
    watermarks.assign(((tp.topic, tp.partition) for tp in assigned or ()), time.monotonic())
    generation = watermarks.generation
    sources = watermarks.source_partitions()
    if assigned and not sources:
        log.warning(
            "this worker was assigned no partition of the input topics: with standby"
            " replicas, faust leaves a newcomer idle when the others already hold"
            " ceil(partitions / workers) each (faust-streaming #93); run a number of"
            " workers that divides FRAUDAPP_PARTITIONS (%d), or TABLE_STANDBY_REPLICAS=0",
            settings.partitions,
        )
    internal = [
        (topic, partition)
        for topic in sorted(MARKER_TOPICS)
        for partition in range(settings.partitions)
        if watermarks.owns(topic, partition)
    ]
    for key in list(_positions):
        if key not in watermarks.sources:
            del _positions[key]
    if sources or internal:
        try:
            offsets, marks = await _committed(sources + internal)
            ends = await _end_offsets(internal) if internal else {}
        except Exception as error:  # noqa: BLE001 - start unknown: lenient, never wrong
            log.warning("could not read committed watermarks: %r", error)
        else:
            _positions.update({tp: offsets[tp] for tp in sources if tp in offsets})
            watermarks.restore(marks)
            if watermarks.generation == generation:
                for tp in internal:
                    end = ends.get(tp)
                    if end is not None and offsets.get(tp, 0) >= end:
                        watermarks.drained(*tp)
    payload = watermarks.marker().encode()
    for topic in MARKER_TOPICS:
        for partition in range(settings.partitions):
            if watermarks.owns(topic, partition):
                _send_marker(topic, partition, payload)
    _last_sent.clear()
    log.info("watermarks after assignment: %s", watermarks.describe())


def _caught_up(topic: str, partition: int) -> bool:
    """Nothing left to read on the partition, as far as this worker can tell without
    asking the broker: its next offset (from the records read, or the committed
    offset) at the end offset the fetcher last saw; an empty partition's end is 0."""
    tp = TP(topic, partition)
    try:
        highwater = app.consumer.highwater(tp)
    except Exception:  # noqa: BLE001 - in the middle of a rebalance: not known now
        return False
    if highwater is None:
        return False
    position = _positions.get((topic, partition), 0 if highwater == 0 else None)
    return position is not None and position >= highwater


def send_markers(heartbeat: bool = False) -> None:
    """This worker's levels into every internal partition another worker owns: those
    that changed since the last marker there, and all of them on a ``heartbeat``
    once a second has passed."""
    global _soon
    _soon = None
    if not watermarks.generation:
        return
    now = time.monotonic()
    payload = watermarks.marker().encode()
    sent = False
    for topic in MARKER_TOPICS:
        for partition in range(settings.partitions):
            if watermarks.owns(topic, partition):
                continue
            last = _last_sent.get((topic, partition))
            if last is None or last[0] != payload or (heartbeat and now - last[1] >= HEARTBEAT_S):
                _send_marker(topic, partition, payload)
                _last_sent[(topic, partition)] = (payload, now)
                sent = True
    if sent:
        outbox.send_soon()  # not after the producer's linger: others wait on them


_soon: asyncio.Handle | None = None


def _markers_soon() -> None:
    """Levels changed: tell the others at the next turn of the loop (changes that come
    together, a marker read and the recomputation it causes, go as one marker)."""
    global _soon
    if _soon is None:
        try:
            _soon = asyncio.get_running_loop().call_soon(send_markers)
        except RuntimeError:  # no loop (tests, imports): the next beat sends them
            _soon = None


watermarks.on_change = _markers_soon


async def beat() -> None:
    """Idleness, then the heartbeat of this worker's markers."""
    now = time.monotonic()
    idle_s = settings.idle_ms / 1000.0
    idle, caught_up = [], set()
    for (topic, partition), clock in list(watermarks.sources.items()):
        if _caught_up(topic, partition):
            caught_up.add((topic, partition))
            if now - clock.last_record >= idle_s:
                idle.append((topic, partition))
    watermarks.caught_up = caught_up
    watermarks.set_idle(idle)
    send_markers(heartbeat=True)


@app.timer(interval=settings.watermark_interval_ms / 1000.0)
async def _beat() -> None:
    if not watermarks.generation:  # before the first assignment
        return
    try:
        await beat()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("watermark beat failed")
