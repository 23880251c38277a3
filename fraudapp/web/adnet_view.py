"""HTTP for the ad-network checks: a campaign's heavy hitters from any worker."""

from __future__ import annotations

from faust.web import Request, Response, View

from fraudapp.adnet.agents import campaign_partitions, campaign_table, heavy_rule
from fraudapp.adnet.heavy import KINDS
from fraudapp.app import app
from fraudapp.web import json_error, routed

MAX_K = 100


@app.page("/campaigns/{campaign_id}/top")
class CampaignTop(View):
    """``GET /campaigns/{id}/top?k=10``: the top IPs and devices of the campaign over
    the trailing window ending at its newest click, with each count's bounds."""

    async def get(self, request: Request, campaign_id: str) -> Response:
        raw_k = request.query.get("k", "10")
        try:
            k = int(raw_k)
        except ValueError:
            return json_error(self, 400, f"k={raw_k!r} is not a whole number")
        if not 1 <= k <= MAX_K:
            return json_error(self, 400, f"k must lie between 1 and {MAX_K}")

        async def answer(partition: int) -> Response:
            hitters = campaign_partitions[partition].campaigns.get(campaign_id)
            latest = None if hitters is None else hitters.latest_time()
            if hitters is None or latest is None:
                return json_error(
                    self,
                    404,
                    f"no clicks of campaign {campaign_id!r} within the last"
                    f" {heavy_rule.window_ms} ms of event time",
                    partition=partition,
                )
            return self.json(
                {
                    "campaign_id": campaign_id,
                    "window_ms": heavy_rule.window_ms,
                    "window_end": latest,
                    "clicks": hitters.total(latest),
                    **{
                        kind: [
                            {
                                "source": item.item,
                                "clicks": item.estimate,
                                "lower_bound": item.lower_bound,
                                "upper_bound": item.upper_bound,
                            }
                            for item in hitters.top(kind, k, latest)
                        ]
                        for kind in KINDS
                    },
                    "partition": partition,
                    "served_by": str(app.conf.canonical_url),
                }
            )

        return await routed(self, request, campaign_table, campaign_id, answer)
