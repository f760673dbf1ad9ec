"""Several gateway processes on one database and one Redis, behind client-side round-robin."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import anyio
import httpx
import httpx2
import pytest
from django.test import override_settings
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from registry.discovery import discover_server_tools
from registry.models import Server

from .private_services import children_of, wait_until_gone

pytestmark = pytest.mark.django_db(transaction=True)

ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each HTTP request to the next gateway in turn, as a round-robin load balancer would."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._inner = httpx2.AsyncHTTPTransport()
        self.served: Counter[int] = Counter()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self._ports)
        request.url = request.url.copy_with(port=port)
        request.headers["host"] = f"127.0.0.1:{port}"
        self.served[port] += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def balanced_client(balancer: RoundRobin, mode: str = "auto") -> Client:
    http = httpx2.AsyncClient(transport=balancer, timeout=httpx2.Timeout(30, read=60))
    return Client(streamable_http_client("http://127.0.0.1:1/mcp", http_client=http), mode=mode)  # type: ignore[arg-type]


@pytest.fixture
def shared(redis_server, probe_stdio_config) -> Iterator[dict[str, str]]:
    """This test process and the gateways share the test database and a private Redis; probe is discovered."""
    prefix = f"mp-{uuid.uuid4().hex[:8]}"
    caches = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": redis_server.url, "KEY_PREFIX": prefix}
    }
    with override_settings(CACHES=caches, STORAGE_BACKEND="redis"):
        server = Server.objects.create(name="probe", **probe_stdio_config)
        assert discover_server_tools(server).ok
        yield {"STORAGE_BACKEND": "redis", "REDIS_URL": redis_server.url, "GATEWAY_CACHE_PREFIX": prefix}


async def mixed_traffic(client: Client, n: int) -> list[str]:
    """n rounds of search, list, a namespaced call and call_remote_tool; returns what went wrong."""
    failures: list[str] = []

    async def one(i: int) -> None:
        try:
            found = await client.call_tool("tool_search", {"query": "add two integers"})
            assert "probe__add" in found.content[0].text, found
            listed = await client.list_tools()
            assert "probe__echo" in {t.name for t in listed.tools}
            echoed = await client.call_tool("probe__echo", {"text": f"hi {i}"})
            assert echoed.content[0].text == f"hi {i}", echoed
            added = await client.call_tool(
                "call_remote_tool", {"tool_name": "probe__add", "arguments": {"a": i, "b": 1}}
            )
            assert added.content[0].text == str(i + 1), added
        except Exception as exc:
            failures.append(f"round {i}: {exc!r}")

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return failures


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_three_processes_answer_round_robin_mixed_traffic_without_a_failure(shared, start_gateway, mode):
    gateways = [start_gateway(**shared) for _ in range(3)]
    balancer = RoundRobin([int(g.url.rsplit(":", 1)[1]) for g in gateways])

    async def run() -> list[str]:
        async with balanced_client(balancer, mode) as client:
            return await mixed_traffic(client, 40)

    assert anyio.run(run) == []
    assert len(balancer.served) == 3 and min(balancer.served.values()) >= 40  # every process answered its share


def test_a_rediscovery_on_one_process_is_served_by_the_others_within_a_second(shared, start_gateway):
    first, second, third = (start_gateway(**shared) for _ in range(3))

    async def tool_names(gateway) -> set[str]:
        async with Client(gateway.mcp_url) as client:
            return {t.name for t in (await client.list_tools()).tools}

    assert all("probe__add" in anyio.run(tool_names, g) for g in (first, second, third))
    # The server's next tools/list drops `add` (PROBE_VARIANT=2); the first process rediscovers it.
    server = Server.objects.get(name="probe")
    Server.objects.filter(pk=server.pk).update(env={**server.env, "PROBE_VARIANT": "2"})

    async def rediscover() -> str:
        async with Client(first.mcp_url) as client:
            return (await client.call_tool("discover_tools", {"server_name": "probe"})).content[0].text

    assert json.loads(anyio.run(rediscover))["removed"] == ["probe__add"]
    time.sleep(1.0)
    for gateway in (second, third):
        assert "probe__add" not in anyio.run(tool_names, gateway)
        assert "probe__sleep" in anyio.run(tool_names, gateway)


def test_killing_one_process_fails_only_its_in_flight_calls_and_orphans_no_child(shared, start_gateway):
    gateways = [start_gateway(**shared) for _ in range(3)]
    victim = gateways[1]

    victim_running = anyio.Event()

    async def progress(value: float, total: float | None, message: str | None) -> None:
        victim_running.set()

    async def slow_call(gateway) -> str:
        async with Client(gateway.mcp_url) as client:
            callback = progress if gateway is victim else None
            result = await client.call_tool("probe__sleep", {"seconds": 3}, progress_callback=callback)
            return result.content[0].text

    outcomes: dict[int, str] = {}

    async def run() -> None:
        async def call(i: int) -> None:
            try:
                outcomes[i] = await slow_call(gateways[i])
            except Exception as exc:
                outcomes[i] = f"failed: {exc!r}"

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(call, i)
            # Wait until the victim's stdio probe child runs the call, then kill the victim outright.
            with anyio.fail_after(30):
                await victim_running.wait()
            orphans = children_of(victim.proc.pid)
            os.kill(victim.proc.pid, signal.SIGKILL)
            outcomes["children"] = orphans  # type: ignore[index]

    anyio.run(run)
    assert outcomes[0] == outcomes[2] == "slept 3s"
    assert outcomes[1].startswith("failed")
    assert wait_until_gone(outcomes["children"]) == []  # type: ignore[index,arg-type]
    # The survivors keep serving round-robin traffic.
    balancer = RoundRobin([int(g.url.rsplit(":", 1)[1]) for g in (gateways[0], gateways[2])])

    async def more() -> list[str]:
        async with balanced_client(balancer) as client:
            return await mixed_traffic(client, 10)

    assert anyio.run(more) == []


def test_progress_reaches_the_client_in_stateless_mode(shared, start_gateway):
    gateway = start_gateway(**shared)
    seen: list[float] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        seen.append(value)

    async def run() -> str:
        async with Client(gateway.mcp_url, mode="legacy") as client:
            result = await client.call_tool("probe__sleep", {"seconds": 0.5}, progress_callback=progress)
            return result.content[0].text

    assert anyio.run(run) == "slept 0.5s"
    assert seen == [1, 2, 3, 4, 5]


def initialize(url: str) -> httpx.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    return httpx.post(url, json=body, headers=ACCEPT, timeout=10)


def test_stateless_mode_hands_out_no_session_and_stateful_mode_does(shared, start_gateway):
    stateless = start_gateway(**shared)
    stateful = start_gateway(**shared, GATEWAY_MCP_STATELESS="false")
    assert "mcp-session-id" not in initialize(stateless.mcp_url).headers
    assert initialize(stateful.mcp_url).headers["mcp-session-id"]
    # Stateless, a GET stream would never carry anything: refused instead of held open.
    assert httpx.get(stateless.mcp_url, headers=ACCEPT, timeout=10).status_code == 405


def test_runtime_figures_are_served_only_when_asked_for(start_gateway):
    hidden, shown = start_gateway(), start_gateway(GATEWAY_DEBUG_RUNTIME="true")
    assert httpx.get(f"{hidden.url}/debug/runtime", timeout=10).status_code == 404
    figures = httpx.get(f"{shown.url}/debug/runtime", timeout=10).json()
    assert figures["pid"] == shown.proc.pid and figures["asyncio_tasks"] > 0 and figures["open_fds"] > 0


def test_stateful_session_landing_on_another_process_gets_404_and_the_client_recovers(shared, start_gateway):
    first = start_gateway(**shared, GATEWAY_MCP_STATELESS="false")
    second = start_gateway(**shared, GATEWAY_MCP_STATELESS="false")
    session = initialize(first.mcp_url).headers["mcp-session-id"]
    listed = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    elsewhere = httpx.post(
        second.mcp_url, json=listed, headers={**ACCEPT, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
    )
    assert elsewhere.status_code == 404
    assert elsewhere.json()["error"]["message"] == "Session not found"

    # The SDK client whose session the load balancer moved gets a clean error, and a new session works.
    ports = [int(first.url.rsplit(":", 1)[1])] * 2 + [int(second.url.rsplit(":", 1)[1])] * 100
    balancer = RoundRobin(ports)

    async def moved() -> str:
        async with balanced_client(balancer, "legacy") as client:  # initialize + initialized on first
            with pytest.raises(MCPError, match="Session not found"):
                await client.call_tool("probe__echo", {"text": "lost"})
        async with Client(second.mcp_url, mode="legacy") as client:
            return (await client.call_tool("probe__echo", {"text": "found"})).content[0].text

    assert anyio.run(moved) == "found"


def test_2026_clients_need_no_session_even_when_the_gateway_is_stateful(shared, start_gateway):
    gateways = [start_gateway(**shared, GATEWAY_MCP_STATELESS="false") for _ in range(2)]
    balancer = RoundRobin([int(g.url.rsplit(":", 1)[1]) for g in gateways])

    async def run() -> list[str]:
        async with balanced_client(balancer) as client:
            assert client.protocol_version == "2026-07-28"
            return await mixed_traffic(client, 10)

    assert anyio.run(run) == []


# --- single flight ------------------------------------------------------------------------------


def counted_probe(probe_stdio_config: dict, count_file) -> Server:
    env = {"PROBE_LIST_COUNT_FILE": str(count_file), "PROBE_LIST_DELAY": "1"}
    return Server.objects.create(name="probe", **probe_stdio_config, env=env)


def test_simultaneous_discoveries_in_one_process_send_one_tools_list(probe_stdio_config, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    count_file = tmp_path / "lists"
    server = counted_probe(probe_stdio_config, count_file)

    def discover(_: int) -> list[str]:
        try:
            return sorted(t.namespaced_name for t in discover_server_tools(Server.objects.get(pk=server.pk)).tools)
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as threads:
        results = list(threads.map(discover, range(8)))
    assert count_file.read_text().splitlines() == ["list"]
    assert all(r == results[0] for r in results) and "probe__echo" in results[0]


def test_simultaneous_discoveries_across_processes_leave_one_consistent_tool_set(
    shared, start_gateway, probe_stdio_config, tmp_path
):
    count_file = tmp_path / "lists"
    Server.objects.filter(name="probe").update(env={"PROBE_LIST_COUNT_FILE": str(count_file), "PROBE_LIST_DELAY": "1"})
    gateways = [start_gateway(**shared) for _ in range(3)]

    async def discover(gateway) -> int:
        async with Client(gateway.mcp_url) as client:
            result = await client.call_tool("discover_tools", {"server_name": "probe"})
            assert not result.is_error, result
            return json.loads(result.content[0].text)["tool_count"]

    counts: list[int] = []

    async def run() -> None:
        async def one(gateway) -> None:
            counts.append(await discover(gateway))

        async with anyio.create_task_group() as tg:
            for gateway in gateways * 4:
                tg.start_soon(one, gateway)

    anyio.run(run)
    assert 1 <= len(count_file.read_text().splitlines()) <= 3  # at most one tools/list per process
    server = Server.objects.get(name="probe")
    names = list(server.tools.values_list("namespaced_name", flat=True))
    assert len(names) == len(set(names)) == server.tool_count == counts[0]
    assert set(counts) == {counts[0]}
