"""The gateway as an MCP client meets it: the SDK's client against /mcp on a real uvicorn,
in front of real downstream servers (our probe over stdio and HTTP, mcp-server-time)."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client

from registry.discovery import discover_server_tools
from registry.models import Server
from tests.conftest import mcp_server_time_command

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway(start_gateway, probe_http_url, probe_stdio_config):
    Server.objects.create(name="probe-http", transport="http", url=probe_http_url)
    Server.objects.create(name="probe-stdio", **probe_stdio_config)
    Server.objects.create(
        name="time", transport="stdio", command=mcp_server_time_command(), args=["--local-timezone", "UTC"]
    )
    for server in Server.objects.all():
        assert discover_server_tools(server).ok
    return start_gateway()


def run(coro_fn, *args):
    return anyio.run(coro_fn, *args)


def payload(result) -> dict:
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_initialize_in_both_protocol_eras_lists_the_three_gateway_tools(gateway, mode):
    async def go():
        async with Client(gateway.mcp_url, mode=mode) as client:
            names = [t.name for t in (await client.list_tools()).tools]
            return client.protocol_version, names

    version, names = run(go)
    assert version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
    assert names[:3] == ["tool_search", "discover_tools", "call_remote_tool"]
    assert "time__get_current_time" in names and "probe-http__echo" in names


def test_tool_search_finds_the_time_tool_in_the_original_result_shape(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            return await client.call_tool("tool_search", {"query": "current time in a timezone", "max_results": 2})

    result = run(go)
    data = payload(result)
    assert set(data) == {"success", "tool_references", "total_matches", "query"}
    assert data["success"] is True
    assert data["query"] == "current time in a timezone"
    assert data["tool_references"][0] == {"type": "tool_reference", "tool_name": "time__get_current_time"}
    assert len(data["tool_references"]) == 2
    assert data["total_matches"] >= 2
    assert result.structured_content == data


def test_regex_search_matches_case_insensitively(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            return await client.call_tool("tool_search", {"query": "^PROBE-HTTP__(echo|add)$", "use_regex": True})

    data = payload(run(go))
    assert sorted(r["tool_name"] for r in data["tool_references"]) == ["probe-http__add", "probe-http__echo"]
    assert data["total_matches"] == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"query": "   "}, "empty"),
        ({"query": "(unclosed", "use_regex": True}, "regex"),
        ({"query": "time", "max_results": 0}, "max_results"),
        ({"query": "time", "max_results": 51}, "max_results"),
        ({"query": "x" * 501}, "500"),
    ],
)
def test_bad_search_input_gets_a_clear_tool_error(gateway, arguments, message):
    async def go():
        async with Client(gateway.mcp_url) as client:
            return await client.call_tool("tool_search", arguments)

    result = run(go)
    assert result.is_error
    assert message in result.content[0].text.lower()


def test_call_remote_tool_returns_real_results_over_stdio_and_http(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            now = await client.call_tool(
                "call_remote_tool", {"tool_name": "time__get_current_time", "arguments": {"timezone": "UTC"}}
            )
            echo = await client.call_tool(
                "call_remote_tool", {"tool_name": "probe-http__echo", "arguments": {"text": "over http"}}
            )
            add = await client.call_tool(
                "call_remote_tool", {"tool_name": "probe-stdio__add", "arguments": {"a": 2, "b": 40}}
            )
            direct = await client.call_tool("probe-stdio__echo", {"text": "direct"})
            return now, echo, add, direct

    now, echo, add, direct = run(go)
    assert json.loads(now.content[0].text)["timezone"] == "UTC"
    assert echo.content[0].text == "over http"
    assert add.content[0].text == "42"
    assert direct.content[0].text == "direct"


def test_results_pass_through_unchanged_including_structured_content_and_errors(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            structured = await client.call_tool(
                "call_remote_tool", {"tool_name": "probe-http__structured", "arguments": {"x": 7}}
            )
            failed = await client.call_tool("call_remote_tool", {"tool_name": "probe-stdio__fail"})
            return structured, failed

    structured, failed = run(go)
    assert structured.structured_content == {"x": 7, "y": 2}
    assert json.loads(structured.content[0].text) == {"x": 7, "y": 2}
    assert failed.is_error and failed.content[0].text == "this tool always fails"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tool_name": "nope__echo"}, "no enabled server named 'nope'"),
        ({"tool_name": "probe-http__missing"}, "has no tool 'probe-http__missing'"),
        ({"tool_name": "echo"}, "names look like server__tool"),
        ({"tool_name": "probe-http__echo", "arguments": [1]}, "arguments must be an object"),
        ({"tool_name": "probe-http__echo", "arguments": {"text": "x"}, "auth_header": "Bearer t"}, "forwarded"),
        ({}, "tool_name must be"),
    ],
)
def test_bad_calls_get_precise_tool_errors(gateway, arguments, message):
    async def go():
        async with Client(gateway.mcp_url) as client:
            return await client.call_tool("call_remote_tool", arguments)

    result = run(go)
    assert result.is_error
    assert message in result.content[0].text


def test_a_disabled_server_is_named_as_disabled(gateway):
    Server.objects.filter(name="probe-http").update(enabled=False)

    async def go():
        async with Client(gateway.mcp_url) as client:
            await client.call_tool("discover_tools", {"server_name": "probe-stdio"})  # any write refreshes the catalog
            return await client.call_tool("call_remote_tool", {"tool_name": "probe-http__echo", "arguments": {}})

    result = run(go)
    assert result.is_error
    assert "server 'probe-http' is disabled" in result.content[0].text


def test_discover_tools_returns_the_tools_with_schemas_and_indexes_them(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            discovered = await client.call_tool("discover_tools", {"server_name": "probe-http"})
            unknown = await client.call_tool("discover_tools", {"server_name": "nope"})
            return discovered, unknown

    discovered, unknown = run(go)
    data = payload(discovered)
    assert data["server_name"] == "probe-http"
    by_name = {t["name"]: t for t in data["tools"]}
    assert by_name["probe-http__add"]["inputSchema"]["required"] == ["a", "b"]
    assert by_name["probe-http__add"]["original_name"] == "add"
    assert unknown.is_error and "no server named 'nope'" in unknown.content[0].text


def test_an_unreachable_server_fails_alone(gateway):
    Server.objects.create(name="dead", transport="http", url="http://127.0.0.1:9/mcp")

    async def go():
        async with Client(gateway.mcp_url) as client:
            dead = await client.call_tool("discover_tools", {"server_name": "dead"})
            alive = await client.call_tool(
                "call_remote_tool", {"tool_name": "probe-http__echo", "arguments": {"text": "ok"}}
            )
            return dead, alive

    dead, alive = run(go)
    assert dead.is_error and "could not connect to server 'dead'" in dead.content[0].text
    assert alive.content[0].text == "ok"
    assert Server.objects.get(name="dead").last_error


def test_a_forwarded_credential_reaches_only_forward_servers(start_gateway, probe_http_url):
    Server.objects.create(name="fwd", transport="http", url=probe_http_url, auth_type="forward")
    Server.objects.create(
        name="saved", transport="http", url=probe_http_url, auth_type="static",
        auth_headers={"Authorization": "Bearer saved-token"},
    )  # fmt: skip
    for server in Server.objects.all():
        assert discover_server_tools(server).ok
    gateway = start_gateway()

    async def go():
        async with Client(gateway.mcp_url) as client:
            fwd = await client.call_tool(
                "call_remote_tool", {"tool_name": "fwd__whoami", "auth_header": "Bearer caller"}
            )
            saved = await client.call_tool("call_remote_tool", {"tool_name": "saved__whoami"})
            missing = await client.call_tool("call_remote_tool", {"tool_name": "fwd__whoami"})
            return fwd, saved, missing

    fwd, saved, missing = run(go)
    assert json.loads(fwd.content[0].text)["authorization"] == "Bearer caller"
    assert json.loads(saved.content[0].text)["authorization"] == "Bearer saved-token"
    assert missing.is_error and "needs the caller's credential" in missing.content[0].text
