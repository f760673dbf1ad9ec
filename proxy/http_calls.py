"""`tools/call` on an open streamable HTTP session, sent over aiohttp instead of the SDK's client.

The SDK opens and keeps the session (initialize or discovery, the tool-change stream, closing):
this module only sends the calls, which is where a proxied call's time goes. Through the SDK a
call crosses httpx2, the client transport's tasks and memory streams and the session's pydantic
round trips, ~2 ms of CPU on the 2-core benchmark machine; here it is one POST on a pooled
aiohttp connection and one parse of the answer (benchmarks/README.md has the numbers).

The request is the one the SDK would send: the session's own `_stamp` adds the protocol-era
envelope and headers (`MCP-Protocol-Version`, and for 2026-07-28 the `_meta` envelope,
`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`), plus the `Mcp-Session-Id` the server gave at
initialize. The answer may be JSON or an SSE stream; progress, log and tool-change
notifications on it go where the SDK would send them. The connect-time SSRF guard is the
same check as for httpx2 (`registry.url_guard`), as an aiohttp resolver.

A 404 on a session means the server no longer knows it (restarted, expired): the call never ran,
so `SessionExpired` lets the pool open a new session and send it once more.
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import mcp_types as types
from aiohttp.abc import AbstractResolver, ResolveResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from registry.url_guard import BlockedAddress, host_problem, resolve_checked

from .errors import ProxyError
from .http_client import LoopShared
from .results import sse_event_limit

logger = logging.getLogger(__name__)

_ids = itertools.count(1)  # string ids ("gw-1"), never equal to the SDK session's own integer ids
_shared: LoopShared[aiohttp.ClientSession] = LoopShared()


class SessionExpired(ProxyError):
    """The server answered 404 for the session: the call never ran; a new session may send it."""


class Rejected(ProxyError):
    """The server answered the call with a JSON-RPC error."""


class BodyTooLarge(ProxyError):
    """The answer passed the gateway's read limit."""


class GuardedResolver(AbstractResolver):
    """Resolves names itself and hands aiohttp only addresses the SSRF guard accepts."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        try:
            addresses = await resolve_checked(host, port)
        except BlockedAddress as exc:
            raise OSError(str(exc)) from None
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        pass


@asynccontextmanager
async def aiohttp_pool() -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp connection pool for this event loop's calls, until exit (see http_client.http_pool)."""
    connector = aiohttp.TCPConnector(
        limit=0,  # no cap shared by every server: one busy server must not starve the others
        keepalive_timeout=4.0,  # under uvicorn's 5 s, so the pool drops an idle connection before the server does
        resolver=GuardedResolver(),
        ttl_dns_cache=10,
    )
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # a server's cookie must not reach another server
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),  # each call's own deadline bounds it
        skip_auto_headers=("User-Agent",),
    )
    try:
        with _shared.holding(session):
            yield session
    finally:
        await session.close()


def shared_session() -> aiohttp.ClientSession | None:
    """The running pool's aiohttp session if this event loop holds one."""
    return _shared.get()


ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
Notify = Callable[[dict[str, Any]], Awaitable[None]]


class HTTPCaller:
    """Sends one session's `tools/call` requests; the session's SDK client supplies the envelope."""

    def __init__(self, url: str, headers: dict[str, str], connect_timeout: float, http: aiohttp.ClientSession) -> None:
        host = urlsplit(url).hostname or ""
        if problem := host_problem(host):  # aiohttp skips the resolver for a literal address
            raise BlockedAddress(f"refused to connect: {problem}")
        self.url = url
        self.http = http
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json", **headers}
        self.session_id: str | None = None
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)  # the call's deadline is anyio's

    def _request_headers(self, stamped: dict[str, str]) -> dict[str, str]:
        headers = {**self.headers, **stamped}
        if self.session_id:
            headers["mcp-session-id"] = self.session_id
        return headers

    async def call_tool(
        self,
        session: Any,
        tool: str,
        arguments: dict[str, Any],
        meta: dict[str, Any] | None,
        progress: ProgressCallback | None,
        notify: Notify,
    ) -> types.CallToolResult:
        request_id = f"gw-{next(_ids)}"
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        if meta or progress is not None:
            params["_meta"] = dict(meta or {})
            if progress is not None:
                params["_meta"]["progressToken"] = request_id
        data: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}
        opts: dict[str, Any] = {}
        session._stamp(data, opts)  # the negotiated era's envelope and headers, exactly as the SDK sends them
        headers = self._request_headers(opts.get("headers") or {})
        modern = headers.get("mcp-protocol-version") in MODERN_PROTOCOL_VERSIONS
        body = json.dumps(data, separators=(",", ":")).encode()
        try:
            return await self._post(body, headers, request_id, progress, notify)
        except anyio.get_cancelled_exc_class():
            # At 2026-07-28 closing the response stream is the cancellation (done by leaving the request);
            # before it, the server is told with notifications/cancelled, as the SDK does.
            if not modern:
                with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                    await self._tell_cancelled(request_id, headers)
            raise

    async def _post(
        self,
        body: bytes,
        headers: dict[str, str],
        request_id: str,
        progress: ProgressCallback | None,
        notify: Notify,
    ) -> types.CallToolResult:
        async with self.http.post(
            self.url, data=body, headers=headers, allow_redirects=False, timeout=self.timeout
        ) as response:
            status = response.status
            content_type = response.headers.get("content-type", "").lower()
            if status == 404 and self.session_id:
                raise SessionExpired("the server no longer knows this session (404)")
            if 300 <= status < 400:
                where = response.headers.get("location", "")
                raise ProxyError(f"the server redirected the call to {where!r}; the gateway follows no redirects")
            if status == 202:
                raise ProxyError("the server answered the call with 202 Accepted and no result")
            if content_type.startswith("text/event-stream") and status < 400:
                async for message in _sse_messages(response.content):
                    if await self._handle(message, request_id, progress, notify, headers):
                        return _result(message)
                raise ProxyError("the server's event stream ended before the call's result")
            if content_type.startswith("application/json"):
                message = await _read_json(response.content)
                if isinstance(message, dict) and ("result" in message or "error" in message):
                    if status < 400 and message.get("id") != request_id:
                        raise ProxyError(f"the server answered with the id of another request ({message.get('id')!r})")
                    return _result(message)
            if status >= 400:
                raise ProxyError(f"the server answered HTTP {status}")
            shown = content_type.split(";")[0] or "none"
            raise ProxyError(f"the server answered with content type {shown}, not JSON or an event stream")

    async def _handle(
        self,
        message: Any,
        request_id: str,
        progress: ProgressCallback | None,
        notify: Notify,
        headers: dict[str, str],
    ) -> bool:
        """True when `message` is this call's answer; notifications and server requests are dealt with."""
        if not isinstance(message, dict):
            return False
        method = message.get("method")
        if method is None:
            return message.get("id") == request_id
        params = message.get("params") or {}
        if "id" in message:  # a server request on the call's stream (legacy sampling, elicitation, ping)
            await self._answer_server_request(message, headers)
        elif method == "notifications/progress" and progress is not None and params.get("progressToken") == request_id:
            await progress(float(params.get("progress", 0)), params.get("total"), params.get("message"))
        else:
            await notify(message)
        return False

    async def _answer_server_request(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        if message.get("method") == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"], "result": {}}
        else:
            error = {"code": types.METHOD_NOT_FOUND, "message": f"the gateway does not answer {message.get('method')}"}
            reply = {"jsonrpc": "2.0", "id": message["id"], "error": error}
        await self._send_only(reply, headers)

    async def _tell_cancelled(self, request_id: str, headers: dict[str, str]) -> None:
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "the gateway's caller cancelled the call"},
        }
        await self._send_only(note, headers)

    async def _send_only(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        headers = {k: v for k, v in headers.items() if k.lower() not in ("mcp-method", "mcp-name")}
        try:
            body = json.dumps(message, separators=(",", ":")).encode()
            async with self.http.post(self.url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
        except (aiohttp.ClientError, OSError) as exc:
            logger.debug("sending %s to %s failed: %s", message.get("method", "a reply"), self.url, exc)


def _result(message: dict[str, Any]) -> types.CallToolResult:
    if "error" in message:
        error = message.get("error") or {}
        raise Rejected(str(error.get("message") or error) if isinstance(error, dict) else str(error))
    result = message.get("result")
    if isinstance(result, dict) and result.get("resultType") == "input_required":
        raise ProxyError("the tool asked for input from the user (input_required), which the gateway cannot give")
    return types.CallToolResult.model_validate(result)


async def _read_json(stream: aiohttp.StreamReader) -> Any:
    limit = sse_event_limit()
    chunks: list[bytes] = []
    seen = 0
    async for chunk in stream.iter_any():
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge("response body over the read limit")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError as exc:
        raise ProxyError(f"the server's answer is not JSON: {exc}") from None


async def _sse_messages(stream: aiohttp.StreamReader) -> AsyncIterator[Any]:
    """The JSON messages of an SSE stream's `message` events, each bounded by the read limit."""
    limit = sse_event_limit()
    # A bytearray appended to and cut from the front, searched only past what was already scanned: a
    # multi-megabyte result in one `data:` line costs one pass, not a copy and a rescan per chunk.
    buffer = bytearray()
    scanned = 0
    data: list[bytes] = []
    size = 0
    event = b"message"
    async for chunk in stream.iter_any():
        buffer += chunk
        while True:
            end = buffer.find(b"\n", scanned)
            if end < 0:
                scanned = len(buffer)
                if scanned > limit:
                    raise BodyTooLarge("one event over the read limit")
                break
            line = bytes(buffer[:end]).rstrip(b"\r")
            del buffer[: end + 1]
            scanned = 0
            if not line:
                if data and event == b"message":
                    try:
                        yield json.loads(b"\n".join(data))
                    except ValueError as exc:
                        raise ProxyError(f"the server sent an event that is not JSON: {exc}") from None
                data, size, event = [], 0, b"message"
            elif line.startswith(b"data:"):
                value = line[5:]
                value = value[1:] if value.startswith(b" ") else value
                size += len(value)
                if size > limit:
                    raise BodyTooLarge("one event over the read limit")
                data.append(value)
            elif line.startswith(b"event:"):
                event = line[6:].strip()


def never_sent(exc: BaseException) -> bool:
    """The request provably never reached the server: its session was unknown, or no connection opened."""
    return isinstance(exc, SessionExpired | aiohttp.ClientConnectorError)
