"""The numbers on the staff dashboard: servers with their health, tools, recent calls and errors, slowest tools."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Avg, Count, Max, Q

from registry.models import Server, Tool

from .health import server_health
from .models import CallRecord

RECENT = timedelta(hours=1)
SLOW_WINDOW = timedelta(hours=24)
SLOWEST = 10


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def slowest_tools(window: timedelta = SLOW_WINDOW, limit: int = SLOWEST) -> list[dict[str, Any]]:
    """Tools with the highest average call duration in the window, with their p95."""
    rows = list(
        CallRecord.objects.since(window)
        .exclude(server="")
        .values("tool", "server")
        .annotate(calls=Count("id"), avg_ms=Avg("duration_ms"), max_ms=Max("duration_ms"))
        .order_by("-avg_ms")[:limit]
    )
    for row in rows:
        durations = list(
            CallRecord.objects.since(window)
            .filter(tool=row["tool"], server=row["server"])
            .order_by("-started_at")
            .values_list("duration_ms", flat=True)[:10_000]
        )
        row["p95_ms"] = percentile(durations, 0.95) if durations else None
    return rows


def dashboard_context() -> dict[str, Any]:
    recent = CallRecord.objects.since(RECENT)
    per_server = {
        row["server"]: row
        for row in recent.values("server").annotate(calls=Count("id"), errors=Count("id", filter=~Q(outcome="ok")))
    }
    servers = []
    for server in Server.objects.select_related("health_probe").order_by("name"):
        health = server_health(server)
        counts = per_server.get(server.name, {})
        servers.append(
            {
                "name": server.name,
                "pk": server.pk,
                "enabled": server.enabled,
                "transport": server.get_transport_display(),
                "status": health["status"] if server.enabled else "disabled",
                "health": health,
                "tool_count": server.tool_count,
                "calls": counts.get("calls", 0),
                "errors": counts.get("errors", 0),
            }
        )
    totals = recent.aggregate(calls=Count("id"), errors=Count("id", filter=~Q(outcome="ok")))
    by_status: dict[str, int] = {}
    for s in servers:
        by_status[s["status"]] = by_status.get(s["status"], 0) + 1
    return {
        "servers": servers,
        "by_status": by_status,
        "tool_total": Tool.objects.servable().count(),
        "calls_last_hour": totals["calls"],
        "errors_last_hour": totals["errors"],
        "slowest": slowest_tools(),
        "recent_errors": list(recent.exclude(outcome="ok")[:10]),
    }
