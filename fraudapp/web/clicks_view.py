"""HTTP for clicks: ingest (``POST /clicks``) and a session's state (``GET /sessions/{id}``)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from faust.web import Request, Response, View

from fraudapp.app import app, settings
from fraudapp.clicks.agents import clicks_topic, runner, sessions
from fraudapp.clicks.detect import RULE_NAME
from fraudapp.clicks.models import click_from_dict
from fraudapp.core.alerts import alert_id, now_ms
from fraudapp.core.badinput import BadInput
from fraudapp.core.keyed import decode_state
from fraudapp.core.partitioning import partition_for
from fraudapp.web import json_error, routed

#: A POST may carry this many clicks at most; larger batches belong on the topic.
MAX_CLICKS_PER_REQUEST = 1000


def describe_session(session_id: str, state: dict[str, Any]) -> dict[str, Any]:
    """A session's recent clicks per URL and the alerts raised on them."""
    urls: dict[str, list[dict[str, Any]]] = {}
    alerts: list[dict[str, Any]] = []
    for url, entries in sorted(state["urls"].items()):
        urls[url] = [
            {"click_id": click_id, "timestamp": ts, "fraud": bool(flag)}
            for ts, click_id, flag, *_ in entries
        ]
        alerts.extend(
            {
                "alert_id": alert_id(RULE_NAME, session_id, url, click_id),
                "rule": RULE_NAME,
                "click_id": click_id,
                "url": url,
                "event_time": ts,
            }
            for ts, click_id, flag, *_ in entries
            if flag
        )
    alerts.sort(key=lambda alert: (alert["event_time"], alert["click_id"]))
    return {"session_id": session_id, "urls": urls, "alerts": alerts}


def clicks_in(body: bytes) -> list[dict[str, Any]]:
    """Parse and validate a request body: one click object or an array of them.

    The whole request is refused if any click is bad, so a client never has to
    work out which half of its batch went through.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadInput("not_json", f"body is not JSON: {exc}") from None
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise BadInput("not_object", "body is an empty array")
    if len(items) > MAX_CLICKS_PER_REQUEST:
        raise BadInput("oversized", f"at most {MAX_CLICKS_PER_REQUEST} clicks per request")
    received = now_ms()
    clicks = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadInput("not_object", f"click #{index} is not a JSON object")
        item = dict(item)
        # An HTTP client may leave id and time to the ingest: stamp them on receipt.
        item.setdefault("click_id", str(uuid.uuid4()))
        item.setdefault("timestamp", received)
        try:
            click_from_dict(item)
        except BadInput as exc:
            raise BadInput(exc.reason, f"click #{index}: {exc.message}") from None
        clicks.append(item)
    return clicks


async def produce_clicks(clicks: list[dict[str, Any]]) -> None:
    """Onto the clicks topic, each on its session's partition."""
    for click in clicks:
        key = str(click["session_id"]).encode("utf-8")
        await clicks_topic.send(
            key=key,
            value=orjson.dumps(click),
            partition=partition_for(key, settings.partitions),
        )


@app.page("/clicks")
class ClickIngest(View):
    """Produce clicks to the clicks topic, each keyed and partitioned by its session."""

    async def post(self, request: Request) -> Response:
        body = await request.read()  # over MAX_REQUEST_BYTES: 413 from the middleware
        try:
            clicks = clicks_in(body)
        except BadInput as exc:
            return json_error(self, 400, exc.message, reason=exc.reason)
        await produce_clicks(clicks)
        return self.json(
            {"accepted": len(clicks), "click_ids": [c["click_id"] for c in clicks]}, status=202
        )


@app.page("/sessions/{session_id}")
class SessionState(View):
    """A session's recent clicks and alerts, from whichever worker owns it."""

    async def get(self, request: Request, session_id: str) -> Response:
        async def answer(partition: int) -> Response:
            state = decode_state(sessions.get(session_id.encode("utf-8")))
            if state is None:
                return json_error(
                    self,
                    404,
                    f"no clicks of session {session_id!r} within the last"
                    f" {runner.rule.retention_ms} ms of event time",
                    partition=partition,
                )
            return self.json(
                {
                    **describe_session(session_id, state),
                    "partition": partition,
                    "served_by": str(app.conf.canonical_url),
                }
            )

        return await routed(self, request, sessions, session_id, answer)
