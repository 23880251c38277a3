"""Pure parts of the CLI and the notifier."""

from __future__ import annotations

import json
from pathlib import Path

from fraudapp.cli.main import main, read_records
from fraudapp.live.notify import backoff_delays


def test_backoff_doubles_up_to_its_cap() -> None:
    assert backoff_delays(6, 0.5, 3.0) == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_delays(1, 0.5, 3.0) == []


def test_generate_writes_jsonl(tmp_path: Path, capsys) -> None:
    out = tmp_path / "atm.jsonl"
    assert main(["generate", "atm", "--count", "40", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 40 and any(r["transaction_id"].startswith("xxx") for r in rows)
    clicks = tmp_path / "clicks.jsonl"
    assert main(["generate", "clicks", "--count", "25", "--out", str(clicks)]) == 0
    assert len(clicks.read_text().splitlines()) == 25


def test_reference_files_read_as_csv_or_jsonl(tmp_path: Path) -> None:
    csv_file = tmp_path / "a.csv"
    csv_file.write_text("account_id,first_name\na1,Ann\na1,Anne\n")
    assert read_records(csv_file) == [
        {"account_id": "a1", "first_name": "Ann"},
        {"account_id": "a1", "first_name": "Anne"},
    ]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"account_id": "a2"}\n\n{"account_id": "a3"}\n')
    assert [r["account_id"] for r in read_records(jsonl)] == ["a2", "a3"]


def test_load_refuses_records_without_an_id(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("account_id,first_name\n,Nobody\n")
    assert main(["load", "accounts", str(bad), "--broker", "127.0.0.1:1"]) == 2
    assert "no account_id" in capsys.readouterr().err
