"""``GET /alerts/{alert_id}``: one alert with everything needed to judge it.

The alert itself carries the rule's evidence (the events by id and time, the counts
and shares computed, the threshold where the rule states one); the index adds the
topic it went to and the input record that raised it (topic and
``partition:offset``), and this view adds the rule's record when the version that
fired is still the one in force, so its parameters can be read beside the evidence.
"""

from __future__ import annotations

import orjson
from faust.web import Request, Response, View

from fraudapp.app import app, settings
from fraudapp.live import liverules
from fraudapp.live.alertindex import alert_index
from fraudapp.web import json_error, routed

MAX_ID = 256


@app.page("/alerts/{alert_id}")
class AlertExplained(View):
    """The alert, from the worker holding its id's partition of the index."""

    async def get(self, request: Request, alert_id: str) -> Response:
        if not settings.alert_index_retention_ms:
            return json_error(self, 404, "the alert index is off (ALERT_INDEX_RETENTION_MS=0)")
        if len(alert_id) > MAX_ID:
            return json_error(self, 400, f"an alert id is at most {MAX_ID} characters")

        async def answer(partition: int) -> Response:
            raw = alert_index.get(alert_id.encode("utf-8"))
            if raw is None:
                return json_error(
                    self,
                    404,
                    f"no alert {alert_id!r} in the index, which keeps the last"
                    f" {settings.alert_index_retention_ms} ms of event time",
                    partition=partition,
                )
            entry = orjson.loads(raw)
            alert = entry["alert"]
            record = liverules.current()[alert["rule"]]
            in_force = record.version == alert.get("rule_version")
            return self.json(
                {
                    **entry,
                    # The parameters the alert was judged by, while that version is in
                    # force; after a change, the record now in force and a flag.
                    "rule": record.as_dict(),
                    "rule_version_in_force": in_force,
                    "partition": partition,
                    "served_by": str(app.conf.canonical_url),
                }
            )

        return await routed(self, request, alert_index, alert_id, answer)
