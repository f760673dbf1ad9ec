"""Downstream sessions as callers meet them: shared, reopened after a crash, bounded by deadlines."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from registry.discovery import discover_server_tools
from registry.models import Server

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def gateway(start_gateway, probe_stdio_config, probe_http_url):
    Server.objects.create(name="probe", timeout=1.0, **probe_stdio_config)
    Server.objects.create(name="web", transport="http", url=probe_http_url)
    for server in Server.objects.all():
        assert discover_server_tools(server).ok
    return start_gateway(MCP_GATEWAY_DEFAULT_CONNECTION_MODE="persistent")


def test_concurrent_calls_share_one_downstream_session(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            results = []

            async def one():
                results.append((await client.call_tool("probe__count", {})).content[0].text)

            async with anyio.create_task_group() as tg:
                for _ in range(8):
                    tg.start_soon(one)
            return results

    pids = anyio.run(go)
    assert len(pids) == 8 and len(set(pids)) == 1


def test_a_crashed_stdio_server_fails_its_call_clearly_and_the_next_call_restarts_it(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            before = (await client.call_tool("probe__count", {})).content[0].text
            crashed = await client.call_tool("probe__crash", {})
            after = await client.call_tool("probe__count", {})
            return before, crashed, after

    before, crashed, after = anyio.run(go)
    assert crashed.is_error and "server 'probe' failed during the call" in crashed.content[0].text
    assert not after.is_error and after.content[0].text.startswith("pid ")
    assert after.content[0].text != before  # a new process


def test_a_hung_call_fails_at_its_deadline_while_other_servers_answer(gateway):
    async def go():
        async with Client(gateway.mcp_url) as client:
            out = {}

            async def slow():
                out["slow"] = await client.call_tool("probe__sleep", {"seconds": 30})

            async def fast():
                await anyio.sleep(0.2)
                out["fast"] = await client.call_tool("web__echo", {"text": "still here"})
                out["fast_done_before_slow"] = "slow" not in out

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                tg.start_soon(fast)
            return out

    out = anyio.run(go)
    assert out["slow"].is_error and "did not answer sleep within 1s" in out["slow"].content[0].text
    assert out["fast"].content[0].text == "still here"
    assert out["fast_done_before_slow"]


def test_downstream_progress_reaches_the_caller_of_call_remote_tool(gateway):
    async def go():
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        async with Client(gateway.mcp_url) as client:
            result = await client.call_tool(
                "call_remote_tool",
                {"tool_name": "probe__sleep", "arguments": {"seconds": 0.3}},
                progress_callback=on_progress,
            )
        return result, seen

    result, seen = anyio.run(go)
    assert result.content[0].text == "slept 0.3s"
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
