"""The composition root: Django for the admin and API, the MCP SDK's session manager for /mcp.

Django's ASGI handler refuses `lifespan`, and the MCP session manager must be run by the parent
app, so this wrapper answers lifespan itself (modelcontextprotocol/python-sdk
examples/stories/starlette_mount).
"""

from __future__ import annotations

import logging
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager  # noqa: E402
from mcp.server.transport_security import TransportSecuritySettings  # noqa: E402

from proxy.sessions import pool  # noqa: E402
from registry.catalog import catalog  # noqa: E402

from .mcp_endpoint import build_server  # noqa: E402

logger = logging.getLogger(__name__)


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


mcp_server = build_server()
session_manager = StreamableHTTPSessionManager(app=mcp_server, security_settings=transport_security())


async def lifespan(receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "lifespan.startup"
    try:
        async with session_manager.run(), pool.running():
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
        return await session_manager.handle_request(scope, receive, send)
    await django_app(scope, receive, send)
