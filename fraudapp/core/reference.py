"""Reference data shipped in ``tables/``: customer accounts and ATM locations.

``FRAUDAPP_TABLES`` points elsewhere for your own lists; by default the checkout's
``tables/`` folder is used.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path


def tables_dir() -> Path:
    explicit = os.environ.get("FRAUDAPP_TABLES")
    return Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "tables"


def load_atms(name: str = "west_yorkshire_atms.csv") -> list[tuple[float, float, str]]:
    """(lat, lon, label) of each ATM; the gess files list ``lon,lat,"label"``."""
    atms = []
    with open(tables_dir() / "atms" / name, newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if len(row) >= 3:
                atms.append((float(row[1]), float(row[0]), row[2]))
    return atms


def load_accounts(path: Path | None = None) -> list[dict[str, str]]:
    """Customer records in file order; the shipped file repeats 274 ids (the last
    row of an id wins when loaded, as on a compacted topic)."""
    with open(path or tables_dir() / "accounts.csv", newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


def account_ids() -> list[str]:
    """Distinct account ids of the shipped customer list, in first-seen order."""
    return list(dict.fromkeys(row["account_id"] for row in load_accounts()))
