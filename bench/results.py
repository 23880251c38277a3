"""Each benchmark owns one section of ``bench/RESULTS.md``, between its own markers.

Several benchmarks write that file, at different times and on different machines;
each replaces only what stands between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``, so one run never erases another's figures.
"""

from __future__ import annotations

import statistics
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def rate_table(
    rows: dict[str, list[float]],
    labels: dict[str, str],
    correct: dict[str, bool],
    unit: str = "events/s",
) -> list[str]:
    """Markdown rows of rates against the ``bare`` baseline, measured in the same
    rounds: median, range, ratio to the baseline's median, and the oracle check."""
    bare = statistics.median(rows["bare"])
    lines = [
        f"| implementation | {unit} (median) | min–max | vs. bare consumer | matches oracle |",
        "|---|---|---|---|---|",
    ]
    for name, values in rows.items():
        median = statistics.median(values)
        ok = "—" if name == "bare" else ("yes" if correct[name] else "**NO**")
        lines.append(
            f"| {labels[name]} | {median:,.0f} | {min(values):,.0f}–{max(values):,.0f}"
            f" | {median / bare:.3f} | {ok} |"
        )
    return lines


def write_section(name: str, section: str, path: Path = RESULTS) -> None:
    """Put ``section`` between NAME's markers; markers missing are added at the end."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        head, _, rest = text.partition(start)
        tail = rest.partition(end)[2]
    else:
        head, tail = text.rstrip("\n") + "\n\n", "\n"
    path.write_text(f"{head}{start}\n{section.strip()}\n{end}{tail}")
