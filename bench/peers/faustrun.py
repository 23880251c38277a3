"""How both faust peers run: an app of their own, started as faust's own worker.

Each run gets its own app id (so its own consumer group, changelogs and offsets) and
its own data directory; the web server faust's worker always starts is bound to
loopback on a free port, because faust's default is every interface on 6066.
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import faust


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_app(args: argparse.Namespace, **config: Any) -> faust.App:
    """A faust app on the suite's broker, reading the topic from its start."""
    return faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        datadir=str(args.workdir),
        web_port=free_port(),
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        topic_partitions=4,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=args.session_timeout,
        **config,
    )


def run_worker(app: faust.App) -> None:
    """``faust worker`` for ``app``; the suite stops it with SIGTERM once the result
    file is there."""
    sys.argv = [sys.argv[0], "worker", "-l", "warn"]
    app.main()
