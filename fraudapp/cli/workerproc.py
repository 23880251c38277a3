"""A faust worker of this app as a child process: what the demo and the tests run.

It is the real thing, ``python -m faust -A fraudapp.app worker``, configured only
through the environment as an operator would, with its web server on a loopback
port; readiness is its own ``/health`` answering 200 (partitions assigned, tables
recovered).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from subprocess import Popen
from typing import Any

from fraudapp.cli import procs


class WorkerError(RuntimeError):
    """The worker died or never became ready; the message carries its log's tail."""


class WorkerProcess:
    """One worker: start, wait until ready, ask it things over HTTP, stop."""

    def __init__(
        self,
        *,
        broker_url: str,
        web_port: int,
        datadir: Path,
        env: Mapping[str, str] | None = None,
        log_level: str = "info",
        faust_datadir: Path | None = None,
        code: Path | None = None,
    ) -> None:
        self.broker_url = broker_url if "://" in broker_url else f"kafka://{broker_url}"
        self.web_port = web_port
        self.datadir = Path(datadir)
        self.extra_env = dict(env or {})
        # Tokens the caller gave, else fresh ones: a worker refuses to start without.
        self.api_token = self.extra_env.setdefault("FRAUDAPP_API_TOKEN", secrets.token_urlsafe(24))
        self.ingest_token = self.extra_env.setdefault(
            "FRAUDAPP_INGEST_TOKEN", secrets.token_urlsafe(24)
        )
        self.log_level = log_level
        #: Given to faust's own ``-D`` flag, which wins over ``FRAUDAPP_DATADIR``.
        self.faust_datadir = faust_datadir
        #: Run fraudapp from this checkout instead of the installed one (the worker
        #: starts there: ``-m`` puts it first on the path); bench/ab.py compares two.
        self.code = code
        self.log_path = self.datadir / "worker.log"
        self.proc: Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            BROKER_URL=self.broker_url,
            WEB_PORT=str(self.web_port),
            WEB_BIND="127.0.0.1",
            WEB_HOST="127.0.0.1",
            FRAUDAPP_DATADIR=str(self.datadir / "state"),
        )
        env.update(self.extra_env)
        return env

    def start(self) -> WorkerProcess:
        self.datadir.mkdir(parents=True, exist_ok=True)
        flag = [] if self.faust_datadir is None else ["-D", str(self.faust_datadir)]
        cmd = [
            sys.executable,
            *("-m", "faust", "-A", "fraudapp.app", *flag),
            *("worker", "-l", self.log_level),
        ]
        self.proc = procs.spawn(cmd, env=self.environment(), log_path=self.log_path, cwd=self.code)
        return self

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise WorkerError(f"worker exited early:\n{procs.tail(self.log_path)}")
            try:
                status, body = self.get("/health")
                if status == 200:
                    return body
            except OSError:
                pass
            time.sleep(0.2)
        raise WorkerError(f"worker not ready after {timeout} s:\n{procs.tail(self.log_path)}")

    def get(
        self, path: str, timeout: float = 10.0, token: str | None | bool = True
    ) -> tuple[int, Any]:
        """GET a JSON view; returns (status, decoded body) for errors too."""
        return self.request("GET", path, timeout=timeout, token=token)

    def token_for(self, method: str, path: str) -> str:
        """The token this request needs: ingest for event writes, API otherwise."""
        writes = method == "POST" and (path.startswith("/clicks") or path.startswith("/simulate/"))
        return self.ingest_token if writes else self.api_token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float = 10.0,
        token: str | None | bool = True,
    ) -> tuple[int, Any]:
        """One request; ``token`` True sends the right token, a string sends that one,
        None or False sends none (to test refusals)."""
        headers = {"Content-Type": "application/json"}
        if token is True:
            token = self.token_for(method, path)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw = error.read()
            status = error.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def stop(self, timeout: float = 20.0) -> int | None:
        return procs.stop(self.proc, timeout) if self.proc else None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
