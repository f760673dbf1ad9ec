"""Downstream MCP sessions: long-lived ones shared by concurrent calls, or one per call.

A `Connection` owns one SDK `Client` inside its own task, because the SDK's transports are
async context managers that must be entered and left by the same task. `SessionPool` keeps
one connection per (server, credential) in persistent mode (one per stdio server: one child
process), reopens it when it breaks, and falls back to a session per call when it is not
running (management commands) or when the server asks for `stateless`. A stdio child that
dies is restarted in the background with backoff; the guards (circuit breaker, crash-loop
give-up, concurrency limit) are described in `proxy.supervision`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import mcp_types as types
from anyio.abc import TaskGroup
from mcp import Client
from mcp.client.session import IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from registry.catalog import ServerSpec
from registry.url_guard import BlockedAddress

from .errors import CallTimeout, ConnectError, Overloaded, ProxyError, ServerGone, describe
from .http_calls import BodyTooLarge, HTTPCaller, Rejected, SessionExpired, aiohttp_pool, never_sent, shared_session
from .http_client import http_client, http_pool, outbound_headers
from .rediscovery import DEBOUNCE as REDISCOVERY_DEBOUNCE
from .rediscovery import rediscover
from .results import check_result_size, sse_event_limit, too_large_while_read
from .stdio import (
    WatchedReceiveStream,
    pid_file,
    stderr_log,
    stderr_tail,
    stdio_parameters,
    stdio_pid,
    unwatch_group,
    watch_group,
)
from .supervision import ServerHealth

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
LogCallback = Callable[[types.LoggingMessageNotificationParams], Awaitable[None]]


@dataclass(frozen=True)
class LogForward:
    """Where a call's downstream log messages go, and the lowest level the caller wants."""

    send: LogCallback
    level: types.LoggingLevel = "info"


CLIENT_INFO = types.Implementation(name="mcp-orchestration-gateway", version="0.2.0")


LISTEN_ACK_WAIT = 2.0  # seconds a new session waits for a 2026-era server to acknowledge its tool-change stream


class Connection:
    """One open MCP session with one server, owned by the task running `run()`."""

    def __init__(
        self,
        spec: ServerSpec,
        credential: str | None,
        *,
        on_exit: Callable[[Connection], None] | None = None,
        on_tools_changed: Callable[[Connection], None] | None = None,
    ) -> None:
        self.spec = spec
        self.credential = credential
        self.client: Client | None = None
        # HTTP sessions in a running pool send their tools/call over aiohttp (proxy/http_calls.py).
        self.http_caller: HTTPCaller | None = None
        self.error: BaseException | None = None
        self.ready = anyio.Event()
        self.broken = False
        self.pid: int | None = None
        self.in_flight = 0
        # Log messages carry no request id: they go to the caller only while it is the sole one.
        self.log_sinks: list[LogCallback] = []
        self._closing = False
        self._ended_by_server = False
        self._pid_file: Path | None = None
        self._on_exit = on_exit
        self._on_tools_changed = on_tools_changed
        self._scope = anyio.CancelScope()

    async def run(self) -> None:
        opened = False
        with self._scope:
            try:
                async with AsyncExitStack() as stack:
                    client = await stack.enter_async_context(self._client(stack))
                    self.client, opened = client, True
                    if self._pid_file is not None and (pid := stdio_pid(self._pid_file)):
                        self.pid = pid
                        watch_group(pid)
                    async with anyio.create_task_group() as tg:
                        # Ready once a 2026-era server has acknowledged the tool-change stream: it does not
                        # replay, so a change announced before the ack (by the very first call) would be
                        # missed. Never later than LISTEN_ACK_WAIT, and at once for servers without it.
                        tg.start_soon(self._ready_after, LISTEN_ACK_WAIT)
                        await self._listen_for_tool_changes(client)
                        self.ready.set()
                    await anyio.sleep_forever()
            except Exception as exc:  # reported to the waiting caller, not raised into the pool's task group
                self.error = exc
                logger.debug("session with %s ended: %s", self.spec.name, describe(exc))
        if self.pid:
            unwatch_group(self.pid)  # the SDK has stopped the group by now
        self.broken = True
        self.client = None
        self.ready.set()
        if opened and self._ended_by_server and self._on_exit is not None:
            self._on_exit(self)

    def _client(self, stack: AsyncExitStack) -> Client:
        spec = self.spec
        if spec.transport == "stdio":
            errlog = stack.enter_context(stderr_log(spec))
            from mcp.client.stdio import stdio_client

            self._pid_file = pid_file(spec)
            stack.callback(self._pid_file.unlink, missing_ok=True)
            parameters = stdio_parameters(spec, self._pid_file)
            transport = _watched(stdio_client(parameters, errlog=errlog), self._transport_ended)
        else:
            headers = outbound_headers(spec, self.credential)
            if (aio := shared_session()) is not None:
                self.http_caller = HTTPCaller(spec.url, headers, spec.connect_timeout, aio)
            http = http_client(spec, headers, on_response=self._seen_response)
            stack.push_async_callback(http.aclose)  # after the session: it is entered below, so left first
            transport = streamable_http_client(spec.url, http_client=http, max_sse_event_size=sse_event_limit())
        return Client(
            transport,
            client_info=CLIENT_INFO,
            cache=None,
            read_timeout_seconds=None,
            logging_callback=self._on_log,
            message_handler=self._on_message,
        )

    def _seen_response(self, response: Any) -> None:
        caller = self.http_caller
        if caller is not None and caller.session_id is None and (session_id := response.headers.get("mcp-session-id")):
            caller.session_id = session_id  # assigned at initialize; the SDK's own requests carry it too

    async def notify(self, message: dict[str, Any]) -> None:
        """A notification the server sent on a call's own stream (proxy/http_calls.py)."""
        method = message.get("method")
        if method == "notifications/message":
            try:
                params = types.LoggingMessageNotificationParams.model_validate(message.get("params"))
            except ValueError:
                return
            await self._on_log(params)
        elif method == "notifications/tools/list_changed" and self._on_tools_changed is not None:
            self._on_tools_changed(self)

    async def _ready_after(self, seconds: float) -> None:
        await anyio.sleep(seconds)
        self.ready.set()

    def _transport_ended(self) -> None:
        # The child's stdout ended: it exited (or closed it). End the session now, not at the next call.
        if not self._closing:
            self.abandon()

    async def _listen_for_tool_changes(self, client: Client) -> None:
        """2026-07-28 servers announce tool changes on a subscriptions/listen stream, not unasked."""
        capability = client.server_capabilities.tools
        if self._on_tools_changed is None or client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return
        if capability is None or not capability.list_changed:
            return
        while not self.broken:
            acknowledged = False
            try:
                async with client.listen(tools_list_changed=True) as subscription:
                    acknowledged = True
                    self.ready.set()
                    async for _event in subscription:
                        self._on_tools_changed(self)
            except Exception as exc:  # refused, or the stream dropped (an idle HTTP stream times out): calls still work
                logger.debug("tool-change stream from %s ended: %s", self.spec.name, describe(exc))
            if not acknowledged:
                return
            await anyio.sleep(1.0)  # then listen again, for as long as the session lives

    async def _on_message(self, message: IncomingMessage) -> None:
        if isinstance(message, types.ToolListChangedNotification) and self._on_tools_changed is not None:
            self._on_tools_changed(self)

    async def _on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        if len(self.log_sinks) == 1:
            await self.log_sinks[0](params)
        else:
            logger.debug("log message from %s with %d calls in flight: not forwarded", self.spec.name, self.in_flight)

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
        """End the session on the gateway's initiative (shutdown, replaced, timed out): no restart."""
        self._closing = True
        self.broken = True
        self._scope.cancel()

    def abandon(self) -> None:
        """End a session the server broke; the pool treats it as the server's exit."""
        self._ended_by_server = not self._closing
        self.broken = True
        self._scope.cancel()


@asynccontextmanager
async def _watched(transport: Any, on_end: Callable[[], None]) -> AsyncIterator[Any]:
    async with transport as (read_stream, write_stream):
        yield WatchedReceiveStream(read_stream, on_end), write_stream


class SessionPool:
    """Downstream sessions for the call path, opened on first use and kept while they work."""

    def __init__(self) -> None:
        self._connections: dict[tuple[str, str], Connection] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}
        self._health: dict[str, ServerHealth] = {}
        self._rediscovering: dict[str, bool] = {}  # server -> announced again since the listing began
        self._task_group: TaskGroup | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SessionPool]:
        """Hold persistent sessions open for the duration (the ASGI lifespan, the stdio server).

        On exit every session is closed; the SDK stops each stdio child (stdin EOF, SIGTERM,
        SIGKILL to its process group) and the task group waits until they are all gone.
        """
        async with http_pool(), aiohttp_pool(), anyio.create_task_group() as tg:
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
        self._health.pop(server, None)

    def retire(self, servers: dict[str, ServerSpec]) -> None:
        """Close the sessions of servers that are gone or whose configuration changed."""
        for key, conn in list(self._connections.items()):
            if servers.get(key[0]) != conn.spec:
                self._connections.pop(key, None)
                conn.close()
        for name in [n for n, h in self._health.items() if servers.get(n) != h.spec]:
            del self._health[name]

    def health(self, spec: ServerSpec) -> ServerHealth:
        health = self._health.get(spec.name)
        if health is None or (health.spec is not spec and health.spec != spec):
            # A new configuration starts with a clean record (the documented way out of `unhealthy`).
            health = self._health[spec.name] = ServerHealth(spec)
        return health

    def server_states(self) -> dict[str, dict[str, Any]]:
        """A read-only view of each server this process has talked to, for monitoring."""
        states: dict[str, dict[str, Any]] = {}
        for name, health in self._health.items():
            conns = [c for k, c in self._connections.items() if k[0] == name and c.client is not None and not c.broken]
            states[name] = {
                "status": health.status(bool(conns)),
                "transport": health.spec.transport,
                "pid": next((c.pid for c in conns if c.pid), None),
                "open_sessions": len(conns),
                "calls_in_flight": int(health.limiter.borrowed_tokens),
                "consecutive_failures": health.failures,
                "recent_crashes": len(health.crashes),
                "restarts": health.restarts,
                "last_error": health.last_error,
                "last_error_at": health.last_error_at,
            }
        return states

    async def call_tool(
        self,
        spec: ServerSpec,
        tool: str,
        arguments: dict[str, Any] | None,
        *,
        credential: str | None = None,
        progress: ProgressCallback | None = None,
        log: LogForward | None = None,
    ) -> types.CallToolResult:
        health = self.health(spec)
        trial = health.admit()
        try:
            with anyio.move_on_after(spec.timeout) as waiting:
                await health.limiter.acquire()
            if waiting.cancelled_caught:
                raise Overloaded(
                    f"server '{spec.name}' already has {health.limiter.total_tokens:g} calls in flight "
                    f"(MCP_GATEWAY_MAX_CONCURRENT_CALLS) and none finished within this call's deadline of "
                    f"{spec.timeout:g}s; try again later"
                )
            try:
                try:
                    async with self.session(spec, credential) as (client, conn):
                        result = await _call(client, conn, spec, tool, arguments, progress, log)
                except SessionExpired as exc:
                    # The call provably never reached the server (it forgot the session, or no connection
                    # opened): a new session sends it once more. Never twice: a second failure is final.
                    logger.info("server %s: %s; sending %s on a new session", spec.name, exc, tool)
                    async with self.session(spec, credential) as (client, conn):
                        result = await _call(client, conn, spec, tool, arguments, progress, log, last_try=True)
            finally:
                health.limiter.release()
        except (ConnectError, ServerGone) as exc:
            health.record_failure(str(exc))
            raise
        finally:
            if trial:
                health.end_trial()
        health.record_success()  # it answered, even if the answer is refused below
        check_result_size(spec, tool, result)
        return result

    async def list_tools(self, spec: ServerSpec, *, credential: str | None = None) -> list[types.Tool]:
        """Every page of the server's tools (used by discovery)."""
        async with self.session(spec, credential) as (_client, conn):
            return await self.list_tools_on(conn)

    async def list_tools_on(self, conn: Connection) -> list[types.Tool]:
        """Every page of the tools of an open session."""
        spec, client = conn.spec, conn.client
        if client is None:
            raise ServerGone(f"server '{spec.name}' closed its session before its tools could be listed")
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

    def _key(self, spec: ServerSpec, credential: str | None) -> tuple[str, str]:
        if spec.transport == "stdio" or not credential:
            return (spec.name, "")  # one child process per stdio server
        return (spec.name, hashlib.sha256(credential.encode()).hexdigest())

    async def _persistent(self, spec: ServerSpec, credential: str | None) -> Connection:
        key = self._key(spec, credential)
        conn = self._connections.get(key)
        if conn is not None and conn.client is not None and not conn.broken and _same(conn.spec, spec):
            return conn
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            conn = self._connections.get(key)
            if conn is not None and not conn.broken and conn.spec == spec and conn.client is not None:
                return conn
            if conn is not None:
                conn.close()
            self.health(spec)  # listed in server_states from its first session, whoever opened it
            await self._backoff(spec)
            assert self._task_group is not None
            conn = await _open_with_retries(
                spec, credential, self._task_group, on_exit=self._exited, on_tools_changed=self._tools_changed
            )
            self._connections[key] = conn
            return conn

    async def _backoff(self, spec: ServerSpec) -> None:
        """Wait out the restart delay after a stdio crash; a call that cannot wait that long fails now."""
        health = self.health(spec)
        delay = health.restart_at - anyio.current_time()
        if delay <= 0:
            return
        if delay > spec.connect_timeout:
            raise ConnectError(
                f"stdio server '{spec.name}' crashed {len(health.crashes)} times lately and is restarted in "
                f"{delay:.0f}s (backoff; last error: {health.last_error})"
            )
        await anyio.sleep(delay)

    def _tools_changed(self, conn: Connection) -> None:
        name = conn.spec.name
        if name in self._rediscovering:
            self._rediscovering[name] = True
        elif self._task_group is not None:
            self._rediscovering[name] = False
            self._task_group.start_soon(self._rediscover, conn)

    async def _rediscover(self, conn: Connection) -> None:
        name = conn.spec.name
        try:
            while True:
                await anyio.sleep(REDISCOVERY_DEBOUNCE)
                self._rediscovering[name] = False
                await rediscover(self, conn)
                if not self._rediscovering[name]:
                    break
        finally:
            del self._rediscovering[name]

    def _exited(self, conn: Connection) -> None:
        """A session ended without being closed by the gateway: for stdio, the child died."""
        if conn.spec.transport != "stdio" or self._task_group is None:
            return  # an HTTP session is simply reopened by the next call
        health = self.health(conn.spec)
        pid = f" (pid {conn.pid})" if conn.pid else ""
        tail = stderr_tail(conn.spec)
        message = f"stdio server '{conn.spec.name}' exited{pid}" + (f"; its stderr said: {tail}" if tail else "")
        delay = health.record_crash(message)
        if delay is None:
            logger.error("%s; crashed %d times within a minute: given up", message, len(health.crashes))
            return
        logger.warning("%s; restarting in %.2gs", message, delay)
        health.restart_at = anyio.current_time() + delay
        health.restarts += 1
        self._task_group.start_soon(self._restart, conn.spec)

    async def _restart(self, spec: ServerSpec) -> None:
        health = self.health(spec)
        health.restarting = True
        try:
            if self._task_group is None or health.open_until:
                return
            await self._persistent(spec, None)
        except ProxyError as exc:
            health.record_failure(str(exc))
            logger.warning("restarting %s failed: %s", spec.name, exc)
        finally:
            health.restarting = False


async def _open_with_retries(
    spec: ServerSpec,
    credential: str | None,
    tg: TaskGroup,
    *,
    on_exit: Callable[[Connection], None] | None = None,
    on_tools_changed: Callable[[Connection], None] | None = None,
) -> Connection:
    """Open a session, retrying only failures to connect: nothing has reached the server yet."""
    delay = 0.2
    for attempt in range(spec.max_retries + 1):
        conn = Connection(spec, credential, on_exit=on_exit, on_tools_changed=on_tools_changed)
        tg.start_soon(conn.run)
        try:
            await conn.open()
            return conn
        except ConnectError:
            if attempt == spec.max_retries or _refused_by_url_guard(conn.error):
                raise  # a blocked address stays blocked: retrying only wastes the caller's time
            logger.info("connecting to %s failed (attempt %d), retrying in %.1fs", spec.name, attempt + 1, delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def _refused_by_url_guard(exc: BaseException | None, depth: int = 0) -> bool:
    if exc is None or depth > 8:
        return False
    if isinstance(exc, BlockedAddress):
        return True
    if isinstance(exc, BaseExceptionGroup) and any(_refused_by_url_guard(e, depth + 1) for e in exc.exceptions):
        return True
    return _refused_by_url_guard(exc.__cause__ or exc.__context__, depth + 1)


async def _call(
    client: Client,
    conn: Connection,
    spec: ServerSpec,
    tool: str,
    arguments: dict[str, Any] | None,
    progress: ProgressCallback | None,
    log: LogForward | None,
    *,
    last_try: bool = False,
) -> types.CallToolResult:
    # A tools/call that was sent is never sent again: it may have had effects.
    # A caller's cancellation lands here too; the server is then sent notifications/cancelled.
    meta: Any = {LOG_LEVEL_META_KEY: log.level} if log is not None else None
    conn.in_flight += 1
    if log is not None:
        conn.log_sinks.append(log.send)
    try:
        with anyio.fail_after(spec.timeout):
            if conn.http_caller is not None:
                return await _call_over_http(conn, client, spec, tool, arguments, meta, progress, last_try)
            return await client.call_tool(tool, arguments or {}, progress_callback=progress, meta=meta)
    except TimeoutError:
        raise CallTimeout(
            f"server '{spec.name}' did not answer {tool} within {spec.timeout:g}s (the server's call timeout)"
        ) from None
    except ProxyError:
        raise
    except MCPError as exc:
        if "byte limit" in exc.error.message and exc.error.code in (types.CONNECTION_CLOSED, types.PARSE_ERROR):
            raise too_large_while_read(spec, tool) from None  # only that response's stream was dropped
        if exc.error.code == types.CONNECTION_CLOSED:
            conn.abandon()
            raise ServerGone(_gone(spec, conn, "the connection closed during the call")) from None
        raise ProxyError(f"server '{spec.name}' rejected the call to {tool}: {exc.error.message}") from None
    except anyio.get_cancelled_exc_class():
        raise
    except Exception as exc:
        conn.abandon()
        raise ServerGone(_gone(spec, conn, describe(exc))) from None
    finally:
        conn.in_flight -= 1
        if log is not None:
            conn.log_sinks.remove(log.send)


async def _call_over_http(
    conn: Connection,
    client: Client,
    spec: ServerSpec,
    tool: str,
    arguments: dict[str, Any] | None,
    meta: Any,
    progress: ProgressCallback | None,
    last_try: bool,
) -> types.CallToolResult:
    caller = conn.http_caller
    assert caller is not None
    try:
        return await caller.call_tool(client.session, tool, arguments or {}, meta, progress, conn.notify)
    except Rejected as exc:
        raise ProxyError(f"server '{spec.name}' rejected the call to {tool}: {exc}") from None
    except BodyTooLarge:
        raise too_large_while_read(spec, tool) from None
    except (ProxyError, aiohttp.ClientError, OSError, ValueError) as exc:
        conn.abandon()  # the next call opens a new session
        if never_sent(exc):
            if last_try:
                raise ConnectError(f"could not reach server '{spec.name}' at {spec.url}: {describe(exc)}") from None
            raise SessionExpired(str(exc)) from None
        if isinstance(exc, ProxyError):
            raise ProxyError(f"server '{spec.name}' failed the call to {tool}: {exc}") from None
        raise ServerGone(_gone(spec, conn, describe(exc))) from None


def _same(a: ServerSpec, b: ServerSpec) -> bool:
    return a is b or a == b  # the snapshot's own object on the hot path: no field-by-field compare


def _gone(spec: ServerSpec, conn: Connection, what: str) -> str:
    if spec.transport != "stdio":
        return f"server '{spec.name}' failed during the call: {what}"
    if conn.broken:
        pid = f" (pid {conn.pid})" if conn.pid else ""
        what = f"its process exited{pid}"
    tail = stderr_tail(spec)
    return f"server '{spec.name}' failed during the call: {what}" + (f"; its stderr said: {tail}" if tail else "")


pool = SessionPool()
