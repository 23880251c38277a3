"""``fraudapp`` command line: demo, broker, topics, generate, load, block, rules,
replay, label, cases.

The worker itself is started the faust way (``faust -A fraudapp.app worker``);
these commands are the chores around it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fraudapp.cli import casescli, labelcli, replaycli, rulescli
from fraudapp.cli.democases import SHOWN, CaseTally, describe_case
from fraudapp.core.reference import tables_dir
from fraudapp.core.settings import Settings
from fraudapp.engine import kafkaio


def _settings() -> Settings:
    return Settings.from_env()


# -- fraudapp broker -----------------------------------------------------------------------------


def cmd_broker(args: argparse.Namespace) -> int:
    from fraudapp.cli import brokers

    return brokers.run_foreground(args.kind, args.port)


# -- fraudapp topics -----------------------------------------------------------------------------


def cmd_topics(args: argparse.Namespace) -> int:
    settings = _settings()
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    created = asyncio.run(kafkaio.create_topics(bootstrap, settings))
    names = settings.topics.external() + settings.topics.compacted()
    counts = asyncio.run(kafkaio.partition_counts(bootstrap, names))
    for _ in range(20):  # a topic just created can take a moment to show its partitions
        if all(counts.get(name) for name in names):
            break
        time.sleep(0.25)
        counts = asyncio.run(kafkaio.partition_counts(bootstrap, names))
    wrong = []
    for name in names:
        count = counts.get(name)
        print(f"{name}: {'created' if name in created else 'exists'} ({count} partitions)")
        if count != settings.partitions:
            wrong.append(name)
    if wrong:
        # Keyed state is placed by partition: a topic with another count would send a
        # key's records to a partition whose state lives elsewhere.
        print(
            f"error: {', '.join(wrong)} {'has' if len(wrong) == 1 else 'have'} a partition"
            f" count other than FRAUDAPP_PARTITIONS={settings.partitions}; every topic of"
            " the app needs the same count (set FRAUDAPP_PARTITIONS to match, or recreate"
            " the topic)",
            file=sys.stderr,
        )
        return 2
    return 0


# -- fraudapp generate ---------------------------------------------------------------------------


def _write_jsonl(path: str, items: list[dict[str, Any]]) -> None:
    with open(path, "wb") as out:
        for item in items:
            out.write(orjson.dumps(item) + b"\n")
    print(f"wrote {len(items)} records to {path}")


def cmd_generate(args: argparse.Namespace) -> int:
    settings = _settings()
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    if args.kind == "atm":
        from fraudapp.atm.generate import generate_txns

        items = generate_txns(args.count, seed=args.seed)
        topic = args.topic or settings.topics.atm_txns
        records = [(t["account_id"], t) for t in items]
    else:
        from fraudapp.clicks.generate import arrival_order, generate_clicks

        items = generate_clicks(args.count, seed=args.seed)
        if args.shuffle_ms:
            items = arrival_order(items, max_delay_ms=args.shuffle_ms, seed=args.seed)
        topic = args.topic or settings.topics.clicks
        records = [(c["session_id"], c) for c in items]
    if args.out:
        _write_jsonl(args.out, items)
        return 0
    sent = asyncio.run(kafkaio.produce_json(bootstrap, topic, records, rate_per_s=args.rate))
    print(f"sent {sent} records to {topic} at {bootstrap}")
    return 0


# -- fraudapp load -------------------------------------------------------------------------------


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file (with a header) or objects of a JSON-lines file."""
    if path.suffix.lower() == ".csv":
        import csv

        with open(path, newline="", encoding="utf-8") as handle:
            return [dict(row) for row in csv.DictReader(handle)]
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def cmd_load(args: argparse.Namespace) -> int:
    settings = _settings()
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    rows = read_records(Path(args.file))
    bad = [
        i for i, row in enumerate(rows) if not isinstance(row, dict) or not row.get("account_id")
    ]
    if bad:
        print(
            f"{args.file}: record(s) {bad[:10]} have no account_id; nothing loaded", file=sys.stderr
        )
        return 2
    asyncio.run(kafkaio.create_topics(bootstrap, settings))
    sent = asyncio.run(
        kafkaio.produce_json(
            bootstrap, settings.topics.accounts, [(str(r["account_id"]), r) for r in rows]
        )
    )
    distinct = len({str(r["account_id"]) for r in rows})
    print(
        f"loaded {sent} records ({distinct} accounts; a repeated id's last record wins)"
        f" into {settings.topics.accounts} at {bootstrap}"
    )
    return 0


def cmd_block(args: argparse.Namespace) -> int:
    """Add IPs or CIDR ranges to the blocklist topic, or remove them (every worker
    applies the change as it arrives)."""
    from fraudapp.adnet.blocklist import BlocklistError, canonical_entry

    settings = _settings()
    bootstrap = kafkaio.bootstrap_of(args.broker or settings.broker_url)
    for entry in args.entries:
        try:
            canonical_entry(entry)  # exactly what the workers accept
        except BlocklistError as error:
            print(f"{entry!r}: {error}", file=sys.stderr)
            return 2
    record = {"blocked": not args.remove, "reason": args.reason}
    asyncio.run(kafkaio.create_topics(bootstrap, settings))
    sent = asyncio.run(
        kafkaio.produce_json(
            bootstrap, settings.topics.ip_blocklist, [(e, record) for e in args.entries]
        )
    )
    action = "removed from" if args.remove else "added to"
    print(f"{sent} entries {action} {settings.topics.ip_blocklist} at {bootstrap}")
    return 0


# -- fraudapp demo -------------------------------------------------------------------------------


def _describe_alert(alert: dict[str, Any], web: str) -> str:
    if alert.get("rule") == "click_burst":
        return (
            f"ALERT {alert['rule']}: {alert['count']} clicks on {alert['url']} in 10 s,"
            f" session {alert['session_id']} (click {alert['click_id'][:8]})"
            f" -> {web}/sessions/{alert['session_id']}"
        )
    if alert.get("rule") == "atm_impossible_travel":
        who = alert.get("customer_name") or "unknown customer"
        return (
            f"ALERT {alert['rule']}: account {alert['account_id']} ({who}) at {alert['t1_atm']}"
            f" then {alert['t2_atm']}, {alert['distance_between_txn_km']:.1f} km in"
            f" {alert['minutes_difference']:.1f} min = {alert['kmh_required']:.0f} km/h"
            f" -> {web}/accounts/{alert['account_id']}"
        )
    rule = alert.get("rule")
    if rule == "stacked_ads":
        return (
            f"ALERT {rule}: {alert['source']} clicked {len(alert['clicks'])} ads"
            f" ({', '.join(alert['ads'])}) within {alert['interval_ms']} ms"
        )
    if rule == "rate_limit":
        return (
            f"ALERT {rule}: {alert['source']} over {alert['limit_per_minute']:g}/min"
            f" (burst {alert['burst']}), {alert['excess_ms'] / 1000:.1f} s ahead of its allowance"
        )
    if rule == "ip_blocklist":
        how = (
            f"Bloom filter, false-positive rate {alert['false_positive_rate']}"
            if alert.get("probabilistic")
            else "exact"
        )
        return f"ALERT {rule}: {alert['ip']} matches {alert['blocklist_entry']} ({how})"
    if rule == "heavy_hitter":
        return (
            f"ALERT {rule}: {alert['kind']} {alert['source']} has >= {alert['share']:.0%}"
            f" of campaign {alert['campaign_id']}'s {alert['campaign_clicks']} clicks"
            f" -> {web}/campaigns/{alert['campaign_id']}/top"
        )
    if rule == "suspicious_location":
        return (
            f"ALERT {rule}: {alert['fraud_share']:.0%} of {alert['clicks_nearby']} clicks within"
            f" {alert['radius_km']:g} km of ({alert['lat']:.2f}, {alert['lon']:.2f}) are fraud"
        )
    return f"ALERT {rule}: {orjson.dumps(alert).decode()}"


class AlertSampler:
    """At most one printed alert per rule every ``every_s`` seconds: a click farm
    trips the rate limit on each click, and the other rules must stay readable."""

    def __init__(self, every_s: float = 2.0) -> None:
        self.every_s = every_s
        self.last: dict[str, float] = {}

    def admit(self, rule: str, now: float) -> bool:
        if now - self.last.get(rule, -self.every_s) < self.every_s:
            return False
        self.last[rule] = now
        return True


async def _demo_loop(
    bootstrap: str, web: str, rate: float, atm_rate: float, duration: float | None
) -> None:
    from fraudapp.atm.generate import live_txns
    from fraudapp.clicks.generate import live_clicks

    settings = _settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration:
        loop.call_later(duration, stop.set)

    clicks = live_clicks(seed=int(time.time()), now_ms=lambda: time.time_ns() // 1_000_000)

    txns = live_txns()

    async def generate() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        owed = {"clicks": 0.0, "atm": 0.0}
        try:
            while not stop.is_set():
                owed["clicks"] += rate / 10
                owed["atm"] += atm_rate / 10
                while owed["clicks"] >= 1:
                    owed["clicks"] -= 1
                    click = next(clicks)
                    await producer.send(
                        settings.topics.clicks,
                        orjson.dumps(click),
                        key=click["session_id"].encode(),
                    )
                while owed["atm"] >= 1:
                    owed["atm"] -= 1
                    txn = next(txns)
                    await producer.send(
                        settings.topics.atm_txns, orjson.dumps(txn), key=txn["account_id"].encode()
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)
        finally:
            await producer.stop()

    shown = AlertSampler()
    tally = CaseTally()

    async def print_outputs() -> None:
        """Alerts (a sample) and case transitions (all), and every 30 s how many case
        records the alerts made. From the topics' start: the demo's broker is new."""
        topics = settings.topics
        consumer = AIOKafkaConsumer(
            topics.alerts, topics.cases, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        next_summary = time.monotonic() + 30
        try:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    for message in messages:
                        if message.topic == topics.cases:
                            case = None if message.value is None else orjson.loads(message.value)
                            tally.record(case, message.key.decode())
                            if case is not None and case.get("transition") in SHOWN:
                                print(describe_case(case, web), flush=True)
                            continue
                        tally.alert()
                        alert = orjson.loads(message.value)
                        if shown.admit(str(alert.get("rule")), time.monotonic()):
                            print(_describe_alert(alert, web), flush=True)
                if time.monotonic() >= next_summary:
                    print(tally.summary(), flush=True)
                    next_summary += 30
        finally:
            await consumer.stop()

    tasks = [asyncio.create_task(generate()), asyncio.create_task(print_outputs())]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(tally.summary(), flush=True)


def cmd_demo(args: argparse.Namespace) -> int:
    from fraudapp.cli import brokers
    from fraudapp.cli.workerproc import WorkerProcess

    started = time.monotonic()
    settings = _settings()
    workdir = Path(tempfile.mkdtemp(prefix="fraudapp-demo-"))
    kind = args.broker or ("kafka" if brokers.kafka_available() else "tansu")
    names = {"kafka": "Apache Kafka (KRaft, one node)", "tansu": "Tansu (zero-JVM fallback)"}
    why = (
        ""
        if args.broker
        else (" (Java and Maven found)" if kind == "kafka" else " (no Java/Maven: fallback)")
    )
    print(f"fraudapp demo: starting {names[kind]}{why} ...", flush=True)
    broker = brokers.make_broker(kind)
    worker: WorkerProcess | None = None
    try:
        broker.start()
        print(f"  broker   {broker.bootstrap} (pid {broker.pid})", flush=True)
        created = asyncio.run(kafkaio.create_topics(broker.bootstrap, settings))
        print(
            f"  topics   {', '.join(settings.topics.external() + settings.topics.compacted())}"
            f" ({settings.partitions} partitions; created {len(created)})",
            flush=True,
        )
        customers = tables_dir() / "accounts.csv"
        cmd_load(argparse.Namespace(file=str(customers), broker=broker.bootstrap))
        env = {"BROKER_SESSION_TIMEOUT": "6"} if kind == "tansu" else {}
        worker = WorkerProcess(
            broker_url=f"kafka://{broker.bootstrap}",
            web_port=args.port or brokers.free_port(),
            datadir=workdir / "worker",
            env=env,
            log_level="warn",
        ).start()
        worker.wait_ready(timeout=120)
        print(f"  worker   pid {worker.pid}, log {worker.log_path}", flush=True)
        print(
            f"  dashboard {worker.url}/dashboard?access_token={worker.api_token}"
            f"#ingest_token={worker.ingest_token}&api_token={worker.api_token}\n"
            f"  web      {worker.url}/?access_token={worker.api_token}"
            f"#ingest_token={worker.ingest_token}  (click the ads)\n"
            f"  tokens   API {worker.api_token}  ingest {worker.ingest_token}\n"
            f"           curl -H 'Authorization: Bearer {worker.api_token}'"
            f" {worker.url}/sessions/<session_id>",
            flush=True,
        )
        print(
            f"ready in {time.monotonic() - started:.1f} s; generating ~{args.rate:g} clicks/s"
            f" and ~{args.atm_rate:g} ATM transactions/s, alerts follow."
            " Ctrl-C stops everything.",
            flush=True,
        )
        asyncio.run(
            _demo_loop(broker.bootstrap, worker.url, args.rate, args.atm_rate, args.duration)
        )
        print("stopping ...", flush=True)
        return 0
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        print("stopped: worker and broker are down.", flush=True)


# -- entry point ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fraudapp", description="Real-time fraud detection on Kafka streams (faust)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="embedded broker + worker + click generator, alerts live")
    demo.add_argument("--broker", choices=["kafka", "tansu"], help="default: kafka if Java+Maven")
    demo.add_argument("--rate", type=float, default=20.0, help="clicks per second (default 20)")
    demo.add_argument(
        "--atm-rate", type=float, default=2.0, help="ATM transactions per second (default 2)"
    )
    demo.add_argument("--port", type=int, help="worker web port (default: a free one)")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.set_defaults(func=cmd_demo)

    broker = sub.add_parser("broker", help="run an embedded broker in the foreground")
    broker.add_argument("--kind", choices=["kafka", "tansu", "auto"], default="auto")
    broker.add_argument("--port", type=int, help="listen port (default: a free one)")
    broker.set_defaults(func=cmd_broker)

    topics = sub.add_parser("topics", help="create fraudapp's topics on BROKER_URL")
    topics.add_argument("--broker", help="bootstrap address (default: BROKER_URL)")
    topics.set_defaults(func=cmd_topics)

    generate = sub.add_parser("generate", help="produce a synthetic stream (clicks or atm)")
    generate.add_argument("kind", choices=["clicks", "atm"])
    generate.add_argument("--count", type=int, default=10_000)
    generate.add_argument("--seed", type=int, default=1)
    generate.add_argument("--rate", type=float, help="records per second (default: flat out)")
    generate.add_argument(
        "--shuffle-ms",
        type=int,
        default=0,
        help="clicks: deliver out of order, each up to this late (ATM frauds are always late)",
    )
    generate.add_argument("--topic", help="default: CLICKS_TOPIC or ATM_TXNS_TOPIC")
    generate.add_argument("--broker", help="bootstrap address (default: BROKER_URL)")
    generate.add_argument("--out", help="write JSON lines to this file instead of a topic")
    generate.set_defaults(func=cmd_generate)

    block = sub.add_parser("block", help="add IPs/CIDRs to the live blocklist (or --remove)")
    block.add_argument("entries", nargs="+", metavar="IP_OR_CIDR")
    block.add_argument("--remove", action="store_true", help="unlist them instead")
    block.add_argument("--reason", default="manual", help="kept with the record")
    block.add_argument("--broker", help="bootstrap address (default: BROKER_URL)")
    block.set_defaults(func=cmd_block)

    load = sub.add_parser("load", help="load reference data into its compacted topic")
    load.add_argument("what", choices=["accounts"])
    load.add_argument("file", help="CSV with a header, or JSON lines; needs account_id")
    load.add_argument("--broker", help="bootstrap address (default: BROKER_URL)")
    load.set_defaults(func=cmd_load)

    rulescli.add_parser(sub)
    replaycli.add_parser(sub)
    labelcli.add_parser(sub)
    casescli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
