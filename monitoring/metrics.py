"""Prometheus metrics: calls, errors and latency per server and tool, search latency, sessions and processes.

Each process keeps its own registry (prometheus_client's default). With several gateway processes
set PROMETHEUS_MULTIPROC_DIR (an empty directory shared by them, emptied at deploy) and /metrics
aggregates every process's counters and histograms; the gauges then sum over live processes.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

# Calls take milliseconds (a warm HTTP session) to minutes (a slow tool).
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SEARCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

CALLS = Counter("mcp_gateway_tool_calls", "Tool calls through the gateway, by outcome.", ["server", "tool", "outcome"])
ERRORS = Counter(
    "mcp_gateway_tool_call_errors",
    "Tool calls that failed: tool_error (the server's isError) or gateway_error (never reached or no answer).",
    ["server", "tool", "outcome"],
)
CALL_SECONDS = Histogram(
    "mcp_gateway_tool_call_duration_seconds", "Duration of tool calls.", ["server", "tool"], buckets=CALL_BUCKETS
)
SEARCH_SECONDS = Histogram(
    "mcp_gateway_search_duration_seconds", "Duration of tool_search.", ["mode"], buckets=SEARCH_BUCKETS
)
SESSIONS_OPEN = Gauge(
    "mcp_gateway_sessions_open", "Open downstream MCP sessions held by the pool.", multiprocess_mode="livesum"
)
STDIO_ALIVE = Gauge(
    "mcp_gateway_stdio_processes_alive",
    "Running stdio server processes started by the gateway.",
    multiprocess_mode="livesum",
)
SERVER_UP = Gauge(
    "mcp_gateway_server_up",
    "Last health probe of each enabled server: 1 healthy, 0 unhealthy, -1 unknown.",
    ["server"],
    multiprocess_mode="mostrecent",
)
HISTORY_DROPPED = Counter(
    "mcp_gateway_call_history_dropped", "Call records dropped because the history queue was full."
)

UNKNOWN = "-"  # the label of calls to names that match no tool: a caller must not create label values at will


_children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}


def observe_call(server: str, tool: str, outcome: str, seconds: float) -> None:
    key = (server or UNKNOWN, tool or UNKNOWN, outcome)
    children = _children.get(key)
    if children is None:  # labels() costs microseconds: resolve each label set once
        server, tool, _ = key
        errors = ERRORS.labels(server, tool, outcome) if outcome != "ok" else None
        children = _children.setdefault(key, (CALLS.labels(*key), errors, CALL_SECONDS.labels(server, tool)))
    calls, errors, duration = children
    calls.inc()
    if errors is not None:
        errors.inc()
    duration.observe(seconds)


def observe_search(mode: str, seconds: float) -> None:
    SEARCH_SECONDS.labels(mode).observe(seconds)


def set_server_up(server: str, status: str) -> None:
    SERVER_UP.labels(server).set({"healthy": 1, "unhealthy": 0}.get(status, -1))


def refresh_pool_gauges() -> None:
    """Sessions open and stdio processes alive (one per open stdio session), from this process's pool."""
    from proxy.sessions import pool

    states = pool.server_states().values() if hasattr(pool, "server_states") else ()
    SESSIONS_OPEN.set(sum(s["open_sessions"] for s in states) if states else pool.open_count())
    STDIO_ALIVE.set(sum(s["open_sessions"] for s in states if s["transport"] == "stdio"))


def exposition() -> tuple[bytes, str]:
    """The text /metrics answers, and its content type."""
    refresh_pool_gauges()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
