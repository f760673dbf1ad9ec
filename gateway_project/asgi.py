"""The composition root: Django for the admin and API, the MCP SDK's session manager for /mcp.

Django's ASGI handler refuses `lifespan`, and the MCP session manager must be run by the parent
app, so this wrapper answers lifespan itself (modelcontextprotocol/python-sdk
examples/stories/starlette_mount).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager  # noqa: E402
from mcp.server.transport_security import TransportSecuritySettings  # noqa: E402
from sse_starlette.sse import AppStatus  # noqa: E402

import monitoring.lifespan  # noqa: E402
from proxy.sessions import pool  # noqa: E402
from registry.catalog import catalog  # noqa: E402
from registry.checks import auth_off_refusal  # noqa: E402

from .inbound_auth import require_token  # noqa: E402
from .mcp_endpoint import build_server  # noqa: E402

logger = logging.getLogger(__name__)

try:
    from .mcp_fast_path import fast_path
except ImportError as exc:  # an SDK release moved a private name the fast path uses: serve /mcp without it
    logger.warning("the /mcp fast path is off (%s); every request goes to the MCP SDK", exc)

    def fast_path(app: Any, manager: StreamableHTTPSessionManager) -> Any:
        return app


def transport_security() -> TransportSecuritySettings:
    """Host and Origin checks against DNS rebinding, from ALLOWED_HOSTS and GATEWAY_ALLOWED_ORIGINS."""
    if "*" in settings.ALLOWED_HOSTS:
        logger.warning("GATEWAY_ALLOWED_HOSTS contains '*': DNS-rebinding protection on /mcp is off")
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = []
    for host in settings.ALLOWED_HOSTS:
        hosts += [host, f"{host}:*"]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=list(settings.MCP_ALLOWED_ORIGINS)
    )


if refusal := auth_off_refusal(settings.GATEWAY_HOST):
    raise ImproperlyConfigured(refusal)


def build_session_manager() -> StreamableHTTPSessionManager:
    """The SDK's /mcp handler for a new MCP server (one per process; tests build their own)."""
    # Stateless (the default): no Mcp-Session-Id, so any process can answer any request. Stateful: a
    # session lives in one process; another process answers its id with 404 "Session not found", on
    # which clients start a new session (MCP spec, streamable HTTP, session management).
    return StreamableHTTPSessionManager(
        app=build_server(),
        security_settings=transport_security(),
        stateless=settings.GATEWAY_MCP_STATELESS,
        max_request_body_size=settings.GATEWAY_MAX_BODY_BYTES,
    )


session_manager = build_session_manager()
mcp_server = session_manager.app
if settings.GATEWAY_MCP_STATELESS:
    # sse-starlette ends every SSE response the moment uvicorn gets SIGTERM, cutting in-flight calls.
    # Stateless, each stream is one call's answer: let it finish within uvicorn's graceful-shutdown
    # timeout (GATEWAY_SHUTDOWN_GRACE, --timeout-graceful-shutdown). Stateful GET streams never end
    # by themselves, so there sse-starlette keeps closing them at once.
    AppStatus.disable_automatic_graceful_drain()
# A bearer token before anything else on /mcp (gateway_project/inbound_auth.py), then plain tools/call
# requests answered without the SDK's per-request machinery when stateless (gateway_project/mcp_fast_path.py).
mcp_app = require_token(fast_path(session_manager.handle_request, session_manager))


async def send_json(send: Any, status: int, data: dict[str, Any], *extra: tuple[bytes, bytes]) -> None:
    body = json.dumps(data).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def runtime_stats(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """This process's asyncio tasks, open file descriptors, memory and sessions, for soak tests."""
    rss_kb = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
    data = {
        "pid": os.getpid(),
        "asyncio_tasks": len(asyncio.all_tasks()),
        "open_fds": len(os.listdir("/proc/self/fd")),
        "rss_kb": rss_kb,
        "downstream_sessions": pool.open_count(),
    }
    await send_json(send, 200, data)


async def method_not_allowed(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = "Method Not Allowed: this gateway serves /mcp stateless (GATEWAY_MCP_STATELESS), without a GET stream"
    error = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": message}}
    await send_json(send, 405, error, (b"allow", b"POST"))


async def lifespan(receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "lifespan.startup"
    try:
        async with session_manager.run(), pool.running(), monitoring.lifespan.running():
            snapshot = await sync_to_async(catalog.current, thread_sensitive=False)()
            logger.info("serving %d tools from %d servers on /mcp", len(snapshot.tools), len(snapshot.servers))
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
    except Exception as exc:
        logger.exception("gateway start-up failed")
        await send({"type": "lifespan.startup.failed", "message": str(exc)})
        return
    await send({"type": "lifespan.shutdown.complete"})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await lifespan(receive, send)
    if scope["type"] == "http" and scope["path"].rstrip("/") == "/mcp":
        if scope["method"] == "GET" and settings.GATEWAY_MCP_STATELESS:
            # No session to push messages on: a GET stream would stay open doing nothing, and hold
            # up a graceful shutdown. The spec lets a server answer 405 here.
            return await method_not_allowed(scope, receive, send)
        return await mcp_app(scope, receive, send)
    if scope["type"] == "http" and scope["path"] == "/debug/runtime" and settings.GATEWAY_DEBUG_RUNTIME:
        return await runtime_stats(scope, receive, send)
    await django_app(scope, receive, send)
