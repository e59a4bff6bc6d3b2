"""Helpers for driving the running system from outside: subprocesses in their own process groups,
their environment and logs, free ports, HTTP with a token, polling background work.

Nothing here touches Django's ORM: the system is driven over HTTP, as its users drive it.
"""

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "test-artifacts"
# What the test process itself puts in os.environ (pytest-django, labelloop.test_settings) and the
# caller's own configuration: never inherited by the system under test.
PRIVATE_ENV = (
    "DJANGO_SETTINGS_MODULE",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CELERY_TASK_ALWAYS_EAGER",
    "LABELLOOP_VAR_DIR",
    "TEST_BROKER_URL",
    "TEST_DATABASE_URL",
    "PORT",
)
STOP_TIMEOUT = 20.0
# Set by the e2e conftest's report hook: the phases of a test that failed, and every e2e failure.
FAILED = pytest.StashKey[list[str]]()
FAILURES: list[str] = []


def is_postgres(url: str | None) -> bool:
    return urllib.parse.urlsplit(url or "").scheme in ("postgres", "postgresql")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PRIVATE_ENV}
    env.update(extra)
    return env


def group_alive(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group ``pgid``, read from /proc."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            alive.append(int(entry.name))
    return alive


def wait_group_gone(pgid: int, timeout: float) -> list[int]:
    """Wait up to ``timeout`` for the group to empty; the pids still alive (empty when it did)."""
    deadline = time.monotonic() + timeout
    while (alive := group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return str(pid)


@dataclass
class Service:
    """A long-running subprocess in its own process group, logging to a file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes] = field(repr=False)

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str], log: Path) -> "Service":
        handle = log.open("wb")
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return cls(name=name, process=process, log=log, handle=handle)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM to the main process (its own clean shutdown), SIGKILL to the group after ``timeout``."""
        pgid = self.process.pid
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(pgid)
                self.process.wait(timeout=10)
        if wait_group_gone(pgid, 5.0):
            kill_group(pgid)
        self.handle.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str) -> Iterator[str]:
    """A new PostgreSQL database on the server of ``server_url`` (named ``prefix`` + random hex),
    yielded as its URL and dropped afterwards, connections and all."""
    import psycopg
    from psycopg import sql

    parts = urllib.parse.urlsplit(server_url)
    name = f"{prefix}{secrets.token_hex(4)}"
    admin = urllib.parse.urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run_command(argv: list[str], env: dict[str, str], log: Path, timeout: float = 240.0) -> None:
    """Run a command to its end, appending its output to ``log``; raise with its output if it fails."""
    with log.open("ab") as handle:
        handle.write(f"{time.strftime('%H:%M:%S')} $ {' '.join(argv)}\n".encode())
        handle.flush()
        result = subprocess.run(
            argv, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout
        )
    if result.returncode != 0:
        output = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(argv[1:3])} exited {result.returncode}:\n{output}")


def wait_healthy(base_url: str, services: list[Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for service in services:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited {service.process.returncode}:\n{service.tail()}")
        try:
            response = requests.get(f"{base_url}/healthz", timeout=30)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:300]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.3)
    raise RuntimeError(f"/healthz did not answer 200 within {timeout:.0f} s (last: {last})")


def save_artifacts(label: str, paths: list[Path]) -> Path:
    target = ARTIFACTS / label
    target.mkdir(parents=True, exist_ok=True)
    for path in paths:
        if path.is_file():
            shutil.copy2(path, target / path.name)
    return target


def item_failed(request: pytest.FixtureRequest) -> bool:
    return bool(request.node.stash.get(FAILED, []))


@dataclass(frozen=True)
class Live:
    """The running system: where it answers and how to log in as its superuser."""

    base_url: str
    database_url: str
    broker_url: str
    var_dir: Path
    superuser: tuple[str, str]
    services: dict[str, Service]

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


class Api:
    """requests with a token and the base URL; every call has a timeout."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Token {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        return self.session.request(method, f"{self.base_url}{path}", **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        """The JSON body of a call that must answer ``status``."""
        response = self.request(method, path, **kwargs)
        assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json() if response.content else None


def token_for(base_url: str, username: str, password: str) -> str:
    credentials = {"username": username, "password": password}
    response = requests.post(f"{base_url}/api/auth/token/", json=credentials, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] and body["expires_at"]
    return str(body["token"])


def poll(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    """Call ``check`` until it returns something truthy, and return that; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
