"""Private Redis and PostgreSQL servers that a test may stop and start (never the shared ones)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import pytest

from .conftest import free_port, wait_for_port


class PrivateRedis:
    """redis-server on a free loopback port, without persistence: a restart loses every key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def pause(self) -> None:
        """Hang it: connections open but nothing answers (a network partition, an overloaded Redis)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def private_redis() -> PrivateRedis:
    if shutil.which("redis-server") is None:
        if os.environ.get("GATEWAY_REQUIRE_PRODUCTION_TESTS") == "1":
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        pytest.skip("redis-server is not installed")
    return PrivateRedis()


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory, run as the postgres user (root may not run it)."""

    def __init__(self) -> None:
        binaries = sorted(glob("/usr/lib/postgresql/*/bin/initdb"))
        if not binaries:
            pytest.skip("PostgreSQL server binaries are not installed")
        self.bin = Path(binaries[-1]).parent
        # Not under pytest's tmp_path: the postgres user must be able to reach it.
        self.root = Path(tempfile.mkdtemp(prefix="gateway-test-pg-"))
        self.datadir = self.root / "pgdata"
        self.port = free_port()
        self.run_as = [] if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/gateway"

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.run_as, *cmd], check=True, capture_output=True, cwd="/tmp")

    def init(self) -> None:
        if self.run_as:
            shutil.chown(self.root, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "gateway")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-o", opts, "-l", str(self.root / "log"), "-w", "start"
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (read from /proc)."""
    found = []
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(Path(stat).parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_until_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """The pids still alive after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


# Fixtures (registered for every test module through `pytest_plugins` in conftest.py).


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    server = private_redis()
    server.start()
    yield server
    server.resume()  # in case a test left it paused
    server.stop()


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
    except (OSError, subprocess.CalledProcessError) as exc:
        server.remove()
        if os.environ.get("GATEWAY_REQUIRE_PRODUCTION_TESTS") == "1":
            pytest.fail(f"cannot run a private PostgreSQL here, and the production tests are mandatory: {exc}")
        pytest.skip(f"cannot run a private PostgreSQL here: {exc}")
    yield server
    server.remove()
