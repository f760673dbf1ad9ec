"""stdio supervision and per-server guards, as callers and operators meet them.

Real gateway processes (uvicorn) where the behaviour crosses process boundaries (shutdown,
SIGKILL, notifications); the session pool in-process where a test needs its monitoring view.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from proxy.sessions import SessionPool
from registry.catalog import server_spec
from registry.discovery import discover_server_tools
from registry.models import Server

from .conftest import PROBE, PYTHON, cancel_mid_call, free_port, stop, wait_for_port

pytestmark = pytest.mark.django_db(transaction=True)


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (an exited child waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def survivors(pids: list[int], within: float = 20.0) -> list[int]:
    """The pids still alive once they all died or `within` seconds passed."""
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def text(result) -> str:
    return result.content[0].text


def call(url: str, tool: str, arguments: dict | None = None):
    async def go():
        async with Client(url) as client:
            return await client.call_tool(tool, arguments or {})

    return anyio.run(go)


@pytest.fixture
def stubborn_probe(probe_stdio_config):
    """A stdio probe that ignores SIGTERM and does not exit when its stdin closes."""
    env = {"PROBE_STUBBORN": "1", "PROBE_SUPERVISION": "1"}
    server = Server.objects.create(name="probe", env=env, **probe_stdio_config)
    assert discover_server_tools(server).ok
    return server


# --- shutdown: no zombie, no orphan -------------------------------------------------------------


def test_graceful_shutdown_stops_a_child_that_ignores_sigterm_and_its_grandchild(start_gateway, stubborn_probe):
    gateway = start_gateway()
    child = int(text(call(gateway.mcp_url, "probe__count")).removeprefix("pid "))
    grandchild = int(text(call(gateway.mcp_url, "probe__spawn")))
    assert alive(child) and alive(grandchild)

    gateway.proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down (stdin EOF, SIGTERM, then SIGKILL to each child's group), then re-raises SIGTERM.
    assert gateway.proc.wait(30) in (0, -signal.SIGTERM)

    assert survivors([child, grandchild]) == []


def test_a_gateway_killed_with_sigkill_leaves_no_stdio_child_or_grandchild(start_gateway, stubborn_probe):
    gateway = start_gateway()
    child = int(text(call(gateway.mcp_url, "probe__count")).removeprefix("pid "))
    grandchild = int(text(call(gateway.mcp_url, "probe__spawn")))  # like the server `npx` starts
    assert alive(child) and alive(grandchild)

    gateway.proc.kill()
    gateway.proc.wait(10)

    assert survivors([child, grandchild]) == []


# --- restart with backoff, give up after a crash loop ----------------------------------------------


def test_a_crash_looping_stdio_server_is_given_up_and_then_refused_at_once(settings, probe_stdio_config):
    settings.MCP_GATEWAY_CIRCUIT_FAILURES = 3
    settings.MCP_GATEWAY_CIRCUIT_COOLDOWN = 600
    spec = server_spec(Server.objects.create(name="probe", **probe_stdio_config))

    async def go():
        pool = SessionPool()
        async with pool.running():
            crashes = []
            for _ in range(3):
                crashes.append(text(await pool.call_tool(spec, "count", {})))
                with pytest.raises(Exception) as failed:
                    await pool.call_tool(spec, "crash", {})
                crashes.append(str(failed.value))
            await anyio.sleep(0.5)  # the last exit is noticed by the supervisor
            with pytest.raises(Exception) as refused:
                await pool.call_tool(spec, "count", {})
            return crashes, str(refused.value), pool.server_states()["probe"]

    crashes, refused, state = anyio.run(go)
    pids = crashes[0::2]
    assert len(set(pids)) == 3  # restarted after each crash
    assert "server 'probe' failed during the call: its process exited" in crashes[1]
    assert "crashing on request" in crashes[1]  # its stderr tail
    assert "unhealthy: its process crashed 3 times within 60s" in refused
    assert "Calls are refused for another" in refused and "MCP_GATEWAY_CIRCUIT_COOLDOWN" in refused
    assert state["status"] == "unhealthy"
    assert state["recent_crashes"] == 3 and state["restarts"] == 2
    assert state["open_sessions"] == 0 and state["pid"] is None


def test_a_child_that_dies_while_idle_is_restarted_before_the_next_call(settings, probe_stdio_config):
    spec = server_spec(Server.objects.create(name="probe", **probe_stdio_config))

    async def go():
        pool = SessionPool()
        async with pool.running():
            first = text(await pool.call_tool(spec, "count", {}))
            pid = int(first.removeprefix("pid "))
            assert pool.server_states()["probe"]["pid"] == pid
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(30):
                while pool.server_states()["probe"]["pid"] in (pid, None):
                    await anyio.sleep(0.05)
            state = pool.server_states()["probe"]
            second = text(await pool.call_tool(spec, "count", {}))
            return pid, state, second

    pid, state, second = anyio.run(go)
    assert state["status"] == "connected" and state["restarts"] == 1
    assert "exited" in state["last_error"]
    assert second == f"pid {state['pid']}" and state["pid"] != pid


# --- circuit breaker -------------------------------------------------------------------------------


def test_the_circuit_opens_after_consecutive_failures_and_a_trial_call_closes_it(settings):
    settings.MCP_GATEWAY_CIRCUIT_FAILURES = 2
    settings.MCP_GATEWAY_CIRCUIT_COOLDOWN = 1.0
    settings.MCP_GATEWAY_MAX_RETRIES = 0
    port = free_port()
    spec = server_spec(Server.objects.create(name="web", transport="http", url=f"http://127.0.0.1:{port}/mcp"))

    async def go():
        pool = SessionPool()
        async with pool.running():
            errors = []
            for _ in range(3):
                with pytest.raises(Exception) as failed:
                    await pool.call_tool(spec, "echo", {"text": "hi"})
                errors.append(str(failed.value))
            state = pool.server_states()["web"]
            proc = subprocess.Popen([PYTHON, str(PROBE), "http", "--port", str(port)], stderr=subprocess.DEVNULL)
            try:
                await anyio.to_thread.run_sync(wait_for_port, port, proc)
                await anyio.sleep(1.0)  # the cool-down
                recovered = text(await pool.call_tool(spec, "echo", {"text": "back"}))
                after = pool.server_states()["web"]
            finally:
                stop(proc)
            return errors, state, recovered, after

    errors, state, recovered, after = anyio.run(go)
    assert errors[0].startswith("could not connect to server 'web'")
    assert errors[1].startswith("could not connect to server 'web'")
    assert "server 'web' is failing: 2 consecutive calls could not reach it" in errors[2]
    assert state["status"] == "circuit-open" and state["consecutive_failures"] == 2
    assert recovered == "back"
    assert after["status"] == "connected" and after["consecutive_failures"] == 0


# --- concurrency limit -----------------------------------------------------------------------------


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never answers (a hung server)."""
    import socket
    import threading

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held = []
    done = threading.Event()

    def accept():
        sock.settimeout(0.2)
        while not done.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    done.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


def test_calls_beyond_the_concurrency_limit_fail_at_their_deadline_while_other_servers_answer(
    settings, silent_port, probe_http_url
):
    settings.MCP_GATEWAY_MAX_CONCURRENT_CALLS = 1
    settings.MCP_GATEWAY_CONNECTION_TIMEOUT = 60
    hung = server_spec(
        Server.objects.create(name="hung", transport="http", url=f"http://127.0.0.1:{silent_port}/mcp", timeout=0.5)
    )
    web = server_spec(Server.objects.create(name="web", transport="http", url=probe_http_url))

    async def go():
        pool = SessionPool()
        async with pool.running(), anyio.create_task_group() as tg:
            tg.start_soon(pool.call_tool, hung, "echo", {"text": "never"})  # holds the one slot, connecting
            while pool.server_states().get("hung", {}).get("calls_in_flight") != 1:
                await anyio.sleep(0.01)
            with pytest.raises(Exception) as waited:
                await pool.call_tool(hung, "echo", {"text": "second"})
            other = text(await pool.call_tool(web, "echo", {"text": "unaffected"}))
            tg.cancel_scope.cancel()
            return str(waited.value), other

    waited, other = anyio.run(go)
    assert waited == (
        "server 'hung' already has 1 calls in flight (MCP_GATEWAY_MAX_CONCURRENT_CALLS) and none finished "
        "within this call's deadline of 0.5s; try again later"
    )
    assert other == "unaffected"


# --- result size -------------------------------------------------------------------------------------


def test_a_result_bigger_than_max_result_bytes_is_refused(settings, probe_http_url):
    settings.MCP_GATEWAY_MAX_RESULT_BYTES = 4096
    spec = server_spec(Server.objects.create(name="web", transport="http", url=probe_http_url))

    async def go():
        pool = SessionPool()
        async with pool.running():
            small = await pool.call_tool(spec, "echo", {"text": "x" * 4000})
            with pytest.raises(Exception) as refused:
                await pool.call_tool(spec, "echo", {"text": "x" * 5000})
            return small, str(refused.value)

    small, refused = anyio.run(go)
    assert len(text(small)) == 4000
    assert refused.startswith("the result of echo on server 'web' is 5,000 bytes, more than the gateway passes on")
    assert "(4,096 bytes, MCP_GATEWAY_MAX_RESULT_BYTES)" in refused


# --- notifications: logs, cancellation, tools/list_changed --------------------------------------------


@pytest.fixture
def probe_gateway(start_gateway, probe_stdio_config, tmp_path):
    env = {"PROBE_CANCEL_FILE": str(tmp_path / "cancelled"), "PROBE_SUPERVISION": "1"}
    server = Server.objects.create(name="probe", env=env, **probe_stdio_config)
    assert discover_server_tools(server).ok
    return start_gateway()


def test_downstream_log_messages_reach_the_caller_of_call_remote_tool(probe_gateway):
    async def go():
        seen = []

        async def on_log(params):
            seen.append((params.level, params.data))

        async with Client(probe_gateway.mcp_url, logging_callback=on_log, log_level="debug") as client:
            result = await client.call_tool("call_remote_tool", {"tool_name": "probe__log", "arguments": {"count": 3}})
        return result, seen

    result, seen = anyio.run(go)
    assert text(result) == "logged 3"
    assert seen == [("info", "log 1 of 3"), ("info", "log 2 of 3"), ("info", "log 3 of 3")]


def test_a_cancelled_call_is_cancelled_on_the_downstream_server(probe_gateway, tmp_path):
    marker = tmp_path / "cancelled"
    assert cancel_mid_call(probe_gateway.mcp_url, "probe__sleep", marker) == "still usable"
    assert marker.read_text() == "cancelled\n"


@pytest.mark.parametrize("era", ["2026-07-28", "2025-11-25"])
def test_a_server_announcing_a_new_tool_gets_it_into_the_catalog(start_gateway, probe_stdio_config, era):
    env = {"PROBE_SUPERVISION": "1", **({"PROBE_LEGACY": "1"} if era.startswith("2025") else {})}
    server = Server.objects.create(name="probe", env=env, **probe_stdio_config)
    assert discover_server_tools(server).ok
    gateway = start_gateway()

    async def go():
        async with Client(gateway.mcp_url) as client:
            assert text(await client.call_tool("probe__register_tool", {"name": "fresh"})) == "registered fresh"
            with anyio.fail_after(30):
                while "probe__fresh" not in {t.name for t in (await client.list_tools()).tools}:
                    await anyio.sleep(0.1)
            found = await client.call_tool("tool_search", {"query": "registered at run time fresh"})
            answer = await client.call_tool("probe__fresh", {"text": "new and callable"})
            return json.loads(text(found)), text(answer)

    found, answer = anyio.run(go)
    assert "probe__fresh" in [r["tool_name"] for r in found["tool_references"]]
    assert answer == "new and callable"
