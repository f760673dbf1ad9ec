"""What recording a call costs the call path: the tool_called listener (metrics + history queue), per call.

    GATEWAY_DATA_DIR=/tmp/bench-data .venv/bin/python benchmarks/call_history_overhead.py [calls]

Also prints how long the background writer takes to write those records (off the call path).
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import django

django.setup()

import mcp_types as types  # noqa: E402
from django.core.management import call_command  # noqa: E402

from monitoring.history import on_tool_called, writer  # noqa: E402
from monitoring.models import CallRecord  # noqa: E402
from proxy.calls import CallEvent  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    call_command("migrate", verbosity=0)
    ok = types.CallToolResult(content=[types.TextContent(type="text", text="hi")])
    failed = types.CallToolResult(content=[types.TextContent(type="text", text="token=abc123 failed")], is_error=True)
    events = [
        CallEvent(
            tool=f"bench__tool{i % 50}",
            arguments={"i": i},
            caller="bench",
            started_at=time.time(),
            server="bench",
            answered=True,
            duration=0.01,
            result=failed if i % 10 == 0 else ok,
        )
        for i in range(n)
    ]
    start_thread = writer.start
    writer.start = lambda: None  # first the listener alone, without the writer thread competing for the GIL
    start = time.perf_counter()
    for event in events[: n // 2]:
        on_tool_called(CallEvent, call=event)
    alone = (time.perf_counter() - start) / (n // 2)
    start = time.perf_counter()
    written = writer.flush()
    flush = time.perf_counter() - start
    writer.start = start_thread  # then as in production: the writer thread flushing every second meanwhile
    start = time.perf_counter()
    for event in events[n // 2 :]:
        on_tool_called(CallEvent, call=event)
    busy = (time.perf_counter() - start) / (n - n // 2)
    writer.stop()
    CallRecord.objects.filter(caller="bench").delete()
    print(f"listener on the call path: {alone * 1e6:.1f} µs per call alone, {busy * 1e6:.1f} µs while the writer runs")
    print(f"background writer: {written} records in {flush:.2f}s ({written / flush:,.0f} records/s, SQLite)")


if __name__ == "__main__":
    main()
