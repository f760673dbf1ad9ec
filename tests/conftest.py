"""Fixtures: our probe server (stdio and HTTP), a real gateway under uvicorn, and an MCP client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = ROOT / "tests" / "servers" / "probe_server.py"
pytest_plugins = ["tests.private_services"]  # the redis_server and postgres fixtures
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(autouse=True)
def allow_loopback_servers(settings) -> None:
    """Our test servers listen on 127.0.0.1: allow loopback for every test (test_ssrf.py turns it off)."""
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = True


@pytest.fixture(scope="session")
def probe_http_url() -> Iterator[str]:
    """The probe server over streamable HTTP, for the whole session."""
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(PROBE), "http", "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        stop(proc)


@pytest.fixture
def probe_stdio_config() -> dict:
    return {"transport": "stdio", "command": PYTHON, "args": [str(PROBE), "stdio"]}


def cancel_mid_call(mcp_url: str, tool: str, marker: Path) -> str:
    """Start `tool` (the probe's sleep), cancel it once the downstream reports progress, and wait until the
    downstream wrote `marker` (its cancellation). Returns the answer to an echo call made after it."""
    import anyio
    from mcp import Client

    server = tool.partition("__")[0]

    async def go() -> str:
        started = anyio.Event()

        async def on_progress(progress, total, message):  # type: ignore[no-untyped-def]
            started.set()

        async with Client(mcp_url) as client:
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    await client.call_tool(tool, {"seconds": 20}, progress_callback=on_progress)

                tg.start_soon(slow)
                await started.wait()  # the downstream is running the call
                tg.cancel_scope.cancel()
            with anyio.fail_after(20):
                while not marker.exists():
                    await anyio.sleep(0.05)
            result = await client.call_tool(f"{server}__echo", {"text": "still usable"})
            return result.content[0].text

    return anyio.run(go)


def mcp_server_time_command() -> str:
    path = Path(PYTHON).parent / "mcp-server-time"
    if not path.exists():
        pytest.fail("mcp-server-time is not installed: run the README's test command (it installs the dev extras)")
    return str(path)


def database_url() -> str:
    """The URL of the test database this run uses, for gateway processes started by tests."""
    from django.db import connection

    conf = connection.settings_dict
    if conf["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{conf['NAME']}"
    user = conf.get("USER") or ""
    auth = f"{user}@" if user else ""
    return f"postgres://{auth}{conf.get('HOST') or '127.0.0.1'}:{conf.get('PORT') or 5432}/{conf['NAME']}"


class Gateway:
    def __init__(self, url: str, proc: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.proc = proc
        self.log = log

    @property
    def mcp_url(self) -> str:
        return f"{self.url}/mcp"


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator:
    """Start the real gateway (uvicorn + the ASGI app) on the test database; stopped after the test."""
    from django.conf import settings

    started: list[Gateway] = []

    def start(**env: str) -> Gateway:
        port = free_port()
        log = tmp_path / f"gateway-{port}.log"
        full_env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "GATEWAY_DATA_DIR": str(tmp_path / "data"),
            "GATEWAY_LOG_LEVEL": "info",
            # Loopback only, so auth may be off; tests of inbound auth pass GATEWAY_AUTH="on".
            "GATEWAY_AUTH": "off",
            # The probe servers listen on 127.0.0.1 (tests/test_ssrf.py turns this off to test the guard).
            "MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS": "true",
            # The test process's key, so the gateway decrypts the secrets the tests saved.
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            **env,
        }
        cmd = [
            PYTHON, "-m", "uvicorn", "gateway_project.asgi:application",
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stderr=log.open("w"), stdout=subprocess.DEVNULL)
        wait_for_port(port, proc)
        gateway = Gateway(f"http://127.0.0.1:{port}", proc, log)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        stop(gateway.proc)
