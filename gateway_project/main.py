"""`mcp-orchestration-gateway`: run the gateway over stdio (GATEWAY_TRANSPORT=stdio, the default,
for Claude Desktop and friends) or HTTP (admin + /mcp on GATEWAY_HOST:GATEWAY_PORT).

Before serving it brings the database up to date and imports SERVER_CONFIG_PATH when that file
exists, as the original design loaded its config at start-up; servers never discovered are
discovered in the background so the endpoint answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

logger = logging.getLogger("gateway_project.main")


def _prepare(config_path: str | None, import_config: bool) -> None:
    from django.conf import settings
    from django.core.management import call_command

    from registry.config_files import ConfigError, import_servers, read_config_file

    call_command("migrate", interactive=False, verbosity=0)
    path = Path(config_path or settings.SERVER_CONFIG_PATH)
    if import_config and path.exists():
        try:
            report = import_servers(read_config_file(path))
        except ConfigError as exc:
            # A broken file must not take down a gateway that has a working registry.
            logger.error("%s; serving the servers registered before", exc)
            return
        logger.info(
            "%s: %d created, %d updated, %d unchanged",
            path,
            len(report.created),
            len(report.updated),
            len(report.unchanged),
        )


def _discover_new_servers() -> None:
    from django.db import close_old_connections

    from registry.discovery import discover_server_tools
    from registry.models import Server

    try:
        for server in Server.objects.enabled().filter(last_discovered_at__isnull=True, last_error=""):
            logger.info("discovering %s", discover_server_tools(server).summary)
    finally:
        close_old_connections()


async def serve_stdio() -> None:
    from mcp.server.stdio import stdio_server

    from proxy.sessions import pool

    from .mcp_endpoint import build_server

    server = build_server()
    async with pool.running(), stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mcp-orchestration-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=["stdio", "http"], help="default: GATEWAY_TRANSPORT")
    parser.add_argument("--host", help="default: GATEWAY_HOST")
    parser.add_argument("--port", type=int, help="default: GATEWAY_PORT")
    parser.add_argument(
        "--workers", type=int, default=1, help="HTTP worker processes (production: several, with PostgreSQL and Redis)"
    )
    parser.add_argument("--config", help="server config to import at start (default: SERVER_CONFIG_PATH)")
    parser.add_argument("--no-import", action="store_true", help="do not import the config file at start")
    parser.add_argument("--no-discover", action="store_true", help="do not discover new servers at start")
    ns = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    import django

    django.setup()
    from django.conf import settings

    transport = ns.transport or settings.GATEWAY_TRANSPORT
    if transport == "http":
        from registry.checks import auth_off_refusal

        if refusal := auth_off_refusal(ns.host or settings.GATEWAY_HOST):
            print(f"mcp-orchestration-gateway: refusing to start: {refusal}", file=sys.stderr)
            sys.exit(2)
    _prepare(ns.config, not ns.no_import)
    if not ns.no_discover:
        threading.Thread(target=_discover_new_servers, name="startup-discovery", daemon=True).start()

    if transport == "stdio":
        import anyio

        anyio.run(serve_stdio)
        return

    import uvicorn

    host = ns.host or settings.GATEWAY_HOST
    port = ns.port or settings.GATEWAY_PORT
    print(f"MCP endpoint: http://{host}:{port}/mcp   admin: http://{host}:{port}/admin/", file=sys.stderr)
    uvicorn.run(
        "gateway_project.asgi:application",
        host=host,
        port=port,
        log_level=settings.GATEWAY_LOG_LEVEL.lower(),
        access_log=settings.GATEWAY_LOG_LEVEL == "DEBUG",
        lifespan="on",
        workers=ns.workers,
        # SIGTERM: stop accepting, let in-flight calls finish for this long, then close the
        # downstream sessions and stdio children (the lifespan shutdown) and exit.
        timeout_graceful_shutdown=settings.GATEWAY_SHUTDOWN_GRACE,
    )


if __name__ == "__main__":
    main()
