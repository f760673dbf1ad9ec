"""The call path shared by `call_remote_tool`, the namespaced MCP tools and the REST API.

`call_tool` resolves `server__tool` from the in-memory catalog, checks the credential may go to
that server, and calls it over the session pool. Failures come back as an in-band error result.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types
from asgiref.sync import sync_to_async

from registry.catalog import Snapshot, catalog

from .errors import ProxyError
from .sessions import ProgressCallback, pool


def tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


async def current_snapshot() -> Snapshot:
    if catalog.needs_refresh():
        return await sync_to_async(catalog.current, thread_sensitive=False)()
    return catalog.current()


def unknown_tool_message(snapshot: Snapshot, tool_name: str) -> str:
    server, sep, _ = tool_name.partition("__")
    if sep and server in snapshot.disabled:
        return f"server '{server}' is disabled; enable it in the admin to call '{tool_name}'"
    if sep and server in snapshot.servers:
        return (
            f"server '{server}' has no tool '{tool_name}' (run discover_tools with server_name '{server}' "
            "if it was added recently, or use tool_search to find the right name)"
        )
    if sep:
        return f"no enabled server named '{server}' for tool '{tool_name}'; use tool_search to find tools"
    return f"unknown tool '{tool_name}': names look like server__tool; use tool_search to find one"


async def call_tool(
    tool_name: str,
    arguments: Any,
    *,
    credential: str | None = None,
    progress: ProgressCallback | None = None,
    caller: str | None = None,
) -> types.CallToolResult:
    """Call a namespaced tool on its server; the server's result unchanged, or an in-band error.

    `caller` names who asked (an API token's name, or None when auth is off), for the call history.
    """
    snapshot = await current_snapshot()
    entry = snapshot.tools.get(tool_name)
    if entry is None:
        return tool_error(unknown_tool_message(snapshot, tool_name))
    if arguments is not None and not isinstance(arguments, dict):
        return tool_error(f"arguments must be an object of the tool's parameters, not {type(arguments).__name__}")
    spec = snapshot.servers[entry.server]
    if credential and spec.auth_type != "forward":
        return tool_error(
            f"server '{spec.name}' does not accept a forwarded credential (its auth type is '{spec.auth_type}'); "
            "call it without auth_header"
        )
    try:
        return await pool.call_tool(spec, entry.tool, arguments, credential=credential, progress=progress)
    except ProxyError as exc:
        return tool_error(str(exc))
