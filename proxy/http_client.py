"""The outbound HTTP client for streamable HTTP servers: one connection pool per process, and the
headers each server may receive.

Every downstream session gets its own light `httpx2.AsyncClient`, carrying only its server's
headers and timeouts, over the one connection pool the session pool holds open while it runs
(`http_pool()`): connections are kept alive and reused across sessions, and a session costs no
new pool, TLS context or socket. A client made outside a running pool (management commands,
a per-call session in a short-lived event loop) gets a private pool, closed with the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Generic, TypeVar

import httpx2
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT

from registry.catalog import ServerSpec
from registry.url_guard import guarded_transport

from .errors import ProxyError
from .results import sse_event_limit

T = TypeVar("T")
# No cap on open connections: each persistent session may hold a standing GET stream, and a cap
# shared by every server would let one busy server starve the others' calls.
POOL_LIMITS = httpx2.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=30.0)


class LoopShared(Generic[T]):
    """A value shared by the code running in the event loop that set it (the session pool's), None elsewhere.

    Management commands and per-call sessions in a short-lived loop of their own never see it."""

    def __init__(self) -> None:
        self._held: tuple[asyncio.AbstractEventLoop, T] | None = None

    @contextmanager
    def holding(self, value: T) -> Iterator[T]:
        previous = self._held
        self._held = (asyncio.get_running_loop(), value)
        try:
            yield value
        finally:
            self._held = previous

    def get(self) -> T | None:
        held = self._held
        if held is None:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return held[1] if held[0] is loop else None


_shared: LoopShared[httpx2.AsyncHTTPTransport] = LoopShared()


def outbound_headers(spec: ServerSpec, credential: str | None) -> dict[str, str]:
    """Only a `forward` server receives the caller's credential; every other server gets only
    its own saved headers (never the gateway's inbound token: no token passthrough)."""
    if spec.auth_type == "forward":
        if not credential:
            raise ProxyError(
                f"server '{spec.name}' needs the caller's credential: pass auth_header "
                "(e.g. 'Bearer <token>') to call_remote_tool"
            )
        return {"Authorization": credential}
    if spec.auth_type == "static":
        return dict(spec.auth_headers)
    return {}


def connection_pool() -> httpx2.AsyncHTTPTransport:
    """The one place an outbound connection pool is built (the shared one and private ones)."""
    # SSRF guard: every connection resolves, checks and connects to the checked address (registry/url_guard.py).
    return guarded_transport(limits=POOL_LIMITS)


@asynccontextmanager
async def http_pool() -> AsyncIterator[httpx2.AsyncHTTPTransport]:
    """Share one connection pool among the clients made in this event loop, until exit."""
    transport = connection_pool()
    try:
        with _shared.holding(transport):
            yield transport
    finally:
        await transport.aclose()


class BodyTooLarge(httpx2.StreamError):
    """A plain JSON response body grew past the read limit; only that response is dropped."""


class _BoundedBody(httpx2.AsyncByteStream):
    def __init__(self, stream: httpx2.AsyncByteStream, limit: int) -> None:
        self._stream = stream
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._stream:
            seen += len(chunk)
            if seen > self._limit:
                raise BodyTooLarge(f"the response body passed the gateway's byte limit ({self._limit:,} bytes)")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class _BoundedJSON(httpx2.AsyncBaseTransport):
    """Stops reading a plain JSON response at the limit (SSE events are bounded by the SDK per event),
    so a server answering with an endless or huge body costs the gateway at most the limit."""

    def __init__(
        self, transport: httpx2.AsyncBaseTransport, on_response: Callable[[httpx2.Response], None] | None = None
    ) -> None:
        self._transport = transport
        self._on_response = on_response

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._transport.handle_async_request(request)
        if self._on_response is not None:
            self._on_response(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            response.stream = _BoundedBody(response.stream, sse_event_limit())  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class _SharedPool(httpx2.AsyncBaseTransport):
    """One client's door into the shared pool: closing the client leaves the pool open."""

    def __init__(self, transport: httpx2.AsyncHTTPTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._transport.handle_async_request(request)

    async def aclose(self) -> None:
        pass


def http_client(
    spec: ServerSpec, headers: dict[str, str], on_response: Callable[[httpx2.Response], None] | None = None
) -> httpx2.AsyncClient:
    """A client for one session with `spec`'s server; the caller closes it when the session ends.

    `on_response` sees every response's headers (the session id the server assigns)."""
    timeout = httpx2.Timeout(spec.connect_timeout, read=max(spec.timeout, MCP_DEFAULT_SSE_READ_TIMEOUT))
    shared = _shared.get()
    transport = _BoundedJSON(_SharedPool(shared) if shared is not None else connection_pool(), on_response)
    # Redirects are never followed, not even within the origin (the SDK's transport follows those up to
    # max_redirects): a server must not bounce the gateway, and the headers it holds, elsewhere.
    return httpx2.AsyncClient(
        headers=headers, timeout=timeout, follow_redirects=False, max_redirects=0, transport=transport
    )
