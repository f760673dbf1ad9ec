"""Operating the gateway: readiness, server health probes, the call history, /metrics, pruning, the dashboard."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import anyio
import httpx
import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from mcp import Client
from prometheus_client.parser import text_string_to_metric_families

from monitoring.history import writer
from monitoring.models import CallRecord, ServerHealth
from proxy.calls import call_tool
from registry.discovery import discover_server_tools
from registry.models import Server

from .conftest import PROBE, PYTHON, free_port, stop, wait_for_port

pytestmark = pytest.mark.django_db(transaction=True)

CANARY = "canary-secret-5d1e"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")  # the production run's Redis, else the local one


@pytest.fixture(autouse=True)
def loopback_servers_allowed(settings, monkeypatch):
    """Our probe servers listen on loopback, which the SSRF guard refuses by default."""
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setenv("MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS", "true")  # for the gateways started by tests


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> object:
    """Poll until `condition()` is truthy; the deadline is generous, it only stops a hung test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class ProbeHttp:
    """The probe server over HTTP on a fixed port, stopped and started again by the test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        cmd = [PYTHON, str(PROBE), "http", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture
def own_probe() -> Iterator[ProbeHttp]:
    probe = ProbeHttp()
    probe.start()
    yield probe
    probe.stop()


@pytest.fixture
def probe(probe_http_url) -> Server:
    server = Server.objects.create(
        name="probe", transport="http", url=probe_http_url, auth_type="static", auth_headers={"X-Api-Key": CANARY}
    )
    assert discover_server_tools(server).ok
    return server


def health_of(server: Server) -> ServerHealth | None:
    return ServerHealth.objects.filter(server=server).first()


# --- /readyz -------------------------------------------------------------------------------------


def test_readyz_answers_200_when_the_database_answers(start_gateway):
    gateway = start_gateway(STORAGE_BACKEND="memory")
    response = httpx.get(f"{gateway.url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


def test_readyz_checks_redis_when_it_is_the_cache(start_gateway):
    gateway = start_gateway(STORAGE_BACKEND="redis", REDIS_URL=REDIS_URL)
    response = httpx.get(f"{gateway.url}/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_readyz_answers_503_naming_redis_without_its_url_when_redis_is_down(start_gateway):
    port = free_port()  # nothing listens there
    gateway = start_gateway(STORAGE_BACKEND="redis", REDIS_URL=f"redis://:{CANARY}@127.0.0.1:{port}/0")
    response = httpx.get(f"{gateway.url}/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready" and body["failed"] == ["redis"]
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("redis unreachable")
    assert CANARY not in response.text and str(port) not in response.text
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200  # alive, just not ready


# --- health probes -------------------------------------------------------------------------------


def test_the_probe_marks_a_stopped_server_unhealthy_and_a_restarted_one_healthy(start_gateway, own_probe):
    server = Server.objects.create(
        name="flaky", transport="http", url=own_probe.url, auth_type="static", auth_headers={"X-Api-Key": CANARY}
    )
    gateway = start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0.3", MCP_GATEWAY_CONNECTION_TIMEOUT="2")

    healthy = wait_until(lambda: (h := health_of(server)) and h.status == "healthy" and h, "a healthy probe")
    assert healthy.latency_ms is not None and healthy.last_success_at is not None and healthy.last_error == ""

    own_probe.stop()
    sick = wait_until(lambda: (h := health_of(server)) and h.status == "unhealthy" and h, "an unhealthy probe")
    assert "flaky" in sick.last_error and sick.latency_ms is None
    assert CANARY not in sick.last_error

    own_probe.start()
    again = wait_until(lambda: (h := health_of(server)) and h.status == "healthy" and h, "a healthy probe again")
    assert again.consecutive_failures == 0 and again.last_success_at > sick.last_error_at
    assert again.last_error == sick.last_error  # the last error stays visible after recovery
    assert "probing server health every 0.3s" in gateway.log.read_text()


def test_probe_errors_never_show_credentials_from_the_url(start_gateway):
    dead = free_port()
    server = Server.objects.create(name="dead", transport="http", url=f"http://admin:{CANARY}@127.0.0.1:{dead}/mcp")
    start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0.3", MCP_GATEWAY_CONNECTION_TIMEOUT="1", MCP_GATEWAY_MAX_RETRIES="0")
    sick = wait_until(lambda: (h := health_of(server)) and h.status == "unhealthy" and h, "an unhealthy probe")
    assert "dead" in sick.last_error and CANARY not in sick.last_error


def test_forward_auth_servers_are_not_probed_and_stay_unknown(start_gateway, probe_http_url):
    forward = Server.objects.create(name="fwd", transport="http", url=probe_http_url, auth_type="forward")
    start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0.3")
    health = wait_until(lambda: health_of(forward), "a probe round")
    assert health.status == "unknown" and "forward" in health.last_error


def test_interval_zero_turns_the_probes_off(start_gateway, probe):
    gateway = start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0")

    async def call() -> None:
        async with Client(gateway.mcp_url) as client:
            assert not (await client.call_tool("probe__echo", {"text": "x"})).is_error

    anyio.run(call)
    # The call's record is written by the same process after its startup: probes would have run by now.
    wait_until(lambda: CallRecord.objects.filter(tool="probe__echo").exists(), "the call record")
    assert not ServerHealth.objects.exists()
    assert "server health probes are off" in gateway.log.read_text()


def test_server_health_is_shown_in_the_admin_server_list(admin_client, probe):
    ServerHealth.objects.create(server=probe, status="unhealthy", checked_at=timezone.now(), last_error="refused")
    html = admin_client.get(reverse("admin:registry_server_changelist")).content.decode()
    assert "● unhealthy" in html and "refused" in html


# --- call history --------------------------------------------------------------------------------


def test_a_call_is_recorded_with_its_caller_duration_and_outcome(probe):
    result = anyio.run(lambda: call_tool("probe__echo", {"text": "hello"}, caller="ci-bot"))
    assert not result.is_error
    writer.flush()
    record = CallRecord.objects.get()
    assert (record.tool, record.server, record.caller, record.outcome) == ("probe__echo", "probe", "ci-bot", "ok")
    assert record.duration_ms > 0 and record.error == ""
    assert record.arguments is None and record.result is None  # payloads are off by default


@pytest.mark.parametrize(
    ("tool", "arguments", "outcome", "server", "error"),
    [
        ("probe__fail", {}, "tool_error", "probe", "this tool always fails"),
        ("probe__nope", {}, "gateway_error", "", "has no tool 'probe__nope'"),
        ("probe__echo", ["not", "an", "object"], "gateway_error", "probe", "arguments must be an object"),
    ],
)
def test_failed_calls_are_recorded_with_their_outcome_and_error(probe, tool, arguments, outcome, server, error):
    assert anyio.run(lambda: call_tool(tool, arguments, caller="ci-bot")).is_error
    writer.flush()
    record = CallRecord.objects.get()
    assert (record.outcome, record.server) == (outcome, server)
    assert error in record.error


def test_a_server_can_store_call_payloads_capped_in_size(probe, settings):
    settings.MCP_GATEWAY_CALL_PAYLOAD_MAX_BYTES = 1000
    probe.store_call_payloads = True
    probe.save()
    anyio.run(lambda: call_tool("probe__echo", {"text": "small"}))
    anyio.run(lambda: call_tool("probe__echo", {"text": "x" * 5000}))
    writer.flush()
    small, big = CallRecord.objects.order_by("started_at")
    assert small.arguments == {"text": "small"}
    assert small.result["content"] == [{"type": "text", "text": "small"}]
    assert big.arguments["truncated"] is True and big.arguments["size_bytes"] > 5000
    assert len(big.arguments["preview"]) <= 1000 and big.result["truncated"] is True


def test_stored_payloads_with_nul_characters_are_written(probe):
    # PostgreSQL's jsonb refuses "\u0000": a NUL in arguments must not jam the history writer.
    probe.store_call_payloads = True
    probe.save()
    anyio.run(lambda: call_tool("probe__echo", {"text": "a\x00b"}))
    assert writer.flush() == 1
    assert CallRecord.objects.get().arguments == {"text": "a\ufffdb"}


def test_calls_through_the_gateway_appear_in_the_history(start_gateway, probe):
    gateway = start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0")

    async def calls() -> None:
        async with Client(gateway.mcp_url) as client:
            await client.call_tool("probe__echo", {"text": "direct"})
            await client.call_tool("call_remote_tool", {"tool_name": "probe__add", "arguments": {"a": 1, "b": 2}})
            await client.call_tool("probe__fail", {})

    anyio.run(calls)
    records = wait_until(lambda: len(r := list(CallRecord.objects.order_by("started_at"))) == 3 and r, "3 records")
    assert [(r.tool, r.outcome) for r in records] == [
        ("probe__echo", "ok"),
        ("probe__add", "ok"),
        ("probe__fail", "tool_error"),
    ]
    assert all(r.duration_ms > 0 and r.server == "probe" for r in records)
    assert CANARY not in str([r.error for r in records])


def test_rest_calls_are_recorded_with_the_tokens_name(start_gateway, probe):
    from registry.models import ApiToken

    _, token = ApiToken.objects.create_token("ci-pipeline")
    gateway = start_gateway(GATEWAY_AUTH="on", MCP_GATEWAY_HEALTH_INTERVAL="0")
    response = httpx.post(
        f"{gateway.url}/api/v1/tools/probe__echo/call",
        json={"arguments": {"text": "via rest"}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    record = wait_until(lambda: CallRecord.objects.first(), "the call record")
    assert (record.tool, record.caller, record.outcome) == ("probe__echo", "ci-pipeline", "ok")
    assert token not in str(CallRecord.objects.values())


def test_the_admin_lists_the_history_filtered_and_read_only(admin_client, probe):
    for tool in ("probe__echo", "probe__fail"):
        anyio.run(lambda tool=tool: call_tool(tool, {"text": "x"}, caller="ci-bot"))
    writer.flush()
    url = reverse("admin:monitoring_callrecord_changelist")

    def listed(**filters: str) -> list[str]:
        html = admin_client.get(url, filters).content.decode()
        return re.findall(r'<td class="field-tool">([^<]+)</td>', html)

    assert listed(outcome="tool_error") == ["probe__fail"]
    assert sorted(listed(caller="ci-bot", server="probe")) == ["probe__echo", "probe__fail"]
    assert listed(tool="probe__echo") == ["probe__echo"]
    assert listed(caller="someone-else") == []
    record = CallRecord.objects.first()
    assert admin_client.get(reverse("admin:monitoring_callrecord_change", args=[record.pk])).status_code == 200
    assert admin_client.get(reverse("admin:monitoring_callrecord_add")).status_code == 403


def make_records(ages_in_days: list[float]) -> None:
    now = timezone.now()
    CallRecord.objects.bulk_create(
        CallRecord(started_at=now - timedelta(days=d), tool="t__x", server="t", duration_ms=1, outcome="ok")
        for d in ages_in_days
    )


def test_prune_deletes_records_older_than_the_retention_setting(settings):
    make_records([1, 29, 31, 400])
    out = io.StringIO()
    call_command("prune_call_history", stdout=out)
    assert "Deleted 2 call records older than 30 days" in out.getvalue()
    assert CallRecord.objects.count() == 2

    settings.MCP_GATEWAY_CALL_HISTORY_DAYS = 7
    call_command("prune_call_history", stdout=out)
    assert CallRecord.objects.count() == 1
    call_command("prune_call_history", "--days", "0.5", stdout=out)
    assert not CallRecord.objects.exists()


# --- /metrics ------------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_calls_errors_latency_searches_and_sessions(start_gateway, probe):
    gateway = start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0", MCP_GATEWAY_DEFAULT_CONNECTION_MODE="persistent")

    async def calls() -> None:
        async with Client(gateway.mcp_url) as client:
            await client.call_tool("probe__echo", {"text": "1"})
            await client.call_tool("probe__echo", {"text": "2"})
            await client.call_tool("probe__fail", {})
            await client.call_tool("no_such__tool", {})
            await client.call_tool("tool_search", {"query": "echo text"})

    anyio.run(calls)
    response = httpx.get(f"{gateway.url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    m = samples(response.text)
    echo = {("server", "probe"), ("tool", "probe__echo")}
    fail = {("server", "probe"), ("tool", "probe__fail")}
    assert m["mcp_gateway_tool_calls_total", frozenset({*echo, ("outcome", "ok")})] == 2
    assert m["mcp_gateway_tool_calls_total", frozenset({*fail, ("outcome", "tool_error")})] == 1
    assert m["mcp_gateway_tool_call_errors_total", frozenset({*fail, ("outcome", "tool_error")})] == 1
    unknown = frozenset({("server", "-"), ("tool", "-"), ("outcome", "gateway_error")})
    assert m["mcp_gateway_tool_call_errors_total", unknown] == 1  # a made-up name adds no label value
    assert m["mcp_gateway_tool_call_duration_seconds_count", frozenset(echo)] == 2
    assert m["mcp_gateway_tool_call_duration_seconds_sum", frozenset(echo)] > 0
    assert m["mcp_gateway_search_duration_seconds_count", frozenset({("mode", "bm25")})] == 1
    assert m["mcp_gateway_sessions_open", frozenset()] == 1  # the persistent session with the probe
    assert ("mcp_gateway_stdio_processes_alive", frozenset()) in m


def test_metrics_show_each_servers_probe_and_stdio_processes(start_gateway, probe, probe_stdio_config):
    local = Server.objects.create(name="local", **probe_stdio_config)
    assert discover_server_tools(local).ok
    gateway = start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0.3", MCP_GATEWAY_DEFAULT_CONNECTION_MODE="persistent")
    wait_until(lambda: ServerHealth.objects.filter(status="healthy").count() == 2, "two healthy probes")
    m = samples(httpx.get(f"{gateway.url}/metrics").text)
    assert m["mcp_gateway_server_up", frozenset({("server", "probe")})] == 1
    assert m["mcp_gateway_server_up", frozenset({("server", "local")})] == 1
    assert m["mcp_gateway_stdio_processes_alive", frozenset()] == 1  # the probe keeps the stdio server warm


# --- dashboard -----------------------------------------------------------------------------------


def test_the_dashboard_shows_servers_health_calls_and_slowest_tools(admin_client, probe):
    Server.objects.create(name="broken", transport="http", url="http://127.0.0.1:9/mcp")
    ServerHealth.objects.create(server=probe, status="healthy", checked_at=timezone.now(), latency_ms=3.2)
    anyio.run(lambda: call_tool("probe__echo", {"text": "x"}))
    anyio.run(lambda: call_tool("probe__fail", {}))
    writer.flush()
    html = admin_client.get(reverse("monitoring-dashboard")).content.decode()
    assert 'data-server="probe" data-status="healthy"' in html
    assert 'data-server="broken" data-status="unknown"' in html
    assert "probe__echo" in html and "probe__fail" in html  # slowest tools, recent errors
    assert "this tool always fails" in html and CANARY not in html
    assert reverse("monitoring-dashboard") in admin_client.get(reverse("admin:index")).content.decode()


def test_the_dashboard_is_for_staff_only(client, django_user_model):
    assert client.get(reverse("monitoring-dashboard")).status_code == 302  # to the admin login
    client.force_login(django_user_model.objects.create_user("visitor", password="pw"))
    assert client.get(reverse("monitoring-dashboard")).status_code == 302


# --- several gateway processes -------------------------------------------------------------------


def test_one_process_probes_at_a_time_and_another_takes_over_when_it_stops(start_gateway, probe):
    import pickle

    import redis

    prefix = f"e-lease-{time.monotonic_ns()}"
    env = {
        "STORAGE_BACKEND": "redis",
        "REDIS_URL": REDIS_URL,
        "GATEWAY_CACHE_PREFIX": prefix,
        "MCP_GATEWAY_HEALTH_INTERVAL": "0.3",
    }
    first, second = start_gateway(**env), start_gateway(**env)
    r = redis.Redis.from_url(env["REDIS_URL"])
    key = f"{prefix}:1:monitoring:probe-lease"

    def holder() -> int | None:
        raw = r.get(key)
        return int(pickle.loads(raw).split("-")[0]) if raw else None

    try:
        owner = wait_until(holder, "a process to take the probe lease")
        assert owner in (first.proc.pid, second.proc.pid)
        wait_until(lambda: (h := health_of(probe)) and h.status == "healthy", "a probe")
        for _ in range(10):  # the lease stays with its holder while it renews it
            assert holder() == owner
            time.sleep(0.1)
        stopped, other = (first, second) if owner == first.proc.pid else (second, first)
        stop(stopped.proc)
        wait_until(lambda: holder() == other.proc.pid, "the other process to take the lease over")
        before = health_of(probe).checked_at
        wait_until(lambda: health_of(probe).checked_at > before, "probes by the new holder")
    finally:
        r.delete(key)


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (f"could not connect to server 'x' at http://admin:{CANARY}@127.0.0.1:9/mcp", "could not connect"),
        (f"upstream said: Authorization: Bearer {CANARY}", "upstream said"),
        (f"bad request (api_key={CANARY})", "api_key="),
        (f'{{"token": "{CANARY}"}} rejected', "rejected"),
        (f"the server's env value {CANARY} leaked", "leaked"),  # a known secret of the server, whatever its shape
        ("key a3f9e0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5 refused", "refused"),
    ],
)
def test_stored_errors_are_redacted(text, kept):
    from monitoring.redaction import redact

    redacted = redact(text, [CANARY])
    assert CANARY not in redacted and "a3f9e0b1c2d3" not in redacted and kept in redacted
    path = "/usr/lib/python3.11/site-packages/mcp/client.py"
    assert path in redact(f"at {path}")  # long, but not credential-shaped


def test_with_auth_on_metrics_need_a_token_or_a_staff_login(client, admin_user):
    from registry.models import ApiToken

    _, raw = ApiToken.objects.create_token("prometheus")
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    scraped = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert scraped.status_code == 200 and b"mcp_gateway_tool_calls" in scraped.content
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200


def test_with_a_shared_multiprocess_dir_one_scrape_counts_every_process(start_gateway, probe, tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"MCP_GATEWAY_HEALTH_INTERVAL": "0", "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    first, second = start_gateway(**env), start_gateway(**env)
    alone = start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0")

    async def echo(url: str) -> None:
        async with Client(url) as client:
            await client.call_tool("probe__echo", {"text": "counted"})

    for gateway in (first, second, alone):
        anyio.run(echo, gateway.mcp_url)
    key = ("mcp_gateway_tool_calls_total", frozenset({("server", "probe"), ("tool", "probe__echo"), ("outcome", "ok")}))
    assert samples(httpx.get(f"{first.url}/metrics").text)[key] == 2  # both processes sharing the directory
    assert samples(httpx.get(f"{alone.url}/metrics").text)[key] == 1  # its own calls only
