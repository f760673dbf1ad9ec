"""The outbound HTTP client: one shared connection pool, yet each server gets only its own headers; no redirects."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client

from registry.discovery import discover_server_tools
from registry.models import Server

pytestmark = pytest.mark.django_db(transaction=True)


def test_servers_sharing_the_pool_and_the_origin_each_receive_only_their_own_headers(start_gateway, probe_http_url):
    # Three servers on one origin: their requests travel over the same pooled connections.
    Server.objects.create(
        name="alpha", transport="http", url=probe_http_url, auth_type="static", auth_headers={"X-Api-Key": "alpha-key"}
    )
    Server.objects.create(
        name="beta",
        transport="http",
        url=probe_http_url,
        auth_type="static",
        auth_headers={"Authorization": "Bearer b"},
    )
    Server.objects.create(name="plain", transport="http", url=probe_http_url)
    for server in Server.objects.all():
        assert discover_server_tools(server).ok
    gateway = start_gateway(MCP_GATEWAY_DEFAULT_CONNECTION_MODE="persistent")

    async def go() -> dict[str, list[dict]]:
        seen: dict[str, list[dict]] = {"alpha": [], "beta": [], "plain": []}
        async with Client(gateway.mcp_url) as client:

            async def one(server: str) -> None:
                result = await client.call_tool(f"{server}__whoami", {})
                assert not result.is_error, result.content[0].text
                seen[server].append(json.loads(result.content[0].text))

            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    for server in seen:
                        tg.start_soon(one, server)
        return seen

    seen = anyio.run(go)
    assert seen["alpha"] == [{"authorization": None, "x-api-key": "alpha-key", "x-upstream-authorization": None}] * 6
    assert seen["beta"] == [{"authorization": "Bearer b", "x-api-key": None, "x-upstream-authorization": None}] * 6
    assert seen["plain"] == [{"authorization": None, "x-api-key": None, "x-upstream-authorization": None}] * 6


def test_a_redirect_is_not_followed_even_within_the_servers_origin(probe_http_url):
    # The probe server answers /mcp/ with a 307 to /mcp on the same origin.
    server = Server.objects.create(name="slash", transport="http", url=probe_http_url + "/")
    result = discover_server_tools(server)
    assert not result.ok
    assert "not followed" in result.error and probe_http_url in result.error
