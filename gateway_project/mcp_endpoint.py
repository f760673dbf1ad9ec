"""The gateway's MCP server: tool_search, discover_tools, call_remote_tool, and the namespaced tools.

Tool failures come back in-band (`isError` with a message the model can act on); only protocol
faults are JSON-RPC errors. The call path reads the in-memory catalog and the session pool only.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from asgiref.sync import sync_to_async
from django.db import Error as DatabaseError
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from monitoring.metrics import observe_search
from proxy.calls import call_tool, current_snapshot, tool_error
from proxy.sessions import LogCallback, LogForward, ProgressCallback
from registry.catalog import Snapshot, catalog, drop_broken_connection
from search import MAX_RESULTS, SearchError, regex_search

from .database_errors import DATABASE_DOWN
from .search_index import search_index

logger = logging.getLogger(__name__)

GATEWAY_NAME = "mcp-orchestration-gateway"
UPSTREAM_CREDENTIAL_HEADER = "x-upstream-authorization"

SEARCH_TOOL = types.Tool(
    name="tool_search",
    title="Search tools",
    description=(
        "Search every tool of every server behind this gateway. BM25 relevance ranking over tool names, "
        "server names, descriptions and parameters by default; set use_regex=true to match a Python regular "
        "expression (case-insensitive, at most 200 characters) instead. Returns tool_reference entries whose "
        "tool_name can be called directly or through call_remote_tool."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What the tool should do, or a regex when use_regex is true"},
            "max_results": {"type": "integer", "minimum": 1, "maximum": MAX_RESULTS, "default": 3},
            "use_regex": {"type": "boolean", "default": False},
        },
        "required": ["query"],
    },
    annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
)
DISCOVER_TOOL = types.Tool(
    name="discover_tools",
    title="Discover a server's tools",
    description="Connect to a registered server, list its tools now, and index them for tool_search.",
    input_schema={
        "type": "object",
        "properties": {"server_name": {"type": "string", "description": "A registered server's name"}},
        "required": ["server_name"],
    },
)
CALL_TOOL = types.Tool(
    name="call_remote_tool",
    title="Call a tool on a downstream server",
    description=(
        "Call a tool found with tool_search by its namespaced name (server__tool). The server's result is "
        "returned unchanged. auth_header is sent as the Authorization header to servers configured to accept "
        "a forwarded credential, and to no other server."
    ),
    input_schema={
        "type": "object",
        "properties": {
            "tool_name": {"type": "string", "description": "Namespaced name, e.g. time__get_current_time"},
            "arguments": {"type": "object", "description": "The tool's arguments", "additionalProperties": True},
            "auth_header": {"type": "string", "description": "Credential for servers with auth_type 'forward'"},
        },
        "required": ["tool_name"],
    },
)
GATEWAY_TOOLS = (SEARCH_TOOL, DISCOVER_TOOL, CALL_TOOL)
GATEWAY_TOOL_NAMES = frozenset(t.name for t in GATEWAY_TOOLS)
LOCAL_TOOL_NAMES = frozenset({SEARCH_TOOL.name, DISCOVER_TOOL.name})  # answered by the gateway itself


def json_result(data: dict[str, Any]) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(data, ensure_ascii=False))], structured_content=data
    )


# --- tool_search ------------------------------------------------------------------------------


async def tool_search(args: dict[str, Any]) -> types.CallToolResult:
    query = args.get("query")
    max_results = args.get("max_results", 3)
    use_regex = args.get("use_regex", False)
    if not isinstance(query, str):
        return tool_error("query must be a string: what the tool should do, e.g. 'current time in Tokyo'")
    if not isinstance(use_regex, bool):
        return tool_error("use_regex must be true or false")
    snapshot = await current_snapshot()
    started = time.perf_counter()
    try:
        if use_regex:
            # A bad pattern may run up to the regex time budget: keep it off the event loop.
            documents = search_index.documents(snapshot)
            result = await anyio.to_thread.run_sync(regex_search, documents, query, max_results)
        else:
            result = search_index.index(snapshot).search(query, max_results)
    except SearchError as exc:
        return tool_error(str(exc))
    finally:
        observe_search("regex" if use_regex else "bm25", time.perf_counter() - started)
    return json_result(
        {
            "success": True,
            "tool_references": [{"type": "tool_reference", "tool_name": hit.name} for hit in result.hits],
            "total_matches": result.total_matches,
            "query": query,
        }
    )


# --- discover_tools ---------------------------------------------------------------------------


def _discover(server_name: str) -> tuple[dict[str, Any] | None, str | None]:
    from registry.discovery import discover_server_tools
    from registry.models import Server

    drop_broken_connection()  # this pool thread's connection may have died with a database restart
    server = Server.objects.filter(name=server_name).first()
    if server is None:
        known = ", ".join(Server.objects.order_by("name").values_list("name", flat=True)[:50]) or "none registered"
        return None, f"no server named '{server_name}' (registered servers: {known})"
    if not server.enabled:
        return None, f"server '{server_name}' is disabled; enable it in the admin first"
    result = discover_server_tools(server)
    if not result.ok:
        return None, f"discovery of '{server_name}' failed: {result.error} (its last known tools are kept)"
    tools = [
        {
            "name": t.namespaced_name,
            "original_name": t.name,
            **({"title": t.title} if t.title else {}),
            "description": t.description,
            "inputSchema": t.input_schema,
            **({"outputSchema": t.output_schema} if t.output_schema is not None else {}),
            **({"annotations": t.annotations} if t.annotations is not None else {}),
        }
        for t in result.tools
        if not t.quarantined  # a changed definition reaches no model until an admin approves it
    ]
    data = {
        "success": True,
        "server_name": server_name,
        "tool_count": len(tools),
        "added": result.added,
        "changed": result.changed,
        "removed": result.removed,
        "tools": tools,
    }
    if result.quarantined:
        data["quarantined"] = result.quarantined
        data["note"] = "quarantined tools changed since an admin approved them; they are served once approved"
    return data, None


async def discover_tools(args: dict[str, Any]) -> types.CallToolResult:
    server_name = args.get("server_name")
    if not isinstance(server_name, str) or not server_name:
        return tool_error("server_name must be the name of a registered server, e.g. 'time'")
    data, error = await sync_to_async(_discover, thread_sensitive=False)(server_name)
    if error:
        return tool_error(error)
    return json_result(data)  # type: ignore[arg-type]


# --- call_remote_tool and the namespaced tools --------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallOrigin:
    """Who asked for a tools/call and the ways back to them: filled alike by the SDK's handler and the fast path."""

    caller: str | None = None  # the API token's name (inbound_auth.py); None when GATEWAY_AUTH is off
    forwarded_credential: str | None = None  # the x-upstream-authorization header
    progress: ProgressCallback | None = None  # None when the caller asked for no progress
    log: LogForward | None = None  # None when the caller gets no downstream log messages


def call_origin(request: Any, *, progress: ProgressCallback | None, log: LogForward | None) -> CallOrigin:
    """The origin of a call that came on `request` (the HTTP request; None over stdio)."""
    scope = getattr(request, "scope", None)
    headers = getattr(request, "headers", None)
    return CallOrigin(
        caller=scope.get("gateway_token_name") if scope is not None else None,
        forwarded_credential=headers.get(UPSTREAM_CREDENTIAL_HEADER) if headers is not None else None,
        progress=progress,
        log=log,
    )


def log_forward(meta: Mapping[str, Any] | None, protocol_version: str, send: LogCallback) -> LogForward | None:
    """Downstream log messages go back on the request, at the level its caller asked for.

    A 2026-07-28 caller opts in per request (`_meta`); an older one gets `info` and above (the
    deprecated logging/setLevel is accepted but not applied)."""
    level = (meta or {}).get(LOG_LEVEL_META_KEY)
    if level is None and protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None
    return LogForward(send, level or "info")


async def proxy_call(
    origin: CallOrigin, tool_name: str, arguments: Any, credential: str | None
) -> types.CallToolResult:
    return await call_tool(
        tool_name, arguments, credential=credential, progress=origin.progress, caller=origin.caller, log=origin.log
    )


async def call_remote_tool(origin: CallOrigin, args: dict[str, Any]) -> types.CallToolResult:
    tool_name = args.get("tool_name")
    if not isinstance(tool_name, str) or not tool_name:
        return tool_error("tool_name must be a namespaced tool name such as 'time__get_current_time'")
    credential = args.get("auth_header")
    if credential is not None and not isinstance(credential, str):
        return tool_error("auth_header must be a string such as 'Bearer <token>'")
    return await proxy_call(origin, tool_name, args.get("arguments"), credential or None)


def is_proxied(tool_name: str) -> bool:
    """call_remote_tool or a namespaced tool: a call answered by a downstream server, not by the gateway itself."""
    return tool_name not in LOCAL_TOOL_NAMES


async def run_tool(name: str, arguments: Any, origin: CallOrigin) -> types.CallToolResult:
    """Answer one tools/call. The SDK's handler (`on_call_tool`) and the /mcp fast path (mcp_fast_path.py) both
    come here, so a call is answered the same whichever took it."""
    args = arguments or {}
    try:
        if name == SEARCH_TOOL.name:
            return await tool_search(args)
        if name == DISCOVER_TOOL.name:
            return await discover_tools(args)
        if name == CALL_TOOL.name:
            return await call_remote_tool(origin, args)
        return await proxy_call(origin, name, arguments, origin.forwarded_credential)
    except DatabaseError:
        logger.warning("tool %s needed the database, which is unavailable", name, exc_info=True)
        return tool_error(f"{name} failed: {DATABASE_DOWN}")
    except Exception:
        logger.exception("tool %s crashed", name)
        return tool_error(f"the gateway failed while running {name}; the error is in the gateway's log")


# --- MCP handlers -------------------------------------------------------------------------------


_listed: tuple[str, list[types.Tool]] = ("", [])  # (snapshot version, its namespaced tools)


def _namespaced_tools(snapshot: Snapshot) -> list[types.Tool]:
    """The catalog's tools as MCP Tool objects, built once per catalog version, not per tools/list."""
    global _listed
    version, tools = _listed
    if version != snapshot.version:
        tools = [
            types.Tool(
                name=t.name,
                title=t.title or None,
                description=t.description or None,
                input_schema=t.input_schema or {"type": "object"},
                output_schema=t.output_schema,
            )
            for t in snapshot.tools.values()
        ]
        _listed = (snapshot.version, tools)
    return tools


async def on_list_tools(
    ctx: ServerRequestContext, params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    from django.conf import settings

    tools = list(GATEWAY_TOOLS)
    if settings.MCP_GATEWAY_EXPOSE_TOOLS:
        tools.extend(_namespaced_tools(await current_snapshot()))
    return types.ListToolsResult(tools=tools)


async def on_call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
    progress: ProgressCallback | None = None
    if progress_token_from_params(ctx.params) is not None:  # without a token the downstream is not asked

        async def report_progress(value: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(value, total, message)

        progress = report_progress

    async def send_log(log: types.LoggingMessageNotificationParams) -> None:
        await ctx.session.send_log_message(log.level, log.data, log.logger, ctx.request_id)

    log = log_forward(ctx.meta, ctx.protocol_version, send_log)
    return await run_tool(params.name, params.arguments, call_origin(ctx.request, progress=progress, log=log))


async def on_set_logging_level(ctx: ServerRequestContext, params: types.SetLevelRequestParams) -> types.EmptyResult:
    return types.EmptyResult()


_GATEWAY_SCHEMAS = {t.name: t.input_schema for t in GATEWAY_TOOLS}


def tool_input_schema(name: str) -> dict[str, Any] | None:
    """A tool's input schema for the SDK's `Mcp-Param-*` header check, read from memory: without it
    the SDK runs the whole tools/list handler before every tools/call (a tenth of a proxied call's CPU)."""
    if name in _GATEWAY_SCHEMAS:
        return _GATEWAY_SCHEMAS[name]
    snapshot = catalog.held()
    entry = snapshot.tools.get(name) if snapshot is not None else None
    return (entry.input_schema or {"type": "object"}) if entry is not None else None


def build_server() -> Server:
    # logging/setLevel is deprecated in 2026-07-28 but 2025-era clients still send it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        return Server(
            GATEWAY_NAME,
            version="0.2.0",
            title="MCP Orchestration Gateway",
            instructions=(
                "This gateway fronts many MCP servers. Use tool_search to find a tool by what it does, then call "
                "it by its namespaced name (server__tool) or through call_remote_tool."
            ),
            on_list_tools=on_list_tools,
            on_call_tool=on_call_tool,
            on_set_logging_level=on_set_logging_level,
            get_tool_input_schema=tool_input_schema,
        )
