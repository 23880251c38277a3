"""CPU time each process of a benchmark used while it was timed.

Why: on this 2-core machine the broker, the producing and reading client and the
workers share the cores, so "a second worker adds nothing" may mean the cores were
full rather than that the workers got in each other's way. The CPU seconds each
process used over the timed window, against the wall-clock seconds times the cores,
tell which. Read from Linux's ``/proc`` (no library reads another process's CPU
time more simply; ``psutil`` would be a new dependency for two fields).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name in parentheses may hold spaces: the fields follow it.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def own_cpu_seconds() -> float:
    """This process's CPU seconds (the benchmark's producing and reading client)."""
    times = os.times()
    return times.user + times.system


@dataclass
class CpuMeter:
    """CPU seconds of named processes (and of this one, as ``bench``) between
    :meth:`start` and :meth:`stop`."""

    pids: Mapping[str, int]
    #: Filled by :meth:`stop`: CPU seconds per name, and the wall-clock seconds.
    used: dict[str, float] = field(init=False, default_factory=dict)
    wall_s: float = field(init=False, default=0.0)
    _start: dict[str, float] = field(init=False, default_factory=dict)
    _started: float = field(init=False, default=0.0)

    def _now(self) -> dict[str, float]:
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["bench"] = own_cpu_seconds()
        return now

    def start(self) -> None:
        self._start = self._now()
        self._started = time.perf_counter()

    def stop(self) -> None:
        self.wall_s = time.perf_counter() - self._started
        end = self._now()
        self.used = {name: end[name] - self._start[name] for name in end}

    def share_of_machine(self) -> float:
        """CPU used by all the measured processes, as a share of every core's time."""
        cores = os.cpu_count() or 1
        return sum(self.used.values()) / (self.wall_s * cores) if self.wall_s else 0.0
