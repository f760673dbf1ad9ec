"""Per-server health: a periodic MCP ping of every enabled server, by one gateway process at a time.

The process holding the probe lease (a key in the shared cache, added with a TTL and renewed each
round) pings each server on the pool's session (opening it when needed: persistent servers stay
warm) or, for servers in `stateless` mode, on a session of its own. A server that takes the
caller's credential (auth_type forward) cannot be probed without one and stays `unknown`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

import anyio
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import close_old_connections
from django.utils import timezone

from proxy.calls import current_snapshot
from proxy.errors import ProxyError, describe
from proxy.sessions import pool
from registry.catalog import ServerSpec

from . import metrics
from .redaction import redact, secret_values

logger = logging.getLogger(__name__)

LEASE_KEY = "monitoring:probe-lease"
PROCESS_ID = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
MAX_CONCURRENT_PROBES = 8
NOT_PROBED = "not probed: the server takes the caller's credential (auth type 'forward')"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    server: str
    status: str  # healthy / unhealthy / unknown
    latency_ms: float | None
    error: str  # redacted


async def probe_server(spec: ServerSpec) -> ProbeResult:
    """Ping one server, bounded by its connect timeout (per connection attempt) and again for the ping."""
    if spec.auth_type == "forward":
        return ProbeResult(spec.name, "unknown", None, NOT_PROBED)
    if spec.connection_mode != "persistent" or not pool.is_running:
        # A session of the probe's own, without retries: the call path's retries are not a health signal.
        spec = replace(spec, connection_mode="stateless", max_retries=0)
    start = time.perf_counter()
    try:
        async with pool.session(spec, None) as (client, conn):
            try:
                with anyio.fail_after(spec.connect_timeout):
                    await client.session.send_ping()
            except TimeoutError:
                conn.close()  # a session that does not answer ping is no use to the next call either
                raise ProxyError(f"server '{spec.name}' did not answer ping within {spec.connect_timeout:g}s") from None
            except ProxyError:
                raise
            except Exception as exc:
                from mcp.shared.exceptions import MCPError

                if not isinstance(exc, MCPError):
                    conn.close()
                    raise ProxyError(f"server '{spec.name}' failed the ping: {describe(exc)}") from None
                # It answered, with an error: the server is up (ping is mandatory, but some refuse it).
    except ProxyError as exc:
        return ProbeResult(spec.name, "unhealthy", None, redact(str(exc), secret_values(spec)))
    except Exception as exc:
        return ProbeResult(spec.name, "unhealthy", None, redact(describe(exc), secret_values(spec)))
    return ProbeResult(spec.name, "healthy", round((time.perf_counter() - start) * 1000, 2), "")


def save_results(results: list[ProbeResult]) -> None:
    from registry.models import Server

    from .models import ServerHealth

    now = timezone.now()
    ids = dict(Server.objects.filter(name__in=[r.server for r in results]).values_list("name", "pk"))
    for r in results:
        if r.server not in ids:
            continue  # deleted meanwhile
        health, _ = ServerHealth.objects.get_or_create(server_id=ids[r.server])
        health.status = r.status
        health.checked_at = now
        health.latency_ms = r.latency_ms
        if r.status == "healthy":
            health.last_success_at = now
            health.consecutive_failures = 0
        elif r.status == "unhealthy":
            health.last_error, health.last_error_at = r.error, now
            health.consecutive_failures += 1
        else:
            health.last_error = r.error
        health.save()
        metrics.set_server_up(r.server, r.status)


async def probe_all() -> list[ProbeResult]:
    """Probe every enabled server once and store the results."""
    snapshot = await current_snapshot()
    results: list[ProbeResult] = []
    limiter = anyio.CapacityLimiter(MAX_CONCURRENT_PROBES)

    async def one(spec: ServerSpec) -> None:
        async with limiter:
            results.append(await probe_server(spec))

    async with anyio.create_task_group() as tg:
        for spec in snapshot.servers.values():
            tg.start_soon(one, spec)
    await sync_to_async(_save_and_close, thread_sensitive=False)(results)
    return results


def _save_and_close(results: list[ProbeResult]) -> None:
    try:
        save_results(results)
    finally:
        close_old_connections()


def hold_lease(interval: float) -> bool:
    """Take or renew the probe lease; whether this process is the one that probes."""
    ttl = max(int(interval * 3), 5)
    holder = cache.get(LEASE_KEY)
    if holder == PROCESS_ID:
        cache.set(LEASE_KEY, PROCESS_ID, timeout=ttl)
        return True
    if holder is None and cache.add(LEASE_KEY, PROCESS_ID, timeout=ttl):
        return True
    return False


def release_lease() -> None:
    if cache.get(LEASE_KEY) == PROCESS_ID:
        cache.delete(LEASE_KEY)


async def run_probes(interval: float) -> None:
    """Forever: every `interval` seconds, probe all servers if this process holds the lease."""
    while True:
        try:
            if await sync_to_async(hold_lease, thread_sensitive=False)(interval):
                await probe_all()
        except Exception:
            logger.exception("health probe round failed")
        await anyio.sleep(interval)


def server_health(server: Any) -> dict[str, Any]:
    """A `registry.models.Server`'s last probe, for the admin, the dashboard and the REST API."""
    from .models import ServerHealth

    try:
        health = server.health_probe
    except ServerHealth.DoesNotExist:
        health = None
    if health is None:
        health = ServerHealth(server=server)  # never probed: unknown
    return {
        "status": health.status,
        "checked_at": health.checked_at,
        "last_success_at": health.last_success_at,
        "last_error": health.last_error,
        "last_error_at": health.last_error_at,
        "latency_ms": health.latency_ms,
        "consecutive_failures": health.consecutive_failures,
    }
