"""``fraudapp cases snooze ENTITY --rule R --for 1h`` (and ``cases list``): silence a
case's notifications for a while, its alerts still counted; see the cases.

A snooze is written straight to the ``snoozes`` topic, with its audit record on
``actions``, as ``POST /snoozes`` on a worker would write it (:mod:`fraudapp.core.snooze`
says why snoozes are per case and in wall-clock time). ``cases list`` reads the
compacted ``cases`` topic to its end, as every worker does for ``GET /cases``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time

import orjson

from fraudapp.core.caseids import ENTITY_KINDS
from fraudapp.core.settings import Settings
from fraudapp.core.snooze import SnoozeError, audit_record, parse_duration, snooze_record
from fraudapp.engine import kafkaio


def cmd_snooze(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    try:
        record = snooze_record(
            rule=args.rule,
            entity=args.entity,
            for_ms=parse_duration(args.duration),
            now_ms=time.time_ns() // 1_000_000,
            by=args.by or getpass.getuser(),
            reason=args.reason or "",
        )
    except SnoozeError as error:
        print(f"fraudapp cases snooze: {error}", file=sys.stderr)
        return 2
    asyncio.run(kafkaio.create_topics(bootstrap, settings))
    topics = settings.topics
    asyncio.run(kafkaio.produce_json(bootstrap, topics.snoozes, [(record["case_id"], record)]))
    audit = audit_record(record)
    asyncio.run(kafkaio.produce_json(bootstrap, topics.actions, [(record["case_id"], audit)]))
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record["until"] / 1000))
    verb = "snoozed until " + until if audit["action"] == "snooze" else "unsnoozed"
    print(f"{record['case_id']} ({args.rule} {args.entity}): {verb}, by {record['by']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    latest: dict[bytes, dict | None] = {}
    for message in asyncio.run(kafkaio.read_topic(bootstrap, settings.topics.cases)):
        if message.key is not None:
            latest[message.key] = None if message.value is None else orjson.loads(message.value)
    cases = [c for c in latest.values() if c and (args.all or c.get("status") == "open")]
    cases.sort(key=lambda c: c.get("last_seen") or 0, reverse=True)
    print(f"{'case':<47} {'rule':<22} {'entity':<28} {'alerts':>7} {'severity':<8} status")
    for case in cases:
        print(
            f"{case['case_id']:<47} {case['rule']:<22} {str(case['entity'])[:28]:<28}"
            f" {case['alert_count']:>7} {case['severity']:<8} {case['status']}"
        )
    print(f"{len(cases)} {'cases' if args.all else 'open cases'}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    cases = sub.add_parser("cases", help="cases: list them, snooze one's notifications")
    what = cases.add_subparsers(dest="cases_command", required=True)
    snooze = what.add_parser(
        "snooze", help="silence a case's notifications for a while (its alerts still count)"
    )
    snooze.add_argument("entity", help="what the case is about: session, account, source, IP, area")
    snooze.add_argument("--rule", required=True, choices=sorted(ENTITY_KINDS))
    snooze.add_argument(
        "--for", dest="duration", default="1h", help="90s, 30m, 1h, 2d (default 1h; 0 lifts it)"
    )
    snooze.add_argument("--reason", help="why, for the audit log")
    snooze.add_argument("--by", help="who (default: your user name)")
    snooze.add_argument("--broker", help="bootstrap address (default: BROKER_URL)")
    snooze.set_defaults(func=cmd_snooze)
    listing = what.add_parser("list", help="the open cases (--all: resolved ones too)")
    listing.add_argument("--all", action="store_true")
    listing.add_argument("--broker", help="bootstrap address (default: BROKER_URL)")
    listing.set_defaults(func=cmd_list)
