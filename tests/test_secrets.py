"""Secrets at rest and in flight: saved headers and env values encrypted, key rotation, a wrong key
refused loudly, and canary secrets that must never show up anywhere but at the server they belong to."""

from __future__ import annotations

import io
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import httpx2
import pytest
import redis
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.urls import reverse
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from registry.discovery import discover_server_tools
from registry.encryption import UnreadableSecrets
from registry.models import ApiToken, Server, Tool

from .conftest import PROBE, PYTHON, ROOT, free_port, stop, wait_for_port

pytestmark = pytest.mark.django_db(transaction=True)

STATIC = "static-canary-5d1e0c"  # a saved header value
ENV = "env-canary-93b7aa"  # a saved stdio env value
FORWARDED = "forwarded-canary-4f2c61"  # a credential the caller forwards in auth_header
UPSTREAM = "upstream-canary-0a8e37"  # a credential the caller forwards in X-Upstream-Authorization
REDIS_URL = os.environ.get("TEST_REDIS_URL", os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


class Probe:
    """The probe server over HTTP, recording the headers of every request it receives."""

    def __init__(self, tmp_path: Path, name: str) -> None:
        self.log = tmp_path / f"{name}-headers.jsonl"
        self.log.touch()
        port = free_port()
        env = {**os.environ, "PROBE_HEADER_LOG": str(self.log)}
        cmd = [PYTHON, str(PROBE), "http", "--port", str(port)]
        self.proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        wait_for_port(port, self.proc)
        self.url = f"http://127.0.0.1:{port}/mcp"

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def probes(tmp_path) -> Iterator[dict[str, Probe]]:
    started = {name: Probe(tmp_path, name) for name in ("keyed", "fwd", "open")}
    yield started
    for probe in started.values():
        stop(probe.proc)


def result_text(result) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def mcp_calls(url: str, token: str | None, calls: list[tuple[str, dict, dict]]) -> list:
    """Each call is (tool, arguments, extra request headers); one client per distinct header set."""
    results = []
    for tool, arguments, extra in calls:
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **extra}
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            async with Client(streamable_http_client(url, http_client=http)) as client:
                results.append(await client.call_tool(tool, arguments))
    return results


# --- at rest -----------------------------------------------------------------------------------


def test_saved_headers_and_env_are_encrypted_in_the_database(probe_stdio_config):
    Server.objects.create(
        name="keyed", transport="http", url="http://127.0.0.1:9/mcp", auth_type="static",
        auth_headers={"Authorization": f"Bearer {STATIC}"},
    )  # fmt: skip
    Server.objects.create(name="local", env={"PROBE_SECRET": ENV}, **probe_stdio_config)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, auth_headers, env FROM registry_server ORDER BY name")
        rows = cursor.fetchall()
    raw = repr(rows)
    assert STATIC not in raw and ENV not in raw
    assert '"Authorization": "gAAAA' in raw and '"PROBE_SECRET": "gAAAA' in raw  # names readable, values Fernet
    assert Server.objects.get(name="keyed").auth_headers == {"Authorization": f"Bearer {STATIC}"}
    assert Server.objects.get(name="local").env == {"PROBE_SECRET": ENV}


def test_a_stdio_server_gets_its_decrypted_env(start_gateway, probe_stdio_config):
    server = Server.objects.create(name="local", env={"PROBE_SECRET": ENV}, **probe_stdio_config)
    assert discover_server_tools(server).ok
    gateway = start_gateway()
    (result,) = anyio.run(mcp_calls, gateway.mcp_url, None, [("local__whoami", {}, {})])
    assert json.loads(result_text(result)) == {"PROBE_SECRET": ENV}


# --- keys: a wrong one, and rotation -----------------------------------------------------------


@pytest.fixture
def keyed(probes, probe_stdio_config):
    """A static-header HTTP server and a stdio server with env, saved and discovered with the test's key."""
    server = Server.objects.create(
        name="keyed", transport="http", url=probes["keyed"].url, auth_type="static",
        auth_headers={"Authorization": f"Bearer {STATIC}"},
    )  # fmt: skip
    local = Server.objects.create(name="local", env={"PROBE_SECRET": ENV}, **probe_stdio_config)
    assert discover_server_tools(server).ok and discover_server_tools(local).ok
    return server


def test_a_wrong_key_gives_a_clear_error_and_sends_nothing(start_gateway, keyed, probes):
    before = len(probes["keyed"].requests())
    gateway = start_gateway(DJANGO_SECRET_KEY="a-different-key-" + "x" * 40)
    results = anyio.run(mcp_calls, gateway.mcp_url, None, [("keyed__whoami", {}, {}), ("local__whoami", {}, {})])
    assert all(r.is_error for r in results)
    assert (
        "server 'keyed': saved auth headers cannot be decrypted with the current SECRET_KEY or SECRET_KEY_FALLBACKS; "
        "re-enter them in the admin" in result_text(results[0])
    )
    assert "server 'local': saved environment cannot be decrypted" in result_text(results[1])
    assert len(probes["keyed"].requests()) == before  # no request at all, so no empty or garbled header


def test_rotating_the_key_with_fallbacks_and_reencrypt(start_gateway, keyed, settings):
    old = settings.SECRET_KEY
    new = "the-new-secret-key-" + uuid.uuid4().hex * 2

    def whoami(**env: str) -> str:
        gateway = start_gateway(**env)
        (result,) = anyio.run(mcp_calls, gateway.mcp_url, None, [("keyed__whoami", {}, {})])
        return result_text(result)

    # The new key with the old one as fallback: rows saved with the old key still work.
    assert STATIC in whoami(DJANGO_SECRET_KEY=new, DJANGO_SECRET_KEY_FALLBACKS=old)
    with override_settings(SECRET_KEY=new, SECRET_KEY_FALLBACKS=[old]):
        out = io.StringIO()
        call_command("reencrypt_secrets", stdout=out)
        assert "Re-encrypted the secrets of 2 servers" in out.getvalue()
    # After re-encryption the old key is no longer needed, and no longer enough.
    assert STATIC in whoami(DJANGO_SECRET_KEY=new)
    assert "cannot be decrypted" in whoami(DJANGO_SECRET_KEY=old)


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw"))
    return client


def admin_form(server: Server, **fields: str) -> dict[str, str]:
    data = {
        "name": server.name, "description": "", "enabled": "on", "transport": server.transport, "url": server.url,
        "command": server.command, "args": json.dumps(server.args), "env": "", "auth_type": server.auth_type,
        "auth_headers": "", "timeout": "", "connection_mode": "", "tools-TOTAL_FORMS": "0", "tools-INITIAL_FORMS": "0",
    }  # fmt: skip
    return {**data, **fields}


def test_admin_with_a_wrong_key_asks_for_the_headers_again_and_keeps_the_old_ones_until_then():
    server = Server.objects.create(
        name="keyed", transport="http", url="http://127.0.0.1:9/mcp", auth_type="static",
        auth_headers={"Authorization": f"Bearer {STATIC}"},
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SELECT auth_headers FROM registry_server")
        (saved,) = cursor.fetchone()
    from django.contrib.auth import get_user_model
    from django.test import Client as DjangoClient

    with override_settings(SECRET_KEY="a-different-key-" + "y" * 40):
        client = DjangoClient()
        client.force_login(get_user_model().objects.create_superuser("root", "", "pw"))
        server = Server.objects.get(name="keyed")
        assert isinstance(server.auth_headers, UnreadableSecrets)
        url = reverse("admin:registry_server_change", args=[server.pk])
        html = client.get(url).content.decode()
        assert "saved auth headers cannot be decrypted" in html and "Authorization: ••••••••" in html
        response = client.post(url, admin_form(server))  # blank: "keep" is not possible
        assert response.status_code == 200
        assert "saved auth headers cannot be decrypted" in response.content.decode()
        with connection.cursor() as cursor:
            cursor.execute("SELECT auth_headers FROM registry_server")
            assert cursor.fetchone() == (saved,)  # untouched: the old key can still recover them
        response = client.post(url, admin_form(server, auth_headers='{"Authorization": "Bearer fresh"}'))
        assert response.status_code == 302
        assert Server.objects.get(name="keyed").auth_headers == {"Authorization": "Bearer fresh"}


# --- no token passthrough, and canaries ----------------------------------------------------------


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("GATEWAY_REQUIRE_PRODUCTION_TESTS") == "1":
            pytest.fail(f"Redis at {REDIS_URL} is required here and not reachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} not reachable")
    prefix = f"c1-secrets-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_canaries_reach_only_their_own_server_and_appear_nowhere_else(
    start_gateway, probes, probe_stdio_config, redis_prefix, admin, tmp_path
):
    keyed = Server.objects.create(
        name="keyed", transport="http", url=probes["keyed"].url, auth_type="static",
        auth_headers={"Authorization": f"Bearer {STATIC}", "X-Api-Key": f"{STATIC}-2"},
    )  # fmt: skip
    fwd = Server.objects.create(name="fwd", transport="http", url=probes["fwd"].url, auth_type="forward")
    opened = Server.objects.create(name="open", transport="http", url=probes["open"].url)
    local = Server.objects.create(name="local", env={"PROBE_SECRET": ENV}, **probe_stdio_config)
    Server.objects.create(  # "dead": nothing listens at its URL
        name="dead", transport="http", url=f"http://127.0.0.1:{free_port()}/mcp", auth_type="static",
        auth_headers={"Authorization": f"Bearer {STATIC}"},
    )  # fmt: skip
    for server in (keyed, fwd, opened, local):
        assert discover_server_tools(server).ok
    _, token = ApiToken.objects.create_token("canary-test")
    gateway = start_gateway(
        GATEWAY_AUTH="on", GATEWAY_LOG_LEVEL="debug", STORAGE_BACKEND="redis", REDIS_URL=REDIS_URL,
        GATEWAY_CACHE_PREFIX=redis_prefix,
    )  # fmt: skip
    up = {"X-Upstream-Authorization": f"Bearer {UPSTREAM}"}
    calls = [
        ("call_remote_tool", {"tool_name": "keyed__echo", "arguments": {"text": "a"}}, {}),
        ("call_remote_tool", {"tool_name": "fwd__echo", "arguments": {"text": "b"}, "auth_header": FORWARDED}, {}),
        ("open__echo", {"text": "c"}, {}),
        ("fwd__echo", {"text": "d"}, up),
        ("local__echo", {"text": "e"}, {}),
        # Refused: a forwarded credential for servers not marked forward, or for nothing at all.
        ("call_remote_tool", {"tool_name": "keyed__echo", "arguments": {}, "auth_header": FORWARDED}, {}),
        ("call_remote_tool", {"tool_name": "open__echo", "arguments": {}, "auth_header": FORWARDED}, {}),
        ("call_remote_tool", {"tool_name": "nothing__here", "auth_header": FORWARDED}, {}),
        ("open__echo", {"text": "f"}, up),
        ("keyed__echo", {"text": "g"}, up),
        ("discover_tools", {"server_name": "dead"}, {}),
        ("keyed__fail", {}, {}),
    ]
    results = anyio.run(mcp_calls, gateway.mcp_url, token, calls)
    assert [r.is_error for r in results] == [False] * 5 + [True] * 7
    secrets = (STATIC, ENV, FORWARDED, UPSTREAM, token)
    for result in results:
        assert not any(s in result_text(result) for s in secrets), result_text(result)

    # What each downstream received: its own credential, never another's, never the gateway's token.
    keyed_seen = json.dumps(probes["keyed"].requests())
    assert all(r["headers"].get("authorization") == f"Bearer {STATIC}" for r in probes["keyed"].requests())
    assert not any(s in keyed_seen for s in (FORWARDED, UPSTREAM, token, ENV))
    fwd_auth = {r["headers"].get("authorization") for r in probes["fwd"].requests()}
    assert {FORWARDED, f"Bearer {UPSTREAM}"} <= fwd_auth
    fwd_seen = json.dumps(probes["fwd"].requests())
    assert not any(s in fwd_seen for s in (STATIC, token, ENV)) and "x-upstream-authorization" not in fwd_seen
    open_seen = json.dumps(probes["open"].requests())
    assert not any(s in open_seen for s in secrets) and '"authorization"' not in open_seen

    # Nowhere else: the gateway's debug log, the admin, exports, the REST API, Redis, the database.
    log = gateway.log.read_text()
    assert "DEBUG" in log
    for secret in secrets:
        assert secret not in log, f"a secret is in the gateway's log: {secret[:12]}…"
    pages = [reverse("admin:registry_server_changelist"), reverse("admin:registry_tool_changelist")]
    pages += [reverse("admin:registry_server_change", args=[s.pk]) for s in Server.objects.all()]
    pages += [reverse("admin:registry_tool_change", args=[t.pk]) for t in Tool.objects.all()[:5]]
    pages += [reverse("admin:registry_apitoken_changelist")]
    for page in pages:
        html = admin.get(page).content.decode()
        assert not any(s in html for s in secrets), page
    for fmt in ("servers", "mcpServers"):
        out = io.StringIO()
        call_command("export_servers", "--format", fmt, stdout=out)
        assert not any(s in out.getvalue() for s in secrets)
        assert "${KEYED_AUTHORIZATION}" in out.getvalue()
    auth = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/servers", "/api/v1/servers/keyed", "/api/v1/servers/local", "/api/v1/export"):
        response = httpx.get(gateway.url + path, headers=auth, timeout=10)
        if response.status_code == 404 and path != "/api/v1/servers":
            continue
        assert response.status_code == 200, (path, response.text[:300])
        assert not any(s in response.text for s in secrets), path
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{redis_prefix}:*"))
    assert keys, "the gateway wrote nothing to Redis"
    for key in keys:
        value = client.dump(key) or b""
        assert not any(s.encode() in key + value for s in secrets), key
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            dumped = repr(cursor.fetchall())
            assert not any(s in dumped for s in secrets), table
    if connection.vendor == "sqlite":
        connection.close()
        data = Path(connection.settings_dict["NAME"]).read_bytes()
        assert not any(s.encode() in data for s in secrets)


# --- logs and production settings ----------------------------------------------------------------


def run_manage(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "GATEWAY_DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=full_env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_credentials_that_slip_into_a_log_message_are_masked(tmp_path):
    code = (
        "import logging; log = logging.getLogger('proxy.sessions'); "
        f"log.warning('headers %s', {{'Authorization': 'Bearer {STATIC}', 'X-Api-Key': '{ENV}'}}); "
        f"log.warning('calling with auth_header={FORWARDED} and Bearer {UPSTREAM}')"
    )
    result = run_manage(tmp_path, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert "WARNING proxy.sessions: headers" in result.stderr and "[redacted]" in result.stderr
    assert not any(s in result.stderr for s in (STATIC, ENV, FORWARDED, UPSTREAM))


PRODUCTION = {
    "DJANGO_SECRET_KEY": "production-" + "k3y" * 20,
    "GATEWAY_HTTPS": "true",
    "GATEWAY_HOST": "0.0.0.0",
    "GATEWAY_ALLOWED_HOSTS": "gateway.example.com",
}


def test_check_deploy_is_clean_for_the_documented_production_settings(tmp_path):
    result = run_manage(tmp_path, "check", "--deploy", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    without_https = run_manage(tmp_path, "check", "--deploy", **{**PRODUCTION, "GATEWAY_HTTPS": "false"})
    assert "security.W008" in without_https.stderr and "security.W012" in without_https.stderr


def test_gateway_https_redirects_the_admin_to_https_but_not_the_health_check(start_gateway):
    gateway = start_gateway(GATEWAY_HTTPS="true")
    response = httpx.get(f"{gateway.url}/admin/", timeout=10)
    assert response.status_code == 301 and response.headers["location"].startswith("https://")
    assert httpx.get(f"{gateway.url}/healthz", timeout=10).status_code == 200
    plain = start_gateway(GATEWAY_HTTPS="false")
    assert httpx.get(f"{plain.url}/admin/", timeout=10).status_code == 302  # to the login page


def test_hsts_and_forwarded_proto_settings_shape_the_https_headers(start_gateway):
    # A TLS proxy on another host: uvicorn itself trusts X-Forwarded-Proto only from FORWARDED_ALLOW_IPS.
    remote_proxy = {"FORWARDED_ALLOW_IPS": "192.0.2.1", "GATEWAY_HTTPS": "true"}
    behind_proxy = start_gateway(
        **remote_proxy,
        GATEWAY_TRUST_X_FORWARDED_PROTO="true",
        GATEWAY_HSTS_SECONDS="600",
        GATEWAY_HSTS_INCLUDE_SUBDOMAINS="false",
        GATEWAY_HSTS_PRELOAD="true",
    )
    response = httpx.get(f"{behind_proxy.url}/admin/login/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert response.status_code == 200  # the proxy said https: no redirect loop
    assert response.headers["strict-transport-security"] == "max-age=600; preload"
    untrusted = start_gateway(**remote_proxy)
    redirected = httpx.get(f"{untrusted.url}/admin/login/", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert redirected.status_code == 301  # X-Forwarded-Proto is ignored unless trusted
