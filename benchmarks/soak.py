"""Soak: one gateway under mixed load for N minutes, printing its memory, open files and asyncio tasks.

    .venv/bin/python benchmarks/soak.py               # 10 minutes
    .venv/bin/python benchmarks/soak.py --minutes 2 --interval 10 --concurrency 16

Starts its own gateway (uvicorn, SQLite in a temporary directory, the probe server behind it over
stdio and over streamable HTTP, GATEWAY_DEBUG_RUNTIME=1 for /debug/runtime) and drives tool_search,
tools/list, namespaced calls to both, call_remote_tool and calls with progress, half of them on a
fresh client session each time. Reports RSS and PSS.
Prints one line per interval, then whether RSS, file descriptors and tasks stayed flat. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx
from mcp import Client

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROBE = ROOT / "tests" / "servers" / "probe_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, log: Path) -> None:
    for _ in range(300):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not start; see {log}")


def start_gateway(data: Path) -> tuple[list[subprocess.Popen], str]:
    web_port = free_port()
    web = subprocess.Popen([PYTHON, str(PROBE), "http", "--port", str(web_port)], stderr=(data / "web.log").open("w"))
    wait_until_up(f"http://127.0.0.1:{web_port}/", data / "web.log")
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(data),
        "GATEWAY_AUTH": "off",
        "GATEWAY_DEBUG_RUNTIME": "1",
        "MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS": "true",
    }
    config = data / "servers.json"
    servers = {
        "probe": {"command": PYTHON, "args": [str(PROBE), "stdio"]},
        "web": {"type": "http", "url": f"http://127.0.0.1:{web_port}/mcp"},
    }
    config.write_text(json.dumps({"mcpServers": servers}))
    for args in (["migrate"], ["import_servers", str(config), "--discover"]):
        subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    port = free_port()
    cmd = [PYTHON, "-m", "uvicorn", "gateway_project.asgi:application", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=(data / "gateway.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    wait_until_up(f"{url}/healthz", data / "gateway.log")
    return [proc, web], url


class Load:
    def __init__(self, url: str) -> None:
        self.url = url
        self.done = 0
        self.failed = 0

    async def one_round(self, client: Client, i: int) -> None:
        kind = i % 8
        if kind == 5:
            result = await client.call_tool("web__echo", {"text": f"soak {i}"})
            assert result.content[0].text == f"soak {i}"
        elif kind == 6:
            await client.call_tool("call_remote_tool", {"tool_name": "web__add", "arguments": {"a": i, "b": 1}})
        elif kind == 7:
            await client.call_tool("web__sleep", {"seconds": 0.2}, progress_callback=self._progress)
        elif kind == 0:
            await client.call_tool("tool_search", {"query": random.choice(["add numbers", "echo text", "sleep"])})
        elif kind == 1:
            await client.list_tools()
        elif kind == 2:
            result = await client.call_tool("probe__echo", {"text": f"soak {i}"})
            assert result.content[0].text == f"soak {i}"
        elif kind == 3:
            await client.call_tool("call_remote_tool", {"tool_name": "probe__add", "arguments": {"a": i, "b": 1}})
        else:
            await client.call_tool("probe__sleep", {"seconds": 0.2}, progress_callback=self._progress)

    async def _progress(self, value: float, total: float | None, message: str | None) -> None:
        pass

    async def worker(self, until: float, fresh_sessions: bool) -> None:
        i = 0
        while time.monotonic() < until:
            try:
                async with Client(self.url + "/mcp") as client:
                    for _ in range(1 if fresh_sessions else 50):
                        await self.one_round(client, i)
                        self.done += 1
                        i += 1
                        if time.monotonic() >= until:
                            break
            except Exception:
                self.failed += 1


def runtime(url: str) -> dict:
    return httpx.get(f"{url}/debug/runtime", timeout=10).json()


async def soak(url: str, minutes: float, interval: float, concurrency: int) -> list[dict]:
    load = Load(url)
    samples: list[dict] = []
    start = time.monotonic()
    until = start + minutes * 60
    print(f"{'min':>5} {'requests':>9} {'failed':>6} {'rss MB':>7} {'fds':>5} {'tasks':>6} {'sessions':>8}")

    async def sample() -> None:
        while True:
            stats = await anyio.to_thread.run_sync(runtime, url)
            stats.update(minute=(time.monotonic() - start) / 60, requests=load.done, failed=load.failed)
            samples.append(stats)
            print(
                f"{stats['minute']:5.1f} {stats['requests']:9d} {stats['failed']:6d} {stats['rss_kb'] / 1024:7.1f} "
                f"{stats['open_fds']:5d} {stats['asyncio_tasks']:6d} {stats['downstream_sessions']:8d}",
                flush=True,
            )
            if time.monotonic() >= until:
                return
            await anyio.sleep(min(interval, max(0.0, until - time.monotonic())))

    async with anyio.create_task_group() as tg:
        for n in range(concurrency):
            tg.start_soon(load.worker, until, n % 2 == 0)
        tg.start_soon(sample)
    await anyio.sleep(2)  # let the last sessions close
    final = runtime(url)
    final.update(minute=(time.monotonic() - start) / 60, requests=load.done, failed=load.failed)
    samples.append(final)
    return samples


def verdict(samples: list[dict]) -> None:
    # Compare the end with the state after warm-up (the second sample), not with the cold start.
    base, last = samples[min(1, len(samples) - 1)], samples[-1]
    rss = (last["rss_kb"] - base["rss_kb"]) / max(base["rss_kb"], 1)
    print(
        f"\nafter warm-up -> end: rss {rss:+.1%}, fds {last['open_fds'] - base['open_fds']:+d}, "
        f"tasks {last['asyncio_tasks'] - base['asyncio_tasks']:+d}; {last['requests']} requests, "
        f"{last['failed']} failed sessions"
    )
    flat = (
        rss < 0.10 and last["open_fds"] - base["open_fds"] <= 5 and last["asyncio_tasks"] - base["asyncio_tasks"] <= 5
    )
    print("flat" if flat else "GROWING: run longer to tell a leak from warm-up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gateway-soak-") as tmp:
        procs, url = start_gateway(Path(tmp))
        try:
            verdict(anyio.run(soak, url, ns.minutes, ns.interval, ns.concurrency))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
