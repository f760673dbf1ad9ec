from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from monitoring.history import prune_call_history


class Command(BaseCommand):
    help = "Delete call history records older than MCP_GATEWAY_CALL_HISTORY_DAYS (or --days)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=float, help=f"default: {settings.MCP_GATEWAY_CALL_HISTORY_DAYS}")

    def handle(self, *args: Any, days: float | None = None, **options: Any) -> None:
        days = settings.MCP_GATEWAY_CALL_HISTORY_DAYS if days is None else days
        deleted = prune_call_history(days)
        self.stdout.write(f"Deleted {deleted} call records older than {days:g} days.")
