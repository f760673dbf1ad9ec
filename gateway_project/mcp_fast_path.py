"""A fast path on POST /mcp: plain tools/call requests for downstream tools are answered here, the rest by the SDK.

The SDK's stateless path costs a proxied call a fifth of its CPU (a transport, memory streams, a
dispatcher and sse-starlette per request). This wrapper reads the body once, and when the request
is a single `tools/call` of call_remote_tool or a namespaced tool that the SDK's own checks accept,
runs it through `mcp_endpoint.run_tool` (the function the SDK's handler calls) and writes the
answer the SDK would have written: the same status, headers, SSE framing and JSON-RPC body, in the
caller's protocol era. Anything else (another method, a batch, a progress token, a refused
header, a body over the limit, ...) goes to the SDK with the body replayed, so every refusal is
the SDK's own.

The answer, per era (mcp.server.streamable_http and _streamable_http_modern, stateless, SSE mode):
- 2025 (handshake) era: `text/event-stream` at once, log messages as `event: message` frames,
  then the response; sse-starlette's ping comment every 15 s.
- 2026-07-28: `application/json` when the call ends silent within 15 s; once a log message
  comes (only with the `_meta` log-level opt-in) or 15 s pass, `text/event-stream` with pings.
A client that disconnects cancels the call, and with it the downstream call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import mcp_types as types
import pydantic_core
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server._streamable_http_modern import _SSE_HEADERS, _SSE_PING_INTERVAL, _mcp_param_rejection, _sse_event
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, modern_error_data
from mcp.server.session import ServerSession
from mcp.server.streamable_http import check_accept_headers
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data, progress_token_from_params
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from sse_starlette.event import ServerSentEvent
from starlette.requests import Request

from .mcp_endpoint import call_origin, is_proxied, log_forward, run_tool

logger = logging.getLogger(__name__)

ENABLED = True  # tests turn the fast path off to compare its answers with the SDK's

_PROTOCOL_VERSION_HEADER = MCP_PROTOCOL_VERSION_HEADER.encode("ascii")
# What StreamableHTTPServerTransport passes to sse-starlette's EventSourceResponse, as that sends them.
_LEGACY_SSE_HEADERS = [
    (b"cache-control", b"no-cache, no-transform"),
    (b"connection", b"keep-alive"),
    (b"content-type", b"text/event-stream"),
    (b"x-accel-buffering", b"no"),
]
_MODERN_PING = b": ping\r\n\r\n"
Message = dict[str, Any]


@dataclass(slots=True)
class PlainCall:
    """A tools/call the fast path answers: what the SDK's kernel would have handed the handler."""

    request: Request
    modern: bool  # 2026-07-28 (per-request envelope) rather than the handshake era
    protocol_version: str
    request_id: types.RequestId
    name: str
    arguments: dict[str, Any] | None
    meta: Mapping[str, Any] | None


def fast_path(app: Any, manager: StreamableHTTPSessionManager) -> Any:
    """Wrap `app` (the manager's handle_request): plain tools/call requests answered here, the rest by `app`.

    Only for a stateless manager in SSE mode without server middleware beyond the SDK's OpenTelemetry
    span (the fast path runs no middleware); otherwise `app` is returned as it is.
    """
    server = manager.app
    if not hasattr(ServerRunner, "_serialize"):
        # The one private SDK method the fast path calls on an object; the private names it imports fail at
        # import instead (gateway_project/asgi.py then serves /mcp without it). mcp is pinned below 2.4.
        logger.warning("the /mcp fast path is off: this mcp SDK has no ServerRunner._serialize")
        return app
    if (
        not manager.stateless
        or manager.json_response
        or server.get_tool_input_schema is None
        or any(not isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
    ):
        return app
    security = TransportSecurityMiddleware(manager.security_settings)
    # The kernel's result shaping (cache hints, the per-version sieve, the 2026 serverInfo stamp) needs
    # only the server; this runner never serves a connection.
    kernel = ServerRunner(server, Connection.from_envelope(types.DEFAULT_NEGOTIATED_VERSION, None, None), None)
    limit = manager.max_request_body_size

    async def serve(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not ENABLED or scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        body, consumed = await _read_body(scope, receive, limit)
        if body is None:  # over the limit, or the client left: the SDK answers (413) from what was read
            return await app(scope, _replay(consumed, receive), send)
        request = Request(scope)
        refused = await security.validate_request(request, is_post=True)
        if refused is not None:  # the SDK's own refusal, the first check either era makes
            return await refused(scope, receive, send)
        call = await _plain_call(request, body, server)
        if call is None:
            return await app(scope, _replay(consumed, receive), send)
        await _answer(call, kernel, receive, send)

    return serve


async def _read_body(scope: dict[str, Any], receive: Any, limit: int) -> tuple[bytes | None, list[Message]]:
    """The whole body, or None (with the messages read) when it is over `limit` or the client left first."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                if int(value) > limit:
                    return None, []
            except ValueError:
                pass
            break
    consumed: list[Message] = []
    size = 0
    while True:
        message = await receive()
        consumed.append(message)
        if message["type"] != "http.request":
            return None, consumed
        size += len(message.get("body", b""))
        if size > limit:
            return None, consumed
        if not message.get("more_body", False):
            break
    if len(consumed) == 1:
        return consumed[0].get("body", b""), consumed
    return b"".join(m.get("body", b"") for m in consumed), consumed


def _replay(messages: list[Message], receive: Any) -> Any:
    """`receive` giving `messages` again first, as the SDK's RequestBodyLimitMiddleware replays what it read."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _plain_call(request: Request, body: bytes, server: Any) -> PlainCall | None:
    """The call, when the SDK would accept the request and hand it to its tools/call handler; else None."""
    version = None
    for key, value in request.scope["headers"]:
        if key == _PROTOCOL_VERSION_HEADER:  # the first one, as the session manager routes on it
            version = value.decode("latin-1")
            break
    modern = version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS
    content_type = request.headers.get("content-type", "")
    if content_type != "application/json" and not content_type.startswith("application/json;"):
        return None  # both eras would take more; a plain client sends this
    has_json, has_sse = check_accept_headers(request)
    if not (has_json and has_sse):
        return None
    try:
        # Each era's own parser: the 2025 transport parses with pydantic_core, the 2026 entry with json.
        decoded = json.loads(body) if modern else pydantic_core.from_json(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(decoded, dict) or decoded.get("method") != "tools/call" or "id" not in decoded:
        return None
    params = decoded.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("name"), str) or not is_proxied(params["name"]):
        return None
    if progress_token_from_params(params) is not None:
        return None  # progress notifications need the SDK's stream
    try:
        if modern:
            message = types.JSONRPCRequest.model_validate(decoded)
        else:
            message = types.jsonrpc_message_adapter.validate_python(decoded, by_name=False)
            if not isinstance(message, types.JSONRPCRequest):
                return None
    except ValidationError:
        return None
    if modern:
        if find_duplicated_routing_header(request.headers.items()) is not None:
            return None
        # dict(request.headers), first value of a name winning, without Headers' lookup per name.
        folded = {key.decode("latin-1"): value.decode("latin-1") for key, value in reversed(request.scope["headers"])}
        verdict = classify_inbound_request(decoded, headers=folded)
        if isinstance(verdict, InboundLadderRejection):
            return None
        # The lifespan state only feeds the tools/list fallback, which fast_path() rules out.
        if await _mcp_param_rejection(server, request, message, verdict, None) is not None:
            return None
        version = verdict.protocol_version
    elif version is None:
        version = types.DEFAULT_NEGOTIATED_VERSION
    try:
        # The kernel's two checks before it calls the handler (mcp.server.runner.ServerRunner._on_request).
        _methods.validate_client_request("tools/call", version, params)
        typed = types.CallToolRequestParams.model_validate(params, by_name=False)
    except (KeyError, ValidationError):
        return None
    return PlainCall(request, modern, version, message.id, typed.name, typed.arguments, typed.meta)


async def _answer(call: PlainCall, kernel: ServerRunner, receive: Any, send: Any) -> None:
    reply = _Reply(send, call.modern)
    if not call.modern:
        await reply.open()
    session: ServerSession | None = None

    async def send_log(log: types.LoggingMessageNotificationParams) -> None:
        nonlocal session
        if session is None:  # the SDK's session gates and shapes log messages, onto this reply
            connection = Connection.from_envelope(call.protocol_version, None, None)
            session = ServerSession(reply, connection, request_meta=call.meta)  # type: ignore[arg-type]
        await session.send_log_message(log.level, log.data, log.logger, call.request_id)

    origin = call_origin(call.request, progress=None, log=log_forward(call.meta, call.protocol_version, send_log))
    loop = asyncio.get_running_loop()
    with anyio.CancelScope() as cancel_scope:
        watcher = loop.create_task(_cancel_on_disconnect(receive, cancel_scope))
        reply.keep_alive_after(loop, _SSE_PING_INTERVAL)
        try:
            result = await run_tool(call.name, call.arguments, origin)
            message: types.JSONRPCResponse | types.JSONRPCError
            try:
                shaped = kernel._serialize("tools/call", call.protocol_version, result)
                message = types.JSONRPCResponse(jsonrpc="2.0", id=call.request_id, result=shaped)
            except Exception as exc:  # a result the caller's protocol version cannot carry
                message = types.JSONRPCError(jsonrpc="2.0", id=call.request_id, error=_error_data(exc, call.modern))
        finally:
            watcher.cancel()
            reply.stop_keep_alive()
    if cancel_scope.cancelled_caught:
        return  # the client left; the downstream call was cancelled with it
    await reply.finish(message)


def _error_data(exc: Exception, modern: bool) -> types.ErrorData:
    """A failure as each era's SDK entry puts it on the wire (runner.modern_error_data, JSONRPCDispatcher)."""
    if modern:
        return modern_error_data(exc)
    error = handler_exception_to_error_data(exc)
    if error is None:
        logger.exception("handler for 'tools/call' raised")
        error = types.ErrorData(code=0, message=str(exc))
    return error


async def _cancel_on_disconnect(receive: Any, cancel_scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    cancel_scope.cancel()


class _Reply:
    """One call's answer on the wire, framed for the caller's era as the SDK frames it.

    Also the request's outbound channel (the `notify` of the SDK's DispatchContext) for log messages.
    """

    def __init__(self, send: Any, modern: bool) -> None:
        self._send = send
        self._modern = modern
        self._lock = asyncio.Lock()  # log frames, pings and the answer come from two tasks
        self._streaming = False
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        self._pinger: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._send({"type": "http.response.start", "status": 200, "headers": self._sse_headers()})
        self._streaming = True

    def _sse_headers(self) -> list[tuple[bytes, bytes]]:
        return _SSE_HEADERS if self._modern else _LEGACY_SSE_HEADERS

    def _frame(self, message: types.JSONRPCNotification | types.JSONRPCResponse | types.JSONRPCError) -> bytes:
        if self._modern:
            return _sse_event(message)
        data = message.model_dump_json(by_alias=True, exclude_unset=True)
        return ServerSentEvent(data=data, event="message", sep="\r\n").encode()

    async def _write(self, chunk: bytes) -> None:
        if not self._streaming:
            await self.open()
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        if params is not None:
            message = types.JSONRPCNotification(jsonrpc="2.0", method=method, params=dict(params))
        else:
            message = types.JSONRPCNotification(jsonrpc="2.0", method=method)
        async with self._lock:
            if not self._done:
                await self._write(self._frame(message))

    def keep_alive_after(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        def start() -> None:
            self._pinger = loop.create_task(self._ping_every(interval))

        self._timer = loop.call_later(interval, start)

    async def _ping_every(self, interval: float) -> None:
        while True:
            async with self._lock:
                if self._done:
                    return
                if self._modern:
                    await self._write(_MODERN_PING)
                else:
                    ping = ServerSentEvent(comment=f"ping - {datetime.now(UTC)}", sep="\r\n")
                    await self._write(ping.encode())
            await asyncio.sleep(interval)

    def stop_keep_alive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._pinger is not None:
            self._pinger.cancel()

    async def finish(self, message: types.JSONRPCResponse | types.JSONRPCError) -> None:
        async with self._lock:
            self._done = True
            if self._streaming:
                await self._send({"type": "http.response.body", "body": self._frame(message), "more_body": False})
                return
            # 2026-07-28, silent and within the deferral window: JSON with the table-mapped status.
            status = 200
            if isinstance(message, types.JSONRPCError):
                status = ERROR_CODE_HTTP_STATUS.get(message.error.code, status)
            data = message.model_dump(mode="json", by_alias=True, exclude_none=True)
            body = json.dumps(data, separators=(",", ":")).encode("utf-8")
            headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
            await self._send({"type": "http.response.body", "body": body})
