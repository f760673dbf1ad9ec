"""Who may call the gateway: bearer tokens on /mcp (an ASGI wrapper) and on the REST API (gateway_project/api.py
builds its django-ninja auth from `verify`, `bearer_token` and `challenge`; no ninja here, so /mcp never loads it).

Tokens are checked against an in-memory table of hashes (registry/api_tokens.py): no database
round trip per request. A 401 says only that a token is missing or not valid, never why (unknown,
expired and revoked look the same), with the `WWW-Authenticate` challenge of RFC 6750. The
caller's Authorization header is removed from the request before /mcp sees it, so no code behind
this wrapper can forward the gateway's own credential to a downstream server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import threading
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from registry.api_tokens import record_use, token_table
from registry.checks import is_loopback

logger = logging.getLogger(__name__)

REALM = "mcp-orchestration-gateway"
MISSING = {"error": "unauthorized", "error_description": "This endpoint needs a bearer token: Authorization: Bearer …"}
INVALID = {"error": "invalid_token", "error_description": "The bearer token is not valid."}


def challenge(invalid: bool) -> str:
    return f'Bearer realm="{REALM}"' + (', error="invalid_token"' if invalid else "")


def bearer_token(value: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value; '' for any other value (a wrong credential)."""
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def verify(raw: str | None) -> str | None:
    """The name of the valid token `raw`, or None. Sync: may reload the table (cache or database)."""
    if not raw:
        return None
    name, digest = token_table.lookup(raw)
    if name is not None and token_table.should_record_use(digest):
        _record_use_later(digest)
    return name


async def averify(raw: str | None) -> str | None:
    """`verify` for the event loop: memory only, except at most once per poll interval."""
    if not raw:
        return None
    if token_table.needs_refresh():
        await sync_to_async(token_table.refresh, thread_sensitive=False)()
    return verify(raw)


def _record_use_later(digest: str) -> None:
    # Always on another thread: record_use closes its thread's database connection when done.
    try:
        asyncio.get_running_loop().run_in_executor(None, record_use, digest)
    except RuntimeError:  # no event loop here (a sync view, a command)
        threading.Thread(target=record_use, args=(digest,), name="token-last-used", daemon=True).start()


# --- /mcp: an ASGI wrapper ------------------------------------------------------------------------


async def _send_json(send: Any, status: int, body: dict[str, str], headers: list[tuple[bytes, bytes]]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def listens_on_loopback(scope: dict[str, Any]) -> bool:
    """False only when the connection's local address is an IP address beyond loopback."""
    server = scope.get("server")
    if not server or server[1] is None:  # a unix socket: local by construction
        return True
    try:
        ipaddress.ip_address(str(server[0]).strip("[]"))
    except ValueError:
        return True  # not an address (Django's test clients say "testserver")
    return is_loopback(str(server[0]))


def require_token(app: Any) -> Any:
    """Wrap an ASGI app: a valid bearer token, or 401. Sets scope["gateway_token_name"] (None when auth is off)."""

    async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if not settings.GATEWAY_AUTH:
            if not listens_on_loopback(scope):
                # The start-up checks refuse this; a server started some other way is refused here.
                body = {"error": "forbidden", "error_description": "GATEWAY_AUTH is off: only loopback is served."}
                return await _send_json(send, 403, body, [])
            return await app({**scope, "gateway_token_name": None}, receive, send)
        authorization = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        raw = bearer_token(authorization)
        name = await averify(raw) if raw else None
        if name is None:
            invalid = raw is not None
            body = INVALID if invalid else MISSING
            return await _send_json(send, 401, body, [(b"www-authenticate", challenge(invalid).encode())])
        # The gateway's own credential stops here: nothing behind this point can pass it on.
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"authorization"]
        await app({**scope, "headers": headers, "gateway_token_name": name}, receive, send)

    return guarded
