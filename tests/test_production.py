"""The production setup for real: Redis as the shared cache between gateway processes, and
PostgreSQL as the database (the second run of scripts/test.sh runs the whole suite on it)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import anyio
import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from mcp import Client

from registry.discovery import discover_server_tools
from registry.models import Server

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("TEST_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
REQUIRED = os.environ.get("GATEWAY_REQUIRE_PRODUCTION_TESTS") == "1"


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if REQUIRED:
            pytest.fail(f"Redis at {REDIS_URL} is required here and not reachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} not reachable")
    return REDIS_URL


@pytest.fixture
def prefix(redis_url) -> Iterator[str]:
    """A key prefix of this test's own, removed afterwards: tests never see each other's keys."""
    value = f"test-{uuid.uuid4().hex[:10]}"
    yield value
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{value}:*"):
        client.delete(key)


def redis_cache(url: str, prefix: str) -> dict:
    return {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix}}


def test_the_production_run_really_uses_postgresql_and_redis():
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        assert connection.vendor == "postgresql"
        assert settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"
        assert settings.STORAGE_BACKEND == "redis"
    else:
        assert connection.vendor == "sqlite"
        assert settings.STORAGE_BACKEND in ("memory", "redis")


def test_redis_backend_keeps_the_catalog_version_under_the_runs_prefix(redis_url, prefix, probe_stdio_config):
    with override_settings(CACHES=redis_cache(redis_url, prefix), STORAGE_BACKEND="redis"):
        server = Server.objects.create(name="probe", **probe_stdio_config)
        assert discover_server_tools(server).ok
        keys = [k.decode() for k in redis.Redis.from_url(redis_url).keys(f"{prefix}:*")]
        assert any(k.endswith(":catalog:version") for k in keys)
        assert caches["default"].get("catalog:version")


def test_a_change_on_one_process_is_seen_by_another_within_a_second(
    redis_url, prefix, start_gateway, probe_stdio_config
):
    """Two processes share Redis: this test process changes a server, the gateway process serves the change."""
    with override_settings(CACHES=redis_cache(redis_url, prefix), STORAGE_BACKEND="redis"):
        server = Server.objects.create(name="probe", **probe_stdio_config)
        assert discover_server_tools(server).ok
        gateway = start_gateway(
            STORAGE_BACKEND="redis", REDIS_URL=redis_url, GATEWAY_CACHE_PREFIX=prefix, MCP_GATEWAY_TOOL_CACHE_TTL="300"
        )

        async def echo():
            async with Client(gateway.mcp_url) as client:
                return await client.call_tool("probe__echo", {"text": "hi"})

        assert anyio.run(echo).content[0].text == "hi"
        server.enabled = False
        server.save()  # bumps the version in Redis
        time.sleep(1.0)
        result = anyio.run(echo)
        assert result.is_error and "server 'probe' is disabled" in result.content[0].text
