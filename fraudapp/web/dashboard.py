"""The dashboard: its page and assets, a server-sent event stream of alerts, per-rule
rates and open cases, and the simulator that sends one event and answers its verdict.

Server-sent events rather than a websocket: the page only listens, EventSource
reconnects by itself, and it is plain HTTP through any proxy. Everything the page
loads is served from ``/static`` by the worker itself (no CDN, no tile server).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web
from faust.web import Request, Response, View

from fraudapp.app import app, settings
from fraudapp.atm.agents import txns_topic
from fraudapp.atm.models import txn_from_dict
from fraudapp.core.alerts import now_ms
from fraudapp.core.badinput import BadInput
from fraudapp.core.partitioning import partition_for
from fraudapp.engine import kafkaio
from fraudapp.live import labels, snoozes
from fraudapp.live.cases import case_table, lookup
from fraudapp.web import STATIC, json_error, owner_of, page
from fraudapp.web.cases_view import board, case_tail
from fraudapp.web.clicks_view import clicks_in, produce_clicks
from fraudapp.web.feed import Feed, Listeners, TopicTail, Waiter

#: How long the simulator waits for its event's verdict before answering 504.
SIMULATE_TIMEOUT_S = 20.0
#: After the verdict, how long alerts raised on the way may still trickle in.
ALERT_GRACE_S = 0.5
#: Alerts replayed to a dashboard that connects, per partition of the alerts topic.
REPLAY_PER_PARTITION = 25
#: Open cases sent to a dashboard that connects, newest activity first.
CASES_ON_CONNECT = 500
#: Records of one kind written to a dashboard in one go.
CHUNK = 200


def _bootstrap() -> str:
    return kafkaio.bootstrap_of(settings.broker_url)


alerts = Feed(recent=REPLAY_PER_PARTITION * settings.partitions)
verdicts = Feed(recent=1)
alert_tail = TopicTail(
    _bootstrap, settings.topics.alerts, alerts.deliver, replay=REPLAY_PER_PARTITION
)
verdict_tail = TopicTail(_bootstrap, settings.topics.click_verdicts, verdicts.deliver)
app.service(alert_tail)
app.service(verdict_tail)


class Fanout(Listeners):
    """The records of a compacted topic, as ``{"id": key, "record": value or None}``,
    for whoever listens."""

    def deliver(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        for key, value in records:
            if key is None:
                continue
            record = None
            if value is not None:
                try:
                    record = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(record, dict):
                    continue
            self.publish({"id": key.decode("utf-8", "replace"), "record": record})


# Snoozes and labels taken from here on (by any dashboard, the CLI or the API), so
# every open dashboard shows them; what was in force before comes with each case.
snooze_feed, label_feed = Fanout(), Fanout()
snooze_tail = TopicTail(_bootstrap, settings.topics.snoozes, snooze_feed.deliver, keyed=True)
label_tail = TopicTail(_bootstrap, settings.topics.labels, label_feed.deliver, keyed=True)
app.service(snooze_tail)
app.service(label_tail)


@app.on_worker_init.connect
def _serve_static(sender: object = None, **kwargs: object) -> None:
    # aiohttp's static route: content types, ETags, no path escapes; behind the
    # token middleware like every route.
    app.web.add_static("/static/", STATIC)


@app.page("/dashboard")
class Dashboard(View):
    async def get(self, request: Request) -> Response:
        return page(self, request, "dashboard.html")


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    return record


def _live(case: dict[str, Any]) -> dict[str, Any]:
    """The case as its table holds it now, when this worker owns it: a record on the
    cases topic is as of its last transition, which may be minutes of alerts ago
    (the page counts from there). Another worker's case keeps its record."""
    _, owner = owner_of(case_table, case["case_id"])
    if owner is None or owner.rstrip("/") != str(app.conf.canonical_url).rstrip("/"):
        return case
    current = lookup(case["case_id"])
    return case if current is None else {**case, **current}


def _case(update: dict[str, Any]) -> dict[str, Any]:
    """A case as the dashboard gets it: with its last snooze and its label, if any."""
    if update.get("transition") == "expired":
        return update
    case_id = str(update.get("case_id", ""))
    return {**update, "snooze": snoozes.snooze_of(case_id), "label": labels.label(case_id)}


def _snooze(update: dict[str, Any]) -> dict[str, Any]:
    return update["record"] or {"case_id": update["id"], "until": 0}


def _label(update: dict[str, Any]) -> dict[str, Any]:
    return {"id": update["id"], "label": update["record"]}


@app.page("/dashboard/events")
class DashboardEvents(View):
    """``text/event-stream``: the recent alerts, then each new one (``alert``); the
    open cases, then each case as it changes (``case``; an expired one is
    ``{"case_id", "transition": "expired"}``); snoozes (``snooze``: the record) and
    labels (``label``: ``{"id", "label": record or null}``) as they are taken; and
    per-rule rates every second (``rates``)."""

    async def get(self, request: Request) -> Any:
        try:
            await asyncio.gather(
                alert_tail.ready(),
                case_tail.caught_up(),
                snooze_tail.ready(),
                label_tail.ready(),
            )
        except TimeoutError:
            return json_error(self, 503, "the alerts or cases topic cannot be read yet; retry")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # Subscribed before the snapshot is taken, with no await between: no change
        # falls in between (a change after the snapshot may come twice, harmlessly).
        feeds: dict[str, tuple[Any, Any]] = {
            "alert": (alerts, _identity),
            "case": (board, _case),
            "snooze": (snooze_feed, _snooze),
            "label": (label_feed, _label),
        }
        queues = {kind: feed.subscribe() for kind, (feed, _) in feeds.items()}
        open_cases = board.listing("open", None, CASES_ON_CONNECT)
        replay = list(alerts.recent)
        getters: dict[asyncio.Future[Any], str] = {}
        try:
            await response.write(b"retry: 2000\n\n")
            for start in range(0, len(open_cases), CHUNK):
                chunk = open_cases[start : start + CHUNK]
                await response.write(b"".join(_event("case", _case(_live(c))) for c in chunk))
            for alert in replay:
                await response.write(_event("alert", alert))
            getters = {asyncio.ensure_future(q.get()): kind for kind, q in queues.items()}
            next_rates = 0.0
            while True:
                if time.monotonic() >= next_rates:
                    await response.write(_event("rates", alerts.rates.snapshot()))
                    next_rates = time.monotonic() + 1.0
                done, _ = await asyncio.wait(
                    getters,
                    timeout=max(0.0, next_rates - time.monotonic()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                out = []
                for getter in done:
                    kind = getters.pop(getter)
                    queue, shape = queues[kind], feeds[kind][1]
                    records = [getter.result()]
                    while not queue.empty() and len(records) < CHUNK:
                        records.append(queue.get_nowait())
                    out.extend(_event(kind, shape(record)) for record in records)
                    getters[asyncio.ensure_future(queue.get())] = kind
                if out:
                    await response.write(b"".join(out))
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the browser went away
        finally:
            for getter in getters:
                getter.cancel()
            for kind, (feed, _) in feeds.items():
                feed.unsubscribe(queues[kind])
        return response


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadInput("not_json", f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadInput("not_object", "body must be one JSON object")
    return body


async def _collect(waiter: Waiter, *, until: asyncio.Event | None = None) -> None:
    """Wait for ``until`` (or the waiter's first record), then a short grace."""
    await asyncio.wait_for((until or waiter.arrived).wait(), SIMULATE_TIMEOUT_S)
    await asyncio.sleep(ALERT_GRACE_S)


def _unique(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({r.get("alert_id"): r for r in records}.values())


@app.page("/simulate/click")
class SimulateClick(View):
    """Send one click (fields as on the clicks topic; id and time filled in) and
    answer its verdict and the alerts that name it."""

    async def post(self, request: Request) -> Response:
        try:
            body = await _json_object(request)
            (click,) = clicks_in(orjson.dumps(body))
        except BadInput as exc:
            return json_error(self, 400, exc.message, reason=exc.reason)
        await asyncio.gather(alert_tail.ready(), verdict_tail.ready())
        verdict, found = Waiter(click["click_id"]), Waiter(click["click_id"])
        verdicts.waiters.add(verdict)
        alerts.waiters.add(found)
        try:
            await produce_clicks([click])
            await _collect(found, until=verdict.arrived)
        except TimeoutError:
            return json_error(
                self, 504, f"no verdict within {SIMULATE_TIMEOUT_S:g} s", reason="timeout"
            )
        finally:
            verdicts.waiters.discard(verdict)
            alerts.waiters.discard(found)
        return self.json(
            {"click": click, "verdict": verdict.found[0], "alerts": _unique(found.found)}
        )


@app.page("/simulate/transaction")
class SimulateTransaction(View):
    """Send one ATM transaction and answer the alerts it raised once its account
    shows it (the ATM rule writes no per-transaction verdict)."""

    async def post(self, request: Request) -> Response:
        try:
            body = await _json_object(request)
            body.setdefault("transaction_id", str(uuid.uuid4()))
            body.setdefault("timestamp", now_ms())
            body.setdefault("atm", "simulator")
            txn = txn_from_dict(body)
        except BadInput as exc:
            return json_error(self, 400, exc.message, reason=exc.reason)
        await alert_tail.ready()
        found = Waiter(txn.transaction_id)
        alerts.waiters.add(found)
        try:
            key = txn.account_id.encode("utf-8")
            await txns_topic.send(
                key=key,
                value=orjson.dumps(body),
                partition=partition_for(key, settings.partitions),
            )
            processed = asyncio.Event()
            watcher = asyncio.ensure_future(_watch_account(txn.account_id, body, processed))
            try:
                await _collect(found, until=processed)
            finally:
                watcher.cancel()
        except TimeoutError:
            return json_error(
                self,
                504,
                f"the transaction was not processed within {SIMULATE_TIMEOUT_S:g} s",
                reason="timeout",
            )
        finally:
            alerts.waiters.discard(found)
        return self.json({"transaction": body, "processed": True, "alerts": _unique(found.found)})


async def _watch_account(account_id: str, txn: dict[str, Any], processed: asyncio.Event) -> None:
    """Poll the account's view (from whichever worker owns it) until it lists ``txn``."""
    url = f"{str(app.conf.canonical_url).rstrip('/')}/accounts/{quote(account_id, safe='')}"
    headers = {"Authorization": f"Bearer {settings.api_token}"}
    while True:
        with contextlib.suppress(Exception):
            async with app.http_client.get(url, headers=headers) as response:
                if response.status == 200:
                    view = await response.json()
                    ids = {t["transaction_id"] for t in view.get("transactions", ())}
                    if txn["transaction_id"] in ids:
                        processed.set()
                        return
        await asyncio.sleep(0.2)
