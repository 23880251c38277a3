"""Shared pieces of the integration tests: isolated apps on one broker, real workers."""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from fraudapp.cli.workerproc import WorkerProcess
from fraudapp.core.timeparse import parse_event_time
from fraudapp.engine import kafkaio

_counter = itertools.count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppSpace:
    """One test's own app id and topic names on the shared broker, so tests never
    read each other's records or consumer offsets."""

    def __init__(self, bootstrap: str, name: str, partitions: int = 4, **env: str) -> None:
        self.bootstrap = bootstrap
        self.name = f"{name}-{next(_counter)}-{uuid.uuid4().hex[:6]}"
        self.partitions = partitions
        self.topics = {
            "clicks": f"{self.name}-clicks",
            "verdicts": f"{self.name}-click-verdicts",
            "alerts": f"{self.name}-alerts",
            "dead": f"{self.name}-dead-letter",
            "atm": f"{self.name}-atm-txns",
            "accounts": f"{self.name}-accounts",
            "blocklist": f"{self.name}-ip-blocklist",
            "rules": f"{self.name}-rules",
            "shadow": f"{self.name}-shadow-alerts",
            "cases": f"{self.name}-cases",
            "labels": f"{self.name}-labels",
            "snoozes": f"{self.name}-snoozes",
            "actions": f"{self.name}-actions",
        }
        self.env = {
            "FRAUDAPP_APP_ID": self.name,
            "FRAUDAPP_PARTITIONS": str(partitions),
            "CLICKS_TOPIC": self.topics["clicks"],
            "CLICK_VERDICTS_TOPIC": self.topics["verdicts"],
            "ALERTS_TOPIC": self.topics["alerts"],
            "DEAD_LETTER_TOPIC": self.topics["dead"],
            "ATM_TXNS_TOPIC": self.topics["atm"],
            "ACCOUNTS_TOPIC": self.topics["accounts"],
            "IP_BLOCKLIST_TOPIC": self.topics["blocklist"],
            "RULES_TOPIC": self.topics["rules"],
            "SHADOW_ALERTS_TOPIC": self.topics["shadow"],
            "CASES_TOPIC": self.topics["cases"],
            "LABELS_TOPIC": self.topics["labels"],
            "SNOOZES_TOPIC": self.topics["snoozes"],
            "ACTIONS_TOPIC": self.topics["actions"],
            # Workers of one app share their tokens: a forwarded request keeps its own.
            "FRAUDAPP_API_TOKEN": secrets.token_urlsafe(24),
            "FRAUDAPP_INGEST_TOKEN": secrets.token_urlsafe(24),
            **env,
        }

    def create_topics(self) -> None:
        compacted = [
            self.topics[name]
            for name in ("accounts", "blocklist", "rules", "cases", "labels", "snoozes")
        ]
        plain = [name for name in self.topics.values() if name not in compacted]
        asyncio.run(kafkaio.ensure_topics(self.bootstrap, plain, self.partitions))
        asyncio.run(
            kafkaio.ensure_topics(self.bootstrap, compacted, self.partitions, compacted=True)
        )

    def worker(self, datadir: Path, **env: str) -> WorkerProcess:
        return WorkerProcess(
            broker_url=self.bootstrap,
            web_port=free_port(),
            datadir=datadir,
            env={**self.env, **env},
        )

    def produce(
        self, records: list[tuple[str | None, dict[str, Any]]], topic: str = "clicks"
    ) -> int:
        return asyncio.run(kafkaio.produce_json(self.bootstrap, self.topics[topic], records))

    def consume(
        self,
        *names: str,
        until: int | None = None,
        idle_s: float = 4.0,
        timeout_s: float = 240.0,
        isolation_level: str = "read_uncommitted",
        stall_s: float | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        out = asyncio.run(
            kafkaio.consume_json(
                self.bootstrap,
                [self.topics[n] for n in names],
                until=until,
                idle_s=idle_s,
                timeout_s=timeout_s,
                isolation_level=isolation_level,
                stall_s=stall_s,
            )
        )
        return {n: out[self.topics[n]] for n in names}


@contextmanager
def running(worker: WorkerProcess, timeout: float = 120.0) -> Iterator[WorkerProcess]:
    worker.start()
    try:
        worker.wait_ready(timeout)
        yield worker
    finally:
        worker.stop()


def as_oracle_row(txn: dict[str, Any]) -> dict[str, Any]:
    """A generated ATM transaction as fraudapp.atm.oracle.expected_pairs takes it."""
    return {
        "account_id": txn["account_id"],
        "transaction_id": txn["transaction_id"],
        "lat": float(txn["location"]["lat"]),
        "lon": float(txn["location"]["lon"]),
        "timestamp": parse_event_time(txn["timestamp"]),
    }


def wait_for(check: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """``check()``'s first truthy answer, or its last one after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def metric(worker: WorkerProcess, name: str) -> float | None:
    """The sum of one of the worker's /metrics series, None if it cannot say."""
    try:
        status, text = worker.get("/metrics", timeout=5)
    except OSError:
        return None
    if status != 200 or not isinstance(text, str):
        return None
    found = re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)
    return sum(float(v) for v in found) if found else None


def unsettled(worker: WorkerProcess) -> str:
    """Why a worker is not done, for an assertion's message: the partitions it has
    records left on, and its ``/watermarks`` (levels, what they wait on, what is held)."""
    try:
        status, text = worker.get("/metrics", timeout=5)
        series = r"^fraudapp_consumer_lag\{([^}]*)\} (\S+)$"
        lag = re.findall(series, text, re.M) if status == 200 else []
        left = [f"{labels} {value}" for labels, value in lag if float(value) > 0]
        status, marks = worker.get("/watermarks", timeout=5)
    except OSError as exc:
        return f"{worker.url}: {exc}"
    return f"{worker.url}: lag on {left}; /watermarks {status} {marks}"


def wait_until_idle(worker: WorkerProcess, timeout: float = 600.0) -> None:
    """No new verdict and no change in lag for a few seconds. (Under exactly-once the
    lag of a transactional topic stays at 1: its end offset is the commit marker.)"""
    deadline = time.monotonic() + timeout
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = (
            metric(worker, "fraudapp_verdicts_total") or 0.0,
            metric(worker, "fraudapp_consumer_lag"),
        )
        if now != last or now[1] is None:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > 8:
            return
        time.sleep(0.5)
    raise AssertionError("the worker never caught up")


def group_offsets(space: AppSpace) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The space's consumer group's committed offsets (the partitions it has committed)
    and those partitions' end offsets now."""
    return asyncio.run(_group_offsets(space.bootstrap, space.name))


async def _group_offsets(
    bootstrap: str, group: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    committed = {tp: meta.offset for tp, meta in found.items()}
    if not committed:
        return {}, {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(committed))
    finally:
        await consumer.stop()
    return committed, dict(ends)
