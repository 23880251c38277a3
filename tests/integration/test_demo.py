"""``fraudapp demo`` as a user runs it: every kind of alert appears, Ctrl-C leaves
nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from fraudapp.cli.procs import alive

RULES = (
    "click_burst",
    "atm_impossible_travel",
    "stacked_ads",
    "rate_limit",
    "ip_blocklist",
    "heavy_hitter",
    "suspicious_location",
)
ALL_ALERTS = {f"ALERT {rule}" for rule in RULES}


def test_demo_prints_alerts_and_ctrl_c_stops_everything(tmp_path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "fraudapp", "demo", "--broker", "kafka", "--rate", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        assert demo.stdout is not None
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if {ln.split(":")[0] for ln in lines} >= ALL_ALERTS:
                break
        output = "\n".join(lines)
        assert {ln.split(":")[0] for ln in lines} >= ALL_ALERTS, output
        atm = [line for line in lines if line.startswith("ALERT atm_impossible_travel")]
        assert atm and "km/h" in atm[0] and "/accounts/" in atm[0], output
        assert "Apache Kafka" in output and "/sessions/" in output
        broker_pid = int(re.search(r"broker .* \(pid (\d+)\)", output).group(1))
        worker_pid = int(re.search(r"worker\s+pid (\d+)", output).group(1))
        ready = float(re.search(r"ready in ([\d.]+) s", output).group(1))
        print(f"\ndemo ready in {ready:.1f} s")
        assert alive(broker_pid) and alive(worker_pid)
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        assert demo.returncode == 0, rest
        assert "stopped: worker and broker are down." in rest
        assert not alive(broker_pid) and not alive(worker_pid)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
