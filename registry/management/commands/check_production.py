"""`manage.py check_production`: is this configuration fit to run several gateway processes in production?

Exits non-zero when something must change; warnings name what is merely unusual.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

from registry.checks import is_loopback


@dataclass
class Finding:
    level: str  # "ok", "warning" or "error"
    message: str


def database_findings() -> list[Finding]:
    if connection.vendor != "postgresql":
        return [
            Finding(
                "error",
                f"the database is {connection.vendor}: several processes need PostgreSQL "
                "(DATABASE_URL=postgres://user:password@host:5432/name)",
            )
        ]
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        return [Finding("error", f"PostgreSQL at DATABASE_URL is not reachable: {type(exc).__name__}: {exc}".strip())]
    if pending:
        return [Finding("error", f"{len(pending)} migrations are not applied: run `manage.py migrate` once")]
    return [Finding("ok", "PostgreSQL reachable, migrations applied")]


def redis_findings() -> list[Finding]:
    if settings.STORAGE_BACKEND != "redis":
        return [
            Finding(
                "error",
                "STORAGE_BACKEND is memory: processes cannot see each other's changes; "
                "set STORAGE_BACKEND=redis and REDIS_URL",
            )
        ]
    from django_redis import get_redis_connection

    try:
        get_redis_connection("default").ping()
    except Exception as exc:  # redis' own errors; the cache hides them (IGNORE_EXCEPTIONS)
        return [Finding("error", f"Redis at REDIS_URL is not reachable: {type(exc).__name__}")]
    return [Finding("ok", f"Redis reachable (key prefix {settings.CACHE_KEY_PREFIX!r})")]


def settings_findings() -> list[Finding]:
    found = []
    if not os.environ.get("DJANGO_SECRET_KEY"):
        found.append(
            Finding(
                "error",
                "DJANGO_SECRET_KEY is not set: each host would generate its own key, so sessions and stored "
                "secrets would not work across processes; set the same long random value everywhere",
            )
        )
    if settings.DEBUG:
        found.append(Finding("error", "DJANGO_DEBUG is on: it shows internals on error pages; turn it off"))
    if not settings.GATEWAY_AUTH:
        found.append(
            Finding("error", "GATEWAY_AUTH is off: turn it on and create tokens with `manage.py create_token`")
        )
    if "*" in settings.ALLOWED_HOSTS:
        found.append(Finding("error", "GATEWAY_ALLOWED_HOSTS contains '*': list the names clients use"))
    elif all(is_loopback(h) for h in settings.ALLOWED_HOSTS):
        found.append(
            Finding(
                "warning",
                "GATEWAY_ALLOWED_HOSTS holds loopback names only: behind a load balancer add the name clients "
                "use (e.g. GATEWAY_ALLOWED_HOSTS=mcp.example.com)",
            )
        )
    if not settings.GATEWAY_MCP_STATELESS:
        found.append(
            Finding(
                "warning",
                "GATEWAY_MCP_STATELESS is off: 2025-era sessions live in one process, so the load balancer must "
                "be sticky on the Mcp-Session-Id header",
            )
        )
    if settings.GATEWAY_DEBUG_RUNTIME:
        found.append(Finding("warning", "GATEWAY_DEBUG_RUNTIME is on: /debug/runtime is public; turn it off"))
    if not found:
        found.append(Finding("ok", "secret key, auth, debug, allowed hosts and stateless /mcp are set for production"))
    return found


class Command(BaseCommand):
    help = "Check the configuration for running several gateway processes on PostgreSQL and Redis."

    def handle(self, *args: Any, **options: Any) -> None:
        findings = [*database_findings(), *redis_findings(), *settings_findings()]
        style = {"ok": self.style.SUCCESS, "warning": self.style.WARNING, "error": self.style.ERROR}
        for finding in findings:
            self.stdout.write(style[finding.level](f"{finding.level.upper():8}") + finding.message)
        errors = sum(1 for f in findings if f.level == "error")
        if errors:
            raise CommandError(f"{errors} problem(s) to fix before running in production")
        self.stdout.write("the production configuration looks right")
