"""Downstream MCP sessions: long-lived ones shared by concurrent calls, or one per call.

A `Connection` owns one SDK `Client` inside its own task, because the SDK's transports are
async context managers that must be entered and left by the same task. `SessionPool` keeps
one connection per (server, credential) in persistent mode, reopens it when it breaks, and
falls back to a session per call when it is not running (management commands) or when the
server asks for `stateless`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from registry.catalog import ServerSpec

from .errors import CallTimeout, ConnectError, ProxyError, ServerGone, describe
from .http_client import http_client, outbound_headers
from .stdio import stderr_log, stderr_tail, stdio_parameters

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
CLIENT_INFO = types.Implementation(name="mcp-orchestration-gateway", version="0.2.0")


class Connection:
    """One open MCP session with one server, owned by the task running `run()`."""

    def __init__(self, spec: ServerSpec, credential: str | None) -> None:
        self.spec = spec
        self.credential = credential
        self.client: Client | None = None
        self.error: BaseException | None = None
        self.ready = anyio.Event()
        self.broken = False
        self._scope = anyio.CancelScope()

    async def run(self) -> None:
        with self._scope:
            try:
                async with AsyncExitStack() as stack:
                    self.client = await stack.enter_async_context(self._client(stack))
                    self.ready.set()
                    await anyio.sleep_forever()
            except Exception as exc:  # reported to the waiting caller, not raised into the pool's task group
                self.error = exc
                logger.debug("session with %s ended: %s", self.spec.name, describe(exc))
        self.broken = True
        self.client = None
        self.ready.set()

    def _client(self, stack: AsyncExitStack) -> Client:
        spec = self.spec
        if spec.transport == "stdio":
            errlog = stack.enter_context(stderr_log(spec))
            from mcp.client.stdio import stdio_client

            transport = stdio_client(stdio_parameters(spec), errlog=errlog)
        else:
            headers = outbound_headers(spec, self.credential)
            transport = streamable_http_client(spec.url, http_client=http_client(spec, headers))
        return Client(transport, client_info=CLIENT_INFO, cache=None, read_timeout_seconds=None)

    async def open(self) -> Client:
        """Wait until the session is ready; ConnectError if it cannot be opened in time."""
        with anyio.move_on_after(self.spec.connect_timeout):
            await self.ready.wait()
        if self.client is not None:
            return self.client
        self.close()
        if self.error is None and not self.ready.is_set():
            raise ConnectError(
                f"server '{self.spec.name}' did not complete the MCP handshake within "
                f"{self.spec.connect_timeout:g}s (MCP_GATEWAY_CONNECTION_TIMEOUT)"
            )
        raise ConnectError(self._explain(self.error))

    def _explain(self, exc: BaseException | None) -> str:
        what = describe(exc) if exc is not None else "the session closed"
        if self.spec.transport == "stdio":
            tail = stderr_tail(self.spec)
            where = f"could not start stdio server '{self.spec.name}' ({self.spec.command})"
            return f"{where}: {what}" + (f"; its stderr said: {tail}" if tail else "")
        return f"could not connect to server '{self.spec.name}' at {self.spec.url}: {what}"

    def close(self) -> None:
        self.broken = True
        self._scope.cancel()


class SessionPool:
    """Downstream sessions for the call path, opened on first use and kept while they work."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, str], Connection] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}
        self._task_group: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SessionPool]:
        """Hold persistent sessions open for the duration (the ASGI lifespan, the stdio server)."""
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            try:
                yield self
            finally:
                self._task_group = None
                for conn in list(self._connections.values()):
                    conn.close()
                self._connections.clear()
                tg.cancel_scope.cancel()

    @property
    def is_running(self) -> bool:
        return self._task_group is not None

    def open_count(self) -> int:
        return sum(1 for c in self._connections.values() if c.client is not None)

    def forget(self, server: str) -> None:
        """Close a server's sessions (its configuration changed or it was disabled)."""
        for key in [k for k in self._connections if k[0] == server]:
            self._connections.pop(key).close()

    async def call_tool(
        self,
        spec: ServerSpec,
        tool: str,
        arguments: dict[str, Any] | None,
        *,
        credential: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> types.CallToolResult:
        async with self.session(spec, credential) as (client, conn):
            return await _call(client, conn, spec, tool, arguments, progress)

    async def list_tools(self, spec: ServerSpec, *, credential: str | None = None) -> list[types.Tool]:
        """Every page of the server's tools (used by discovery)."""
        async with self.session(spec, credential) as (client, conn):
            tools: list[types.Tool] = []
            cursor: str | None = None
            try:
                with anyio.fail_after(spec.timeout):
                    while True:
                        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                        page = await client.session.list_tools(params=params)
                        tools.extend(page.tools)
                        cursor = page.next_cursor
                        if not cursor or len(tools) > 100_000:
                            break
            except TimeoutError:
                conn.close()
                raise CallTimeout(f"server '{spec.name}' did not list its tools within {spec.timeout:g}s") from None
            except MCPError as exc:
                raise ProxyError(f"server '{spec.name}' refused tools/list: {exc.error.message}") from None
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                conn.close()
                raise ServerGone(f"server '{spec.name}' failed while listing its tools: {describe(exc)}") from None
            return tools

    @asynccontextmanager
    async def session(self, spec: ServerSpec, credential: str | None) -> AsyncIterator[tuple[Client, Connection]]:
        if spec.connection_mode == "persistent" and self._task_group is not None:
            conn = await self._persistent(spec, credential)
            yield conn.client, conn  # type: ignore[misc]
            return
        # A session for this call only, closed when it returns.
        try:
            async with anyio.create_task_group() as tg:
                conn = await _open_with_retries(spec, credential, tg)
                try:
                    yield conn.client, conn  # type: ignore[misc]
                finally:
                    conn.close()
        except BaseExceptionGroup as group:
            # anyio wraps what the body raised; callers expect the ProxyError itself.
            leaves = group.exceptions
            if len(leaves) == 1 and isinstance(leaves[0], Exception):
                raise leaves[0] from None
            raise

    async def _persistent(self, spec: ServerSpec, credential: str | None) -> Connection:
        key = (spec.name, hashlib.sha256(credential.encode()).hexdigest() if credential else "")
        conn = self._connections.get(key)
        if conn is not None and not conn.broken and conn.spec == spec and conn.client is not None:
            return conn
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            conn = self._connections.get(key)
            if conn is not None and not conn.broken and conn.spec == spec and conn.client is not None:
                return conn
            if conn is not None:
                conn.close()
            assert self._task_group is not None
            conn = await _open_with_retries(spec, credential, self._task_group)
            self._connections[key] = conn
            return conn


async def _open_with_retries(spec: ServerSpec, credential: str | None, tg: TaskGroup) -> Connection:
    """Open a session, retrying only failures to connect: nothing has reached the server yet."""
    delay = 0.2
    for attempt in range(spec.max_retries + 1):
        conn = Connection(spec, credential)
        tg.start_soon(conn.run)
        try:
            await conn.open()
            return conn
        except ConnectError:
            if attempt == spec.max_retries:
                raise
            logger.info("connecting to %s failed (attempt %d), retrying in %.1fs", spec.name, attempt + 1, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


async def _call(
    client: Client,
    conn: Connection,
    spec: ServerSpec,
    tool: str,
    arguments: dict[str, Any] | None,
    progress: ProgressCallback | None,
) -> types.CallToolResult:
    # A tools/call that was sent is never sent again: it may have had effects.
    try:
        with anyio.fail_after(spec.timeout):
            return await client.call_tool(tool, arguments or {}, progress_callback=progress)
    except TimeoutError:
        raise CallTimeout(
            f"server '{spec.name}' did not answer {tool} within {spec.timeout:g}s (the server's call timeout)"
        ) from None
    except MCPError as exc:
        if exc.error.code == types.CONNECTION_CLOSED:
            conn.close()
            raise ServerGone(_gone(spec, "the connection closed during the call")) from None
        raise ProxyError(f"server '{spec.name}' rejected the call to {tool}: {exc.error.message}") from None
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        conn.close()
        raise ServerGone(_gone(spec, describe(exc))) from None


def _gone(spec: ServerSpec, what: str) -> str:
    tail = stderr_tail(spec) if spec.transport == "stdio" else ""
    return f"server '{spec.name}' failed during the call: {what}" + (f"; its stderr said: {tail}" if tail else "")


pool = SessionPool()
