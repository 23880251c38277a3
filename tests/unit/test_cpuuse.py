"""The benchmarks' CPU meter reads what the kernel counts, for another process too."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.cpuuse import CpuMeter, cpu_seconds


def _burn(seconds: float) -> None:
    until = time.process_time() + seconds
    while time.process_time() < until:
        pass


def test_meter_counts_this_process_and_a_child() -> None:
    # A child that spins for 0.4 s of CPU, says so, then sleeps.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nu=time.process_time()+0.4\nwhile time.process_time()<u: pass\n"
            "print('done', flush=True)\ntime.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        meter = CpuMeter({"child": child.pid})
        own_before = cpu_seconds(os.getpid())
        meter.start()
        _burn(0.3)
        assert child.stdout is not None and child.stdout.readline() == "done\n"
        meter.stop()
        own = cpu_seconds(os.getpid()) - own_before
    finally:
        child.kill()
        child.wait()
    # This process, as the benchmark: what /proc says of it, to a clock tick or two.
    assert meter.used["bench"] >= 0.25 and abs(own - meter.used["bench"]) < 0.05
    assert 0.3 <= meter.used["child"] <= 0.7  # its spin, and its start-up if measured
    assert meter.wall_s >= 0.3
    # Both processes spun at once for part of the window: never more than the cores.
    assert 0 < meter.share_of_machine() <= 1.0


def test_cpu_seconds_grows_with_work() -> None:
    before = cpu_seconds(os.getpid())
    _burn(0.1)
    assert cpu_seconds(os.getpid()) - before >= 0.08
