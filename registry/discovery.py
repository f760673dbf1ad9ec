"""Discovering a server's tools: list them over MCP, store them, record the outcome.

Every entry point (the admin action, `manage.py discover`, `import_servers --discover`, the
`discover_tools` MCP tool, the REST API) calls `discover_server_tools`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from .catalog import ServerSpec, bump_version, server_spec
from .models import Server, Tool, definition_hash
from .pinning import pin_new_tool
from .sanitize import sanitize_definition

logger = logging.getLogger(__name__)


@dataclass
class DiscoveryResult:
    server: str
    ok: bool
    error: str = ""
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    tools: list[Tool] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # not served until approved (registry/pinning.py)

    @property
    def summary(self) -> str:
        if not self.ok:
            return f"{self.server}: failed: {self.error}"
        return (
            f"{self.server}: {len(self.tools)} tools ({len(self.added)} new, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged)"
        ) + (f"; {len(self.quarantined)} awaiting approval in the admin" if self.quarantined else "")


def tool_definition(tool: Any) -> dict[str, Any]:
    """The parts of an MCP Tool that define it (what the hash pins), in wire (camelCase) form."""
    data = tool.model_dump(by_alias=True, mode="json", exclude_none=True)
    keys = ("name", "title", "description", "inputSchema", "outputSchema", "annotations")
    return {k: data[k] for k in keys if k in data}


async def _list_tools(spec: ServerSpec, credential: str | None) -> list[dict[str, Any]]:
    from proxy.sessions import SessionPool  # registry stays importable without the call path

    # A fresh session: discovery must see what the server announces now.
    tools = await SessionPool().list_tools(spec, credential=credential)
    return [tool_definition(t) for t in tools]


# Discoveries running in this process, by (server, credential): a caller arriving while one runs
# waits for its result instead of sending another tools/list (single flight).
_running: dict[tuple[int | str, str], Future[DiscoveryResult]] = {}
_running_lock = threading.Lock()


def discover_server_tools(server: Server, *, credential: str | None = None) -> DiscoveryResult:
    # An unsaved server (pk None) shares its discovery with nobody.
    key = (server.pk or f"unsaved-{id(server)}", hashlib.sha256(credential.encode()).hexdigest() if credential else "")
    with _running_lock:
        running = _running.get(key)
        if running is None:
            mine: Future[DiscoveryResult] = Future()
            _running[key] = mine
    if running is not None:
        result = running.result()
        server.refresh_from_db()
        return result
    try:
        result = _discover_now(server, credential)
        mine.set_result(result)
        return result
    except BaseException as exc:
        mine.set_exception(exc)
        raise
    finally:
        with _running_lock:
            del _running[key]


def _discover_now(server: Server, credential: str | None) -> DiscoveryResult:
    from proxy.errors import ProxyError

    spec = server_spec(server, connection_mode="stateless")
    if spec.auth_type == "forward" and credential is None:
        # No caller to forward from: discovery of a forward server sends its saved headers, if any.
        spec = dataclasses.replace(spec, auth_type="static")
    try:
        definitions = async_to_sync(_list_tools)(spec, credential)
    except ProxyError as exc:
        return record_discovery_error(server, str(exc))
    except Exception as exc:  # a crash in discovery must not take the caller down
        logger.exception("discovery of %s crashed", server.name)
        return record_discovery_error(server, f"discovery failed unexpectedly: {type(exc).__name__}")
    return store_discovered_tools(server, definitions)


def record_discovery_error(server: Server, message: str) -> DiscoveryResult:
    """Keep the last good tools; remember what went wrong and when."""
    Server.objects.filter(pk=server.pk).update(last_error=message[:2000], last_error_at=timezone.now())
    server.refresh_from_db()
    logger.warning("discovery of %s failed: %s", server.name, message)
    return DiscoveryResult(server=server.name, ok=False, error=message, tools=list(server.tools.all()))


@transaction.atomic
def store_discovered_tools(server: Server, definitions: list[dict[str, Any]]) -> DiscoveryResult:
    result = DiscoveryResult(server=server.name, ok=True)
    now = timezone.now()
    # The server row's lock serializes discoveries of one server across processes (PostgreSQL; on
    # SQLite the IMMEDIATE transaction does), so concurrent ones leave one consistent tool set.
    Server.objects.select_for_update().filter(pk=server.pk).first()
    existing = {t.name: t for t in Tool.objects.select_for_update().filter(server=server)}
    seen: set[str] = set()
    for definition in definitions:
        name = definition["name"]
        if name in seen:
            logger.warning("server %s lists tool %r twice; keeping the first", server.name, name)
            continue
        seen.add(name)
        # The hash pins what the server announced; what is stored, indexed and served is sanitized.
        digest = definition_hash(definition)
        clean = sanitize_definition(definition)
        shown = clean.definition
        fields = {
            "namespaced_name": server.namespaced(name),
            "title": (shown.get("title") or (shown.get("annotations") or {}).get("title") or "")[:500],
            "description": shown.get("description") or "",
            "input_schema": shown.get("inputSchema") or {"type": "object"},
            "output_schema": shown.get("outputSchema"),
            "annotations": shown.get("annotations"),
            "definition_hash": digest,
            "announced_definition": definition,
            "flags": clean.flags,
            "last_seen_at": now,
        }
        tool = existing.get(name)
        if tool is None:
            tool = Tool(server=server, name=name, **fields)
            pin_new_tool(tool)
            tool.save()
            result.added.append(tool.namespaced_name)
        elif tool.definition_hash != digest:
            for key, value in fields.items():
                setattr(tool, key, value)
            tool.save()  # the approved hash stays: a changed definition is quarantined until approved
            result.changed.append(tool.namespaced_name)
        else:
            # Same definition; what sanitizing makes of it may differ after a settings change.
            stale = [key for key, value in fields.items() if getattr(tool, key) != value]
            for key in stale:
                setattr(tool, key, fields[key])
            tool.last_seen_at = now
            tool.save(update_fields=list({"last_seen_at", *stale}))
            result.unchanged += 1
        if tool.quarantined:
            result.quarantined.append(tool.namespaced_name)
            logger.warning("tool %s is quarantined until an admin approves its definition", tool.namespaced_name)
        result.tools.append(tool)
    vanished = [t for n, t in existing.items() if n not in seen]
    if vanished:
        result.removed = [t.namespaced_name for t in vanished]
        Tool.objects.filter(pk__in=[t.pk for t in vanished]).delete()
    Server.objects.filter(pk=server.pk).update(
        last_discovered_at=now, last_error="", last_error_at=None, tool_count=len(result.tools)
    )
    server.refresh_from_db()
    bump_version()
    logger.debug("discovered %s", result.summary)
    return result
