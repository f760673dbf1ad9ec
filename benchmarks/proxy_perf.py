"""What one gateway hop costs a `tools/call`: the gateway next to the same load sent straight to the echo server.

    .venv/bin/python benchmarks/proxy_perf.py                     # c = 1 8 32, 5 s each
    .venv/bin/python benchmarks/proxy_perf.py --duration 10 --concurrency 1 8 --rounds 3

Starts a downstream echo server (the mcp SDK's low-level Server, stateless with JSON answers: the
fastest downstream, so the hop's own cost shows), a gateway (uvicorn, a fresh GATEWAY_DATA_DIR under
/tmp, migrate + import_servers --discover, GATEWAY_AUTH=off) and drives closed-loop load with the
mcp SDK client, one session per worker, in a separate process:

- direct: `echo` on the echo server itself (the baseline)
- namespaced: `echo__echo` on the gateway
- call_remote_tool: `call_remote_tool {tool_name: echo__echo}` on the gateway

For each it prints calls/s, p50/p99 latency and the CPU per call of the process that answered
(the gateway, or the echo server for `direct`), with ratios against `direct` from the same round,
then the gateway's RSS/PSS idle and after the load, and a stdio server's per-call latency on an
open session, through the gateway and straight from the SDK client. Interleaved rounds
(`--rounds`, medians reported) keep machine drift from favouring one side. Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROBE_SERVER = ROOT / "tests" / "servers" / "probe_server.py"
TEXT = "hello from proxy_perf"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the downstream echo server (a subcommand, run in its own process) --------------------------


def serve_echo(port: int) -> None:
    import mcp_types as types
    import uvicorn
    from mcp.server.lowlevel.server import Server

    echo_tool = types.Tool(
        name="echo",
        description="Return the given text unchanged.",
        input_schema={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    )

    async def list_tools(ctx, params):  # type: ignore[no-untyped-def]
        return types.ListToolsResult(tools=[echo_tool])

    async def call_tool(ctx, params):  # type: ignore[no-untyped-def]
        text = str((params.arguments or {}).get("text", ""))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    server = Server("echo", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)
    app = server.streamable_http_app(stateless_http=True, json_response=True, host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- the load generator (a subcommand, run in its own process) ----------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kb(pid: int) -> dict[str, int]:
    """RSS and PSS of one process, in kB (smaps_rollup)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                out[key.lower()] = int(rest.split()[0])
    return out


def run_load(ns: argparse.Namespace) -> None:
    import anyio
    from mcp import Client, StdioServerParameters

    arguments = json.loads(ns.arguments)
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop = False

    def target():  # type: ignore[no-untyped-def]
        if ns.stdio:
            return StdioServerParameters(command=PYTHON, args=[str(PROBE_SERVER), "stdio"])
        return ns.url

    async def worker(ready: anyio.Event, opened: list[int]) -> None:
        nonlocal errors
        async with Client(target(), cache=None) as client:
            opened.append(1)
            if len(opened) == ns.concurrency:
                ready.set()
            await ready.wait()
            while not stop:
                start = time.perf_counter()
                try:
                    result = await client.call_tool(ns.tool, arguments)
                    ok = not result.is_error
                except Exception:
                    ok = False
                elapsed = time.perf_counter() - start
                if measuring:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors += 1

    async def main() -> dict:
        nonlocal measuring, stop
        ready = anyio.Event()
        opened: list[int] = []
        async with anyio.create_task_group() as tg:
            for _ in range(ns.concurrency):
                tg.start_soon(worker, ready, opened)
            with anyio.fail_after(60):
                await ready.wait()
            await anyio.sleep(ns.warmup)
            cpu0 = cpu_seconds(ns.watch) if ns.watch else 0.0
            own0 = time.process_time()
            t0 = time.perf_counter()
            measuring = True
            await anyio.sleep(ns.duration)
            measuring = False
            wall = time.perf_counter() - t0
            cpu1 = cpu_seconds(ns.watch) if ns.watch else 0.0
            own1 = time.process_time()
            stop = True
        calls = len(latencies)
        latencies.sort()
        out = {
            "calls": calls,
            "errors": errors,
            "rps": calls / wall,
            "p50_ms": 1000 * latencies[calls // 2] if calls else None,
            "p99_ms": 1000 * latencies[min(calls - 1, int(calls * 0.99))] if calls else None,
            "client_cpu_ms": 1000 * (own1 - own0) / calls if calls else None,
        }
        if ns.watch:
            out["server_cpu_ms"] = 1000 * (cpu1 - cpu0) / calls if calls else None
            out["server_mem_kb"] = memory_kb(ns.watch)
        return out

    print(json.dumps(anyio.run(main)))


# --- the orchestration ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout:g}s")


def load(url: str | None, tool: str, arguments: dict, concurrency: int, ns: argparse.Namespace, **kw) -> dict:
    cmd = [PYTHON, __file__, "load", "--tool", tool, "--arguments", json.dumps(arguments)]
    cmd += ["--concurrency", str(concurrency), "--duration", str(kw.get("duration", ns.duration))]
    cmd += ["--warmup", str(ns.warmup)]
    if url:
        cmd += ["--url", url]
    if kw.get("watch"):
        cmd += ["--watch", str(kw["watch"])]
    if kw.get("stdio"):
        cmd += ["--stdio"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=ns.duration + ns.warmup + 120)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed for {tool}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command")
    echo = sub.add_parser("echo-server")
    echo.add_argument("--port", type=int, required=True)
    lg = sub.add_parser("load")
    lg.add_argument("--url")
    lg.add_argument("--stdio", action="store_true", help="the probe server over stdio instead of --url")
    lg.add_argument("--tool", required=True)
    lg.add_argument("--arguments", default="{}")
    lg.add_argument("--concurrency", type=int, default=1)
    lg.add_argument("--duration", type=float, default=5)
    lg.add_argument("--warmup", type=float, default=1)
    lg.add_argument("--watch", type=int, help="PID whose CPU per call and memory to report")
    ap.add_argument("--duration", type=float, default=5, help="seconds measured per cell (default 5)")
    ap.add_argument("--warmup", type=float, default=1, help="seconds of load before each measurement (default 1)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32], help="default: 1 8 32")
    ap.add_argument("--rounds", type=int, default=1, help="repeat every cell, report medians (default 1)")
    ap.add_argument("--stdio-duration", type=float, default=3, help="seconds per stdio cell (0 skips stdio)")
    ap.add_argument("--keep", action="store_true", help="keep the gateway's data dir and log")
    ns = ap.parse_args()
    if ns.command == "echo-server":
        return serve_echo(ns.port)
    if ns.command == "load":
        return run_load(ns)
    run_benchmark(ns)


def run_benchmark(ns: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="proxy-perf-"))
    echo_port, gw_port = free_port(), free_port()
    echo_url = f"http://127.0.0.1:{echo_port}/mcp"
    gw_url = f"http://127.0.0.1:{gw_port}/mcp"
    env = dict(os.environ, GATEWAY_DATA_DIR=str(data_dir), GATEWAY_AUTH="off", GATEWAY_LOG_LEVEL="warning")
    env["MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS"] = "true"  # the echo server listens on loopback
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env["STORAGE_BACKEND"] = "memory"
    procs: list[subprocess.Popen] = []
    try:
        echo = subprocess.Popen([PYTHON, __file__, "echo-server", "--port", str(echo_port)])
        procs.append(echo)
        wait_for_port(echo_port, echo, "the echo server")
        manage = [PYTHON, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, cwd=ROOT)
        subprocess.run(
            [*manage, "import_servers", "--url", echo_url, "--name", "echo", "--discover"],
            env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        config = data_dir / "stdio.json"
        stdio = {"name": "stdio", "transport": "stdio", "command": PYTHON, "args": [str(PROBE_SERVER), "stdio"]}
        config.write_text(json.dumps({"servers": [stdio]}))
        subprocess.run(
            [*manage, "import_servers", str(config), "--discover"],
            env=env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        log = open(data_dir / "gateway.log", "w")
        uvicorn = [str(Path(PYTHON).parent / "uvicorn"), "--app-dir", str(ROOT), "gateway_project.asgi:application"]
        uvicorn += ["--host", "127.0.0.1", "--port", str(gw_port), "--log-level", "warning", "--no-access-log"]
        gateway = subprocess.Popen(uvicorn, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        procs.append(gateway)
        wait_for_port(gw_port, gateway, "the gateway")
        time.sleep(1)
        idle_mem = memory_kb(gateway.pid)

        peers = {
            "direct": (echo_url, "echo", {"text": TEXT}, echo.pid),
            "namespaced": (gw_url, "echo__echo", {"text": TEXT}, gateway.pid),
            "call_remote_tool": (
                gw_url, "call_remote_tool", {"tool_name": "echo__echo", "arguments": {"text": TEXT}}, gateway.pid,
            ),
        }  # fmt: skip
        results: dict[tuple[str, int], list[dict]] = {}
        for round_ in range(ns.rounds):
            for c in ns.concurrency:
                for name, (url, tool, args, pid) in peers.items():
                    row = load(url, tool, args, c, ns, watch=pid)
                    results.setdefault((name, c), []).append(row)
                    print(
                        f"round {round_ + 1} c={c:<3} {name:<17} {row['rps']:8.0f} calls/s "
                        f"p50 {fmt(row['p50_ms'], '.2f')} ms  errors {row['errors']}",
                        file=sys.stderr,
                    )
        loaded_mem = memory_kb(gateway.pid)

        stdio_rows = {}
        if ns.stdio_duration > 0:
            sargs = {"text": TEXT}
            for _ in range(ns.rounds):
                for name, kw in (("stdio direct (SDK)", {"stdio": True}), ("stdio via gateway", {"url": gw_url})):
                    tool = "echo" if kw.get("stdio") else "stdio__echo"
                    url = kw.get("url")
                    row = load(url, tool, sargs, 1, ns, duration=ns.stdio_duration, stdio=bool(kw.get("stdio")))
                    stdio_rows.setdefault(name, []).append(row)

        print_report(ns, results, stdio_rows, idle_mem, loaded_mem)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if ns.keep:
            print(f"data dir and gateway log kept in {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def print_report(ns, results, stdio_rows, idle_mem, loaded_mem) -> None:  # type: ignore[no-untyped-def]
    rounds = f", median of {ns.rounds} rounds" if ns.rounds > 1 else ""
    print(f"\nproxy_perf: {ns.duration:g} s per cell{rounds}; CPU/call is the answering process's (gateway or echo)")
    header = (
        f"{'peer':<17} {'c':>3} {'calls/s':>8} {'x direct':>8} {'p50 ms':>7} {'+p50 ms':>8} {'p99 ms':>7} "
        f"{'CPU ms/call':>11} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for c in ns.concurrency:
        base = results[("direct", c)]
        base_rps, base_p50 = median_of(base, "rps"), median_of(base, "p50_ms")
        for name in ("direct", "namespaced", "call_remote_tool"):
            rows = results[(name, c)]
            rps, p50 = median_of(rows, "rps"), median_of(rows, "p50_ms")
            ratio = rps / base_rps if rps and base_rps else None
            added = p50 - base_p50 if p50 is not None and base_p50 is not None and name != "direct" else None
            print(
                f"{name:<17} {c:>3} {fmt(rps, '.0f'):>8} {fmt(ratio, '.2f'):>8} {fmt(p50, '.2f'):>7} "
                f"{fmt(added, '+.2f'):>8} {fmt(median_of(rows, 'p99_ms'), '.2f'):>7} "
                f"{fmt(median_of(rows, 'server_cpu_ms'), '.2f'):>11} {sum(r['errors'] for r in rows):>6}"
            )
    print(
        f"\ngateway memory: idle RSS {idle_mem['rss'] / 1024:.1f} MB, PSS {idle_mem['pss'] / 1024:.1f} MB; "
        f"after the load RSS {loaded_mem['rss'] / 1024:.1f} MB, PSS {loaded_mem['pss'] / 1024:.1f} MB"
    )
    if stdio_rows:
        print(f"\nstdio probe server, one open session, c=1, {ns.stdio_duration:g} s")
        base = median_of(stdio_rows["stdio direct (SDK)"], "p50_ms")
        for name, rows in stdio_rows.items():
            p50 = median_of(rows, "p50_ms")
            added = f"  ({p50 - base:+.2f} ms)" if name != "stdio direct (SDK)" and p50 and base else ""
            print(
                f"{name:<19} p50 {fmt(p50, '.2f')} ms  p99 {fmt(median_of(rows, 'p99_ms'), '.2f')} ms{added}  "
                f"errors {sum(r['errors'] for r in rows)}"
            )


if __name__ == "__main__":
    main()
