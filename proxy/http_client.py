"""The outbound HTTP client for streamable HTTP servers, with the headers each server may receive."""

from __future__ import annotations

import httpx2
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT

from registry.catalog import ServerSpec

from .errors import ProxyError


def outbound_headers(spec: ServerSpec, credential: str | None) -> dict[str, str]:
    """Only a `forward` server receives the caller's credential; every other server gets only
    its own saved headers (never the gateway's inbound token: no token passthrough)."""
    if spec.auth_type == "forward":
        if not credential:
            raise ProxyError(
                f"server '{spec.name}' needs the caller's credential: pass auth_header "
                "(e.g. 'Bearer <token>') to call_remote_tool"
            )
        return {"Authorization": credential}
    if spec.auth_type == "static":
        return dict(spec.auth_headers)
    return {}


def http_client(spec: ServerSpec, headers: dict[str, str]) -> httpx2.AsyncClient:
    timeout = httpx2.Timeout(spec.connect_timeout, read=max(spec.timeout, MCP_DEFAULT_SSE_READ_TIMEOUT))
    # Redirects are not followed: a server must not bounce the gateway (and its headers) elsewhere.
    return httpx2.AsyncClient(headers=headers, timeout=timeout, follow_redirects=False)
