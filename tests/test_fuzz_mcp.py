"""Bad input on /mcp gets a 4xx or a JSON-RPC error, never a 500: fuzzed with Hypothesis against a real gateway.

Bounded (max_examples) and derandomized, so CI runs the same examples every time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
methods = st.sampled_from(
    ["initialize", "tools/list", "tools/call", "ping", "server/discover", "resources/list", "notifications/initialized"]
) | st.text(max_size=20)
ids = st.none() | st.integers() | st.text(max_size=8) | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-1"]
)
versions = st.sampled_from([None, "2025-06-18", "2025-11-25", MODERN, "1999-01-01", "garbage"])
tool_names = st.sampled_from(["tool_search", "call_remote_tool", "discover_tools", "probe__echo"]) | st.text(
    max_size=30
)


@pytest.fixture
def mcp_target(start_gateway) -> Iterator[tuple[str, httpx.Client]]:
    """One gateway for all of a test's examples, and a client to it."""
    gateway = start_gateway()
    with httpx.Client(timeout=30) as client:
        yield gateway.mcp_url, client
    assert "Exception in ASGI application" not in gateway.log.read_text()


def post(target, body: bytes, content_type: str = "application/json", version: str | None = None) -> httpx.Response:
    url, client = target
    headers = {"accept": "application/json, text/event-stream", "content-type": content_type}
    if version:
        headers["mcp-protocol-version"] = version
    return client.post(url, content=body, headers=headers)


def assert_handled(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        assert "error" in response.json() or "detail" in response.json()


@FUZZ
@given(body=st.binary(max_size=2000), content_type=content_types, version=versions)
def test_arbitrary_bytes_are_refused_cleanly(mcp_target, body, content_type, version):
    assert_handled(post(mcp_target, body, content_type, version))


@FUZZ
@given(
    method=methods,
    msg_id=ids,
    params=json_values,
    version=versions,
    extra=st.dictionaries(st.text(max_size=6), json_values, max_size=2),
)
def test_malformed_json_rpc_gets_a_json_rpc_error_or_an_answer(mcp_target, method, msg_id, params, version, extra):
    message = {**extra, "jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}
    assert_handled(post(mcp_target, json.dumps(message).encode(), version=version))


@FUZZ
@given(name=tool_names, arguments=json_values, modern=st.booleans())
def test_tool_calls_with_nonsense_arguments_are_answered_in_band(mcp_target, name, arguments, modern):
    params = {"name": name, "arguments": arguments}
    if modern:
        params["_meta"] = ENVELOPE
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).encode()
    assert_handled(post(mcp_target, body, version=MODERN if modern else "2025-06-18"))


@FUZZ
@given(depth=st.integers(min_value=1, max_value=20_000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_refused_not_crashed_on(mcp_target, depth, opener):
    closer = "]" if opener == "[" else "}"
    nested = opener * depth + "1" + closer * depth
    params = f'{{"name":"tool_search","arguments":{{"query":{nested}}}}}'
    body = f'{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{params}}}'
    assert_handled(post(mcp_target, body.encode()))


@FUZZ
@given(
    prefix=st.binary(max_size=20), bad=st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"])
)
def test_invalid_utf8_is_a_parse_error(mcp_target, prefix, bad):
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"' + prefix + bad + b'"}}'
    response = post(mcp_target, body)
    assert_handled(response)


def test_a_body_over_the_size_limit_is_refused_with_413(start_gateway):
    small = start_gateway(GATEWAY_MAX_BODY_BYTES="2048")
    default = start_gateway()
    arguments = {"query": "x" * 3000}
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "tool_search", "arguments": arguments}}
    )
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    assert httpx.post(small.mcp_url, content=body, headers=headers, timeout=30).status_code == 413
    assert httpx.post(default.mcp_url, content=body, headers=headers, timeout=30).status_code == 200
