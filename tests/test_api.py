"""The REST API under /api/v1 through the test client (and one real gateway process): every route's
happy path and its main errors, secrets never in a response, the same answers as the MCP tools."""

from __future__ import annotations

import json
import os
import time

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from gateway_project.mcp_endpoint import tool_search
from monitoring.models import CallRecord, ServerHealth
from registry.catalog import VERSION_KEY, catalog
from registry.models import ApiToken, Server, Tool
from tests.conftest import free_port

pytestmark = pytest.mark.django_db(transaction=True)

CANARY = "canary-secret-5d81c2"
API = "/api/v1"


@pytest.fixture(autouse=True)
def fresh_catalog(settings):
    # The database is emptied between tests without signals: start every test from a new catalog.
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = True  # the probe listens on loopback
    cache.delete(VERSION_KEY)  # not cache.clear(): on Redis that flushes the whole shared database
    catalog.invalidate()


@pytest.fixture
def token() -> str:
    _, raw = ApiToken.objects.create_token("ci-pipeline")
    return raw


@pytest.fixture
def api(token) -> Client:
    return Client(headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
def probe(api, probe_http_url) -> Server:
    response = api.post(
        f"{API}/servers",
        {
            "name": "probe",
            "url": probe_http_url,
            "auth_type": "static",
            "auth_headers": {"Authorization": f"Bearer {CANARY}"},
        },
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    response = api.post(f"{API}/servers/probe/discover")
    assert response.status_code == 200, response.content
    return Server.objects.get(name="probe")


def probe_tools() -> list[str]:
    """The probe's tools as discovered (other tests add tools to the probe server now and then)."""
    return sorted(Tool.objects.filter(server__name="probe").values_list("namespaced_name", flat=True))


def post(client: Client, path: str, data: object = None) -> object:
    return client.post(f"{API}{path}", json.dumps(data if data is not None else {}), content_type="application/json")


def patch(client: Client, path: str, data: object) -> object:
    return client.patch(f"{API}{path}", json.dumps(data), content_type="application/json")


def locs(response) -> list[str]:
    """The names of the fields a 422 complains about."""
    return [str(error["loc"][-1]) for error in response.json()["detail"]]


# --- schema, docs, auth ------------------------------------------------------------------------------


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get(f"{API}/openapi.json").json()
    paths = set(schema["paths"])
    assert {
        f"{API}/servers",
        f"{API}/servers/{{name}}/discover",
        f"{API}/tools/{{name}}/call",
        f"{API}/search",
    } <= paths
    assert {f"{API}/import", f"{API}/export", f"{API}/health", f"{API}/tools", f"{API}/tools/{{name}}"} <= paths
    assert schema["components"]["securitySchemes"]["GatewayBearer"]["scheme"] == "bearer"
    docs = client.get(f"{API}/docs")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


@pytest.mark.parametrize(
    ("authorization", "error"),
    [(None, "unauthorized"), ("Bearer mcpgw_not-a-token", "invalid_token"), ("Basic cm9vdDpwdw==", "invalid_token")],
)
def test_every_route_needs_a_valid_bearer_token(client, token, authorization, error):
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in [("get", "/servers"), ("get", "/tools"), ("get", "/health"), ("post", "/tools/x__y/call")]:
        response = getattr(client, method)(f"{API}{path}", headers=headers, content_type="application/json")
        assert response.status_code == 401, (path, response.content)
        assert response.json()["error"] == error
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_with_auth_off_no_token_is_needed(client, settings, probe_http_url):
    settings.GATEWAY_AUTH = False
    assert client.get(f"{API}/servers").json() == {"items": [], "count": 0}
    assert post(client, "/servers", {"name": "probe", "url": probe_http_url}).status_code == 201
    assert post(client, "/servers/probe/discover").status_code == 200
    assert post(client, "/tools/probe__echo/call", {"arguments": {"text": "hi"}}).json()["isError"] is False


def test_a_revoked_token_is_refused(api, token):
    assert api.get(f"{API}/servers").status_code == 200
    ApiToken.objects.get(name="ci-pipeline").revoke()
    assert api.get(f"{API}/servers").status_code == 401


# --- servers -----------------------------------------------------------------------------------------


def test_create_read_list_an_http_server_without_ever_returning_secrets(api):
    response = post(
        api,
        "/servers",
        {"name": "github", "url": "https://mcp.example.com/mcp", "auth_headers": {"Authorization": CANARY}},
    )
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["transport"] == "http"
    assert created["auth_header_names"] == ["Authorization"]
    assert created["health"] == "never discovered"
    assert Server.objects.get(name="github").auth_headers == {"Authorization": CANARY}
    read = api.get(f"{API}/servers/github")
    listed = api.get(f"{API}/servers")
    assert read.json() == created
    assert listed.json() == {"items": [created], "count": 1}
    for response in (read, listed, api.get(f"{API}/export"), api.get(f"{API}/export?format=mcpServers")):
        assert CANARY not in response.content.decode()


def test_server_list_is_paginated_and_filtered(api):
    for i in range(5):
        Server.objects.create(name=f"s{i}", transport="http", url=f"https://s{i}.example.com/mcp", enabled=i != 2)
    page = api.get(f"{API}/servers?limit=2&offset=2").json()
    assert page["count"] == 5
    assert [s["name"] for s in page["items"]] == ["s2", "s3"]
    disabled = api.get(f"{API}/servers?enabled=false").json()
    assert [s["name"] for s in disabled["items"]] == ["s2"]
    assert api.get(f"{API}/servers?limit=0").status_code == 422
    assert api.get(f"{API}/servers?limit=501").status_code == 422


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name", "url": "https://x.example.com/mcp"}, "name"),
        ({"name": "a__b", "url": "https://x.example.com/mcp"}, "name"),
        ({"name": "x", "transport": "http"}, "url"),
        ({"name": "x", "url": "ftp://x.example.com/mcp"}, "url"),
        ({"name": "x", "url": "https://x.example.com/mcp", "timeout": 0}, "timeout"),
        ({"name": "x", "url": "https://x.example.com/mcp", "timeout": 7200}, "timeout"),
        ({"name": "x", "url": "https://x.example.com/mcp", "transport": "websocket"}, "transport"),
        ({"name": "x", "url": "https://x.example.com/mcp", "auth_type": "oauth"}, "auth_type"),
        ({"name": "x", "url": "https://x.example.com/mcp", "auth_headers": {"A": 1}}, "A"),
        ({"name": "x", "url": "https://x.example.com/mcp", "auth_headers": {"Bad Name": "v"}}, "auth_headers"),
        ({"name": "x", "url": "https://x.example.com/mcp", "auth_headers": {"A": "v\r\nX-Evil: 1"}}, "auth_headers"),
        ({"name": "x", "url": "https://x.example.com/mcp", "auth_header": {"A": "b"}}, "auth_header"),
        ({"name": "x", "transport": "http", "url": "https://x.example.com/mcp", "command": "rm"}, "command"),
        ({"url": "https://x.example.com/mcp"}, "name"),
    ],
)
def test_invalid_server_is_refused_naming_the_field(api, body, field):
    response = post(api, "/servers", body)
    assert response.status_code == 422, response.content
    assert field in locs(response)
    assert not Server.objects.exists()


def test_null_characters_are_refused_not_stored(api):
    # PostgreSQL cannot store NUL in text: refused as invalid input, never a server error.
    response = post(api, "/servers", {"name": "x", "url": "https://x.example.com/mcp", "description": "a\x00b"})
    assert response.status_code == 422
    assert locs(response) == ["description"]
    config = {"servers": [{"name": "x", "url": "https://x.example.com/mcp", "description": "a\x00b"}]}
    response = post(api, "/import", config)
    assert response.status_code == 400
    assert "field 'description': Null characters are not allowed." in response.json()["detail"]
    assert api.get(f"{API}/servers/a%00b").status_code == 404
    assert api.get(f"{API}/tools/a%00b").status_code == 404
    assert api.get(f"{API}/tools", {"server": "a\x00b"}).json() == {"items": [], "count": 0}
    assert not Server.objects.exists()


def test_a_second_server_with_the_same_name_is_refused(api):
    assert post(api, "/servers", {"name": "x", "url": "https://x.example.com/mcp"}).status_code == 201
    response = post(api, "/servers", {"name": "x", "url": "https://y.example.com/mcp"})
    assert response.status_code == 422
    assert locs(response) == ["name"]
    assert "already exists" in response.json()["detail"][0]["msg"]


def test_the_url_guard_of_the_model_applies_to_the_api_too(api, settings):
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = False
    response = post(api, "/servers", {"name": "meta", "url": "http://169.254.169.254/latest"})
    assert response.status_code == 422, response.content
    assert locs(response) == ["url"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "local", "command": "python", "args": ["server.py"]},
        {"name": "local", "transport": "stdio", "command": "python"},
    ],
)
def test_creating_a_stdio_server_is_for_superusers_not_the_api(api, body):
    response = post(api, "/servers", body)
    assert response.status_code == 403
    assert "admin" in response.json()["detail"] and "import_servers" in response.json()["detail"]
    assert not Server.objects.exists()


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"command": "/bin/sh"}, 403),
        ({"args": ["-c", "curl evil"]}, 403),
        ({"env": {"LD_PRELOAD": "/tmp/x.so"}}, 403),
        ({"command": "python", "args": ["server.py"]}, 200),  # unchanged: allowed
        ({"description": "the local one", "timeout": 5}, 200),
        ({"enabled": False}, 200),
    ],
)
def test_a_stdio_server_launch_cannot_be_changed_through_the_api(api, change, status):
    Server.objects.create(name="local", transport="stdio", command="python", args=["server.py"], env={"K": CANARY})
    response = patch(api, "/servers/local", change)
    assert response.status_code == status, response.content
    server = Server.objects.get(name="local")
    assert (server.command, server.args, server.env) == ("python", ["server.py"], {"K": CANARY})
    if status == 200:
        assert response.json()["env_names"] == ["K"]
        assert CANARY not in response.content.decode()


def test_an_http_server_cannot_be_turned_into_a_stdio_one(api):
    Server.objects.create(name="remote", transport="http", url="https://x.example.com/mcp")
    response = patch(api, "/servers/remote", {"transport": "stdio", "command": "python"})
    assert response.status_code == 403
    assert Server.objects.get(name="remote").transport == "http"


def test_patch_changes_only_what_is_sent_and_replaces_auth_headers(api):
    Server.objects.create(
        name="remote", transport="http", url="https://x.example.com/mcp", auth_type="static", auth_headers={"A": "1"}
    )
    response = patch(api, "/servers/remote", {"description": "new", "timeout": 12.5})
    assert response.status_code == 200, response.content
    server = Server.objects.get(name="remote")
    assert (server.description, server.timeout, server.auth_headers) == ("new", 12.5, {"A": "1"})
    assert patch(api, "/servers/remote", {"auth_headers": {"X-Api-Key": "k"}}).json()["auth_header_names"] == [
        "X-Api-Key"
    ]
    assert patch(api, "/servers/remote", {"auth_headers": {}}).json()["auth_header_names"] == []
    assert patch(api, "/servers/remote", {"timeout": None}).json()["timeout"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "not a url"}, "url"),
        ({"url": None}, "url"),
        ({"name": "renamed"}, "name"),
        ({"connection_mode": "sometimes"}, "connection_mode"),
        ({"enabled": "maybe"}, "enabled"),
    ],
)
def test_invalid_patch_is_refused_naming_the_field(api, change, field):
    Server.objects.create(name="remote", transport="http", url="https://x.example.com/mcp")
    response = patch(api, "/servers/remote", change)
    assert response.status_code == 422, response.content
    assert field in locs(response)
    assert Server.objects.get(name="remote").url == "https://x.example.com/mcp"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/servers/nope"),
        ("patch", "/servers/nope"),
        ("delete", "/servers/nope"),
        ("post", "/servers/nope/enable"),
        ("post", "/servers/nope/discover"),
        ("get", "/tools/nope__x"),
    ],
)
def test_unknown_names_are_404_with_a_hint(api, method, path):
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = getattr(api, method)(f"{API}{path}", **body)
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_delete_removes_the_server_and_its_tools(api, probe):
    assert "probe__echo" in probe_tools()
    assert api.delete(f"{API}/servers/probe").status_code == 204
    assert not Server.objects.exists() and not Tool.objects.exists()
    assert api.get(f"{API}/servers/probe").status_code == 404


def test_disable_and_enable_change_what_can_be_called(api, probe):
    assert post(api, "/servers/probe/disable").json()["enabled"] is False
    response = post(api, "/tools/probe__echo/call", {"arguments": {"text": "hi"}})
    assert response.status_code == 404
    assert "disabled" in response.json()["detail"]
    assert post(api, "/servers/probe/discover").status_code == 409
    assert post(api, "/servers/probe/enable").json()["health"] == "ok"
    assert post(api, "/tools/probe__echo/call", {"arguments": {"text": "hi"}}).json()["content"][0]["text"] == "hi"


# --- discovery and tools -----------------------------------------------------------------------------


def test_discover_reports_what_changed(api, probe):
    count = len(probe_tools())
    response = post(api, "/servers/probe/discover")
    assert response.status_code == 200
    assert response.json() == {
        "server": "probe",
        "tool_count": count,
        "added": [],
        "changed": [],
        "removed": [],
        "unchanged": count,
        "quarantined": [],
    }
    Tool.objects.filter(namespaced_name="probe__echo").delete()
    assert post(api, "/servers/probe/discover").json()["added"] == ["probe__echo"]


def test_first_discovery_lists_the_added_tools(api, probe_http_url):
    post(api, "/servers", {"name": "probe", "url": probe_http_url})
    result = post(api, "/servers/probe/discover").json()
    assert result["tool_count"] == len(probe_tools()) >= 5
    assert "probe__echo" in result["added"] and "probe__add" in result["added"]


def test_failed_discovery_is_a_502_with_the_reason_and_no_secret(api):
    Server.objects.create(
        name="down", transport="http", url="http://127.0.0.1:9/mcp", auth_type="static", auth_headers={"A": CANARY}
    )
    response = post(api, "/servers/down/discover")
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "discovery of 'down' failed" in detail and "127.0.0.1:9" in detail
    assert CANARY not in detail
    assert api.get(f"{API}/servers/down").json()["health"] == "error"


def test_tools_list_filters_and_paginates(api, probe):
    Server.objects.create(name="other", transport="http", url="https://x.example.com/mcp", enabled=False)
    tools = api.get(f"{API}/tools").json()
    names = probe_tools()
    assert tools["count"] == len(names)
    assert [t["name"] for t in tools["items"]] == names
    page = api.get(f"{API}/tools?server=probe&limit=2&offset=1").json()
    assert [t["name"] for t in page["items"]] == names[1:3]
    assert api.get(f"{API}/tools?server=other").json() == {"items": [], "count": 0}
    assert api.get(f"{API}/tools?enabled=false").json()["count"] == 0
    post(api, "/servers/probe/disable")
    assert api.get(f"{API}/tools?enabled=false").json()["count"] == len(names)


def test_tools_can_be_filtered_by_quarantine(api, probe):
    Tool.objects.filter(namespaced_name="probe__echo").update(approved_definition_hash="", definition_hash="new")
    held = api.get(f"{API}/tools?quarantined=true").json()
    assert [t["name"] for t in held["items"]] == ["probe__echo"]
    assert held["items"][0]["quarantined"] is True
    assert api.get(f"{API}/tools?quarantined=false").json()["count"] == len(probe_tools()) - 1


def test_read_one_tool_with_its_schema(api, probe):
    tool = api.get(f"{API}/tools/probe__add").json()
    assert tool["server"] == "probe" and tool["original_name"] == "add"
    assert tool["input_schema"]["required"] == ["a", "b"]
    assert tool["description"] == "Add two integers."


# --- search ------------------------------------------------------------------------------------------


def mcp_ranking(query: str, max_results: int, use_regex: bool = False) -> list[str]:
    result = async_to_sync(tool_search)({"query": query, "max_results": max_results, "use_regex": use_regex})
    return [ref["tool_name"] for ref in result.structured_content["tool_references"]]


@pytest.mark.parametrize(
    ("query", "use_regex"), [("add two integers", False), ("repeat text", False), ("^probe__s", True)]
)
def test_search_ranks_like_tool_search_and_shows_scores(api, probe, query, use_regex):
    got = api.get(f"{API}/search", {"query": query, "max_results": 5, "use_regex": use_regex}).json()
    posted = post(api, "/search", {"query": query, "max_results": 5, "use_regex": use_regex}).json()
    assert got == posted
    assert [r["name"] for r in got["results"]] == mcp_ranking(query, 5, use_regex)
    scores = [r["score"] for r in got["results"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert got["results"][0]["server"] == "probe"


def test_search_puts_the_named_tool_first(api, probe):
    result = api.get(f"{API}/search", {"query": "add two integers"}).json()
    assert result["results"][0]["name"] == "probe__add"
    assert result["results"][0]["description"] == "Add two integers."


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"query": "   "}, "query", "empty"),
        ({"query": "x" * 501}, "query", "limit is 500"),
        ({"query": "(unclosed", "use_regex": True}, "query", "invalid regex"),
        ({"query": "time", "max_results": 51}, "max_results", "50"),
        ({"query": "time", "max_results": 0}, "max_results", "1"),
        ({}, "query", "required"),
    ],
)
def test_bad_search_input_is_a_422_naming_the_field(api, params, field, words):
    for response in (api.get(f"{API}/search", params), post(api, "/search", params)):
        assert response.status_code == 422, response.content
        error = response.json()["detail"][0]
        assert error["loc"][-1] == field
        assert words in error["msg"].lower()


# --- call --------------------------------------------------------------------------------------------


def test_call_returns_the_tools_result(api, probe):
    response = post(api, "/tools/probe__add/call", {"arguments": {"a": 2, "b": 3}})
    assert response.status_code == 200
    assert response.json() == {"content": [{"type": "text", "text": "5"}], "isError": False}
    structured = post(api, "/tools/probe__structured/call", {"arguments": {"x": 7}}).json()
    assert structured["structuredContent"] == {"x": 7, "y": 2}


def test_a_tool_error_is_in_band_with_200(api, probe):
    response = post(api, "/tools/probe__fail/call", {})
    assert response.status_code == 200
    assert response.json() == {"content": [{"type": "text", "text": "this tool always fails"}], "isError": True}


def test_a_forwarded_credential_goes_only_to_forward_servers(api, probe):
    response = post(api, "/tools/probe__whoami/call", {"auth_header": "Bearer mine"})
    assert response.status_code == 200
    assert response.json()["isError"] is True
    assert "does not accept a forwarded credential" in response.json()["content"][0]["text"]
    patch(api, "/servers/probe", {"auth_type": "forward", "auth_headers": {}})
    seen = post(api, "/tools/probe__whoami/call", {"auth_header": "Bearer mine"}).json()
    assert json.loads(seen["content"][0]["text"])["authorization"] == "Bearer mine"


@pytest.mark.parametrize(
    ("name", "words"),
    [("probe__nope", "has no tool"), ("ghost__echo", "no enabled server named 'ghost'"), ("plain", "server__tool")],
)
def test_calling_an_unknown_tool_is_404_with_a_hint(api, probe, name, words):
    response = post(api, f"/tools/{name}/call", {"arguments": {}})
    assert response.status_code == 404
    assert words in response.json()["detail"]


def test_call_arguments_must_be_an_object(api, probe):
    response = post(api, "/tools/probe__echo/call", {"arguments": ["hi"]})
    assert response.status_code == 422
    assert locs(response) == ["arguments"]


def test_call_through_a_running_gateway_with_a_token(api, token, probe, start_gateway):
    gateway = start_gateway(GATEWAY_AUTH="on", MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS="true")
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"{gateway.url}{API}", headers=headers, timeout=30) as http:
        echo = http.post("/tools/probe__echo/call", json={"arguments": {"text": "through uvicorn"}})
        assert echo.status_code == 200, gateway.log.read_text()
        assert echo.json() == {"content": [{"type": "text", "text": "through uvicorn"}], "isError": False}
        assert http.post("/tools/probe__fail/call", json={}).json()["isError"] is True
        assert http.post("/tools/probe__echo/call", json={}, headers={"Authorization": "Bearer no"}).status_code == 401
        assert http.get("/health").json()["servers"]["ok"] == 1
    # The call history (written in the background, in batches) names the token that called.
    deadline = time.monotonic() + 30
    while not CallRecord.objects.filter(tool="probe__echo", caller="ci-pipeline").exists():
        assert time.monotonic() < deadline, "the REST call never reached the call history"
        time.sleep(0.1)


# --- import and export -------------------------------------------------------------------------------


ORIGINAL = {"servers": [{"name": "remote", "transport": "http", "url": "https://r.example.com/mcp"}]}
MCP_SERVERS = {
    "mcpServers": {
        "cursor-style": {"type": "streamable-http", "url": "https://c.example.com/mcp", "headers": {"K": "v"}}
    }
}


def test_import_both_formats_then_reimport_changes_nothing(api):
    first = post(api, "/import", ORIGINAL)
    assert first.status_code == 200, first.content
    assert first.json() == {"created": ["remote"], "updated": [], "unchanged": [], "removed": []}
    assert post(api, "/import", MCP_SERVERS).json()["created"] == ["cursor-style"]
    assert Server.objects.get(name="cursor-style").auth_headers == {"K": "v"}
    assert post(api, "/import", ORIGINAL).json()["unchanged"] == ["remote"]


def test_import_with_prune_removes_servers_not_in_the_file(api):
    post(api, "/import", ORIGINAL)
    post(api, "/import", MCP_SERVERS)
    report = api.post(f"{API}/import?prune=true", json.dumps(MCP_SERVERS), content_type="application/json").json()
    assert report == {"created": [], "updated": [], "unchanged": ["cursor-style"], "removed": ["remote"]}
    assert list(Server.objects.values_list("name", flat=True)) == ["cursor-style"]


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({}, '"servers" (a list) or "mcpServers"'),
        ({"servers": [{"name": "Bad Name", "url": "https://x.example.com"}]}, "field 'name' is invalid"),
        ({"servers": [{"name": "x", "transport": "http"}]}, "field 'url' is required"),
        ({"servers": [{"name": "x", "url": "https://x.example.com", "timeout": -1}]}, "field 'timeout'"),
        ({"servers": [{"name": "x", "url": "https://x.example.com", "timeout": float("nan")}]}, "field 'timeout'"),
        ({"servers": [{"name": "x", "url": "https://a"}, {"name": "x", "url": "https://b"}]}, "duplicate"),
        (
            {"mcpServers": {"x": {"url": "https://x.example.com", "headers": {"A": "${HOME}"}}}},
            "server 'x': field 'headers.A'",
        ),
        ({"servers": [{"name": "x", "url": "https://${DJANGO_SECRET_KEY:-k}.example.com"}]}, "field 'url'"),
    ],
)
def test_import_errors_are_400_and_import_nothing(api, config, words):
    Server.objects.create(name="keep", transport="http", url="https://k.example.com/mcp")
    if "servers" in config:  # a valid server beside the bad one: it is not imported either
        config = {"servers": config["servers"] + ORIGINAL["servers"]}
    response = post(api, "/import", config)
    assert response.status_code == 400, response.content
    assert words in response.json()["detail"]
    assert "nothing was imported" in response.json()["detail"]
    assert list(Server.objects.values_list("name", flat=True)) == ["keep"]


def test_import_refuses_new_or_changed_stdio_servers(api):
    stdio = {"name": "local", "command": "python", "args": ["server.py"]}
    response = post(api, "/import", {"servers": [ORIGINAL["servers"][0], stdio]})
    assert response.status_code == 403
    assert "server 'local'" in response.json()["detail"] and "admin" in response.json()["detail"]
    assert not Server.objects.exists()
    # A stdio server a superuser registered may appear, unchanged, in an imported file.
    Server.objects.create(name="local", transport="stdio", command="python", args=["server.py"])
    assert post(api, "/import", {"servers": [stdio]}).json()["unchanged"] == ["local"]
    assert post(api, "/import", {"servers": [{**stdio, "args": ["evil.py"]}]}).status_code == 403


def test_export_in_both_formats_without_secrets(api):
    Server.objects.create(
        name="remote", transport="http", url="https://r.example.com/mcp", auth_type="static", auth_headers={"A": CANARY}
    )
    Server.objects.create(name="local", transport="stdio", command="python", env={"TOKEN": CANARY})
    servers = api.get(f"{API}/export").json()
    assert [s["name"] for s in servers["servers"]] == ["local", "remote"]
    assert servers["servers"][1]["auth_headers"] == {"A": "${REMOTE_A}"}
    mcp = api.get(f"{API}/export", {"format": "mcpServers"}).json()
    assert mcp["mcpServers"]["remote"]["headers"] == {"A": "${REMOTE_A}"}
    assert mcp["mcpServers"]["local"]["env"] == {"TOKEN": "${TOKEN}"}
    assert CANARY not in json.dumps(servers) + json.dumps(mcp)
    assert api.get(f"{API}/export", {"format": "yaml"}).status_code == 422


# --- health ------------------------------------------------------------------------------------------


def test_health_reports_database_and_servers(api, probe, settings):
    Server.objects.create(name="down", transport="http", url="http://127.0.0.1:9/mcp", last_error="refused")
    Server.objects.create(name="off", transport="http", url="https://x.example.com/mcp", enabled=False)
    response = api.get(f"{API}/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok" if settings.STORAGE_BACKEND == "redis" else "not configured",
        "servers": {
            "total": 3,
            "enabled": 2,
            "ok": 1,
            "error": 1,
            "never_discovered": 0,
            "unhealthy": 0,
            "tools": len(probe_tools()),
        },
    }


def test_the_last_health_probe_shows_on_the_server_and_in_health(api):
    server = Server.objects.create(name="flaky", transport="http", url="https://x.example.com/mcp")
    assert api.get(f"{API}/servers/flaky").json()["probe"] is None
    ServerHealth.objects.create(
        server=server, status="unhealthy", checked_at=timezone.now(), last_error="connection refused", latency_ms=3.5
    )
    probe = api.get(f"{API}/servers/flaky").json()["probe"]
    assert (probe["status"], probe["last_error"], probe["latency_ms"]) == ("unhealthy", "connection refused", 3.5)
    assert api.get(f"{API}/servers").json()["items"][0]["probe"]["status"] == "unhealthy"
    assert api.get(f"{API}/health").json()["servers"]["unhealthy"] == 1


def _redis_cache(location: str, prefix: str) -> dict:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location,
            "KEY_PREFIX": prefix,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }


def test_health_checks_redis_when_configured(api, settings):
    prefix = f"b-rest-api-{os.getpid()}"
    settings.STORAGE_BACKEND = "redis"
    settings.CACHES = _redis_cache("redis://127.0.0.1:6379/0", prefix)
    assert api.get(f"{API}/health").json()["redis"] == "ok"
    settings.CACHES = _redis_cache(f"redis://127.0.0.1:{free_port()}/0", prefix)  # nothing listens there
    response = api.get(f"{API}/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "unreachable" in response.json()["redis"]
