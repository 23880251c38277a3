"""Errors over real HTTP: always JSON with a reason, never a stack trace.

An unexpected exception inside a view must not reach the client as a traceback (it
tells an attacker about paths, versions and code); aiohttp's own refusals (unknown
path, wrong method, oversized body) must be JSON like the rest. Served by aiohttp on
loopback with the worker's own middleware list.
"""

from __future__ import annotations

import asyncio

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from fraudapp.core.settings import Settings
from fraudapp.engine.httperrors import MAX_REQUEST_BYTES, application_options

API, INGEST = "a" * 32, "i" * 32
SECRET = "/opt/secret/path.py line 42 password=hunter2"


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError(SECRET)


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await request.read())})


async def _exchange() -> list[tuple[int, str]]:
    settings = Settings.from_env({"FRAUDAPP_API_TOKEN": API, "FRAUDAPP_INGEST_TOKEN": INGEST})
    app = web.Application(**application_options(settings))  # type: ignore[arg-type]
    app.router.add_get("/boom", _boom)
    app.router.add_post("/clicks", _echo)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    api = {"Authorization": f"Bearer {API}"}
    ingest = {"Authorization": f"Bearer {INGEST}"}
    out = []
    try:
        async with ClientSession() as client:
            for method, path, headers, body in [
                ("GET", "/boom", api, None),
                ("GET", "/nowhere", api, None),
                ("DELETE", "/boom", api, None),
                ("POST", "/clicks", ingest, b"x" * (MAX_REQUEST_BYTES + 1)),
            ]:
                url = server.make_url(path)
                async with client.request(method, url, headers=headers, data=body) as response:
                    out.append((response.status, await response.text()))
    finally:
        await server.close()
    return out


def test_errors_are_json_without_stack_traces() -> None:
    answers = asyncio.run(_exchange())
    assert [status for status, _ in answers] == [500, 404, 405, 413]
    for _, text in answers:
        assert '"reason"' in text
        for leak in ("Traceback", 'File "', "RuntimeError", "hunter2", "site-packages"):
            assert leak not in text, text
