"""The /mcp fast path (gateway_project/mcp_fast_path.py) answers as the SDK would, and really answers.

The gateway runs in-process (its ASGI app under the real session manager and session pool) in
front of our probe server over HTTP and stdio, so a test can switch the fast path off and send
the same requests again: status, headers and JSON-RPC bodies must be the same either way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp_types import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, LOG_LEVEL_META_KEY, PROTOCOL_VERSION_META_KEY

import monitoring.lifespan
from gateway_project import mcp_fast_path
from gateway_project.asgi import build_session_manager
from gateway_project.inbound_auth import require_token
from gateway_project.mcp_fast_path import fast_path
from proxy.sessions import pool
from registry.discovery import discover_server_tools
from registry.models import Server

pytestmark = pytest.mark.django_db(transaction=True)

LEGACY = "2025-11-25"
MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


@pytest.fixture
def cancel_marker(tmp_path):
    """Where the stdio probe writes "cancelled" when its sleep is cancelled."""
    return tmp_path / "cancelled"


@pytest.fixture
def servers(settings, probe_http_url, probe_stdio_config, cancel_marker):
    settings.GATEWAY_AUTH = False  # loopback only, as the test gateways run
    settings.MCP_GATEWAY_HEALTH_INTERVAL = 0
    env = {"PROBE_SUPERVISION": "1", "PROBE_CANCEL_FILE": str(cancel_marker)}
    Server.objects.create(name="probe-http", transport="http", url=probe_http_url)
    Server.objects.create(name="probe", env=env, **probe_stdio_config)
    for server in Server.objects.all():
        assert discover_server_tools(server).ok


class CountingApp:
    """The SDK's /mcp app, counting the requests the fast path handed it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.entered = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        self.entered += 1
        await self.app(scope, receive, send)


@asynccontextmanager
async def in_process_gateway() -> AsyncIterator[tuple[Any, CountingApp]]:
    """/mcp as asgi.py composes it, on a session manager of its own (one can run only once)."""
    manager = build_session_manager()
    sdk = CountingApp(manager.handle_request)
    async with manager.run(), pool.running(), monitoring.lifespan.running():
        yield require_token(fast_path(sdk, manager)), sdk


def envelope(version: str = MODERN, **extra: Any) -> dict[str, Any]:
    return {
        PROTOCOL_VERSION_META_KEY: version,
        CLIENT_CAPABILITIES_META_KEY: {},
        CLIENT_INFO_META_KEY: {"name": "fast-path-test", "version": "1"},
        **extra,
    }


def tools_call(era: str, name: str, arguments: Any = None, *, request_id: Any = 1, **options: Any) -> dict[str, Any]:
    """A tools/call as a client of `era` sends it; options change what a plain client would send."""
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    headers = {"content-type": "application/json", "accept": options.get("accept", ACCEPT)}
    if era == MODERN:
        params["_meta"] = options.get("meta", envelope())
        headers |= {"mcp-protocol-version": MODERN, "mcp-method": "tools/call", "mcp-name": name}
    elif era != "none":
        headers["mcp-protocol-version"] = era
        if "meta" in options:
            params["_meta"] = options["meta"]
    headers |= options.get("headers", {})
    body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
    return {"headers": headers, "content": json.dumps(body)}


def raw(era: str, body: Any) -> dict[str, Any]:
    """Any body, with the headers of a tools/call of `era`."""
    return {"headers": tools_call(era, "x")["headers"], "content": body if isinstance(body, str) else json.dumps(body)}


def cases(era: str) -> dict[str, dict[str, Any]]:
    """Requests by name. The fast path answers the 'plain' ones, and the 'refused' ones with the SDK's own refusal
    (the first check of either era); the SDK answers the rest."""
    echo = {"tool_name": "probe-http__echo", "arguments": {"text": "héllo"}}
    table = {
        "plain namespaced": tools_call(era, "probe-http__echo", {"text": "over http"}),
        "plain call_remote_tool": tools_call(era, "call_remote_tool", echo, request_id="req-7"),
        "plain over stdio": tools_call(
            era, "call_remote_tool", {"tool_name": "probe__add", "arguments": {"a": 2, "b": 40}}
        ),
        "plain unknown tool": tools_call(era, "nope__echo", {}),
        "plain call_remote_tool with arguments not an object": tools_call(
            era, "call_remote_tool", {"tool_name": "probe__echo", "arguments": [1]}
        ),
        "plain tool error": tools_call(era, "probe-http__fail", {}),
        "plain structured": tools_call(era, "probe-http__structured", {"x": 7}),
        "plain downstream logs": tools_call(
            era,
            "probe__log",
            {"count": 2},
            **({"meta": envelope(**{LOG_LEVEL_META_KEY: "info"})} if era == MODERN else {}),
        ),
        "arguments not an object (invalid params)": tools_call(era, "probe-http__echo", [1]),
        "a name that is not a string": raw(
            era, {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}
        ),
        "tool_search": tools_call(era, "tool_search", {"query": "echo"}),
        "progress token": tools_call(
            era, "probe-http__echo", {"text": "p"}, meta={**(envelope() if era == MODERN else {}), "progressToken": 9}
        ),
        "wrong accept": tools_call(era, "probe-http__echo", {"text": "x"}, accept="application/json"),
        "refused: bad host": tools_call(era, "probe-http__echo", {"text": "x"}, headers={"host": "evil.example"}),
        "refused: bad origin": tools_call(
            era, "probe-http__echo", {"text": "x"}, headers={"origin": "http://evil.example"}
        ),
        "not json": raw(era, "{not json"),
        "a batch": raw(era, f"[{tools_call(era, 'probe-http__echo', {'text': 'x'})['content']}]"),
    }
    if era == MODERN:
        table["wrong protocol version"] = tools_call(
            era,
            "probe-http__echo",
            {"text": "x"},
            meta=envelope("2099-01-01"),
            headers={"mcp-protocol-version": "2099-01-01"},
        )
        table["mcp-name disagrees"] = tools_call(era, "probe-http__echo", {"text": "x"}, headers={"mcp-name": "other"})
    else:
        table["wrong protocol version"] = tools_call("2024-01-01", "probe-http__echo", {"text": "x"})
        table["plain without a version header"] = tools_call("none", "probe-http__structured", {"x": 3})
    return table


def parsed(response: httpx.Response) -> Any:
    """The JSON-RPC messages of a response: the JSON body, or each SSE event's data."""
    content_type = response.headers.get("content-type", "")
    if content_type.startswith("text/event-stream"):
        events = [block for block in response.text.split("\r\n\r\n") if block.strip()]
        data = [line.removeprefix("data: ") for e in events for line in e.split("\r\n") if line.startswith("data: ")]
        return [json.loads(d) for d in data]
    try:
        return [response.json()]
    except ValueError:
        return response.text


def answer(response: httpx.Response) -> dict[str, Any]:
    return {"status": response.status_code, "headers": dict(response.headers), "messages": parsed(response)}


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_the_fast_path_answers_every_request_as_the_sdk_does(servers, era, monkeypatch):
    async def go():
        answers: dict[bool, dict[str, Any]] = {True: {}, False: {}}
        took_fast_path = set()
        async with in_process_gateway() as (app, sdk):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
                if era == LEGACY:  # a 2025-era client starts with the handshake (the SDK answers it)
                    init = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
                    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
                    headers = {"content-type": "application/json", "accept": ACCEPT}
                    assert (await client.post("/mcp", json=body, headers=headers)).status_code == 200
                for name, request in cases(era).items():
                    for enabled in (True, False):
                        monkeypatch.setattr(mcp_fast_path, "ENABLED", enabled)
                        before = sdk.entered
                        answers[enabled][name] = answer(await client.post("/mcp", **request))
                        if enabled and sdk.entered == before:
                            took_fast_path.add(name)
        return answers, took_fast_path

    answers, took_fast_path = anyio.run(go)
    assert answers[True] == answers[False]
    assert took_fast_path == {name for name in cases(era) if name.startswith(("plain", "refused"))}
    # The cases say what they claim to: real answers, logs on the stream, the refusals.
    echo = answers[True]["plain namespaced"]
    assert echo["status"] == 200 and echo["messages"][-1]["result"]["content"][0]["text"] == "over http"
    assert answers[True]["plain call_remote_tool"]["messages"][-1]["id"] == "req-7"
    logs = answers[True]["plain downstream logs"]["messages"]
    assert [m["params"]["data"] for m in logs[:-1]] == ["log 1 of 2", "log 2 of 2"]
    assert answers[True]["plain tool error"]["messages"][-1]["result"]["isError"] is True
    assert answers[True]["wrong accept"]["status"] == 406
    assert answers[True]["refused: bad host"]["status"] == 421
    assert answers[True]["wrong protocol version"]["status"] == 400
    if era == MODERN:
        assert echo["headers"]["content-type"] == "application/json"
        assert echo["messages"][-1]["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
    else:
        assert echo["headers"]["content-type"] == "text/event-stream"
        assert "structuredContent" in answers[True]["plain structured"]["messages"][-1]["result"]


def sent_to_the_child() -> bool:
    """The stdio probe's session is open and one call is in flight on it."""
    state = pool.server_states().get("probe", {})
    return state.get("open_sessions") == 1 and state.get("calls_in_flight") == 1


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_a_client_leaving_a_fast_path_call_cancels_it_on_the_downstream_server(servers, cancel_marker, era):
    request = tools_call(era, "probe__sleep", {"seconds": 20})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")] + [(k.encode(), v.encode()) for k, v in request["headers"].items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def go():
        left = anyio.Event()
        body = [{"type": "http.request", "body": request["content"].encode(), "more_body": False}]
        sent: list[dict] = []

        async def receive() -> dict:
            if body:
                return body.pop()
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        async with in_process_gateway() as (app, sdk):
            async with anyio.create_task_group() as tg:
                tg.start_soon(app, scope, receive, send)
                with anyio.fail_after(20):
                    while not sent_to_the_child():
                        await anyio.sleep(0.05)
                await anyio.sleep(0.5)  # let the child start sleeping
                left.set()
            with anyio.fail_after(20):
                while not cancel_marker.exists():
                    await anyio.sleep(0.05)
            return sdk.entered, sent

    entered, sent = anyio.run(go)
    assert entered == 0  # the fast path took the call
    assert cancel_marker.read_text() == "cancelled\n"
    assert not [m for m in sent if m["type"] == "http.response.body" and not m.get("more_body", False)]


def test_without_the_sdk_internals_it_relies_on_the_fast_path_steps_aside(monkeypatch):
    from mcp.server.runner import ServerRunner

    manager = build_session_manager()
    sdk = manager.handle_request
    assert fast_path(sdk, manager) is not sdk  # this SDK has them: the fast path is in front
    monkeypatch.delattr(ServerRunner, "_serialize")
    assert fast_path(sdk, manager) is sdk  # a release without them: every request goes to the SDK
