"""Cases over HTTP: the list, one case with its alerts, and snoozes.

``GET /cases`` is answered from the ``cases`` topic, which every worker reads whole
(a plain consumer outside the group, like the dashboard's alert feed): the cases as
their last transition left them, the same on every worker. ``GET /cases/{id}`` is
answered by the worker that owns the case's partition (any other forwards the
request), from the case table itself, so its count is live between transitions.
Snoozes are written by any worker (:mod:`fraudapp.live.snoozes`).
"""

from __future__ import annotations

from typing import Any

import orjson
from faust.web import Request, Response, View

from fraudapp.app import app, settings
from fraudapp.core.alerts import now_ms
from fraudapp.core.badinput import BadInput
from fraudapp.core.caseids import is_case_id
from fraudapp.core.snooze import SnoozeError, parse_duration, snooze_record
from fraudapp.engine import kafkaio
from fraudapp.live import snoozes
from fraudapp.live.cases import case_table, lookup
from fraudapp.web import json_error, routed
from fraudapp.web.feed import Listeners, TopicTail

MAX_ID = 256
#: At most this many cases per answer (``?limit=``).
MAX_LIMIT = 1000
STATUSES = ("open", "resolved", "all")


class CaseBoard(Listeners):
    """Every case as the ``cases`` topic last said, and who wants to hear of changes."""

    def __init__(self) -> None:
        super().__init__()
        self.cases: dict[str, dict[str, Any]] = {}

    def deliver(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        for key, value in records:
            if key is None:
                continue
            case_id = key.decode("utf-8", "replace")
            if value is None:
                self.cases.pop(case_id, None)
                update: dict[str, Any] = {"case_id": case_id, "transition": "expired"}
            else:
                try:
                    update = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(update, dict):
                    continue
                self.cases[case_id] = update
            self.publish(update)

    def listing(
        self, status: str = "open", rule: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Newest activity first."""
        chosen = [
            case
            for case in self.cases.values()
            if (status == "all" or case.get("status") == status)
            and (rule is None or case.get("rule") == rule)
        ]
        chosen.sort(key=lambda case: (case.get("last_seen") or 0, case["case_id"]), reverse=True)
        return chosen[:limit]


board = CaseBoard()
case_tail = TopicTail(
    lambda: kafkaio.bootstrap_of(settings.broker_url),
    settings.topics.cases,
    board.deliver,
    replay=2**62,  # all of it: a compacted topic holds one record per live case
    keyed=True,
)
app.service(case_tail)


def _with_snooze(case: dict[str, Any]) -> dict[str, Any]:
    snooze = snoozes.snooze_of(case["case_id"])
    return {**case, "snooze": snooze, "snoozed": snoozes.active(case["case_id"]) is not None}


@app.page("/cases")
class Cases(View):
    """The cases, open ones by default (``?status=open|resolved|all&rule=R&limit=N``)."""

    async def get(self, request: Request) -> Response:
        status = request.query.get("status", "open")
        if status not in STATUSES:
            return json_error(self, 400, f"status is one of {STATUSES}, not {status!r}")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return json_error(self, 400, "limit must be a whole number")
        if not 1 <= limit <= MAX_LIMIT:
            return json_error(self, 400, f"limit is 1 to {MAX_LIMIT}")
        try:
            await case_tail.caught_up()
        except TimeoutError:
            return json_error(self, 503, "the cases topic cannot be read yet; retry")
        cases = board.listing(status, request.query.get("rule"), limit)
        return self.json(
            {
                "cases": [_with_snooze(case) for case in cases],
                "total": len(board.cases),
                "served_by": str(app.conf.canonical_url),
            }
        )


@app.page("/cases/{case_id}")
class CaseView(View):
    """One case, live from the worker that owns it, with its recent alerts and snooze."""

    async def get(self, request: Request, case_id: str) -> Response:
        if len(case_id) > MAX_ID or not is_case_id(case_id):
            return json_error(self, 400, f"not a case id: {case_id[:MAX_ID]!r}")

        async def answer(partition: int) -> Response:
            case = lookup(case_id)
            if case is None:
                return json_error(self, 404, f"no case {case_id!r}", partition=partition)
            return self.json(
                {
                    "case": _with_snooze(case),
                    "alerts": case.get("recent", []),
                    "partition": partition,
                    "served_by": str(app.conf.canonical_url),
                }
            )

        return await routed(self, request, case_table, case_id, answer)


async def _snooze(view: View, request: Request, rule: str | None, entity: str | None) -> Response:
    try:
        body = orjson.loads(await request.read() or b"{}")
        if not isinstance(body, dict):
            raise BadInput("not_object", "body must be one JSON object")
        rule = rule or body.get("rule")
        entity = entity or body.get("entity")
        record = snooze_record(
            rule=str(rule or ""),
            entity=str(entity or ""),
            for_ms=parse_duration(body.get("for", "1h")),
            now_ms=now_ms(),
            by=str(body.get("by") or "api"),
            reason=str(body.get("reason") or ""),
        )
    except orjson.JSONDecodeError as exc:
        return json_error(view, 400, f"body is not JSON: {exc}", reason="not_json")
    except BadInput as exc:
        return json_error(view, 400, exc.message, reason=exc.reason)
    except SnoozeError as exc:
        return json_error(view, 400, str(exc), reason="bad_snooze")
    await snoozes.take(record)
    return view.json({"snooze": record})


@app.page("/snoozes")
class SnoozeEntity(View):
    """``{"rule", "entity", "for": "1h", "reason", "by"}``: snooze a case by what it is about."""

    async def post(self, request: Request) -> Response:
        return await _snooze(self, request, None, None)


@app.page("/cases/{case_id}/snooze")
class SnoozeCase(View):
    """``{"for": "1h", "reason", "by"}``: snooze a case the list shows."""

    async def post(self, request: Request, case_id: str) -> Response:
        try:
            await case_tail.caught_up()
        except TimeoutError:
            return json_error(self, 503, "the cases topic cannot be read yet; retry")
        case = board.cases.get(case_id)
        if case is None:
            return json_error(self, 404, f"no case {case_id[:MAX_ID]!r} in the cases topic")
        return await _snooze(self, request, case["rule"], case["entity"])
