"""Calls to streamable HTTP servers on a persistent session, in both protocol eras.

The gateway sends these over its own lean client (proxy/http_calls.py); the session itself is
the SDK's. Each test drives a real gateway process against a real probe server process.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from registry.discovery import discover_server_tools
from registry.models import Server

from .conftest import PROBE, PYTHON, cancel_mid_call, free_port, stop, wait_for_port

pytestmark = pytest.mark.django_db(transaction=True)

ERAS = ["2026-07-28", "2025-11-25"]


class Probe:
    """The probe server over HTTP in its own process, restartable on the same port."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        cmd = [PYTHON, str(PROBE), "http", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **self.env}, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


@pytest.fixture(params=ERAS)
def era(request) -> str:
    return request.param


@pytest.fixture
def probe(tmp_path: Path, era: str) -> Iterator[Probe]:
    env = {
        "PROBE_SUPERVISION": "1",
        "PROBE_CANCEL_FILE": str(tmp_path / "cancelled"),
        "PROBE_COUNT_FILE": str(tmp_path / "count"),
        "PROBE_HEADER_LOG": str(tmp_path / "headers"),
        **({"PROBE_LEGACY": "1"} if era.startswith("2025") else {}),
    }
    server = Probe(env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gateway(start_gateway, probe: Probe):
    server = Server.objects.create(name="web", transport="http", url=probe.url, connection_mode="persistent")
    assert discover_server_tools(server).ok
    return start_gateway()


def text(result) -> str:
    return result.content[0].text


def tools_calls(tmp_path: Path) -> list[dict[str, str]]:
    """The headers of each tools/call POST the probe received."""
    seen = [json.loads(line) for line in (tmp_path / "headers").read_text().splitlines()]
    return [r["headers"] for r in seen if r["rpc"] == "tools/call"]


def test_calls_carry_the_sessions_protocol_headers(gateway, tmp_path, era):
    async def go():
        async with Client(gateway.mcp_url) as client:
            return [text(await client.call_tool("web__echo", {"text": f"n{i}"})) for i in range(3)]

    assert anyio.run(go) == ["n0", "n1", "n2"]
    calls = tools_calls(tmp_path)
    assert len(calls) == 3 and {h["mcp-protocol-version"] for h in calls} == {era}
    if era.startswith("2025"):
        # One session for all three: each carries the id the server assigned at initialize.
        assert len({h.get("mcp-session-id") for h in calls}) == 1 and calls[0].get("mcp-session-id")
    else:
        assert {(h.get("mcp-method"), h.get("mcp-name")) for h in calls} == {("tools/call", "echo")}


def test_downstream_progress_and_logs_reach_the_caller(gateway):
    async def go():
        progress, logs = [], []

        async def on_progress(value, total, message):
            progress.append((value, total, message))

        async def on_log(params):
            logs.append((params.level, params.data))

        async with Client(gateway.mcp_url, logging_callback=on_log, log_level="debug") as client:
            slept = await client.call_tool(
                "call_remote_tool",
                {"tool_name": "web__sleep", "arguments": {"seconds": 0.3}},
                progress_callback=on_progress,
            )
            logged = await client.call_tool("call_remote_tool", {"tool_name": "web__log", "arguments": {"count": 2}})
        return text(slept), progress, text(logged), logs

    slept, progress, logged, logs = anyio.run(go)
    assert slept == "slept 0.3s"
    assert progress == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert logged == "logged 2"
    assert logs == [("info", "log 1 of 2"), ("info", "log 2 of 2")]


def test_a_cancelled_call_is_cancelled_on_the_server(gateway, tmp_path):
    marker = tmp_path / "cancelled"
    assert cancel_mid_call(gateway.mcp_url, "web__sleep", marker) == "still usable"
    assert marker.read_text() == "cancelled\n"


def test_a_restarted_server_gets_a_new_session_and_each_call_runs_once(gateway, probe, tmp_path):
    async def call(tag: str) -> str:
        async with Client(gateway.mcp_url) as client:
            return text(await client.call_tool("web__count", {"tag": tag}))

    first = anyio.run(call, "before")
    probe.stop()
    probe.start()  # same port, no memory of the gateway's session
    second = anyio.run(call, "after")
    assert first.startswith("pid ") and second.startswith("pid ") and first != second
    assert (tmp_path / "count").read_text().splitlines() == ["before", "after"]


def test_a_call_whose_answer_was_lost_is_not_sent_again(gateway, probe, tmp_path):
    async def go():
        async with Client(gateway.mcp_url) as client:
            return await client.call_tool("web__crash", {})

    result = anyio.run(go)
    assert result.is_error and "server 'web'" in text(result)
    probe.start()  # back, so a resend would have somewhere to go
    time.sleep(1.0)
    assert (tmp_path / "count").read_text().splitlines() == ["crash"]
