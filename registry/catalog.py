"""The in-process catalog of servers and tools the call path reads, kept coherent through the cache.

The call path never queries the database: it reads a `Snapshot` held in memory. A snapshot is
rebuilt when the catalog version in the shared cache (Redis in production) changes, which every
write to servers or tools bumps, or when MCP_GATEWAY_TOOL_CACHE_TTL has passed since it was
built (so changes made behind the gateway's back, e.g. in SQL, are picked up too).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

VERSION_KEY = "catalog:version"
TOOLS_KEY = "catalog:tools:{version}"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What the proxy needs to reach one server. Holds secrets: never log or cache it."""

    name: str
    transport: str
    url: str
    command: str
    args: tuple[str, ...]
    env: dict[str, str] = field(hash=False)
    auth_type: str
    auth_headers: dict[str, str] = field(hash=False)
    timeout: float
    connection_mode: str
    connect_timeout: float
    max_retries: int


@dataclass(frozen=True, slots=True)
class ToolEntry:
    name: str  # namespaced, what the client calls
    server: str
    tool: str  # the downstream's own name
    title: str
    description: str
    input_schema: dict[str, Any] = field(hash=False)
    output_schema: dict[str, Any] | None = field(hash=False)
    annotations: dict[str, Any] | None = field(hash=False)
    definition_hash: str


@dataclass(frozen=True)
class Snapshot:
    version: str
    servers: dict[str, ServerSpec]  # enabled servers only
    tools: dict[str, ToolEntry]  # namespaced name -> tool, on enabled servers only
    built_at: float
    disabled: frozenset[str] = frozenset()  # names of registered but disabled servers

    def tools_of(self, server: str) -> list[ToolEntry]:
        return [t for t in self.tools.values() if t.server == server]


def _publish_new_version() -> None:
    cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    catalog.invalidate()


def bump_version() -> None:
    """Tell every process that servers or tools changed, once, after the transaction commits."""
    connection = transaction.get_connection()
    if any(entry[1] is _publish_new_version for entry in connection.run_on_commit):
        return
    transaction.on_commit(_publish_new_version)


def server_spec(server: Any, *, connection_mode: str | None = None) -> ServerSpec:
    """The proxy's view of a `registry.models.Server`."""
    return ServerSpec(
        name=server.name,
        transport=server.transport,
        url=server.url,
        command=server.command,
        args=tuple(server.args or ()),
        env=dict(server.env or {}),
        auth_type=server.auth_type,
        auth_headers=dict(server.auth_headers or {}),
        timeout=server.effective_timeout,
        connection_mode=connection_mode or server.effective_connection_mode,
        connect_timeout=settings.MCP_GATEWAY_CONNECTION_TIMEOUT,
        max_retries=settings.MCP_GATEWAY_MAX_RETRIES,
    )


def _tool_rows() -> list[dict[str, Any]]:
    from registry.models import Tool

    fields = (
        "namespaced_name",
        "server__name",
        "name",
        "title",
        "description",
        "input_schema",
        "output_schema",
        "annotations",
        "definition_hash",
    )
    return list(Tool.objects.servable().order_by("namespaced_name").values(*fields))


def build_snapshot() -> Snapshot:
    """Read the catalog: tool definitions from the shared cache when present, else the database."""
    from registry.models import Server

    version = cache.get(VERSION_KEY)
    if version is None:
        version = uuid.uuid4().hex
        cache.add(VERSION_KEY, version, timeout=None)
        version = cache.get(VERSION_KEY, version)
    tools_key = TOOLS_KEY.format(version=version)
    rows = cache.get(tools_key)
    if rows is None:
        rows = _tool_rows()
        cache.set(tools_key, rows, timeout=settings.MCP_GATEWAY_TOOL_CACHE_TTL)
    servers = {}
    disabled = set()
    for s in Server.objects.all():
        if not s.enabled:
            disabled.add(s.name)
            continue
        servers[s.name] = server_spec(s)
    tools = {
        r["namespaced_name"]: ToolEntry(
            name=r["namespaced_name"],
            server=r["server__name"],
            tool=r["name"],
            title=r["title"],
            description=r["description"],
            input_schema=r["input_schema"],
            output_schema=r["output_schema"],
            annotations=r["annotations"],
            definition_hash=r["definition_hash"],
        )
        for r in rows
        if r["server__name"] in servers
    }
    return Snapshot(
        version=str(version), servers=servers, tools=tools, built_at=time.monotonic(), disabled=frozenset(disabled)
    )


class Catalog:
    """Holds the current snapshot; `current()` is cheap and safe to call per request."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._stale = True
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        self._stale = True

    def needs_refresh(self) -> bool:
        """Whether `current()` would touch the cache or the database (the async caller then uses a thread)."""
        snap = self._snapshot
        if snap is None or self._stale:
            return True
        now = time.monotonic()
        if now - snap.built_at >= settings.MCP_GATEWAY_TOOL_CACHE_TTL:
            return True
        return now - self._checked_at >= settings.MCP_GATEWAY_CATALOG_POLL_INTERVAL

    def current(self) -> Snapshot:
        if not self.needs_refresh():
            return self._snapshot  # type: ignore[return-value]
        with self._lock:
            snap = self._snapshot
            now = time.monotonic()
            expired = snap is None or self._stale or now - snap.built_at >= settings.MCP_GATEWAY_TOOL_CACHE_TTL
            if not expired:
                try:
                    changed = cache.get(VERSION_KEY) != snap.version
                except Exception:  # the shared cache is down: keep serving what we have
                    logger.warning("cache unreachable; serving the catalog held in memory", exc_info=True)
                    changed = False
                self._checked_at = now
                if not changed:
                    return snap  # type: ignore[return-value]
            self._stale = False
            self._snapshot = build_snapshot()
            self._checked_at = time.monotonic()
            return self._snapshot


catalog = Catalog()
