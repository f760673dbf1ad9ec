"""What monitoring runs for the life of a gateway process: the health probes and the call history writer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from asgiref.sync import sync_to_async
from django.conf import settings

from .health import release_lease, run_probes
from .history import writer

logger = logging.getLogger(__name__)


@asynccontextmanager
async def running() -> AsyncIterator[None]:
    """Run inside `pool.running()`: the probes use the pool's sessions."""
    interval = settings.MCP_GATEWAY_HEALTH_INTERVAL
    writer.start()
    async with anyio.create_task_group() as tg:
        if interval > 0:
            tg.start_soon(run_probes, interval)
            logger.info("probing server health every %gs", interval)
        else:
            logger.info("server health probes are off (MCP_GATEWAY_HEALTH_INTERVAL=0)")
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True):
        await sync_to_async(_shutdown, thread_sensitive=False)()


def _shutdown() -> None:
    from django.db import close_old_connections

    try:
        writer.stop()
        if settings.MCP_GATEWAY_HEALTH_INTERVAL > 0:
            release_lease()
    except Exception:
        logger.exception("could not write the last call records at shutdown")
    finally:
        close_old_connections()
