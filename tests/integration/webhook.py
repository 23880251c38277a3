"""A real HTTP server for webhook tests, run in a thread: fails on purpose, records all."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

import orjson
from aiohttp import web


class FlakyWebhook:
    """Answers 503 to the first ``failures`` attempts of each notification, then 200;
    those about ``doomed`` accounts (a case keyed by it) always get 500. Records every
    request it saw."""

    def __init__(self, port: int, failures: int = 2, doomed: str = "doomed") -> None:
        self.port = port
        self.failures = failures
        self.doomed = doomed
        self.requests: list[dict[str, Any]] = []
        self.attempts: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        alert = orjson.loads(await request.read())
        key = request.headers.get("Idempotency-Key", "")
        self.attempts[key] += 1
        self.requests.append({"key": key, "alert": alert, "attempt": self.attempts[key]})
        if about(alert) == self.doomed:
            return web.Response(status=500)
        if self.attempts[key] <= self.failures:
            return web.Response(status=503)
        return web.json_response({"ok": True})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> FlakyWebhook:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def delivered(self) -> list[dict[str, Any]]:
        return [
            r["alert"]
            for r in self.requests
            if r["attempt"] > self.failures and about(r["alert"]) != self.doomed
        ]


def about(body: dict[str, Any]) -> Any:
    """What a notification is about: a case's key (an alert's account, formerly)."""
    return body.get("key", body.get("account_id"))
