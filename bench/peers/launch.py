"""The suite's side of a peer: its virtualenv, its process, its peak memory.

Quix Streams and Bytewax go into a virtualenv of their own (``bench/.venv-peers``),
made by the suite on first use, so their dependencies (confluent-kafka, their own
rocksdict or Rust runtime) can never change what fraudapp's venv resolves for faust.
A package that does not install is recorded with pip's reason, and its row of the
table says so instead of a figure.

Peak RSS is the kernel's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``),
sampled while the process runs: it only grows, so the last sample is the peak up to
a fraction of a second before the process ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fraudapp.cli import procs  # noqa: E402

PEERS_VENV = ROOT / "bench" / ".venv-peers"
#: What each framework peer needs; bounded to the major versions the peers are written for.
PEER_PACKAGES = {
    "quixstreams": ["quixstreams>=3.28,<4", "orjson"],
    "bytewax": ["bytewax>=0.21,<0.22", "orjson"],
}


def prepare_peers_venv(venv: Path = PEERS_VENV) -> dict[str, str | None]:
    """Make the peers' virtualenv and install each framework into it, once.

    Returns, per package, None when it imports, else why not (pip's last words)."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=False)
    status: dict[str, str | None] = {}
    for name, requirements in PEER_PACKAGES.items():
        if _imports(python, name):
            status[name] = None
            continue
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *requirements],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if result.returncode == 0 and _imports(python, name):
            status[name] = None
        else:
            lines = (result.stderr or result.stdout).strip().splitlines() or ["import failed"]
            status[name] = f"did not install: {lines[-1][:160]}"
    return status


def _imports(python: Path, module: str) -> bool:
    return (
        subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, check=False
        ).returncode
        == 0
    )


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found


class PeakRss:
    """Peak RSS (MB) of the processes doing the work while the ``with`` block runs.

    With ``pid`` that one process; without, every child of this process that is not
    in ``exclude`` (the broker): how a fraudapp worker started deep inside
    :func:`bench.throughput.run_clicks` is found without changing that function."""

    def __init__(
        self, pid: int | None = None, exclude: tuple[int | None, ...] = (), interval: float = 0.25
    ) -> None:
        self.pid = pid
        self.exclude = {p for p in exclude if p}
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def mb(self) -> float | None:
        return max(self.peaks.values()) / 1024 if self.peaks else None

    def _sample(self) -> None:
        while True:
            pids = [self.pid] if self.pid else _children(os.getpid())
            for pid in pids:
                if pid not in self.exclude:
                    kb = _vm_hwm_kb(pid)
                    if kb:
                        self.peaks[pid] = max(self.peaks.get(pid, 0), kb)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


class PeerError(RuntimeError):
    """The peer died, timed out or read fewer records than asked; carries its log's tail."""


@dataclass
class PeerRun:
    records: int
    elapsed_s: float
    alerts: set[str]
    rss_mb: float


def run_peer(
    python: Path,
    script: Path,
    *,
    bootstrap: str,
    topic: str,
    count: int,
    workdir: Path,
    app_id: str,
    timeout_s: float,
    extra: Sequence[str] = (),
) -> PeerRun:
    """Start one peer, wait for its result file, stop it (faust workers do not exit by
    themselves), and hand back what it found and how much memory it took."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "result.json"
    cmd = [
        str(python),
        str(script),
        *("--bootstrap", bootstrap, "--topic", topic, "--count", str(count)),
        *("--out", str(out), "--workdir", str(workdir), "--app-id", app_id),
        *extra,
    ]
    log = workdir / "peer.log"
    proc = procs.spawn(cmd, log_path=log, cwd=workdir)
    deadline = time.monotonic() + timeout_s
    try:
        with PeakRss(proc.pid) as rss:
            while not out.exists():
                if proc.poll() is not None and not out.exists():
                    raise PeerError(f"exited with {proc.returncode}: {procs.tail(log, 1)}")
                if time.monotonic() > deadline:
                    raise PeerError(f"no result after {timeout_s:.0f} s: {procs.tail(log, 1)}")
                time.sleep(0.1)
    finally:
        procs.stop(proc)
    result: dict[str, Any] = json.loads(out.read_text())
    if result["records"] != count:
        raise PeerError(f"read {result['records']} records of {count}")
    peak = max(rss.mb or 0.0, result["max_rss_mb"])
    return PeerRun(result["records"], result["elapsed_s"], set(result["alerts"]), peak)
