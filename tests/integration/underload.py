"""Steady click traffic through a group of workers while a second worker joins, is
SIGKILLed and comes back: what a user scaling a live group sees (issue 26).

Shared by ``tests/integration/test_rebalance_load.py`` (short, at a slow rate) and
``bench/rebalance.py`` (2 000 clicks/s, every check on). Beside the workers:

- a paced producer (a thread) sends the clicks in their arrival order at a steady
  rate and notes when each click id was first handed to the producer;
- two readers (threads, reading from the start of their topics before the first
  click is sent) keep every alert and every verdict with its arrival time;
- the scenario itself, which at fixed times starts, SIGKILLs and restarts the second
  worker and, after each step, asks the worker that takes partitions over for keyed
  views until it answers them as their owner.

An alert's latency is its arrival minus the send of the click it names, and it
counts in the phase its click was sent in: the "kill" phase's p99 is the p99 of the
alerts whose click was sent between the SIGKILL and the restart. Whether anything
was lost is judged by the oracles of the exact checks over the whole stream, on the
alert ids (deterministic, so a consumer deduplicates by them); raw copies are
counted, not hidden.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fraudapp.adnet import oracle
from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.clicks.oracle import fraudulent_click_ids
from fraudapp.core.reference import tables_dir
from tests.integration.helpers import AppSpace, group_offsets, metric, wait_for


def wall_ms() -> float:
    return time.time() * 1000.0


class PacedProducer(threading.Thread):
    """Sends ``clicks`` in list order at ``rate`` a second, keyed by session, in 5 ms
    ticks, until they run out or ``halt`` is set; ``sent`` maps each click id to the
    wall-clock ms of its first send, ``count`` is how many of ``clicks`` went."""

    def __init__(self, bootstrap: str, topic: str, clicks: list[dict[str, Any]], rate: float):
        super().__init__(name="paced-producer", daemon=True)
        self.bootstrap, self.topic, self.clicks, self.rate = bootstrap, topic, clicks, rate
        self.sent: dict[str, float] = {}
        self.count = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # reported by the scenario, which owns the thread
            self.error = exc

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
        await producer.start()
        try:
            started, total = time.perf_counter(), len(self.clicks)
            while self.count < total and not self.halt.is_set():
                due = min(total, int((time.perf_counter() - started) * self.rate) + 1)
                while self.count < due:
                    click = self.clicks[self.count]
                    await producer.send(
                        self.topic, orjson.dumps(click), key=click["session_id"].encode()
                    )
                    self.sent.setdefault(click["click_id"], wall_ms())
                    self.count += 1
                await asyncio.sleep(0.005)
            await producer.flush()
        finally:
            await producer.stop()

    def recent_sessions(self, span: int, count: int) -> list[str]:
        """Up to ``count`` sessions among the last ``span`` clicks sent, skipping the
        newest few hundred (in flight, not handled yet)."""
        sent = self.count
        window = self.clicks[max(0, sent - span) : max(0, sent - 300)]
        sessions = sorted({c["session_id"] for c in window})
        step = max(1, len(sessions) // count)
        return sessions[::step][:count]


class TopicReader(threading.Thread):
    """Reads a topic from its start until told to ``finish`` and then idle for
    ``idle_s``; ``records`` holds every copy with its arrival (wall-clock ms)."""

    def __init__(self, bootstrap: str, topic: str, idle_s: float = 3.0):
        super().__init__(name=f"reader-{topic}", daemon=True)
        self.bootstrap, self.topic, self.idle_s = bootstrap, topic, idle_s
        self.records: list[tuple[float, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.finish = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._read())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            group_id=None,
        )
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            self.ready.set()
            quiet_since = time.monotonic()
            while not (self.finish.is_set() and time.monotonic() - quiet_since > self.idle_s):
                batch = await consumer.getmany(timeout_ms=100)
                now = wall_ms()
                for messages in batch.values():
                    quiet_since = time.monotonic()
                    self.records.extend((now, orjson.loads(m.value)) for m in messages)
        finally:
            await consumer.stop()

    def stop(self) -> None:
        self.finish.set()
        self.join(timeout=120)
        if self.error:
            raise self.error


@dataclass
class Step:
    """One change to the group and what followed it."""

    name: str
    #: Wall-clock ms the step was taken (process spawned, or SIGKILL sent).
    at_ms: float
    #: Seconds from the step until the worker taking partitions over answered the
    #: sampled sessions as their owner; None if it never did within the bound.
    answered_s: float | None = None
    #: The group's consumer lag (records) when the step was taken.
    lag: float | None = None
    #: Clicks sent in this phase.
    sent: int = 0
    #: Latency (ms) of each alert whose click was sent in this phase, with its rule.
    latencies: list[tuple[str, float]] = field(default_factory=list)
    #: Verdicts beyond one per click record sent that arrived in this phase: clicks
    #: handled again, in the phase they were handled again.
    rehandled: int = 0

    @property
    def latencies_ms(self) -> list[float]:
        return [ms for _, ms in self.latencies]

    def quantiles(self, rule: str | None = None) -> tuple[float, float, float]:
        """p50, p99 and max of the phase's alert latencies (ms), of one rule or all."""
        lat = [ms for r, ms in self.latencies if rule in (None, r)]
        if len(lat) < 2:
            return (lat[0],) * 3 if lat else (float("nan"),) * 3
        q = statistics.quantiles(lat, n=100)
        return q[49], q[98], max(lat)


@dataclass
class LoadRun:
    """What one run of :func:`rebalance_under_load` found."""

    steps: list[Step]
    clicks: int
    sent_s: float
    #: The clicks ran out before the last phase ended (the steps' waits were long).
    ran_out: bool
    #: Seconds from the last click sent until every click had its verdict.
    drain_s: float
    #: Per exact rule: alert ids the oracle wants that never came / came unwanted.
    missing: dict[str, int]
    unwanted: dict[str, int]
    #: Blocklisted clicks (exact) that got no ``ip_blocklist`` alert.
    blocklist_missing: int
    alerts: int
    distinct_alerts: int
    clicks_without_verdict: int
    #: Workers reading clicks partitions after the restart (faust-streaming #93).
    owners_after_restart: int

    @property
    def extra_verdicts(self) -> int:
        """Verdict records beyond one per click record sent: clicks handled again (re-read
        after a rebalance or the SIGKILL; a click sent twice has a verdict per copy)."""
        return sum(step.rehandled for step in self.steps)

    @property
    def raw_duplicates(self) -> int:
        return self.alerts - self.distinct_alerts

    @property
    def exact(self) -> bool:
        return (
            not any(self.missing.values())
            and not any(self.unwanted.values())
            and self.blocklist_missing == 0
            and self.clicks_without_verdict == 0
        )


def answered_by(owner: WorkerProcess, sessions: list[str], only_owner: bool) -> bool:
    """``owner`` answers every sampled session (200), itself for at least one, or for
    every one with ``only_owner`` (it is the last worker standing)."""
    own = 0
    for session in sessions:
        try:
            status, body = owner.get(f"/sessions/{session}", timeout=5)
        except OSError:
            return False
        if status != 200 or not isinstance(body, dict):
            return False
        mine = body.get("served_by") == owner.url
        if only_owner and not mine:
            return False
        own += mine
    return own > 0


def time_to_answer(
    step: Step, owner: WorkerProcess, producer: PacedProducer, only_owner: bool, bound_s: float
) -> None:
    """Poll ``owner`` every half second (sparingly: it is under load) until it answers
    a fresh sample of sessions as their owner; sets ``step.answered_s``."""
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        sessions = producer.recent_sessions(span=4_000, count=16)
        if sessions and answered_by(owner, sessions, only_owner):
            step.answered_s = (wall_ms() - step.at_ms) / 1000.0
            return
        time.sleep(0.5)


def rebalance_under_load(
    space: AppSpace,
    clicks: list[dict[str, Any]],
    workdir: Path,
    *,
    rate: float,
    phase_s: float,
    answer_bound_s: float = 120.0,
    log_level: str = "warn",
) -> LoadRun:
    """Worker A alone for ``phase_s``; then B joins; ``phase_s`` after that B is
    SIGKILLed; ``phase_s`` later B starts again on its data directory; the producer
    stops ``phase_s`` after that. ``clicks`` must last that long (more than
    ``4 * phase_s * rate``: each step's own wait lengthens its phase); what was sent
    of them is judged. The space's topics must exist."""
    first, second = space.worker(workdir / "a"), space.worker(workdir / "b")
    first.log_level = second.log_level = log_level
    alerts = TopicReader(space.bootstrap, space.topics["alerts"])
    verdicts = TopicReader(space.bootstrap, space.topics["verdicts"])
    producer = PacedProducer(space.bootstrap, space.topics["clicks"], clicks, rate)
    steps: list[Step] = []

    def took(step: Step) -> None:
        at = (step.at_ms - steps[0].at_ms) / 1000.0
        answered = "" if step.answered_s is None else f", answered after {step.answered_s:.1f} s"
        print(f"  {step.name} at {at:.0f} s{answered}", flush=True)

    try:
        first.start()
        first.wait_ready(120)
        assert wait_for(lambda: input_partitions(first, space), timeout=90), (
            "the first worker never got its partitions"
        )
        for reader in (alerts, verdicts):
            reader.start()
            assert reader.ready.wait(60), f"{reader.topic}: the reader never joined"
        sent_from = time.perf_counter()
        producer.start()
        steps.append(Step("steady (1 worker)", wall_ms()))

        def wait_phase(since: Step) -> None:
            left = phase_s - (wall_ms() - since.at_ms) / 1000.0
            if left > 0:
                time.sleep(left)

        def group_lag(*workers: WorkerProcess) -> float | None:
            lags = [metric(w, "fraudapp_consumer_lag") for w in workers]
            return None if None in lags else sum(lag for lag in lags if lag is not None)

        def start_second(name: str) -> None:
            """B starts (joins, or comes back on its data directory) and answers."""
            steps.append(Step(name, wall_ms(), lag=group_lag(first)))
            second.start()
            second.wait_ready(120)
            time_to_answer(steps[-1], second, producer, False, answer_bound_s)
            took(steps[-1])
            wait_phase(steps[-1])

        wait_phase(steps[-1])
        start_second("second worker joins")

        assert second.proc is not None
        steps.append(Step("second worker SIGKILLed", wall_ms(), lag=group_lag(first, second)))
        os.kill(second.proc.pid, signal.SIGKILL)
        second.proc.wait(timeout=10)
        time_to_answer(steps[-1], first, producer, True, answer_bound_s)
        took(steps[-1])
        wait_phase(steps[-1])
        # The survivor re-reads what the dead worker had not committed: let it commit
        # past everything there was when it took over (its lag gauge can read low
        # before it has even fetched them), so that what is handled again after the
        # restart is the restart's.
        committed_past(space, time.monotonic() + 90)

        start_second("second worker restarts")
        owning = sum(1 for w in (first, second) if input_partitions(w, space))
        ran_out = not producer.is_alive()
        producer.halt.set()
        producer.join(timeout=60)
        if producer.error:
            raise producer.error
        clicks = clicks[: producer.count]
        sent_s = time.perf_counter() - sent_from
        drain_from = time.perf_counter()
        wait_for(
            lambda: set(producer.sent) <= {v["click_id"] for _, v in verdicts.records},
            timeout=300,
            interval=1.0,
        )
        drain_s = time.perf_counter() - drain_from
        for reader in (alerts, verdicts):
            reader.stop()
    finally:
        alerts.finish.set()
        verdicts.finish.set()
        for worker in (second, first):
            worker.stop()

    def phase_at(ms: float) -> Step:
        return [s for s in steps if s.at_ms <= ms][-1]

    for sent_ms in producer.sent.values():
        phase_at(sent_ms).sent += 1
    first_arrival: dict[str, tuple[float, dict[str, Any]]] = {}
    for arrived, alert in alerts.records:
        first_arrival.setdefault(alert["alert_id"], (arrived, alert))
    for arrived, alert in first_arrival.values():
        click_id = alert.get("click_id")
        if click_id not in producer.sent:
            continue  # not a click's alert
        sent = producer.sent[click_id]
        phase_at(sent).latencies.append((alert["rule"], arrived - sent))

    found: dict[str, set[str]] = {}
    for _, alert in first_arrival.values():
        found.setdefault(alert["rule"], set()).add(alert.get("click_id", ""))
    wanted = {
        "click_burst": fraudulent_click_ids(clicks),
        "stacked_ads": oracle.stacked_click_ids(clicks),
        "rate_limit": oracle.over_limit_click_ids(clicks),
    }
    listed = oracle.blocklisted_click_ids(clicks, tables_dir() / "blocklist")
    # A click's verdicts beyond the copies the producer sent were handled again; the
    # phase is the one the extra copy arrived in (when it was handled again).
    copies_sent = Counter(c["click_id"] for c in clicks)
    seen: Counter[str] = Counter()
    for arrived, verdict in verdicts.records:
        seen[verdict["click_id"]] += 1
        if seen[verdict["click_id"]] > copies_sent[verdict["click_id"]]:
            phase_at(arrived).rehandled += 1
    return LoadRun(
        steps=steps,
        clicks=len(clicks),
        sent_s=sent_s,
        ran_out=ran_out,
        drain_s=drain_s,
        missing={r: len(ids - found.get(r, set())) for r, ids in wanted.items()},
        unwanted={r: len(found.get(r, set()) - ids) for r, ids in wanted.items()},
        blocklist_missing=len(listed - found.get("ip_blocklist", set())),
        alerts=len(alerts.records),
        distinct_alerts=len(first_arrival),
        clicks_without_verdict=len(set(copies_sent) - set(seen)),
        owners_after_restart=owning,
    )


def input_partitions(worker: WorkerProcess, space: AppSpace) -> int:
    """How many partitions of the clicks topic ``worker`` reads (its ``/watermarks``
    sources): ``/health``'s assigned partitions count the global tables' topics too,
    which every worker reads, so they would hide a worker left with no input."""
    try:
        status, body = worker.get("/watermarks", timeout=5)
    except OSError:
        return 0
    if status != 200 or not isinstance(body, dict):
        return 0
    prefix = space.topics["clicks"] + "["
    return sum(1 for name in body.get("sources", {}) if name.startswith(prefix))


def committed_past(space: AppSpace, deadline: float) -> bool:
    """Wait (until ``deadline``, monotonic) for the group to commit, on every partition
    of the clicks topic and of the click stages' internal topics, at least the end
    offset that partition has now; whether it did. (Not the reference topics: the
    global tables read them outside the group's commits, so theirs need not move.)"""

    def clicks_path(tp: Any) -> bool:
        return tp.topic == space.topics["clicks"] or tp.topic.startswith(f"{space.name}-clicks-by-")

    ends = {tp: end for tp, end in group_offsets(space)[1].items() if clicks_path(tp)}
    while time.monotonic() < deadline:
        committed = group_offsets(space)[0]
        if all(committed.get(tp, 0) >= end for tp, end in ends.items()):
            return True
        time.sleep(0.5)
    return False


TABLE_HEAD = [
    "| phase | alerts | p50 ms | p99 ms | max ms | lag at the step | new owner answered"
    " | clicks handled again |",
    "|---|---|---|---|---|---|---|---|",
]


def table(run: LoadRun) -> list[str]:
    """The run's markdown rows (after :data:`TABLE_HEAD`): one per phase."""
    rows = []
    for step in run.steps:
        p50, p99, top = step.quantiles()
        answered = (
            "—"
            if step is run.steps[0]
            else ("never" if step.answered_s is None else f"{step.answered_s:.1f} s")
        )
        lag = "—" if step.lag is None else f"{step.lag:,.0f}"
        rows.append(
            f"| {step.name} | {len(step.latencies):,} | {p50:,.0f} | {p99:,.0f}"
            f" | {top:,.0f} | {lag} | {answered} | {step.rehandled:,} |"
        )
    return rows


def rules_table(run: LoadRun) -> list[str]:
    """Markdown table of each rule's alert latency per phase (p50 / p99 ms): which
    checks answer on arrival and which wait for the watermark, and how each step
    moves them."""
    rules = sorted({rule for step in run.steps for rule, _ in step.latencies})
    head = "| rule | " + " | ".join(s.name for s in run.steps) + " |"
    rows = [head, "|---|" + "---|" * len(run.steps)]
    for rule in rules:
        cells = []
        for step in run.steps:
            p50, p99, _ = step.quantiles(rule)
            cells.append("—" if p50 != p50 else f"{p50:,.0f} / {p99:,.0f}")
        rows.append(f"| {rule} | " + " | ".join(cells) + " |")
    return rows
