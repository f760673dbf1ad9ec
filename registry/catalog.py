"""The in-process catalog of servers and tools the call path reads, kept coherent through the cache.

The call path never queries the database: it reads a `Snapshot` held in memory. A snapshot is
rebuilt when the catalog version in the shared cache (Redis in production) changes, which every
write to servers or tools bumps, or when MCP_GATEWAY_TOOL_CACHE_TTL has passed since it was
built (so changes made behind the gateway's back, e.g. in SQL, are picked up too).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import Error as DatabaseError
from django.db import connection, transaction

from .encryption import secrets_of

logger = logging.getLogger(__name__)

VERSION_KEY = "catalog:version"
# A version check that answered nothing after this long met a hung cache (Redis answers in
# milliseconds); the catalog then leaves the cache alone for CACHE_RETRY seconds instead of waiting
# on it at every poll.
CACHE_HUNG_AFTER = 0.5
CACHE_RETRY = 5.0
NO_CACHE_VERSION = "db-"  # prefix of the versions of snapshots built while the shared cache was unreachable
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
    # namespaced name -> why it is not served (registry.pinning: "changed" or "new"), on enabled servers
    quarantined: dict[str, str] = field(default_factory=dict)

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
        env=secrets_of(server.env, f"server '{server.name}'"),  # type: ignore[arg-type]
        auth_type=server.auth_type,
        auth_headers=secrets_of(server.auth_headers, f"server '{server.name}'"),  # type: ignore[arg-type]
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
        "approved_definition_hash",
    )
    return list(Tool.objects.servable().order_by("namespaced_name").values(*fields))


def build_snapshot(*, use_cache: bool = True) -> Snapshot:
    """Read the catalog: tool definitions from the shared cache when present, else the database."""
    from registry.models import Server
    from registry.pinning import quarantine_reason

    version = cache.get(VERSION_KEY) if use_cache else None
    if version is None and use_cache:
        # First start, or Redis restarted empty: seed a version every process then adopts.
        seed = uuid.uuid4().hex
        added = cache.add(VERSION_KEY, seed, timeout=None)
        if added:
            version = seed
        elif added is not None:  # another process seeded it first (None: the cache is unreachable)
            version = cache.get(VERSION_KEY)
    rows = cache.get(TOOLS_KEY.format(version=version)) if version is not None else None
    if rows is None:
        rows = _tool_rows()
        if version is not None:
            cache.set(TOOLS_KEY.format(version=version), rows, timeout=settings.MCP_GATEWAY_TOOL_CACHE_TTL)
    servers = {}
    disabled = set()
    for s in Server.objects.all():
        if not s.enabled:
            disabled.add(s.name)
            continue
        servers[s.name] = server_spec(s)
    rows = [r for r in rows if r["server__name"] in servers]
    quarantined = {}
    for r in rows:
        # .get: rows cached by a gateway from before pinning have no approved hash; they were served then.
        reason = quarantine_reason(r["definition_hash"], r.get("approved_definition_hash", r["definition_hash"]))
        if reason:
            quarantined[r["namespaced_name"]] = reason
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
        if r["namespaced_name"] not in quarantined
    }
    if version is None:
        # The shared cache is unreachable: name the snapshot by its content, so that re-reading the
        # database at every poll (how changes are seen while Redis is down) keeps the search index
        # while nothing changed, and rebuilds it when something did.
        content = repr((rows, sorted(servers.items()), sorted(disabled))).encode()
        version = f"{NO_CACHE_VERSION}{hashlib.sha256(content).hexdigest()[:32]}"
    return Snapshot(
        version=str(version),
        servers=servers,
        tools=tools,
        built_at=time.monotonic(),
        disabled=frozenset(disabled),
        quarantined=quarantined,
    )


def drop_broken_connection() -> None:
    """Close this thread's database connection if it failed, so the next query reconnects.

    Threads from sync_to_async keep their connection across requests (CONN_MAX_AGE) and Django's
    request signals never check it; after a database restart it would fail forever.
    """
    if connection.connection is not None and connection.errors_occurred and not connection.in_atomic_block:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


class Catalog:
    """Holds the current snapshot; `current()` is cheap and safe to call per request."""

    def __init__(self) -> None:
        self._snapshot: Snapshot | None = None
        self._checked_at = 0.0
        self._stale = True
        self._retry_at = 0.0  # after a failed rebuild (database down), not before this time
        self._cache_retry_at = 0.0  # after the cache hung, not asked again before this time
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        self._stale = True

    def held(self) -> Snapshot | None:
        """The snapshot in memory, without asking whether a newer one exists: never blocks, for sync
        callers on the event loop."""
        return self._snapshot

    def needs_refresh(self) -> bool:
        """Whether `current()` would touch the cache or the database (the async caller then uses a thread)."""
        snap = self._snapshot
        now = time.monotonic()
        if snap is not None and now < self._retry_at:
            return False
        if snap is None or self._stale:
            return True
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
                shared = None  # unknown while the cache is considered hung: re-read the database
                if now >= self._cache_retry_at:
                    try:
                        shared = cache.get(VERSION_KEY)
                    except Exception:  # the shared cache is down: keep serving what we have
                        logger.warning("cache unreachable; serving the catalog held in memory", exc_info=True)
                        shared = snap.version  # type: ignore[union-attr]
                    if shared is None and time.monotonic() - now >= CACHE_HUNG_AFTER:
                        logger.warning("the shared cache hangs; reading the catalog from the database for now")
                        self._cache_retry_at = time.monotonic() + CACHE_RETRY
                self._checked_at = now
                if shared == snap.version:  # type: ignore[union-attr]
                    return snap  # type: ignore[return-value]
                if shared is not None and snap.version.startswith(NO_CACHE_VERSION):  # type: ignore[union-attr]
                    # The cache is back, but writes made while it was down could not bump its version:
                    # publish a new one, so no process trusts tool rows cached before the outage.
                    logger.info("shared cache reachable again; publishing a new catalog version")
                    cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
            self._stale = False
            try:
                self._snapshot = build_snapshot(use_cache=time.monotonic() >= self._cache_retry_at)
            except DatabaseError:
                drop_broken_connection()
                if snap is None:
                    raise
                # Calls keep working on what this process knew; the database is tried again shortly.
                logger.warning("database unreachable; serving the catalog held in memory", exc_info=True)
                self._retry_at = time.monotonic() + settings.MCP_GATEWAY_CATALOG_POLL_INTERVAL
                self._stale = True
                return snap
            self._retry_at = 0.0
            self._checked_at = time.monotonic()
            return self._snapshot


catalog = Catalog()
