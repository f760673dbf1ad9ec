"""Every documented setting changes behaviour; each test shows how."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from proxy.errors import CallTimeout
from proxy.sessions import SessionPool
from registry.catalog import catalog, server_spec
from registry.discovery import discover_server_tools
from registry.models import Server
from tests.conftest import PYTHON, ROOT, database_url, free_port, stop, wait_for_port

pytestmark = pytest.mark.django_db(transaction=True)

INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}  # fmt: skip


@pytest.fixture
def probe_stdio(probe_stdio_config):
    server = Server.objects.create(name="probe", **probe_stdio_config)
    assert discover_server_tools(server).ok
    return server


def call(url: str, name: str, arguments: dict):
    async def go():
        async with Client(url) as client:
            return await client.call_tool(name, arguments)

    return anyio.run(go)


@pytest.mark.parametrize("ttl", [1, 300])
def test_tool_cache_ttl_bounds_how_long_a_change_made_behind_the_gateways_back_stays_unseen(settings, probe_stdio, ttl):
    settings.MCP_GATEWAY_TOOL_CACHE_TTL = ttl
    catalog.invalidate()
    assert "probe__echo" in catalog.current().tools
    Server.objects.filter(pk=probe_stdio.pk).update(enabled=False)  # raw SQL-like change: no signal, no bump
    time.sleep(1.2)
    still_served = "probe__echo" in catalog.current().tools
    assert still_served is (ttl == 300)


@pytest.mark.parametrize(
    ("default_mode", "server_mode", "same_process"),
    [
        ("persistent", "", True),
        ("stateless", "", False),
        ("persistent", "stateless", False),
        ("stateless", "persistent", True),
    ],
)
def test_connection_mode_decides_whether_calls_share_one_downstream_session(
    start_gateway, probe_stdio, default_mode, server_mode, same_process
):
    Server.objects.filter(pk=probe_stdio.pk).update(connection_mode=server_mode)
    gateway = start_gateway(MCP_GATEWAY_DEFAULT_CONNECTION_MODE=default_mode)
    first = call(gateway.mcp_url, "probe__count", {}).content[0].text
    second = call(gateway.mcp_url, "probe__count", {}).content[0].text
    assert first.startswith("pid ")
    assert (first == second) is same_process


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers: a hung MCP server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []
    stop_flag = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not stop_flag.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    stop_flag.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_connection_timeout_bounds_the_handshake_with_a_hung_server(settings, silent_server):
    settings.MCP_GATEWAY_CONNECTION_TIMEOUT = 0.5
    settings.MCP_GATEWAY_MAX_RETRIES = 0
    server = Server.objects.create(name="hung", transport="http", url=silent_server)
    result = discover_server_tools(server)
    assert not result.ok
    assert "within 0.5s (MCP_GATEWAY_CONNECTION_TIMEOUT)" in result.error


@pytest.mark.parametrize("retries", [0, 2])
def test_max_retries_retries_a_server_that_fails_to_start(settings, tmp_path, retries):
    settings.MCP_GATEWAY_MAX_RETRIES = retries
    attempts = tmp_path / "attempts"
    script = f"open({str(attempts)!r}, 'a').write('x\\n'); raise SystemExit(1)"
    server = Server.objects.create(name="flaky", transport="stdio", command=PYTHON, args=["-c", script])
    result = discover_server_tools(server)
    assert not result.ok and "could not start stdio server 'flaky'" in result.error
    assert attempts.read_text().count("x") == retries + 1


@pytest.mark.parametrize(("server_timeout", "default_timeout"), [(0.5, 60.0), (None, 0.5)])
def test_call_timeout_fails_a_slow_call_at_its_deadline(settings, probe_stdio, server_timeout, default_timeout):
    settings.MCP_GATEWAY_CALL_TIMEOUT = default_timeout
    Server.objects.filter(pk=probe_stdio.pk).update(timeout=server_timeout)
    probe_stdio.refresh_from_db()
    spec = server_spec(probe_stdio)

    async def go():
        return await SessionPool().call_tool(spec, "sleep", {"seconds": 120})

    started = time.monotonic()
    with pytest.raises(CallTimeout, match=r"did not answer sleep within 0\.5s"):
        anyio.run(go)
    assert time.monotonic() - started < 60  # not the 120 s the server wanted (start-up under load can take seconds)


@pytest.mark.parametrize(("expose", "count"), [("true", 3 + 8), ("false", 3)])
def test_expose_tools_lists_the_namespaced_tools_beside_the_gateway_tools(start_gateway, probe_stdio, expose, count):
    gateway = start_gateway(MCP_GATEWAY_EXPOSE_TOOLS=expose)

    async def go():
        async with Client(gateway.mcp_url) as client:
            return [t.name for t in (await client.list_tools()).tools]

    assert len(anyio.run(go)) == count


def gateway_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    from django.conf import settings

    # Loopback only, so auth may be off (tests/test_inbound_auth.py covers tokens); the test process's key
    # decrypts the secrets it saved.
    base = {"DATABASE_URL": database_url(), "GATEWAY_DATA_DIR": str(tmp_path / "data"), "GATEWAY_AUTH": "off"}
    return {**os.environ, **base, "DJANGO_SECRET_KEY": settings.SECRET_KEY, **extra}


def test_stdio_transport_serves_the_tools_and_imports_server_config_path_at_start(tmp_path, probe_stdio_config):
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"servers": [{"name": "probe", **probe_stdio_config}]}))
    env = gateway_env(tmp_path, GATEWAY_TRANSPORT="stdio", SERVER_CONFIG_PATH=str(config))
    script = str(Path(PYTHON).parent / "mcp-orchestration-gateway")
    params = StdioServerParameters(command=script, args=["--no-discover"], env=env, cwd=str(ROOT))

    async def go():
        with open(tmp_path / "stderr.log", "w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                await client.call_tool("discover_tools", {"server_name": "probe"})
                return await client.call_tool(
                    "call_remote_tool", {"tool_name": "probe__add", "arguments": {"a": 1, "b": 2}}
                )

    result = anyio.run(go)
    assert result.content[0].text == "3", (tmp_path / "stderr.log").read_text()[-2000:]


def test_http_transport_listens_on_gateway_host_and_port(tmp_path):
    port = free_port()
    env = gateway_env(tmp_path, GATEWAY_TRANSPORT="http", GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(port))
    script = str(Path(PYTHON).parent / "mcp-orchestration-gateway")
    proc = subprocess.Popen([script, "--no-import"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}

        async def go():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                return [t.name for t in (await client.list_tools()).tools]

        assert anyio.run(go)[:3] == ["tool_search", "discover_tools", "call_remote_tool"]
    finally:
        stop(proc)


@pytest.mark.parametrize(("level", "shown"), [("debug", True), ("warning", False)])
def test_log_level_decides_what_the_gateway_logs(tmp_path, probe_stdio, level, shown):
    env = gateway_env(tmp_path, GATEWAY_LOG_LEVEL=level)
    proc = subprocess.run(
        [PYTHON, "manage.py", "discover", "probe"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert ("discovered probe: 8 tools" in proc.stderr) is shown


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MCP_GATEWAY_CONNECTION_TIMEOUT", "soon", "MCP_GATEWAY_CONNECTION_TIMEOUT must be a number of seconds"),
        ("MCP_GATEWAY_TOOL_CACHE_TTL", "0", "MCP_GATEWAY_TOOL_CACHE_TTL must be at least 1 seconds"),
        ("MCP_GATEWAY_MAX_RETRIES", "-1", "MCP_GATEWAY_MAX_RETRIES must be between 0 and 10"),
        ("STORAGE_BACKEND", "disk", "STORAGE_BACKEND must be one of memory, redis"),
        ("MCP_GATEWAY_DEFAULT_CONNECTION_MODE", "pooled", "must be one of persistent, stateless"),
        ("GATEWAY_TRANSPORT", "sse", "GATEWAY_TRANSPORT must be one of stdio, http"),
        ("GATEWAY_PORT", "http", "GATEWAY_PORT must be a whole number"),
        ("GATEWAY_LOG_LEVEL", "loud", "GATEWAY_LOG_LEVEL must be one of debug"),
    ],
)
def test_a_nonsense_setting_is_refused_at_start_with_its_name(tmp_path, name, value, message):
    env = gateway_env(tmp_path, **{name: value})
    proc = subprocess.run([PYTHON, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert message in proc.stderr


@pytest.mark.parametrize(
    ("host_header", "allowed_hosts", "status"),
    [("127.0.0.1", None, 200), ("evil.example", None, 421), ("evil.example", "evil.example", 200)],
)
def test_mcp_endpoint_checks_the_host_header_against_allowed_hosts(start_gateway, host_header, allowed_hosts, status):
    env = {"GATEWAY_ALLOWED_HOSTS": allowed_hosts} if allowed_hosts else {}
    gateway = start_gateway(**env)
    headers = {"Host": host_header, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    response = httpx.post(gateway.mcp_url, json=INITIALIZE, headers=headers)
    assert response.status_code == status


@pytest.mark.parametrize(("interval", "seen"), [(0.05, True), (60.0, False)])
def test_catalog_poll_interval_is_how_soon_another_processs_change_is_seen(settings, probe_stdio, interval, seen):
    from django.core.cache import cache

    from registry.catalog import VERSION_KEY

    settings.MCP_GATEWAY_CATALOG_POLL_INTERVAL = interval
    catalog.invalidate()
    assert "probe__echo" in catalog.current().tools
    Server.objects.filter(pk=probe_stdio.pk).update(enabled=False)
    cache.set(VERSION_KEY, "bumped-by-another-process", timeout=None)  # what another process's write does
    time.sleep(0.2)
    assert ("probe__echo" not in catalog.current().tools) is seen


@pytest.mark.parametrize(
    ("origin", "allowed_origins", "status"),
    [
        ("http://127.0.0.1:3000", None, 200),
        ("http://evil.example", None, 403),
        ("http://evil.example", "http://evil.example", 200),
    ],
)
def test_mcp_endpoint_checks_the_origin_header_against_allowed_origins(start_gateway, origin, allowed_origins, status):
    gateway = start_gateway(**({"GATEWAY_ALLOWED_ORIGINS": allowed_origins} if allowed_origins else {}))
    headers = {"Origin": origin, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    assert httpx.post(gateway.mcp_url, json=INITIALIZE, headers=headers).status_code == status
