"""HTTP for analysts' labels: ``POST /labels``, ``GET``/``DELETE /labels/{id}`` and
``GET /labels/precision``.

A label names the rule version that raised what it labels, and the analyst need not
know it: this view asks the worker's own API (``GET /alerts/{id}``, or
``GET /cases/{id}`` for a case), which forwards to the worker holding the id, with
the caller's own credentials; when the id has left the alert index (it keeps the last
hour of event time) the request may say the version itself. The label is produced
to the compacted ``labels`` topic, keyed by the id, and every worker tallies it
(:mod:`fraudapp.live.labels`; docs/feedback.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from faust.web import Request, Response, View

from fraudapp.app import app, settings
from fraudapp.core.alerts import now_ms
from fraudapp.core.badinput import BadInput
from fraudapp.core.labels import LabelRequest, Target, record_of, request_of, target_of, version_of
from fraudapp.core.partitioning import partition_for
from fraudapp.live import labels
from fraudapp.web import json_error

#: How long the lookup of an alert's or a case's rule version may take.
LOOKUP_TIMEOUT_S = 15.0


class NotResolved(Exception):
    """The alert or case could not be asked about: ``status`` and ``reason`` to answer."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


async def resolve_version(request: Request, target: Target) -> int | None:
    """The version of the rule that raised the alert or case, asked of this worker's
    own API (which routes to the owner), with the caller's token or cookie; None when
    the API does not know the id."""
    path = "cases" if target.kind == "case" else "alerts"
    base = str(app.conf.canonical_url).rstrip("/")
    url = f"{base}/{path}/{quote(target.id, safe='')}"
    headers = {
        name: request.headers[name]
        for name in ("Authorization", "Cookie")
        if name in request.headers
    }
    try:
        async with app.http_client.get(
            url, headers=headers, timeout=aiohttp.ClientTimeout(total=LOOKUP_TIMEOUT_S)
        ) as response:
            status = response.status
            raw = await response.read()
    except Exception as exc:  # unreachable, timed out: say so, never a stack trace
        raise NotResolved(503, "lookup_failed", f"could not look up {target.id}: {exc}") from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = {}
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        reason = body.get("reason") if isinstance(body, dict) else None
        raise NotResolved(
            503 if status >= 500 else status,
            reason or "lookup_failed",
            f"could not look up {target.id} ({status}): {error or 'no answer'}",
        )
    found = body.get("case" if target.kind == "case" else "alert")
    version = found.get("rule_version") if isinstance(found, dict) else None
    try:
        return version_of(version)
    except BadInput:
        return None


def _not_found(target: Target) -> str:
    if target.kind == "case":
        return f"no case {target.id!r} is known (GET /cases/{{id}} did not find it)"
    if not settings.alert_index_retention_ms:
        return f"the alert index is off (ALERT_INDEX_RETENTION_MS=0): {target.id!r} not found"
    return (
        f"no alert {target.id!r} in the alert index, which keeps the last"
        f" {settings.alert_index_retention_ms} ms of event time"
    )


async def _body(request: Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadInput("not_json", f"body is not JSON: {exc}") from None


async def _produce(some_id: str, value: bytes | None) -> dict[str, Any]:
    """The record (or tombstone) onto the labels topic, on its key's partition; where
    it went once the broker has it."""
    key = some_id.encode("utf-8")
    sent = await labels.labels_topic.send(
        key=key, value=value, partition=partition_for(key, settings.partitions)
    )
    metadata = await sent
    return {
        "topic": labels.labels_topic.get_topic_name(),
        "partition": metadata.partition,
        "offset": metadata.offset,
    }


@app.page("/labels")
class Labels(View):
    """Label an alert or a case as fraud or legit (the latest label per id counts)."""

    async def post(self, request: Request) -> Response:
        try:
            asked: LabelRequest = request_of(await _body(request))
        except BadInput as exc:
            return json_error(self, 400, exc.message, reason=exc.reason)
        target = asked.target
        try:
            version = await resolve_version(request, target)
        except NotResolved as exc:
            return json_error(self, exc.status, exc.message, reason=exc.reason)
        if version is None:
            if asked.rule_version is None:
                return json_error(
                    self,
                    404,
                    f'{_not_found(target)}; give "rule_version" to label it anyway',
                )
            version = asked.rule_version
        elif asked.rule_version is not None and asked.rule_version != version:
            return json_error(
                self,
                400,
                f"{target.id} was raised by {target.rule} version {version},"
                f" not {asked.rule_version}",
                reason="version_mismatch",
            )
        record = record_of(asked, version, now_ms())
        where = await _produce(target.id, orjson.dumps(record))
        return self.json({"label": record, **where})


@app.page("/labels/precision")
class Precision(View):
    """Each rule version's labels and precision, from this worker's tally (every
    worker reads every label)."""

    async def get(self, request: Request) -> Response:
        return self.json(
            {"precision": labels.current().rows(), "served_by": str(app.conf.canonical_url)}
        )


@app.page("/labels/{label_id}")
class OneLabel(View):
    """The label in force for an alert or case id; DELETE withdraws it (a tombstone)."""

    async def get(self, request: Request, label_id: str) -> Response:
        try:
            target = target_of(label_id)
        except BadInput as exc:
            return json_error(self, 400, exc.message, reason=exc.reason)
        record = labels.label(target.id)
        if record is None:
            return json_error(self, 404, f"{target.id} has no label")
        return self.json({"label": record, "served_by": str(app.conf.canonical_url)})

    async def delete(self, request: Request, label_id: str) -> Response:
        try:
            target = target_of(label_id)
        except BadInput as exc:
            return json_error(self, 400, exc.message, reason=exc.reason)
        previous = labels.label(target.id)
        where = await _produce(target.id, None)
        return self.json({"withdrawn": target.id, "previous": previous, **where})
