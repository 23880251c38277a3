"""The embedded brokers: real round trips, and no orphan process however they end."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time

import pytest

from fraudapp.cli.brokers import free_port
from fraudapp.cli.procs import alive
from fraudapp.engine import kafkaio


def round_trip(bootstrap: str) -> list[dict]:
    async def go() -> list[dict]:
        await kafkaio.ensure_topics(bootstrap, ["rt"], 1)
        await kafkaio.produce_json(bootstrap, "rt", [("k", {"n": i}) for i in range(5)])
        return (await kafkaio.consume_json(bootstrap, ["rt"], until=5, timeout_s=60))["rt"]

    return asyncio.run(go())


def test_kafka_round_trip(kafka_broker) -> None:
    assert round_trip(kafka_broker.bootstrap) == [{"n": i} for i in range(5)]


def test_tansu_round_trip(tansu_broker) -> None:
    assert round_trip(tansu_broker.bootstrap) == [{"n": i} for i in range(5)]


def start_foreground(kind: str) -> tuple[subprocess.Popen[str], int]:
    """``fraudapp broker`` in a child; returns it and the broker's own pid."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudapp", "broker", "--kind", kind, "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"ready at 127\.0\.0\.1:\d+ .*pid=(\d+)", line)
    assert match, line + proc.stdout.read() if proc.poll() is not None else line
    return proc, int(match.group(1))


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


@pytest.mark.parametrize("kind", ["kafka", "tansu"])
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_no_orphan_broker(kind: str, how: signal.Signals) -> None:
    proc, broker_pid = start_foreground(kind)
    try:
        assert alive(broker_pid)
        proc.send_signal(how)
        proc.wait(30)
        if how != signal.SIGKILL:
            assert proc.returncode == 0
        assert wait_gone(broker_pid), f"{kind} broker {broker_pid} outlived its parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_topics_command_creates_and_refuses_a_partition_mismatch(kafka_broker) -> None:
    """`fraudapp topics` creates every topic with FRAUDAPP_PARTITIONS partitions, and
    fails loudly on an existing topic with another count (keyed state would go astray)."""
    import os
    import uuid

    prefix = f"topics-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "BROKER_URL": kafka_broker.bootstrap,
        "FRAUDAPP_PARTITIONS": "4",
        **{
            var: f"{prefix}-{suffix}"
            for var, suffix in [
                ("CLICKS_TOPIC", "clicks"),
                ("CLICK_VERDICTS_TOPIC", "verdicts"),
                ("ALERTS_TOPIC", "alerts"),
                ("DEAD_LETTER_TOPIC", "dead"),
                ("ATM_TXNS_TOPIC", "atm"),
                ("ACCOUNTS_TOPIC", "accounts"),
                ("IP_BLOCKLIST_TOPIC", "blocklist"),
            ]
        },
    }
    command = [sys.executable, "-m", "fraudapp", "topics"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert f"{prefix}-clicks: created (4 partitions)" in first.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and f"{prefix}-alerts: exists (4 partitions)" in again.stdout
    other = {**env, "FRAUDAPP_PARTITIONS": "8"}
    wrong = subprocess.run(command, env=other, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2
    assert "FRAUDAPP_PARTITIONS=8" in wrong.stderr and "Traceback" not in wrong.stderr
