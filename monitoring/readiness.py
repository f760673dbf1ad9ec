"""Readiness for load balancers: the database answers, and Redis answers when it is the configured cache."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)


def check_database() -> str | None:
    """None when the database answers, else what failed (no DSN, no credentials)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readiness: database unreachable (%s)", type(exc).__name__)
        return f"database unreachable ({type(exc).__name__})"
    return None


def check_redis() -> str | None:
    if settings.STORAGE_BACKEND != "redis":
        return None
    try:
        from django_redis import get_redis_connection

        get_redis_connection("default").ping()
    except Exception as exc:
        # The exception text names host and port, and a URL may carry a password: only its type goes out.
        logger.warning("readiness: redis unreachable (%s)", type(exc).__name__)
        return f"redis unreachable ({type(exc).__name__})"
    return None


def readiness() -> dict[str, str]:
    """{check: "ok" or what failed}: database always, redis when STORAGE_BACKEND=redis."""
    checks = {"database": check_database() or "ok"}
    if settings.STORAGE_BACKEND == "redis":
        checks["redis"] = check_redis() or "ok"
    return checks
