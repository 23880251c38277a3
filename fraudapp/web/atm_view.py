"""HTTP for ATM fraud: an account's recent transactions, alerts and customer record."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from fraudapp.app import app
from fraudapp.atm.agents import accounts_state, runner
from fraudapp.atm.customers import customer
from fraudapp.atm.detect import RULE_NAME, pairs_in
from fraudapp.core.alerts import alert_id
from fraudapp.core.keyed import decode_state
from fraudapp.web import json_error, routed

TXN_FIELDS = ("timestamp", "transaction_id", "lat", "lon", "amount", "atm")


def describe_account(account_id: str, state: dict[str, Any] | None) -> dict[str, Any]:
    """Transactions still in window + lateness, the pairs among them, the customer."""
    txns = state["txns"] if state else []
    alerts = [
        {
            "alert_id": alert_id(RULE_NAME, account_id, p.t1[1], p.t2[1]),
            "rule": RULE_NAME,
            **p.evidence(),
        }
        for p in (pairs_in(account_id, state, runner.rule) if state else [])
    ]
    return {
        "account_id": account_id,
        # Entries may end with the delivery's origin, an internal detail: not shown.
        "transactions": [dict(zip(TXN_FIELDS, entry[:6], strict=True)) for entry in txns],
        "alerts": alerts,
        "customer": customer(account_id),
    }


@app.page("/accounts/{account_id}")
class AccountState(View):
    """Answered by the worker that owns the account's partition, whichever is asked."""

    async def get(self, request: Request, account_id: str) -> Response:
        async def answer(partition: int) -> Response:
            state = decode_state(accounts_state.get(account_id.encode("utf-8")))
            view = describe_account(account_id, state)
            if state is None and view["customer"] is None:
                return json_error(
                    self,
                    404,
                    f"unknown account {account_id!r}: no customer record and no"
                    f" transactions within the last {runner.rule.retention_ms} ms of event time",
                    partition=partition,
                )
            return self.json(
                {**view, "partition": partition, "served_by": str(app.conf.canonical_url)}
            )

        return await routed(self, request, accounts_state, account_id, answer)
