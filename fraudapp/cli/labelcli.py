"""``fraudapp label ID fraud|legit``: an analyst's label of an alert or a case.

The label goes through a worker's ``POST /labels`` (``DELETE /labels/{id}`` with
``--withdraw``), which looks up the rule version that raised the alert or case and
writes the record to the compacted ``labels`` topic; the command prints what was
written. The worker is ``--url`` (default ``http://127.0.0.1:$WEB_PORT``) and the API
token ``--token`` (default ``$FRAUDAPP_API_TOKEN``). See docs/feedback.md.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

import orjson

from fraudapp.core.badinput import BadInput
from fraudapp.core.labels import LABELS, MAX_BY, MAX_NOTE, target_of

TIMEOUT_S = 30.0


class Refused(Exception):
    """The worker could not be reached or said no; the message says why."""


def _call(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=None if body is None else orjson.dumps(body),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            answer = orjson.loads(raw)
            why = f"{answer.get('error')} ({answer.get('reason')})"
        except (orjson.JSONDecodeError, AttributeError):
            why = raw.decode(errors="replace")[:300] or error.reason
        raise Refused(f"{method} {url}: {error.code} {why}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Refused(f"cannot reach the worker at {url}: {reason}") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(f"{method} {url}: the answer is not JSON") from None


def _default_by() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def cmd_label(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("FRAUDAPP_API_TOKEN")
    if not token:
        print("no API token: give --token or set FRAUDAPP_API_TOKEN", file=sys.stderr)
        return 2
    url = (args.url or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '6066')}").rstrip("/")
    try:
        target = target_of(args.id)
    except BadInput as error:
        print(error.message, file=sys.stderr)
        return 2
    if args.withdraw == bool(args.label):
        print(
            f"give a label ({' or '.join(LABELS)}) or --withdraw, not both or neither",
            file=sys.stderr,
        )
        return 2
    try:
        if args.withdraw:
            answer = _call("DELETE", f"{url}/labels/{quote(target.id, safe='')}", token)
            previous = answer.get("previous")
            had = f" (was {previous['label']})" if previous else " (it had no label)"
            print(
                f"withdrew the label of {target.id}{had}: a tombstone on {answer['topic']}"
                f" [{answer['partition']}] at offset {answer['offset']}"
            )
            return 0
        by = args.by or _default_by()
        body: dict[str, Any] = {"id": target.id, "label": args.label, "by": by}
        if args.note is not None:
            body["note"] = args.note
        if args.rule_version is not None:
            body["rule_version"] = args.rule_version
        answer = _call("POST", f"{url}/labels", token, body)
    except Refused as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = answer["label"]
    print(
        f"labelled {record['kind']} {record['id']} {record['label']}"
        f" ({record['rule']} v{record['rule_version']}, by {record['by'] or 'nobody named'})"
        f" on {answer['topic']} [{answer['partition']}] at offset {answer['offset']}"
    )
    print(orjson.dumps(record).decode())
    return 0


def _bounded(limit: int) -> Any:
    def check(text: str) -> str:
        if not text or len(text) > limit:
            raise argparse.ArgumentTypeError(f"must be 1..{limit} characters")
        return text

    return check


def add_parser(sub: Any) -> None:
    label = sub.add_parser(
        "label", help="label an alert or case as fraud or legit (or --withdraw the label)"
    )
    label.add_argument("id", metavar="ALERT_OR_CASE_ID")
    label.add_argument("label", nargs="?", choices=LABELS, help="fraud or legit")
    label.add_argument("--by", type=_bounded(MAX_BY), help="who labels (default: your login name)")
    label.add_argument("--note", type=_bounded(MAX_NOTE), help="why, kept with the label")
    label.add_argument(
        "--rule-version",
        type=int,
        help="the rule version, for an alert no longer in the index (or a case not found)",
    )
    label.add_argument("--withdraw", action="store_true", help="withdraw the id's label")
    label.add_argument(
        "--url", help="a worker's HTTP address (default: http://127.0.0.1:$WEB_PORT)"
    )
    label.add_argument("--token", help="the API token (default: $FRAUDAPP_API_TOKEN)")
    label.set_defaults(func=cmd_label)
