"""HTTP plumbing shared by the domain views: key routing, JSON errors, health.

Keyed views are answered by the worker that owns the key's partition; any other
worker forwards the request there. fraudapp computes the partition itself (the same
murmur2 as the source topics) and asks faust's assignor who holds it, rather than
using faust's ``table_route``, which needs the producer's metadata for the changelog
topic warmed first and raises a bare KeyError while a rebalance is in flight.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
from aiohttp import web
from faust.web import Request, Response, View
from yarl import URL

from fraudapp.app import app, settings
from fraudapp.core.partitioning import partition_for
from fraudapp.engine import consumerstate
from fraudapp.engine.httpauth import COOKIE

STATIC = Path(__file__).parent / "static"
FORWARDED_HEADER = "X-Fraudapp-Forwarded"


#: The machine-readable reason of an error, by status, where the view names none.
_REASONS = {400: "bad_request", 404: "not_found", 503: "not_ready"}


def json_error(view: View, status: int, message: str, **extra: Any) -> Response:
    """Every error the API gives: JSON with a message and a machine-readable
    ``reason``, never a stack trace."""
    extra.setdefault("reason", _REASONS.get(status, "error"))
    return view.json({"error": message, **extra}, status=status)


def owner_of(table: faust.Table, key: str) -> tuple[int, str | None]:
    """The key's partition and the URL of the worker that holds it (None if nobody yet)."""
    partition = partition_for(key.encode("utf-8"), settings.partitions)
    topic = table.changelog_topic.get_topic_name()
    for url, topics in app.router.table_metadata(table.name).items():
        if partition in topics.get(topic, ()):
            return partition, str(url)
    return partition, None


def _same_worker(url: str) -> bool:
    return url.rstrip("/") == str(app.conf.canonical_url).rstrip("/")


async def routed(
    view: View,
    request: Request,
    table: faust.Table,
    key: str,
    answer: Callable[[int], Awaitable[Response]],
) -> Response:
    """Answer for ``key`` here if this worker owns it, else forward to the owner.

    A worker that is not ready (see :func:`is_ready`: e.g. it cannot reach the broker)
    answers 503 with the reason instead of a snapshot it cannot vouch for."""
    partition, owner = owner_of(table, key)
    ready, info = is_ready()
    if not ready:
        return json_error(view, 503, info["reason"], partition=partition)
    if owner is None:
        return json_error(
            view,
            503,
            "no worker holds this key's partition yet (starting or rebalancing)",
            partition=partition,
        )
    if _same_worker(owner):
        return await answer(partition)
    if request.headers.get(FORWARDED_HEADER):
        return json_error(view, 503, "partition ownership is moving; retry", partition=partition)
    owner_url = URL(owner)
    target = (
        request.url.with_scheme(owner_url.scheme or "http")
        .with_host(owner_url.host or "127.0.0.1")
        .with_port(owner_url.port)
    )
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    headers[FORWARDED_HEADER] = "1"
    try:
        async with app.http_client.get(target, headers=headers) as response:
            body = await response.read()
            return view.bytes(body, content_type=response.content_type, status=response.status)
    except Exception as exc:  # the owner died or is unreachable: say so, don't crash
        return json_error(view, 503, f"owner {owner} did not answer: {exc}", partition=partition)


def broker_connected() -> bool:
    """Whether the consumer is in touch with the broker (its group coordinator is
    known: :func:`fraudapp.engine.consumerstate.coordinator_known`). Only the consumer
    is asked: it heartbeats all the time, while an idle producer notices nothing until
    it sends."""
    return consumerstate.coordinator_known(app.consumer if app.consumer else None)


def is_ready() -> tuple[bool, dict[str, Any]]:
    """Ready = partitions assigned, table recovery done, not rebalancing, and the
    consumer in touch with the broker. ``info["reason"]`` says why not, when not."""
    assignment = app.consumer.assignment() if app.consumer else set()
    recovery_done = app.tables.recovery.completed.is_set()
    connected = broker_connected()
    sources = {settings.topics.clicks, settings.topics.atm_txns}
    info: dict[str, Any] = {
        "rebalancing": bool(app.rebalancing),
        "recovery_completed": recovery_done,
        "assigned_partitions": len(assignment),
        # The input topics' partitions alone: every worker is also assigned every
        # partition of the global tables' topics, which would hide one left with no
        # input (faust-streaming #93, docs/operations.md).
        "input_partitions": sum(1 for tp in assignment if tp.topic in sources),
        "broker_connected": connected,
        "url": str(app.conf.canonical_url),
    }
    if not assignment:
        info["reason"] = "no partitions assigned yet (starting or rebalancing)"
    elif not connected:
        info["reason"] = "the broker cannot be reached (the consumer lost its group coordinator)"
    elif app.rebalancing:
        info["reason"] = "rebalancing"
    elif not recovery_done:
        info["reason"] = "recovering tables from their changelogs"
    return "reason" not in info, info


@app.page("/health")
class Health(View):
    """Liveness and readiness for load balancers and tests; needs no token."""

    async def get(self, request: Request) -> Response:
        ready, info = is_ready()
        if ready:
            status = "ready"
        elif info["assigned_partitions"] and not info["broker_connected"]:
            status = "broker_unreachable"
        else:
            status = "starting"
        return self.json({"status": status, **info}, status=200 if ready else 503)


def page(view: View, request: Request, filename: str) -> Response:
    """An HTML page; opened as ``?access_token=…`` (already checked by the token
    middleware), it answers 303 to the bare path with the token in an HttpOnly,
    SameSite=Strict cookie, so the token leaves the address bar and history."""
    token = request.query.get("access_token")
    if token:
        response = web.Response(status=303, headers={"Location": request.path})
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure
        )
        return response
    return view.html((STATIC / filename).read_text(encoding="utf-8"))


@app.page("/")
class Index(View):
    """The seed's link-click app: ad links whose clicks are posted to ``/clicks``."""

    async def get(self, request: Request) -> Response:
        return page(self, request, "index.html")
