"""Sending alerts: the rule's version in force decides where each goes (``alerts``,
``shadow-alerts`` or nowhere); each one sent is indexed for the alerts view, and each
live one names its case and is folded into it (:mod:`fraudapp.live.cases`).

Records of any other kind leave through :mod:`fraudapp.live.send`.
"""

from __future__ import annotations

from typing import Any

from fraudapp.app import alerts_topic, output_topic, settings
from fraudapp.live import alertindex, cases, liverules, metrics
from fraudapp.live.send import raised_by, send_json

shadow_alerts_topic = output_topic(settings.topics.shadow_alerts)


async def send_alert(
    key: str | bytes, alert: dict[str, Any], received: float | None = None
) -> None:
    """Produce one alert and count it, with its latency from ``received`` (epoch s;
    default: when the record being handled was taken). The rule's version in force
    decides where it goes: ``alerts``, ``shadow-alerts`` (a candidate measured on real
    traffic, never notifying) or nowhere (paused)."""
    mode = liverules.route(alert)
    if mode == "live":
        topic = alerts_topic
        metrics.alert_sent(alert["rule"], received)
    elif mode == "shadow":
        topic = shadow_alerts_topic
    else:
        return
    await send_json(topic, key, alert)
    await alertindex.index(alert, topic.get_topic_name(), raised_by.get())
    if mode == "live":
        await cases.feed(alert)
