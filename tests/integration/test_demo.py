"""``fraudapp demo`` as a user runs it: every kind of alert appears, and the cases
they make: over two minutes of its traffic, case records are at most 5 % of the
alerts, and every alert names the one case it belongs to, which is on the cases
topic. Ctrl-C leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

from fraudapp.cli.procs import alive
from fraudapp.core.caseids import case_of
from fraudapp.engine import kafkaio

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


def get_json(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


#: The demo prints how many case records the alerts made every 30 s of its traffic.
SUMMARY = re.compile(r"^CASES .*: (\d+) alerts made (\d+) case records")


def test_demo_prints_alerts_and_cases_and_ctrl_c_stops_everything(tmp_path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "fraudapp", "demo", "--broker", "kafka"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        assert demo.stdout is not None
        summaries: list[tuple[int, int]] = []
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if found := SUMMARY.match(line):
                summaries.append((int(found.group(1)), int(found.group(2))))
            # Two minutes of traffic: the fourth summary.
            if {ln.split(":")[0] for ln in lines} >= ALL_ALERTS and len(summaries) >= 4:
                break
        output = "\n".join(lines)
        assert {ln.split(":")[0] for ln in lines} >= ALL_ALERTS, output
        assert len(summaries) >= 4, output
        alerts, records = summaries[3]
        print(f"\ndemo, two minutes: {alerts} alerts, {records} case records")
        assert alerts > 500 and records <= 0.05 * alerts, output
        assert [ln for ln in lines if ln.startswith("CASE opened")], output
        atm = [line for line in lines if line.startswith("ALERT atm_impossible_travel")]
        assert atm and "km/h" in atm[0] and "/accounts/" in atm[0], output
        assert "Apache Kafka" in output and "/sessions/" in output
        bootstrap = re.search(r"broker\s+(\S+) \(pid", output).group(1)
        url = re.search(r"dashboard (http://127\.0\.0\.1:\d+)/", output).group(1)
        token = re.search(r"tokens\s+API (\S+)", output).group(1)
        read = kafkaio.consume_json(bootstrap, ["alerts"], until=alerts, stall_s=10.0)
        named = Counter()
        for alert in asyncio.run(read)["alerts"]:
            assert alert["case_id"] == case_of(alert)
            named[alert["case_id"]] += 1
        # Each alert's case holds it: the cases count at least the alerts naming them.
        for cid, count in named.items():
            case = get_json(f"{url}/cases/{cid}", token)["case"]
            assert case["alert_count"] >= count, (cid, case["alert_count"], count)
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
