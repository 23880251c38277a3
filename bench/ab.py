"""A change against a base revision, worker rates side by side, in one run.

    .venv/bin/python bench/ab.py --base 14b895a --runs 3

This machine's spread between hours is wider than most changes' effect, so a change
is judged by runs taken in the same hour, interleaved: for each round, each kind of
run (the click rule alone, every click check, the ATM rule, each on a backlog the
worker starts on) once on the base and once on the work tree, both on one embedded
Apache Kafka broker. The base is a ``git worktree`` of ``--base`` made in a temporary
directory (removed afterwards); its workers run from there on this virtualenv, so
only fraudapp's own code differs. Each run is checked against its oracle.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throughput import run_atm, run_clicks  # noqa: E402
from fraudapp.atm.generate import generate_txns  # noqa: E402
from fraudapp.cli.brokers import KafkaBroker  # noqa: E402
from fraudapp.clicks.generate import arrival_order, generate_clicks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="revision to compare against")
    parser.add_argument("--clicks", type=int, default=30_000, help="click-rule backlog")
    parser.add_argument("--checks-clicks", type=int, default=15_000, help="all-checks backlog")
    parser.add_argument("--txns", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    clicks = arrival_order(generate_clicks(args.clicks, seed=7), max_delay_ms=30_000, seed=8)
    checks = clicks[: args.checks_clicks]
    txns = generate_txns(args.txns, seed=9)
    scratch = Path(tempfile.mkdtemp(prefix="fraudapp-ab-"))
    base = scratch / "base"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
        check=True,
        capture_output=True,
    )
    sides = {"base": base, "change": ROOT}
    rates: dict[tuple[str, str], list[float]] = {}
    wrong: list[str] = []
    try:
        with KafkaBroker() as broker:
            for run in range(args.runs):
                for side, code in sides.items():
                    work = scratch / f"{side}-{run}"
                    for kind, count, (seconds, ok) in (
                        (
                            "click rule",
                            len(clicks),
                            run_clicks(broker.bootstrap, clicks, work, backlog=True, code=code)[:2],
                        ),
                        (
                            "all checks",
                            len(checks),
                            run_clicks(
                                broker.bootstrap,
                                checks,
                                work,
                                all_checks=True,
                                backlog=True,
                                code=code,
                            )[:2],
                        ),
                        (
                            "ATM rule",
                            len(txns),
                            run_atm(broker.bootstrap, txns, work, backlog=True, code=code),
                        ),
                    ):
                        rates.setdefault((kind, side), []).append(count / seconds)
                        if not ok:
                            wrong.append(f"{kind} on {side}, run {run + 1}")
                        print(f"run {run + 1} {side:6} {kind:10} {count / seconds:9,.0f}/s")
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False
        )
    print(f"\n| run (backlog) | {args.base} | work tree | change/base |\n|---|---|---|---|")
    for kind in ("click rule", "all checks", "ATM rule"):
        a, b = rates[(kind, "base")], rates[(kind, "change")]
        print(
            f"| {kind} | {' / '.join(f'{x:,.0f}' for x in a)} |"
            f" {' / '.join(f'{x:,.0f}' for x in b)} |"
            f" {statistics.median(b) / statistics.median(a):.2f}x |"
        )
    if wrong:
        print("\nnot equal to the oracle: " + "; ".join(wrong))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
