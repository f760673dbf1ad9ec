"""Faults cost only the work they touch: Redis down or hung, the database down, SIGTERM, hostile servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from django.conf import settings
from django.test import override_settings
from mcp import Client

from registry.discovery import discover_server_tools
from registry.models import Server

from .conftest import PROBE, PYTHON, ROOT, database_url, free_port, wait_for_port
from .private_services import children_of, wait_until_gone

HOSTILE = ROOT / "tests" / "servers" / "hostile_server.py"


async def call(url: str, tool: str, arguments: dict) -> tuple[bool, str]:
    async with Client(url) as client:
        result = await client.call_tool(tool, arguments)
        return bool(result.is_error), result.content[0].text


async def tool_names(url: str) -> set[str]:
    async with Client(url) as client:
        return {t.name for t in (await client.list_tools()).tools}


# --- Redis --------------------------------------------------------------------------------------


@pytest.fixture
def shared_redis(redis_server, probe_stdio_config) -> Iterator[dict[str, str]]:
    prefix = f"faults-{uuid.uuid4().hex[:8]}"
    backend = "django_redis.cache.RedisCache"
    caches = {"default": {"BACKEND": backend, "LOCATION": redis_server.url, "KEY_PREFIX": prefix}}
    with override_settings(CACHES=caches, STORAGE_BACKEND="redis"):
        server = Server.objects.create(name="probe", **probe_stdio_config)
        assert discover_server_tools(server).ok
        yield {"STORAGE_BACKEND": "redis", "REDIS_URL": redis_server.url, "GATEWAY_CACHE_PREFIX": prefix}


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_calls_and_searches_keep_working_and_changes_still_arrive(
    shared_redis, redis_server, start_gateway
):
    gateway = start_gateway(**shared_redis)
    assert anyio.run(call, gateway.mcp_url, "probe__echo", {"text": "before"}) == (False, "before")

    redis_server.stop()
    for i in range(5):
        assert anyio.run(call, gateway.mcp_url, "probe__echo", {"text": f"down {i}"}) == (False, f"down {i}")
    is_error, text = anyio.run(call, gateway.mcp_url, "tool_search", {"query": "add two integers"})
    assert not is_error and "probe__add" in text
    # A change while Redis is down cannot bump the shared version; the gateway reads the database.
    Server.objects.filter(name="probe").update(enabled=False)
    time.sleep(1.0)
    is_error, text = anyio.run(call, gateway.mcp_url, "probe__echo", {"text": "x"})
    assert is_error and "server 'probe' is disabled" in text
    Server.objects.filter(name="probe").update(enabled=True)
    time.sleep(1.0)

    redis_server.start()  # back, and empty: the version key is gone
    assert anyio.run(call, gateway.mcp_url, "probe__echo", {"text": "after"}) == (False, "after")
    server = Server.objects.get(name="probe")
    server.enabled = False
    server.save()  # bumps the version in the restarted Redis
    time.sleep(1.0)
    is_error, text = anyio.run(call, gateway.mcp_url, "probe__echo", {"text": "x"})
    assert is_error and "server 'probe' is disabled" in text
    assert "Exception in ASGI application" not in gateway.log.read_text()


@pytest.mark.django_db(transaction=True)
def test_redis_back_from_a_hang_with_old_keys_serves_no_stale_tool_set(shared_redis, redis_server, start_gateway):
    first, second = start_gateway(**shared_redis), start_gateway(**shared_redis)
    assert "probe__add" in anyio.run(tool_names, second.mcp_url)

    redis_server.pause()  # keys stay, nothing answers: writes now cannot bump the version
    server = Server.objects.get(name="probe")
    Server.objects.filter(pk=server.pk).update(env={**server.env, "PROBE_VARIANT": "2"})
    is_error, text = anyio.run(call, first.mcp_url, "discover_tools", {"server_name": "probe"})
    assert not is_error and json.loads(text)["removed"] == ["probe__add"]
    assert "probe__add" not in anyio.run(tool_names, second.mcp_url)  # read from the database meanwhile

    redis_server.resume()  # still holding the old version and the old tool rows
    time.sleep(1.5)
    for gateway in (first, second):
        names = anyio.run(tool_names, gateway.mcp_url)
        assert "probe__add" not in names and "probe__sleep" in names


# --- the database -------------------------------------------------------------------------------


def manage(db_url: str, *args: str, data_dir: Path) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "GATEWAY_DATA_DIR": str(data_dir), "DJANGO_SECRET_KEY": "test"}
    env["MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS"] = "true"
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)


@pytest.mark.production
def test_with_the_database_down_calls_keep_working_and_the_rest_fails_fast_and_clearly(
    postgres, start_gateway, tmp_path
):
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"probe": {"command": PYTHON, "args": [str(PROBE), "stdio"]}}}))
    manage(postgres.url, "migrate", data_dir=tmp_path / "data")
    manage(postgres.url, "import_servers", str(config), "--discover", data_dir=tmp_path / "data")
    gateway = start_gateway(DATABASE_URL=postgres.url, DJANGO_SECRET_KEY="test")
    assert anyio.run(call, gateway.mcp_url, "probe__echo", {"text": "up"}) == (False, "up")

    postgres.stop()
    # The call path reads the catalog held in memory: calls and searches keep working.
    assert anyio.run(call, gateway.mcp_url, "probe__echo", {"text": "down"}) == (False, "down")
    is_error, text = anyio.run(call, gateway.mcp_url, "tool_search", {"query": "echo text"})
    assert not is_error and "probe__echo" in text
    # What needs the database says so, at once.
    is_error, text = anyio.run(call, gateway.mcp_url, "discover_tools", {"server_name": "probe"})
    assert is_error and "database is unavailable" in text
    page = httpx.get(f"{gateway.url}/admin/", cookies={"sessionid": "s" * 32}, timeout=30)  # reads the session
    assert page.status_code == 503 and "database is unavailable" in page.text
    listing = httpx.get(f"{gateway.url}/api/v1/servers", timeout=30)
    assert listing.status_code == 503 and "database is unavailable" in listing.json()["detail"]

    postgres.start()
    for _ in range(20):  # the first request may still meet a connection from before the restart
        is_error, text = anyio.run(call, gateway.mcp_url, "discover_tools", {"server_name": "probe"})
        if not is_error:
            break
        time.sleep(0.5)
    assert not is_error and json.loads(text)["server_name"] == "probe"
    recovered = httpx.get(f"{gateway.url}/api/v1/servers", timeout=30)
    assert recovered.status_code == 200 and "probe" in recovered.text
    assert " 500 " not in gateway.log.read_text()


class Load:
    """Calls and searches in a loop from another thread, each on a fresh client session, counting failures."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.done = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            for tool, arguments, expect in (
                ("probe__echo", {"text": "load"}, "load"),
                ("tool_search", {"query": "echo text"}, "probe__echo"),
            ):
                try:
                    is_error, text = anyio.run(call, self.url, tool, arguments)
                    if is_error or expect not in text:
                        self.failures.append(f"{tool}: {text[:200]}")
                except Exception as exc:
                    self.failures.append(f"{tool}: {type(exc).__name__}: {exc}")
                self.done += 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.production
def test_calls_and_searches_under_load_survive_the_database_stopping_and_starting(postgres, start_gateway, tmp_path):
    config = tmp_path / "servers.json"
    config.write_text(json.dumps({"mcpServers": {"probe": {"command": PYTHON, "args": [str(PROBE), "stdio"]}}}))
    manage(postgres.url, "migrate", data_dir=tmp_path / "data")
    manage(postgres.url, "import_servers", str(config), "--discover", data_dir=tmp_path / "data")
    gateway = start_gateway(DATABASE_URL=postgres.url, DJANGO_SECRET_KEY="test")
    assert anyio.run(call, gateway.mcp_url, "probe__echo", {"text": "up"}) == (False, "up")

    with Load(gateway.mcp_url) as load:
        time.sleep(2)
        postgres.stop()
        stopped_at = load.done
        time.sleep(4)
        assert load.done > stopped_at, "no request completed while the database was down"
        postgres.start()
        time.sleep(3)
    assert load.failures == []
    assert load.done > 10
    log = gateway.log.read_text()
    assert " 500 " not in log and "Exception in ASGI application" not in log


@pytest.mark.django_db(transaction=True)
def test_calls_and_searches_under_load_survive_redis_stopping_and_starting(shared_redis, redis_server, start_gateway):
    gateways = [start_gateway(**shared_redis), start_gateway(**shared_redis)]
    loads = [Load(g.mcp_url) for g in gateways]
    for load in loads:
        load.__enter__()
    try:
        time.sleep(2)
        redis_server.stop()
        stopped_at = [load.done for load in loads]
        time.sleep(4)
        assert all(load.done > n for load, n in zip(loads, stopped_at, strict=True))
        redis_server.start()
        time.sleep(3)
    finally:
        for load in loads:
            load.__exit__(None, None, None)
    assert [load.failures for load in loads] == [[], []]
    for gateway in gateways:
        log = gateway.log.read_text()
        assert " 500 " not in log and "Exception in ASGI application" not in log


# --- SIGTERM ------------------------------------------------------------------------------------


def start_main(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """The gateway as users run it (`mcp-orchestration-gateway --transport http`), on the test database."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_AUTH": "off",
        "MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS": "true",
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        **env,
    }
    cmd = [PYTHON, "-m", "gateway_project.main", "--transport", "http", "--port", str(port), "--no-import"]
    log = (tmp_path / f"main-{port}.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=log, stderr=log)
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/mcp"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("grace", "seconds", "completes"),
    [("30", 2, True), ("1", 60, False)],
    ids=["call-within-grace-completes", "call-beyond-grace-is-cut"],
)
def test_sigterm_drains_in_flight_calls_within_the_grace_period_and_closes_children(
    tmp_path, probe_stdio_config, grace, seconds, completes
):
    server = Server.objects.create(name="probe", **probe_stdio_config)
    assert discover_server_tools(server).ok
    proc, url = start_main(tmp_path, GATEWAY_SHUTDOWN_GRACE=grace)
    outcome: list[str] = []
    children: list[int] = []

    running = anyio.Event()

    async def progress(value: float, total: float | None, message: str | None) -> None:
        running.set()

    async def run() -> None:
        async def slow() -> None:
            try:
                async with Client(url) as client:
                    # The client validates results against the tool's output schema; listing first keeps it
                    # from asking tools/list after SIGTERM, when this process takes no new requests.
                    await client.list_tools()
                    result = await client.call_tool("probe__sleep", {"seconds": seconds}, progress_callback=progress)
                    outcome.append(result.content[0].text)
            except Exception as exc:
                outcome.append(f"failed: {exc!r}")
            running.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow)
            with anyio.fail_after(30):
                await running.wait()  # the first progress notification: the call runs in the stdio child
            children.extend(children_of(proc.pid))
            proc.send_signal(signal.SIGTERM)

    try:
        anyio.run(run)
        # uvicorn re-raises the signal after its graceful shutdown, so the exit status says SIGTERM.
        assert proc.wait(30) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    if completes:
        assert outcome == [f"slept {seconds}s"]
    else:
        assert outcome[0].startswith("failed")
    assert wait_until_gone(children) == []


# --- hostile downstream servers -----------------------------------------------------------------


@pytest.fixture
def hostile_http_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(HOSTILE), "http", "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("transport", "tool", "expected"),
    [
        ("stdio", "garbage", "server 'hostile' did not answer garbage within 3s"),
        ("stdio", "wrong_id", "server 'hostile' did not answer wrong_id within 3s"),
        ("http", "html", "server 'hostile' failed the call to html: the server answered with content type text/html"),
        ("http", "wrong_id", "the server answered with the id of another request (987654)"),
        ("http", "endless", "the result of endless on server 'hostile' is bigger than the gateway reads"),
    ],
)
def test_hostile_output_fails_that_call_only_with_a_clear_error(
    transport, tool, expected, hostile_http_url, probe_stdio_config, start_gateway
):
    if transport == "stdio":
        hostile = Server.objects.create(name="hostile", command=PYTHON, args=[str(HOSTILE), "stdio"], timeout=3)
    else:
        hostile = Server.objects.create(name="hostile", transport="http", url=hostile_http_url, timeout=3)
    probe = Server.objects.create(name="probe", **probe_stdio_config)
    assert discover_server_tools(hostile).ok and discover_server_tools(probe).ok
    gateway = start_gateway()

    async def run() -> tuple[tuple[bool, str], tuple[bool, str], tuple[bool, str]]:
        async with anyio.create_task_group() as tg:
            results: dict[str, tuple[bool, str]] = {}

            async def one(key: str, name: str, args: dict) -> None:
                results[key] = await call(gateway.mcp_url, name, args)

            tg.start_soon(one, "hostile", f"hostile__{tool}", {})
            tg.start_soon(one, "probe", "probe__echo", {"text": "unharmed"})
        return results["hostile"], results["probe"], await call(gateway.mcp_url, "hostile__fine", {})

    (is_error, text), probe_result, fine = anyio.run(run)
    assert is_error and expected in text, text
    assert probe_result == (False, "unharmed")
    assert fine == (False, "fine")  # the next call to the same server works again
