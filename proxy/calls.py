"""The call path shared by `call_remote_tool`, the namespaced MCP tools and the REST API.

`call_tool` resolves `server__tool` from the in-memory catalog, checks the credential may go to
that server, and calls it over the session pool. Failures come back as an in-band error result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from asgiref.sync import sync_to_async
from django.dispatch import Signal

from registry.catalog import ServerSpec, Snapshot, catalog
from registry.pinning import quarantine_message

from .errors import ProxyError
from .sessions import LogForward, ProgressCallback, pool

# Sent after every call_tool with call=<CallEvent>: the call history and the metrics listen (monitoring app),
# so the proxy does not depend on them. Receivers run on the call path: they must be quick and never raise.
tool_called = Signal()


@dataclass(slots=True)
class CallEvent:
    """One call_tool as its observers see it. `spec` holds secrets: use it to redact, never store or log it."""

    tool: str
    arguments: Any
    caller: str | None
    started_at: float  # time.time()
    server: str = ""  # set once the name resolved to an enabled server
    spec: ServerSpec | None = None
    answered: bool = False  # the downstream answered: its result is the server's own (isError or not)
    duration: float = 0.0
    result: types.CallToolResult | None = None  # None: the call raised or was cancelled


def tool_error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


async def current_snapshot() -> Snapshot:
    if catalog.needs_refresh():
        snapshot = await sync_to_async(catalog.current, thread_sensitive=False)()
        pool.retire(snapshot.servers)  # stop the children of servers disabled, removed or reconfigured
        return snapshot
    return catalog.current()


def unknown_tool_message(snapshot: Snapshot, tool_name: str) -> str:
    if reason := snapshot.quarantined.get(tool_name):
        return quarantine_message(tool_name, reason)
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
    log: LogForward | None = None,
) -> types.CallToolResult:
    """Call a namespaced tool on its server; the server's result unchanged, or an in-band error.

    `caller` names who asked (an API token's name, or None when auth is off), for the call history.
    """
    event = CallEvent(tool=tool_name, arguments=arguments, caller=caller, started_at=time.time())
    start = time.perf_counter()
    try:
        event.result = await _call_tool(event, credential=credential, progress=progress, log=log)
        return event.result
    finally:
        event.duration = time.perf_counter() - start
        tool_called.send(sender=CallEvent, call=event)


async def _call_tool(
    event: CallEvent, *, credential: str | None, progress: ProgressCallback | None, log: LogForward | None = None
) -> types.CallToolResult:
    tool_name, arguments = event.tool, event.arguments
    snapshot = await current_snapshot()
    entry = snapshot.tools.get(tool_name)
    if entry is None:
        return tool_error(unknown_tool_message(snapshot, tool_name))
    event.server = entry.server
    if arguments is not None and not isinstance(arguments, dict):
        return tool_error(f"arguments must be an object of the tool's parameters, not {type(arguments).__name__}")
    spec = snapshot.servers[entry.server]
    event.spec = spec
    if credential and spec.auth_type != "forward":
        return tool_error(
            f"server '{spec.name}' does not accept a forwarded credential (its auth type is '{spec.auth_type}'); "
            "call it without auth_header"
        )
    try:
        result = await pool.call_tool(spec, entry.tool, arguments, credential=credential, progress=progress, log=log)
    except ProxyError as exc:
        return tool_error(str(exc))
    event.answered = True
    return result
