"""Rediscovery on `notifications/tools/list_changed`: the catalog follows a server's own announcement.

The tools are listed over the session that announced the change (a stdio server's tools may
live in that one process), then stored by `registry.discovery.store_discovered_tools` in a
worker thread, which pins, sanitizes and bumps the catalog version for every process. A burst
of announcements is debounced into one listing; one arriving during a listing causes another.
A `forward` server has no session of its own (each is a caller's), so it is rediscovered with its
saved headers, as the admin does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from .errors import ProxyError

if TYPE_CHECKING:
    from .sessions import Connection, SessionPool

logger = logging.getLogger(__name__)

DEBOUNCE = 0.3


def _store(server_name: str, definitions: list[dict[str, Any]]) -> str:
    from registry.discovery import store_discovered_tools
    from registry.models import Server

    server = Server.objects.filter(name=server_name, enabled=True).first()
    if server is None:
        return f"{server_name}: no longer enabled, skipped"
    return store_discovered_tools(server, definitions).summary


def _discover(server_name: str) -> str:
    from registry.discovery import discover_server_tools
    from registry.models import Server

    server = Server.objects.filter(name=server_name, enabled=True).first()
    if server is None:
        return f"{server_name}: no longer enabled, skipped"
    return discover_server_tools(server).summary


async def rediscover(pool: SessionPool, conn: Connection) -> None:
    from registry.discovery import tool_definition

    name = conn.spec.name
    try:
        if conn.spec.auth_type == "forward" or conn.client is None or conn.broken:
            summary = await sync_to_async(_discover, thread_sensitive=False)(name)
        else:
            tools = await pool.list_tools_on(conn)
            definitions = [tool_definition(t) for t in tools]
            summary = await sync_to_async(_store, thread_sensitive=False)(name, definitions)
    except ProxyError as exc:
        logger.warning("rediscovery of %s after its tools/list_changed failed: %s", name, exc)
        return
    except Exception:
        logger.exception("rediscovery of %s after its tools/list_changed crashed", name)
        return
    logger.info("tools of %s changed (announced by the server): %s", name, summary)
