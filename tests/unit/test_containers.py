"""The container files: Dockerfile, .dockerignore, docker-compose.yml, deploy/prometheus.yml.

No Docker engine runs here or on CI, so nothing is built or started. The compose file
is validated by a compose command itself (`docker compose config` needs no engine);
the rest is read as text and YAML and held to what the README promises: a non-root
worker image with a health check, every port on 127.0.0.1, three workers that can
reach each other, one partition count, and Prometheus scraping with the API token.
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_FILE = ROOT / "docker-compose.yml"

TOKENS = {
    "FRAUDAPP_API_TOKEN": "test-api-token-0123456789",
    "FRAUDAPP_INGEST_TOKEN": "test-ingest-token-0123456789",
}
WORKER_ENTRYPOINT = ["faust", "-A", "fraudapp.app", "worker", "-l", "info"]
INSTALL_HINT = (
    "no compose command found to validate docker-compose.yml; install one: on Debian 12"
    " `apt-get install -y --no-install-recommends docker-compose` (Compose v1.29, no engine"
    " needed), or the Docker Compose v2 plugin for `docker compose`"
)


# -- Dockerfile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comment lines dropped (as Docker
    does, also inside a continued instruction)."""
    assert not re.match(r"#\s*escape\s*=", text), "a custom escape character is not parsed here"
    instructions: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        whole = pending + stripped
        pending = ""
        if whole.strip():
            keyword, _, args = whole.strip().partition(" ")
            instructions.append(Instruction(keyword.upper(), args.strip()))
    assert not pending.strip(), "the Dockerfile ends inside a continued line"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions per build stage, each list starting with its FROM."""
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """The stage's ENV, both `ENV a=b c=d` and the legacy `ENV a b` form."""
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword != "ENV":
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", ins.args):
            for pair in shlex.split(ins.args):
                name, _, value = pair.partition("=")
                env[name] = value
        else:
            name, _, value = ins.args.partition(" ")
            env[name] = value.strip()
    return env


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


@pytest.fixture(scope="module")
def dockerfile() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[Instruction]) -> list[Instruction]:
    return stages(dockerfile)[-1]


def test_dockerfile_base_is_python_311_slim(dockerfile: list[Instruction]) -> None:
    global_args = {}
    for ins in dockerfile:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            name, _, default = ins.args.partition("=")
            global_args[name] = default
    named = {s[0].args.split()[-1] for s in stages(dockerfile) if " AS " in s[0].args.upper()}
    for stage in stages(dockerfile):
        image = stage[0].args.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), image)
        assert image.startswith("python:3.11-slim") or image in named, image


def test_final_stage_runs_as_a_non_root_user_after_every_root_step(
    final_stage: list[Instruction],
) -> None:
    users = [i for i, ins in enumerate(final_stage) if ins.keyword == "USER"]
    assert users, "the final stage sets no USER: the worker would run as root"
    last = users[-1]
    user = final_stage[last].args.split(":")[0].strip()
    if user.isdigit():
        assert int(user) != 0, "USER 0 is root"
    else:
        assert user != "root"
        created = " ".join(ins.args for ins in final_stage if ins.keyword == "RUN")
        assert re.search(rf"\b(useradd|adduser)\b[^;&|]*\b{re.escape(user)}\b", created), (
            f"USER {user} is not created in the final stage"
        )
    later_runs = [ins.args for ins in final_stage[last + 1 :] if ins.keyword == "RUN"]
    assert not later_runs, f"RUN after the last USER (needs root? then move it up): {later_runs}"


def test_data_volume_belongs_to_the_worker_user(final_stage: list[Instruction]) -> None:
    user = [ins.args for ins in final_stage if ins.keyword == "USER"][-1]
    uid = user.split(":")[0]
    env = env_of(final_stage)
    datadir = env.get("FRAUDAPP_DATADIR")
    assert datadir == "/data"
    volumes = " ".join(ins.args for ins in final_stage if ins.keyword == "VOLUME")
    assert datadir in volumes, "the state directory is not a VOLUME"
    runs = " ".join(ins.args for ins in final_stage if ins.keyword == "RUN")
    assert re.search(rf"chown\s+(-\S+\s+)*({re.escape(uid)}|\w+)(:\S+)?\s+{datadir}\b", runs), (
        f"{datadir} is not chowned to the worker's user: a fresh named volume would be root's"
    )


def test_container_defaults_and_no_secrets(dockerfile: list[Instruction]) -> None:
    final = stages(dockerfile)[-1]
    env = env_of(final)
    assert env.get("WEB_BIND") == "0.0.0.0"  # reachable through the published port
    assert env.get("WEB_PORT") == "6066"
    exposed = " ".join(ins.args for ins in final if ins.keyword == "EXPOSE").split()
    assert "6066" in exposed or "6066/tcp" in exposed
    for ins in dockerfile:
        if ins.keyword in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"TOKEN|SECRET|PASSWORD", ins.args, re.I), (
                f"{ins.keyword} {ins.args}: no secret belongs in the image"
            )


def test_project_installed_without_test_extras(dockerfile: list[Instruction]) -> None:
    installs = [
        ins.args for ins in dockerfile if ins.keyword == "RUN" and "pip install" in ins.args
    ]
    assert installs, "the Dockerfile does not pip install the project"
    assert any(re.search(r"pip install\b[^&;|]*\s\.(\s|$)", a) for a in installs), installs
    for args in installs:
        assert "[test]" not in args and ".[" not in args, f"test extras installed: {args}"


def test_worker_runs_on_jemalloc(final_stage: list[Instruction]) -> None:
    """The README's memory bound was measured with jemalloc preloaded."""
    preload = env_of(final_stage).get("LD_PRELOAD")
    assert preload == "/usr/lib/libjemalloc.so.2", preload
    runs = " ".join(ins.args for ins in final_stage if ins.keyword == "RUN")
    assert "install -y --no-install-recommends libjemalloc2" in runs
    assert f"ln -s /usr/lib/*-linux-gnu/libjemalloc.so.2 {preload}" in runs


def test_reference_tables_are_in_the_image(final_stage: list[Instruction]) -> None:
    # A non-editable install has no checkout beside it: FRAUDAPP_TABLES must point at
    # a copy of tables/ (reference.tables_dir()).
    tables = env_of(final_stage).get("FRAUDAPP_TABLES")
    assert tables, "FRAUDAPP_TABLES is not set: the worker would look for site-packages/../tables"
    copies = [shlex.split(ins.args) for ins in final_stage if ins.keyword == "COPY"]
    assert any(c[-2:] == ["tables", tables] for c in copies if "--from" not in " ".join(c))


def test_entrypoint_is_the_faust_worker(final_stage: list[Instruction]) -> None:
    entrypoints = [ins.args for ins in final_stage if ins.keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT"
    assert exec_form(entrypoints[-1]) == WORKER_ENTRYPOINT  # exec form: faust gets SIGTERM


def _healthcheck_command(final_stage: list[Instruction]) -> list[str]:
    checks = [ins.args for ins in final_stage if ins.keyword == "HEALTHCHECK"]
    assert checks, "no HEALTHCHECK"
    args = checks[-1]
    assert args.upper() != "NONE"
    _, cmd, command = re.split(r"(?:^|\s)(CMD)\s", args, maxsplit=1)
    assert cmd == "CMD"
    return exec_form(command)


def test_healthcheck_uses_python_not_curl(final_stage: list[Instruction]) -> None:
    command = _healthcheck_command(final_stage)
    text = " ".join(command)
    assert command[0] == "python" and "urllib" in text and "/health" in text
    assert "127.0.0.1" in text and "6066" in text
    assert "curl" not in text and "wget" not in text  # neither is in python:*-slim


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_passes_on_200_only(
    final_stage: list[Instruction], status: int, healthy: bool
) -> None:
    """Run the image's health command against a stand-in /health on this machine."""
    command = _healthcheck_command(final_stage)
    handler = type("Health", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "WEB_PORT": str(server.server_address[1])}
        done = subprocess.run(
            [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (done.returncode == 0) is healthy, done.stderr.decode()


# -- .dockerignore -----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1].replace("[!", "[^"), end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(text: str) -> Callable[[str], bool]:
    """A predicate: is this context path left out? The last pattern that matches the
    path or one of its parent directories decides (`!` re-includes)."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line[1:] if negate else line).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))

    def excluded(path: str) -> bool:
        parts = path.split("/")
        result = False
        for negate, regex in rules:
            if any(regex.match("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
                result = not negate
        return result

    return excluded


def _copy_sources(dockerfile: list[Instruction]) -> list[str]:
    sources = []
    for ins in dockerfile:
        if ins.keyword in ("COPY", "ADD"):
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            if "--from" not in ins.args:
                sources += [w.rstrip("/").removeprefix("./") for w in words[:-1]]
    return sources


def test_dockerignore_sends_only_what_the_dockerfile_copies(
    dockerfile: list[Instruction],
) -> None:
    excluded = dockerignore_excludes(DOCKERIGNORE.read_text(encoding="utf-8"))
    sources = _copy_sources(dockerfile)
    assert {"pyproject.toml", "README.md", "fraudapp", "tables"} <= set(sources)
    for must_go in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/unit/test_containers.py",
        "bench/RESULTS.md",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        "fraudapp-data/v1/x",
        "test-artifacts/log.txt",
        "fraudapp.egg-info/PKG-INFO",
        "fraudapp/__pycache__/app.cpython-311.pyc",
        "fraudapp/clicks/__pycache__/agents.cpython-311.pyc",
        "build/lib/fraudapp/app.py",
        "dist/fraudapp-0.1.0.whl",
    ):
        assert excluded(must_go), f"{must_go} would be sent to the build"
    for entry in ROOT.iterdir():
        if entry.name not in sources:
            assert excluded(entry.name), f"{entry.name} would be sent to the build"
    for source in sources:
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        assert files, f"COPY {source}: nothing there"
        for file in files:
            rel = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in rel and not rel.endswith(".pyc"):
                assert not excluded(rel), f"{rel} is copied by the Dockerfile but ignored"


def test_package_data_ships_every_data_file() -> None:
    """The image installs fraudapp without its checkout: a file under fraudapp/ that is
    no Python module must be in package-data, or the worker lacks it (the dashboard's
    vendored scripts under web/static/vendor/, for one)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["fraudapp"]
    package = ROOT / "fraudapp"
    shipped = {
        Path(p).resolve()
        for pattern in patterns
        for p in glob.glob(str(package / pattern), recursive=True)
        if Path(p).is_file()
    }
    data = [
        p
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    missing = sorted(str(p.relative_to(package)) for p in data if p.resolve() not in shipped)
    assert not missing, (
        f"not in [tool.setuptools.package-data] fraudapp = {patterns}, so not in the image:"
        f" {missing}"
    )


# -- docker-compose.yml ------------------------------------------------------------------------


def _compose_commands() -> list[list[str]]:
    found = []
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            found.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        found.append(["docker-compose"])
    return found


COMPOSE_COMMANDS = _compose_commands()


def _compose_config(command: list[str] | None, tokens: dict[str, str | None], tmp_path: Path):
    if command is None:
        pytest.fail(INSTALL_HINT)
    empty = tmp_path / "empty.env"  # so that a developer's .env cannot fill in a token
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDAPP_", "COMPOSE_"))}
    env.update({k: v for k, v in tokens.items() if v is not None})
    return subprocess.run(
        [*command, "--env-file", str(empty), "-f", str(COMPOSE_FILE), "config", "-q"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


compose_command = pytest.mark.parametrize(
    "command", COMPOSE_COMMANDS or [None], ids=lambda c: " ".join(c) if c else "none"
)


@compose_command
def test_compose_file_is_valid_with_both_tokens(command, tmp_path: Path) -> None:
    done = _compose_config(command, TOKENS, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@compose_command
@pytest.mark.parametrize("missing", sorted(TOKENS))
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_compose_refuses_to_run_without_a_token(
    command, missing: str, value: str | None, tmp_path: Path
) -> None:
    done = _compose_config(command, {**TOKENS, missing: value}, tmp_path)
    assert done.returncode != 0, f"compose accepted the file without {missing}"
    assert f"set {missing}" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def _is_fraudapp(service: dict[str, Any]) -> bool:
    build = service.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    return context in (".", "./")


def _workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """fraudapp services that keep the image's entrypoint: the faust worker."""
    return {
        name: s
        for name, s in _services(compose).items()
        if _is_fraudapp(s) and "entrypoint" not in s and "command" not in s
    }


def _named_volume(volumes: list[Any], target: str) -> str | None:
    for volume in volumes:
        if isinstance(volume, str):
            parts = volume.split(":")
            if len(parts) >= 2 and parts[1] == target:
                return parts[0]
        elif volume.get("target") == target:
            return volume.get("source")
    return None


def _port_host_ip(port: Any) -> str | None:
    if isinstance(port, dict):
        return port.get("host_ip")
    parts = str(port).split(":")  # [ip:]host:container[/proto]; only IPv4 here
    return parts[0] if len(parts) == 3 else None


def test_every_published_port_is_bound_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        assert service.get("network_mode") != "host", f"{name} uses the host's network"
        for port in service.get("ports") or []:
            assert _port_host_ip(port) == "127.0.0.1", f"{name} publishes {port} beyond 127.0.0.1"


def test_three_workers_each_with_its_own_host_name_and_state(compose: dict[str, Any]) -> None:
    workers = _workers(compose)
    assert len(workers) == 3, sorted(workers)
    hosts, volumes = set(), set()
    for name, service in workers.items():
        assert "replicas" not in (service.get("deploy") or {}), (
            f"{name}: replicas would share one WEB_HOST"
        )
        env = _env(service)
        # Other workers forward keyed requests to http://WEB_HOST:WEB_PORT: it must be a
        # name the compose network resolves to this one container.
        assert env.get("WEB_HOST") in (name, service.get("hostname")), (name, env.get("WEB_HOST"))
        assert env.get("WEB_PORT", "6066") == "6066"
        hosts.add(env["WEB_HOST"])
        volume = _named_volume(service.get("volumes") or [], "/data")
        assert volume and volume in (compose.get("volumes") or {}), f"{name}: no named /data"
        volumes.add(volume)
        assert env.get("BROKER_URL") == "kafka://redpanda:9092"
        for token in TOKENS:
            assert re.fullmatch(
                rf"\$\{{{token}:\?[^}}]*set {token}[^}}]*\}}", env.get(token, "")
            ), f"{name}: {token} must come from the environment as ${{{token}:?set {token}...}}"
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert len(hosts) == 3 and len(volumes) == 3


def test_topics_step_and_workers_agree_on_partitions(compose: dict[str, Any]) -> None:
    services = _services(compose)
    topics = services["topics"]
    assert _is_fraudapp(topics)
    assert topics.get("entrypoint") == ["fraudapp", "topics"] or "fraudapp topics" in str(
        topics.get("command")
    )
    assert topics.get("restart", "no") == "no"
    assert topics["depends_on"]["redpanda"]["condition"] == "service_healthy"
    partitions = _env(topics).get("FRAUDAPP_PARTITIONS")
    assert partitions and int(partitions) >= len(_workers(compose))
    assert _env(topics).get("BROKER_URL") == "kafka://redpanda:9092"
    for name, worker in _workers(compose).items():
        assert _env(worker).get("FRAUDAPP_PARTITIONS") == partitions, name
        assert _env(worker).get("FRAUDAPP_APP_ID") == _env(topics).get("FRAUDAPP_APP_ID"), name


def test_broker_is_redpanda_advertised_in_the_network(compose: dict[str, Any]) -> None:
    redpanda = _services(compose)["redpanda"]
    assert redpanda["image"].split(":")[0] in (
        "redpandadata/redpanda",
        "docker.redpanda.com/redpandadata/redpanda",
    )
    command = " ".join(redpanda["command"])
    assert "dev-container" in command
    assert re.search(r"--advertise-kafka-addr[= ]\S*://redpanda:9092", command), command
    assert redpanda.get("healthcheck", {}).get("test")


def test_prometheus_scrapes_every_worker_with_the_api_token(compose: dict[str, Any]) -> None:
    services = _services(compose)
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:") and "entrypoint" not in prometheus
    mounts = {}
    for volume in prometheus.get("volumes") or []:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    config_source = mounts["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load((ROOT / config_source).read_text(encoding="utf-8"))

    scraped: set[str] = set()
    token_files = set()
    for job in config["scrape_configs"]:
        targets = {t for sc in job.get("static_configs", []) for t in sc["targets"]}
        if not targets & {f"{n}:6066" for n in _workers(compose)}:
            continue
        assert job.get("metrics_path", "/metrics") == "/metrics"
        auth = job.get("authorization") or {}
        assert auth.get("type", "Bearer") == "Bearer"
        assert "credentials" not in auth, "a literal token in the Prometheus config"
        assert auth.get("credentials_file"), f"job {job['job_name']} sends no bearer token"
        token_files.add(auth["credentials_file"])
        scraped |= targets
    hosts = {f"{_env(w)['WEB_HOST']}:6066" for w in _workers(compose).values()}
    assert scraped == hosts, f"Prometheus scrapes {sorted(scraped)}, the workers are {hosts}"

    # The token file lives in a volume that a one-shot service fills from the
    # environment before Prometheus starts.
    for token_file in token_files:
        directory = os.path.dirname(token_file)
        volume = mounts.get(directory)
        assert volume in (compose.get("volumes") or {}), f"{directory} is not a named volume"
        writers = [
            (name, s)
            for name, s in services.items()
            if s is not prometheus
            and any(str(v).startswith(f"{volume}:") for v in s.get("volumes") or [])
        ]
        assert len(writers) == 1, writers
        name, writer = writers[0]
        assert "FRAUDAPP_API_TOKEN:?" in _env(writer).get("FRAUDAPP_API_TOKEN", "")
        script = " ".join(writer.get("entrypoint") or []) + " " + str(writer.get("command", ""))
        assert os.path.basename(token_file) in script and "FRAUDAPP_API_TOKEN" in script
        assert prometheus["depends_on"][name]["condition"] == "service_completed_successfully"


def test_the_checks_own_parsers_on_known_inputs() -> None:
    parsed = dockerfile_instructions(
        "FROM python:3.11-slim AS build\nRUN a \\\n# comment\n\n    && b\nuser 10001\n"
    )
    assert parsed == [
        Instruction("FROM", "python:3.11-slim AS build"),
        Instruction("RUN", "a && b"),
        Instruction("USER", "10001"),
    ]
    assert env_of([Instruction("ENV", "A=1 B='x y'"), Instruction("ENV", "C z")]) == {
        "A": "1",
        "B": "x y",
        "C": "z",
    }
    assert [_port_host_ip(p) for p in ("6061:6066", "0.0.0.0:1:2", {"target": 1})] == [
        None,
        "0.0.0.0",
        None,
    ]
    excluded = dockerignore_excludes("*\n!fraudapp\n**/__pycache__\n")
    assert excluded(".venv/x") and excluded("fraudapp/a/__pycache__/b.pyc")
    assert not excluded("fraudapp/a/b.py")
