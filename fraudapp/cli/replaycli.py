"""``fraudapp replay FILE`` (or ``--topic NAME`` with an offset range): what the rules
would have raised on recorded events.

Writes the alerts as JSON lines (``--out``), prints counts per rule and, when the
events carry ``is_fraud``, precision and recall per rule; ``--compare A B`` runs
two rule sets over the same events and shows what the change adds and removes;
``--labels FILE`` scores each replayed rule version with the analysts' labels (a dump
of the ``labels`` topic, docs/feedback.md).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from fraudapp.core import labels as labelling
from fraudapp.core.badinput import BadInput
from fraudapp.core.reference import load_accounts, tables_dir
from fraudapp.core.rulebook import SCHEMAS, RuleError, RuleRecord, defaults, validate
from fraudapp.core.settings import Settings
from fraudapp.engine import kafkaio
from fraudapp.replay import Backtest, Outcome, run

ATM = "atm_impossible_travel"


def rules_from(path: Path | None, settings: Settings) -> dict[str, RuleRecord]:
    """The shipped defaults (with the environment), and over them the rules listed in
    ``path`` (a JSON list like ``tables/rules.json``; rules it leaves out keep theirs)."""
    rules = defaults(settings, tables_dir() / "rules.json")
    if path is not None:
        items = orjson.loads(path.read_bytes())
        if not isinstance(items, list):
            raise RuleError("bad_rule", f"{path}: expected a JSON list of rules")
        for item in items:
            record = validate(item)
            rules[record.rule] = record
    return rules


def _lines(path: Path, progress: bool) -> Iterator[bytes]:
    size = path.stat().st_size
    with (
        path.open("rb") as handle,
        tqdm(total=size, unit="B", unit_scale=True, disable=not progress, desc=path.name) as bar,
    ):
        for line in handle:
            bar.update(len(line))
            yield line


def topic_records(args: argparse.Namespace, settings: Settings) -> list[tuple[bytes, str, int]]:
    """(value, origin, timestamp) of the topic's offset range, partitions merged by
    record time, each partition's own order kept (as its consumer would see it)."""
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    messages = asyncio.run(
        kafkaio.read_topic(
            bootstrap,
            args.topic,
            timeout_s=3600,
            start=args.start_offset,
            end=args.end_offset,
            partitions=args.partition,
        )
    )
    per_partition: dict[int, list[tuple[int, bytes, str]]] = {}
    for m in messages:
        if m.value is not None:
            per_partition.setdefault(m.partition, []).append(
                (m.timestamp, m.value, f"{m.partition}:{m.offset}")
            )
    merged = heapq.merge(*per_partition.values(), key=lambda item: item[0])
    return [(value, origin, stamp) for stamp, value, origin in merged]


def backtest(
    source: Path | list[tuple[bytes, str, int]], rules: dict[str, RuleRecord], progress: bool
) -> tuple[Outcome, float]:
    settings = Settings.from_env()
    # The shipped customer records stand in for the accounts topic's.
    customers: dict[str, Any] = {str(r["account_id"]): r for r in load_accounts()}
    engine = Backtest(rules, settings, tables_dir(), customers.get)
    started = time.perf_counter()
    if isinstance(source, Path):
        outcome = run(engine, _lines(source, progress))
    else:
        for value, origin, stamp in tqdm(source, disable=not progress, unit="rec"):
            engine.event(value, origin, stamp)
        outcome = engine.finish()
    return outcome, time.perf_counter() - started


def named(alert: dict[str, Any]) -> set[str]:
    """The events an alert is about: its click, or both transactions of a pair."""
    ids = {alert.get("click_id"), alert.get("t1_transaction_id"), alert.get("t2_transaction_id")}
    return {i for i in ids if isinstance(i, str)}


def scores(outcome: Outcome) -> list[tuple[str, int, int, float, float]]:
    """(rule, alerts, events flagged, precision, recall) per rule over the labels."""
    by_rule: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for alert in outcome.alerts:
        counts[alert["rule"]] += 1
        by_rule.setdefault(alert["rule"], set()).update(named(alert))
    rows = []
    for rule in sorted(SCHEMAS):
        # ATM labels are transactions'; the click rules' are clicks'.
        labels = outcome.labels["atm" if rule == ATM else "clicks"]
        flagged = by_rule.get(rule, set()) & labels.keys()
        positives = {i for i, fraud in labels.items() if fraud}
        hits = len(flagged & positives)
        precision = hits / len(flagged) if flagged else float("nan")
        recall = hits / len(positives) if positives else float("nan")
        rows.append((rule, counts[rule], len(flagged), precision, recall))
    return rows


def cmd_replay(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if (args.file is None) == (args.topic is None):
        print("give a FILE or --topic NAME (one of them)", file=sys.stderr)
        return 2
    try:
        labels = read_labels(Path(args.labels)) if args.labels else None
    except (BadInput, OSError) as error:
        print(f"{args.labels}: {getattr(error, 'message', error)}", file=sys.stderr)
        return 2
    source = Path(args.file) if args.file else topic_records(args, settings)
    try:
        if args.compare:
            return compare(source, args.compare, settings, not args.quiet, labels)
        rules = rules_from(Path(args.rules) if args.rules else None, settings)
    except RuleError as error:
        print(error.message, file=sys.stderr)
        return 2
    outcome, seconds = backtest(source, rules, not args.quiet)
    if args.out:
        with open(args.out, "wb") as out:
            for alert in outcome.alerts:
                out.write(orjson.dumps(alert) + b"\n")
    events = outcome.clicks + outcome.txns
    print(
        f"{events:,} events ({outcome.clicks:,} clicks, {outcome.txns:,} transactions)"
        f" in {seconds:.1f} s: {events / seconds if seconds else 0:,.0f} events/s;"
        f" {len(outcome.alerts):,} alerts, {len(outcome.shadow):,} in shadow"
    )
    if outcome.alerts:
        share = 100 * len(outcome.case_records) / len(outcome.alerts)
        still_open = sum(1 for case in outcome.cases.values() if case["status"] == "open")
        print(
            f"cases: {len(outcome.cases):,} ({still_open:,} open at the end);"
            f" {len(outcome.case_records):,} case records, {share:.1f} % of the alerts"
        )
    if outcome.dead_letters:
        print(
            "refused: " + ", ".join(f"{k} {v:,}" for k, v in sorted(outcome.dead_letters.items()))
        )
    labelled = any(outcome.labels.values())
    print(
        f"{'rule':<22} {'alerts':>8}"
        + (f" {'flagged':>8} {'precision':>9} {'recall':>7}" if labelled else "")
    )
    for rule, alerts, flagged, precision, recall in scores(outcome):
        line = f"{rule:<22} {alerts:>8,}"
        if labelled:
            line += f" {flagged:>8,} {precision:>9.3f} {recall:>7.3f}"
        print(line)
    if labels is not None:
        print_label_scores(outcome, labels, rules)
    return 0


def read_labels(path: Path) -> dict[str, dict[str, Any]]:
    """The labels in force in a dump of the labels topic (JSON lines; see
    :func:`fraudapp.core.labels.read_dump`), saying how many lines were refused."""
    with path.open("rb") as handle:
        labels, refused = labelling.read_dump(handle)
    if refused:
        print(f"{path}: {refused:,} line(s) are not label records; left out", file=sys.stderr)
    return labels


def print_label_scores(
    outcome: Outcome, labels: dict[str, dict[str, Any]], rules: dict[str, RuleRecord]
) -> None:
    """The analysts' labels against the replayed rule versions: labelled fraud alerted,
    labelled legit alerted, precision, labelled fraud missed (shadow alerts count:
    they are what the version would raise)."""
    versions = {rule: record.version for rule, record in rules.items()}
    rows = labelling.score([*outcome.alerts, *outcome.shadow], labels, versions)
    fraud = sum(1 for record in labels.values() if record["label"] == "fraud")
    print(f"labels: {len(labels):,} ({fraud:,} fraud, {len(labels) - fraud:,} legit)")
    if not rows:
        print("no labels of the replayed rules")
        return
    print(
        f"{'rule':<22} {'version':>7} {'fraud_alerted':>13} {'legit_alerted':>13}"
        f" {'precision':>9} {'fraud_missed':>12}"
    )
    for row in rows:
        precision = "-" if row.precision is None else f"{row.precision:.3f}"
        print(
            f"{row.rule:<22} {row.rule_version:>7} {row.fraud_alerted:>13,}"
            f" {row.legit_alerted:>13,} {precision:>9} {row.fraud_missed:>12,}"
        )


def compare(
    source: Path | list[tuple[bytes, str, int]],
    files: list[str],
    settings: Settings,
    progress: bool,
    labels: dict[str, dict[str, Any]] | None = None,
) -> int:
    """Alerts that rule set B adds and removes against rule set A, per rule (and with
    ``labels``, each set scored by them)."""
    rules_a, rules_b = (rules_from(Path(f), settings) for f in files)
    (a, _), (b, _) = (backtest(source, rules, progress) for rules in (rules_a, rules_b))
    ids_a = {x["alert_id"]: x["rule"] for x in a.alerts}
    ids_b = {x["alert_id"]: x["rule"] for x in b.alerts}
    print(f"{'rule':<22} {'A':>8} {'B':>8} {'added':>8} {'removed':>8}")
    for rule in sorted(SCHEMAS):
        in_a = {i for i, r in ids_a.items() if r == rule}
        in_b = {i for i, r in ids_b.items() if r == rule}
        added, removed = len(in_b - in_a), len(in_a - in_b)
        print(f"{rule:<22} {len(in_a):>8,} {len(in_b):>8,} {added:>8,} {removed:>8,}")
    if labels is not None:
        for name, outcome, rules in (("A", a, rules_a), ("B", b, rules_b)):
            print(f"{name}: ", end="")
            print_label_scores(outcome, labels, rules)
    return 0


def add_parser(sub: Any) -> None:
    replay = sub.add_parser(
        "replay", help="run the detectors over a JSON-lines file of clicks and transactions"
    )
    replay.add_argument(
        "file", nargs="?", help="JSON lines: clicks and ATM transactions, in event order"
    )
    replay.add_argument("--topic", help="replay this topic's records instead of a file")
    replay.add_argument("--start-offset", type=int, help="with --topic: from this offset on")
    replay.add_argument("--end-offset", type=int, help="with --topic: up to this offset (excl.)")
    replay.add_argument(
        "--partition", type=int, action="append", help="with --topic: only these partitions"
    )
    replay.add_argument("--broker", help="with --topic: bootstrap address (default: BROKER_URL)")
    replay.add_argument(
        "--rules", help="rule versions to use (a JSON list; default: the shipped ones)"
    )
    replay.add_argument("--out", help="write the alerts here as JSON lines")
    replay.add_argument(
        "--compare", nargs=2, metavar=("RULES_A", "RULES_B"), help="what B adds and removes vs. A"
    )
    replay.add_argument(
        "--labels",
        help="score the alerts with analysts' labels: a JSON-lines dump of the labels topic",
    )
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=cmd_replay)
