"""Live views of output topics for the dashboard and the simulator.

Alerts are produced by whichever worker owns a key, but a person may open the
dashboard on any worker; so each worker reads the alerts topic whole, from its
end, with a plain consumer outside faust's consumer group (a group would split
the partitions between workers). The reader starts on first use, not with the
worker: a worker nobody watches pays nothing for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from mode import Service

log = logging.getLogger(__name__)


class TopicTail(Service):
    """Reads one topic from its end (less ``replay`` records per partition) and hands
    each batch of raw values to ``deliver`` (with ``keyed``: (key, value) pairs,
    tombstones included, for a compacted topic). :meth:`ready` starts it and returns
    once it is positioned: a record produced after that is seen."""

    def __init__(
        self,
        bootstrap: Callable[[], str],
        topic: str,
        deliver: Callable[[list[Any]], None],
        *,
        replay: int = 0,
        keyed: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        self.topic = topic
        self.deliver = deliver
        self.replay = replay
        self.keyed = keyed
        self._wanted = asyncio.Event()
        self._positioned = asyncio.Event()
        #: Set once what the topic held when reading began has been delivered.
        self._caught_up = asyncio.Event()

    async def ready(self, timeout: float = 15.0) -> None:
        self._wanted.set()
        await asyncio.wait_for(self._positioned.wait(), timeout)

    async def caught_up(self, timeout: float = 15.0) -> None:
        """Started, and what the topic held then delivered (a whole compacted topic
        read before it is answered from)."""
        self._wanted.set()
        await asyncio.wait_for(self._caught_up.wait(), timeout)

    @Service.task
    async def _read(self) -> None:
        await self._wanted.wait()
        while not self.should_stop:
            consumer = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap(),
                group_id=None,
                enable_auto_commit=False,
            )
            try:
                await consumer.start()
                ends = await self._position(consumer)
                while not self.should_stop:
                    batch = await consumer.getmany(timeout_ms=500, max_records=2000)
                    for messages in batch.values():
                        if self.keyed:
                            self.deliver([(m.key, m.value) for m in messages])
                        else:
                            self.deliver([m.value for m in messages if m.value is not None])
                    if not self._caught_up.is_set() and await self._reached(consumer, ends):
                        self._caught_up.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away: read again from where it is now
                log.exception("reading %s for the dashboard failed; retrying", self.topic)
                self._positioned.clear()
                await self.sleep(2.0)
            finally:
                await consumer.stop()

    @staticmethod
    async def _reached(consumer: AIOKafkaConsumer, ends: dict[Any, int]) -> bool:
        for tp, end in ends.items():
            if await consumer.position(tp) < end:
                return False
        return True

    async def _position(self, consumer: AIOKafkaConsumer) -> dict[Any, int]:
        # Subscribed without a group, aiokafka assigns itself every partition once
        # it has the topic's metadata (the worker creates the topic at start-up).
        for _ in range(100):
            if consumer.assignment():
                break
            await asyncio.sleep(0.1)
        tps = sorted(consumer.assignment())
        if not tps:
            raise RuntimeError(f"topic {self.topic} has no partitions yet")
        # Then pin them: a subscription re-assigns on every metadata change and
        # resets positions to the end, skipping what came in between.
        consumer.unsubscribe()
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps) if self.replay else ends
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - self.replay))
        self._positioned.set()
        log.info("reading %s from its end for the dashboard (%d partitions)", self.topic, len(tps))
        return ends


class RuleRates:
    """Alerts per rule over the last ``window_s`` seconds (1-second buckets) and in
    total since this worker began watching."""

    def __init__(self, window_s: int = 60) -> None:
        self.window_s = window_s
        self.totals: Counter[str] = Counter()
        self._buckets: deque[tuple[int, Counter[str]]] = deque()

    def add(self, rule: str, now: float | None = None) -> None:
        second = int(time.time() if now is None else now)
        if not self._buckets or self._buckets[-1][0] != second:
            self._buckets.append((second, Counter()))
        self._buckets[-1][1][rule] += 1
        self.totals[rule] += 1

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        horizon = int(now) - self.window_s
        while self._buckets and self._buckets[0][0] <= horizon:
            self._buckets.popleft()
        window: Counter[str] = Counter()
        for _, counts in self._buckets:
            window.update(counts)
        return {
            "at": int(now * 1000),
            "window_s": self.window_s,
            "last_window": dict(window),
            "totals": dict(self.totals),
        }


class Waiter:
    """Collects the records that mention ``needle`` (an id, as bytes) until closed."""

    def __init__(self, needle: str) -> None:
        self.needle = needle.encode("utf-8")
        self.found: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()

    def offer(self, raw: bytes, decoded: dict[str, Any]) -> None:
        if self.needle in raw:
            self.found.append(decoded)
            self.arrived.set()


class Listeners:
    """One bounded queue per open dashboard; a slow browser loses the oldest records,
    never the worker its memory."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def publish(self, record: dict[str, Any]) -> None:
        for queue in self.subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(record)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(queue)


class Feed(Listeners):
    """Decoded records of one topic for whoever listens: the recent ones, per-rule
    rates, subscriber queues (one per open dashboard) and waiters (the simulator)."""

    def __init__(self, recent: int = 100, queue_size: int = 1000) -> None:
        super().__init__(queue_size)
        self.recent: deque[dict[str, Any]] = deque(maxlen=recent)
        self.rates = RuleRates()
        self.waiters: set[Waiter] = set()

    def deliver(self, values: Iterable[bytes]) -> None:
        for raw in values:
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # not ours to judge: the topic's writers are fraudapp's agents
            if not isinstance(record, dict):
                continue
            for waiter in self.waiters:
                waiter.offer(raw, record)
            if "rule" in record:
                self.recent.append(record)
                self.rates.add(str(record["rule"]))
            self.publish(record)
