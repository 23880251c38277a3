"""The exact versions of the libraries whose internals fraudapp uses, checked when a
worker starts.

Why: the bulk feed copies parts of faust's consumer, the outbox hooks faust's
producer flush, state tables open their partitions' RocksDB databases through
faust's store, and the watermarks read aiokafka's fetcher; each was read against
one version. Another version may change what those parts rely on without any error
until records are lost, so a worker on other versions refuses to start and says
which (``FRAUDAPP_ALLOW_UNPINNED=1`` starts it anyway, for trying an upgrade).
``constraints.txt`` installs these versions; ``tests/unit/test_pins.py`` keeps the
two lists equal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata

#: Distribution name -> the version fraudapp was read and tested against.
PINNED: dict[str, str] = {
    "faust-streaming": "0.15.3",
    "aiokafka": "0.14.0",
    "mode-streaming": "0.7.1",
    "rocksdict": "0.3.29",
}


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mismatches(
    pinned: Mapping[str, str] = PINNED, installed: Callable[[str], str | None] = _installed
) -> list[str]:
    """``name found X, pinned Y`` for each pinned library installed at another version."""
    out = []
    for name, version in pinned.items():
        found = installed(name)
        if found != version:
            out.append(f"{name} {found or 'not installed'} (pinned {version})")
    return out


def require_pinned(env: Mapping[str, str]) -> None:
    """Refuse to start on other versions than :data:`PINNED`, in one line."""
    wrong = mismatches()
    if wrong and env.get("FRAUDAPP_ALLOW_UNPINNED", "").strip() not in ("1", "true", "yes"):
        raise SystemExit(
            f"fraudapp: {'; '.join(wrong)}: install with -c constraints.txt, or set"
            " FRAUDAPP_ALLOW_UNPINNED=1 to try another version"
        )
