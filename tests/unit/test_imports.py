"""The import structure: every module can be imported first, no module takes part in
an import cycle, and the rooms' layers contract (``.importlinter``) holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_imports_first_in_a_process_of_its_own() -> None:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("import_each.py"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert " 0 failed" in done.stdout


def test_no_module_of_fraudapp_is_in_an_import_cycle() -> None:
    graph = grimp.build_graph("fraudapp")
    cycles = [
        f"{importer} -> {imported} -> ... -> {importer}"
        for importer in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(importer))
        if graph.chain_exists(importer=imported, imported=importer)
    ]
    assert cycles == []


def test_the_rooms_keep_their_layers() -> None:
    """``lint-imports`` with the contracts in ``.importlinter`` (``make test`` runs it
    too; here so that a bare ``pytest`` checks it as well)."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(ROOT / ".importlinter")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
