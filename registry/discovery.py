"""Discovering a server's tools: list them over MCP, store them, record the outcome.

Every entry point (the admin action, `manage.py discover`, `import_servers --discover`, the
`discover_tools` MCP tool, the REST API) calls `discover_server_tools`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction
from django.utils import timezone

from .catalog import ServerSpec, bump_version, server_spec
from .models import Server, Tool, definition_hash

logger = logging.getLogger(__name__)

MAX_DESCRIPTION = 10_000


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

    @property
    def summary(self) -> str:
        if not self.ok:
            return f"{self.server}: failed: {self.error}"
        return (
            f"{self.server}: {len(self.tools)} tools ({len(self.added)} new, {len(self.changed)} changed, "
            f"{len(self.removed)} removed, {self.unchanged} unchanged)"
        )


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


def discover_server_tools(server: Server, *, credential: str | None = None) -> DiscoveryResult:
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
    existing = {t.name: t for t in Tool.objects.select_for_update().filter(server=server)}
    seen: set[str] = set()
    for definition in definitions:
        name = definition["name"]
        if name in seen:
            logger.warning("server %s lists tool %r twice; keeping the first", server.name, name)
            continue
        seen.add(name)
        digest = definition_hash(definition)
        fields = {
            "namespaced_name": server.namespaced(name),
            "title": (definition.get("title") or definition.get("annotations", {}).get("title") or "")[:500],
            "description": (definition.get("description") or "")[:MAX_DESCRIPTION],
            "input_schema": definition.get("inputSchema") or {"type": "object"},
            "output_schema": definition.get("outputSchema"),
            "annotations": definition.get("annotations"),
            "definition_hash": digest,
            "last_seen_at": now,
        }
        tool = existing.get(name)
        if tool is None:
            tool = Tool.objects.create(server=server, name=name, **fields)
            result.added.append(tool.namespaced_name)
        elif tool.definition_hash != digest:
            for key, value in fields.items():
                setattr(tool, key, value)
            tool.save()
            result.changed.append(tool.namespaced_name)
        else:
            tool.last_seen_at = now
            tool.save(update_fields=["last_seen_at"])
            result.unchanged += 1
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
