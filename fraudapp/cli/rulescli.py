"""``fraudapp rules list|show|set|pause|resume``: the rules in force, and changes to them.

The command reads the ``rules`` topic to its end over the shipped defaults, exactly
as a worker does (same validation, same "higher version wins"), and writes each
change as the next version of the whole rule, validated before it is sent, so a
typo is refused at the prompt instead of becoming a dead letter.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from fraudapp.core.reference import tables_dir
from fraudapp.core.rulebook import SCHEMAS, RuleBook, RuleError, RuleRecord, decode, defaults
from fraudapp.core.settings import Settings
from fraudapp.engine import kafkaio


async def _book(bootstrap: str, settings: Settings) -> RuleBook:
    book = RuleBook(defaults(settings, tables_dir() / "rules.json"))
    for message in await kafkaio.read_topic(bootstrap, settings.topics.rules):
        try:
            book.apply(decode(message.value, message.key))
        except RuleError:
            continue  # refused by the workers too (they dead-letter it)
    return book


def _state(record: RuleRecord) -> str:
    return "paused" if not record.enabled else record.mode


def _action(record: RuleRecord) -> str:
    """`` action=block_ip/3600000ms`` when the version asks for one, else nothing."""
    if record.action == "none":
        return ""
    return f" action={record.action}/{record.action_ttl_ms}ms"


def _value(text: str) -> Any:
    """``threshold=5`` is a number, ``notify=true`` a flag, ``mode=shadow`` and
    ``action=block_ip`` words (``action=none`` too: not JSON, so kept as text)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def changes_of(assignments: list[str]) -> dict[str, Any]:
    """``name=value`` words as a dict; a word without ``=`` is an error."""
    out = {}
    for word in assignments:
        name, sep, text = word.partition("=")
        if not sep or not name:
            raise RuleError("bad_rule", f"expected name=value, got {word!r}")
        out[name] = _value(text)
    return out


def cmd_rules(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    asyncio.run(kafkaio.create_topics(bootstrap, settings))
    book = asyncio.run(_book(bootstrap, settings))
    if args.action == "list":
        for record in book.records():
            params = ", ".join(f"{k}={v}" for k, v in record.params.items()) or "-"
            print(
                f"{record.rule:<22} v{record.version:<4} {_state(record):<7}"
                f" {record.severity:<8} notify={str(record.notify).lower():<5} {params}"
                f"{_action(record)}"
            )
        return 0
    if args.name not in SCHEMAS:
        print(f"no rule named {args.name!r}; known: {', '.join(sorted(SCHEMAS))}", file=sys.stderr)
        return 2
    current = book[args.name]
    if args.action == "show":
        print(orjson.dumps(current.as_dict(), option=orjson.OPT_INDENT_2).decode())
        return 0
    try:
        if args.action == "set":
            changes = changes_of(args.assignments)
            if not changes:
                raise RuleError("bad_rule", "nothing to change: give name=value pairs")
        else:
            changes = {"enabled": args.action == "resume"}
        record = current.changed(**changes, changed_by=args.by)
    except RuleError as error:
        print(f"{args.name}: {error.message}", file=sys.stderr)
        return 2
    asyncio.run(
        kafkaio.produce_json(bootstrap, settings.topics.rules, [(record.rule, record.as_dict())])
    )
    print(
        f"{record.rule} v{current.version} -> v{record.version} ({_state(record)}):"
        f" {_difference(current, record)} on {settings.topics.rules} at {bootstrap}"
    )
    return 0


def _difference(old: RuleRecord, new: RuleRecord) -> str:
    before, after = old.as_dict(), new.as_dict()
    before.update(before.pop("params"))
    after.update(after.pop("params"))
    changed = [
        f"{k} {before.get(k)} -> {after[k]}"
        for k in after
        if k not in ("version", "changed_by") and before.get(k) != after[k]
    ]
    return ", ".join(changed) or "no change but the version"


def add_parser(sub: Any) -> None:
    rules = sub.add_parser("rules", help="list the rules in force, or change one live")
    actions = rules.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every rule, its version, state and parameters")
    for name, text in (
        ("show", "one rule's record in force, as JSON"),
        ("pause", "stop a rule raising alerts (its state is kept)"),
        ("resume", "let a paused rule raise alerts again"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("name", metavar="RULE")
    change = actions.add_parser(
        "set",
        help="new version with changed parameters or fields"
        " (threshold=5 mode=shadow action=block_ip action_ttl_ms=60000)",
    )
    change.add_argument("name", metavar="RULE")
    change.add_argument("assignments", nargs="*", metavar="NAME=VALUE")
    for action in actions.choices.values():
        action.add_argument("--by", help="who made the change (kept in the record)")
        action.add_argument("--broker", help="bootstrap address (default: BROKER_URL)")
    rules.set_defaults(func=cmd_rules)
