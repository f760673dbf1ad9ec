"""Who may call the gateway: bearer tokens on /mcp and /api/v1, against real gateway processes."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import time
import uuid
from datetime import timedelta

import anyio
import httpx
import httpx2
import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from gateway_project.inbound_auth import verify
from registry.discovery import discover_server_tools
from registry.models import ApiToken, Server

from .conftest import PYTHON, ROOT

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = os.environ.get("TEST_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}


def post_mcp(gateway, authorization: str | None) -> httpx.Response:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    if authorization is not None:
        headers["authorization"] = authorization
    return httpx.post(gateway.mcp_url, json=INITIALIZE, headers=headers, timeout=10)


async def call_with_token(url: str, token: str, tool: str, arguments: dict) -> object:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            return await client.call_tool(tool, arguments)


@pytest.fixture
def tokens():
    """A valid, an expired and a revoked token, and the values of each."""
    _, valid = ApiToken.objects.create_token("laptop")
    _, expired = ApiToken.objects.create_token("old-laptop", expires_at=timezone.now() - timedelta(minutes=1))
    revoked_token, revoked = ApiToken.objects.create_token("lost-phone")
    revoked_token.revoke()
    return {"valid": valid, "expired": expired, "revoked": revoked}


# --- /mcp --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "invalid"),
    [
        (None, False),
        ("", False),
        ("Bearer", True),
        ("Bearer mcpgw_not-a-real-token", True),
        ("Basic dXNlcjpwYXNz", True),
        ("expired", True),
        ("revoked", True),
        ("valid-in-wrong-scheme", True),
    ],
)
def test_mcp_refuses_missing_and_bad_tokens_with_a_401_revealing_nothing(start_gateway, tokens, authorization, invalid):
    gateway = start_gateway(GATEWAY_AUTH="on")
    if authorization in ("expired", "revoked"):
        authorization = f"Bearer {tokens[authorization]}"
    elif authorization == "valid-in-wrong-scheme":
        authorization = f"Token {tokens['valid']}"
    response = post_mcp(gateway, authorization)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="mcp-orchestration-gateway"')
    assert ('error="invalid_token"' in challenge) is invalid
    body = response.json()
    assert body["error"] == ("invalid_token" if invalid else "unauthorized")
    # Unknown, expired and revoked tokens look the same: nothing says which, or whose.
    text = response.text.lower()
    for word in ("expired", "revoked", "laptop", "phone", "unknown", "hash"):
        assert word not in text


def test_a_valid_token_reaches_the_tools(start_gateway, tokens, probe_http_url):
    server = Server.objects.create(name="probe", transport="http", url=probe_http_url)
    assert discover_server_tools(server).ok
    gateway = start_gateway(GATEWAY_AUTH="on")
    result = anyio.run(call_with_token, gateway.mcp_url, tokens["valid"], "probe__echo", {"text": "hello"})
    assert not result.is_error and result.content[0].text == "hello"
    assert ApiToken.objects.get(name="laptop").last_used_at is not None or _eventually_used("laptop")


def _eventually_used(name: str) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if ApiToken.objects.get(name=name).last_used_at is not None:
            return True
        time.sleep(0.1)
    return False


def test_the_gateways_own_token_is_not_passed_to_the_server(start_gateway, tokens, probe_http_url):
    """The probe's whoami reports the Authorization header it received: none, although the caller sent one."""
    server = Server.objects.create(name="probe", transport="http", url=probe_http_url)
    assert discover_server_tools(server).ok
    gateway = start_gateway(GATEWAY_AUTH="on")
    result = anyio.run(call_with_token, gateway.mcp_url, tokens["valid"], "probe__whoami", {})
    seen = json.loads(result.content[0].text)
    assert seen["authorization"] is None
    assert tokens["valid"] not in result.content[0].text


def test_auth_off_serves_loopback_without_a_token_and_on_requires_one(start_gateway):
    """GATEWAY_AUTH changes behaviour: the same request is served with auth off, refused with it on."""
    assert post_mcp(start_gateway(GATEWAY_AUTH="off"), None).status_code == 200
    assert post_mcp(start_gateway(GATEWAY_AUTH="on"), None).status_code == 401


def test_a_token_that_expires_while_the_gateway_runs_is_refused_from_then_on(start_gateway):
    gateway = start_gateway(GATEWAY_AUTH="on")
    _, raw = ApiToken.objects.create_token("short", expires_at=timezone.now() + timedelta(seconds=3))
    assert post_mcp(gateway, f"Bearer {raw}").status_code == 200
    deadline = time.monotonic() + 20
    while post_mcp(gateway, f"Bearer {raw}").status_code == 200:
        assert time.monotonic() < deadline, "the expired token was still accepted long after its expiry"
        time.sleep(0.2)
    assert post_mcp(gateway, f"Bearer {raw}").status_code == 401


# --- revocation on every process -----------------------------------------------------------------


def wait_until_refused(gateways, raw: str, bound: float = 15.0) -> None:
    deadline = time.monotonic() + bound
    pending = list(gateways)
    while pending:
        pending = [g for g in pending if post_mcp(g, f"Bearer {raw}").status_code != 401]
        assert time.monotonic() < deadline, f"{len(pending)} gateway process(es) still accept the revoked token"
        time.sleep(0.05)


@pytest.fixture
def redis_prefix():
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("GATEWAY_REQUIRE_PRODUCTION_TESTS") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is required here and not reachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} not reachable")
    prefix = f"c1-auth-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_revocation_is_refused_by_every_gateway_process_sharing_redis(start_gateway, redis_prefix):
    cache_settings = {
        "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": redis_prefix}
    }
    with override_settings(CACHES=cache_settings, STORAGE_BACKEND="redis"):
        token, raw = ApiToken.objects.create_token("shared")
        env = {"GATEWAY_AUTH": "on", "STORAGE_BACKEND": "redis", "REDIS_URL": REDIS_URL}
        gateways = [start_gateway(GATEWAY_CACHE_PREFIX=redis_prefix, **env) for _ in range(2)]
        assert all(post_mcp(g, f"Bearer {raw}").status_code == 200 for g in gateways)
        token.revoke()  # in this process: the gateways learn it from the version key in Redis
        wait_until_refused(gateways, raw)
        assert redis.Redis.from_url(REDIS_URL).get(f"{redis_prefix}:1:api-tokens:version") is not None


def test_revocation_by_the_command_reaches_a_gateway_on_the_memory_cache(start_gateway):
    """No shared cache: the gateway reloads its token table from the database each poll interval."""
    _, raw = ApiToken.objects.create_token("cli")
    gateway = start_gateway(GATEWAY_AUTH="on", STORAGE_BACKEND="memory")
    assert post_mcp(gateway, f"Bearer {raw}").status_code == 200
    call_command("revoke_token", "cli", stdout=io.StringIO())
    wait_until_refused([gateway], raw)


# --- the REST API --------------------------------------------------------------------------------


@pytest.mark.parametrize("which", [None, "wrong", "expired", "revoked"])
def test_rest_api_refuses_missing_and_bad_tokens_with_the_same_401(start_gateway, tokens, which):
    gateway = start_gateway(GATEWAY_AUTH="on")
    headers = {}
    if which == "wrong":
        headers["Authorization"] = "Bearer mcpgw_wrong"
    elif which:
        headers["Authorization"] = f"Bearer {tokens[which]}"
    response = httpx.get(f"{gateway.url}/api/v1/servers", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="mcp-orchestration-gateway"')
    assert ('error="invalid_token"' in response.headers["www-authenticate"]) is (which is not None)
    assert "laptop" not in response.text and "expired" not in response.text and "revoked" not in response.text
    ok = httpx.get(f"{gateway.url}/api/v1/servers", headers={"Authorization": f"Bearer {tokens['valid']}"})
    assert ok.status_code == 200


# --- refusing to listen beyond loopback with auth off ---------------------------------------------


def run(cmd: list[str], tmp_path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "GATEWAY_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60)


def test_the_gateway_refuses_to_start_on_a_public_address_with_auth_off(tmp_path):
    cmd = [PYTHON, "-m", "gateway_project.main", "--transport", "http", "--host", "0.0.0.0", "--no-import"]
    result = run(cmd, tmp_path, GATEWAY_AUTH="off")
    assert result.returncode == 2
    assert "refusing to start" in result.stderr and "not a loopback address" in result.stderr
    assert "create_token" in result.stderr  # the message names the fix


def test_the_asgi_app_refuses_to_load_for_a_public_host_with_auth_off(tmp_path):
    result = run([PYTHON, "-c", "import gateway_project.asgi"], tmp_path, GATEWAY_AUTH="off", GATEWAY_HOST="0.0.0.0")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "GATEWAY_AUTH is off" in result.stderr


@pytest.mark.parametrize(("host", "auth", "refused"), [("0.0.0.0", "off", True), ("0.0.0.0", "on", False),
                                                       ("127.0.0.1", "off", False), ("::1", "off", False)])  # fmt: skip
def test_system_check_refuses_auth_off_beyond_loopback(tmp_path, host, auth, refused):
    result = run([PYTHON, "manage.py", "check"], tmp_path, GATEWAY_AUTH=auth, GATEWAY_HOST=host)
    assert ("gateway.E001" in result.stderr) is refused
    assert (result.returncode != 0) is refused


def _public_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_a_gateway_bound_beyond_loopback_some_other_way_refuses_requests_with_auth_off(tmp_path):
    """uvicorn started by hand on 0.0.0.0 (GATEWAY_HOST left at loopback): non-loopback requests get 403."""
    address = _public_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    from .conftest import database_url, free_port, stop, wait_for_port

    port = free_port()
    env = {**os.environ, "GATEWAY_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url(),
           "GATEWAY_AUTH": "off", "GATEWAY_ALLOWED_HOSTS": "*"}  # fmt: skip
    cmd = [PYTHON, "-m", "uvicorn", "gateway_project.asgi:application", "--host", "0.0.0.0", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        response = httpx.post(f"http://{address}:{port}/mcp", json=INITIALIZE, timeout=10)
        assert response.status_code == 403
        assert "only loopback" in response.json()["error_description"]
        api = httpx.get(f"http://{address}:{port}/api/v1/servers", timeout=10)
        assert api.status_code == 403 and "only loopback" in api.text
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/servers", timeout=10).status_code == 200
    finally:
        stop(proc)


# --- creating and revoking tokens ----------------------------------------------------------------


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw"))
    return client


def test_admin_shows_a_new_token_once_and_stores_only_its_hash(admin):
    response = admin.post(reverse("admin:registry_apitoken_add"), {"name": "claude-desktop", "expires_in_days": "30"})
    html = response.content.decode()
    raw = re.search(r"mcpgw_[A-Za-z0-9_-]{40,}", html).group(0)
    assert "shown only once" in html and f'--header "Authorization: Bearer {raw}"' in html
    assert "no-store" in response["Cache-Control"]
    assert verify(raw) == "claude-desktop"
    token = ApiToken.objects.get(name="claude-desktop")
    assert token.expires_at > timezone.now() + timedelta(days=29)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM registry_apitoken")
        assert raw not in repr(cursor.fetchall())
    listing = admin.get(reverse("admin:registry_apitoken_changelist")).content.decode()
    assert "claude-desktop" in listing and f"{raw[:12]}…" in listing and "active" in listing
    assert raw not in listing
    assert raw not in admin.get(reverse("admin:registry_apitoken_change", args=[token.pk])).content.decode()


def test_admin_revoke_action_stops_the_token_at_once(admin):
    token, raw = ApiToken.objects.create_token("ci")
    assert verify(raw) == "ci"
    changelist = reverse("admin:registry_apitoken_changelist")
    response = admin.post(changelist, {"action": "revoke", "_selected_action": [token.pk]}, follow=True)
    assert "Revoked 1 tokens." in response.content.decode()
    assert verify(raw) is None
    assert "revoked" in admin.get(changelist).content.decode()


def test_create_token_command_prints_the_token_once(capsys):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_token", "script", "--expires-days", "7", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    assert raw.startswith("mcpgw_") and verify(raw) == "script"
    assert raw not in err.getvalue() and "shown only this once" in err.getvalue()
    with pytest.raises(CommandError, match="a token named 'script' exists"):
        call_command("create_token", "script", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="at least 1"):
        call_command("create_token", "other", "--expires-days", "0", stdout=io.StringIO(), stderr=io.StringIO())
