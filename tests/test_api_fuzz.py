"""Schemathesis fuzzes every operation of the REST API's OpenAPI schema against a running gateway:
valid and invalid input alike must never get a server error (5xx) back.

Bounded and repeatable: at most MAX_EXAMPLES generated requests per operation and phase, with
Hypothesis derandomized, so a failure found once is found on every run.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from django.conf import settings as django_settings
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from gateway_project.api import api
from registry.discovery import discover_server_tools
from registry.models import ApiToken, Server
from tests.conftest import PYTHON, ROOT, Gateway, database_url, free_port, stop, wait_for_port

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = 30
DISCOVER = "POST /api/v1/servers/{name}/discover"

# The schema the gateway serves at /api/v1/openapi.json, read at collection so that every operation is a test.
# (schemathesis.pytest.from_fixture would load it from the running gateway, but breaks on pytest 9.)
schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
# Besides random names (404s), names that exist, so the routes' real work is fuzzed too. Not probe's
# crash and sleep tools: the probe server is shared by the whole test session.
PROBE_TOOLS = ["probe__echo", "probe__add", "probe__structured", "probe__fail", "probe__whoami"]


@schema.hook
def before_generate_path_parameters(context, strategy):
    names = PROBE_TOOLS if context.operation.path.startswith("/api/v1/tools/") else ["probe"]
    return strategy | st.fixed_dictionaries({"name": st.sampled_from(names)})


@pytest.fixture(scope="module")
def gateway(django_db_setup, tmp_path_factory) -> Iterator[Gateway]:
    """One gateway for every operation (the database is emptied between tests, the process stays)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "GATEWAY_DATA_DIR": str(tmp / "data"),
        "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,
        "GATEWAY_AUTH": "on",
        "MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS": "true",
        # Servers the fuzzer registers point anywhere: fail their discovery fast.
        "MCP_GATEWAY_CONNECTION_TIMEOUT": "2",
        "MCP_GATEWAY_MAX_RETRIES": "0",
        # Each test refills the database behind the gateway's back: rebuild its catalog every second.
        "MCP_GATEWAY_TOOL_CACHE_TTL": "1",
    }
    log = tmp / "gateway.log"
    cmd = [PYTHON, "-m", "uvicorn", "gateway_project.asgi:application", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=log.open("w"), stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        yield Gateway(f"http://127.0.0.1:{port}", proc, log)
    finally:
        stop(proc)


@pytest.fixture
def token(gateway, probe_http_url) -> str:
    """A token for the fuzzer and the probe server with its tools, in this test's (fresh) database."""
    _, raw = ApiToken.objects.create_token("fuzzer")
    server = Server.objects.create(name="probe", transport="http", url=probe_http_url)
    assert discover_server_tools(server).ok
    # The gateway reloads its token table within a poll interval: wait until it knows this one.
    deadline = time.monotonic() + 30
    while httpx.get(f"{gateway.url}/api/v1/health", headers={"Authorization": f"Bearer {raw}"}).status_code == 401:
        assert time.monotonic() < deadline, "the gateway never accepted the new token"
        time.sleep(0.05)
    return raw


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_no_input_gets_a_server_error(case, gateway, token):
    response = case.call(base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if case.operation.label == DISCOVER and response.status_code == 502:
        # Documented: a server the fuzzer registered at a random URL cannot be reached.
        assert "discovery of" in response.json()["detail"]
        return
    try:
        case.validate_response(response, checks=[not_a_server_error])
    except Exception:
        print(gateway.log.read_text()[-5000:])  # the gateway's traceback, shown by pytest on failure
        raise
