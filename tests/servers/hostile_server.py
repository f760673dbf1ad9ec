"""A downstream that misbehaves on purpose, written without the SDK so it can break the protocol.

    python hostile_server.py stdio
    python hostile_server.py http --port 3200

It answers initialize and tools/list correctly; tools/call then goes wrong, by tool:
garbage (a line that is not JSON, then nothing), wrong_id (an answer to a request never made),
and over HTTP html (a 200 text/html page instead of JSON-RPC) and endless (a JSON body that never
ends). `fine` answers correctly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

TOOLS = [
    {"name": name, "description": f"Misbehave: {name}.", "inputSchema": {"type": "object"}}
    for name in ("garbage", "wrong_id", "html", "endless", "fine")
]


def answer(message: dict[str, Any]) -> dict[str, Any] | str | None:
    """The reply to one JSON-RPC message: a dict, raw text to send as is, or None for nothing."""
    method, msg_id = message.get("method"), message.get("id")
    if msg_id is None:
        return None
    if method == "initialize":
        result = {
            "protocolVersion": message["params"].get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "hostile", "version": "1"},
        }
        return {"jsonrpc": "2.0", "id": msg_id, "result": result}
    if method == "tools/list":
        return {"jsonrpc": "2.0", "id": msg_id, "result": {"tools": TOOLS}}
    if method == "tools/call":
        tool = message["params"]["name"]
        if tool == "garbage":
            return "}}} this is not JSON-RPC {{{"
        if tool == "wrong_id":
            return {"jsonrpc": "2.0", "id": 987654, "result": {"content": [{"type": "text", "text": "not yours"}]}}
        if tool == "html":
            return "<html><body>502 Bad Gateway</body></html>"
        return {"jsonrpc": "2.0", "id": msg_id, "result": {"content": [{"type": "text", "text": "fine"}]}}
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32601, "message": f"no method {method}"}}


def serve_stdio() -> None:
    for line in sys.stdin:
        reply = answer(json.loads(line))
        if reply is not None:
            sys.stdout.write((reply if isinstance(reply, str) else json.dumps(reply)) + "\n")
            sys.stdout.flush()


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            break
    status, ctype, payload = 202, b"application/json", b""
    message = json.loads(body) if scope["method"] == "POST" else {}
    if message.get("method") == "tools/call" and message["params"]["name"] == "endless":
        await endless_json(message["id"], receive, send)
        return
    if scope["method"] == "POST":
        reply = answer(message)
        if isinstance(reply, str):
            status, ctype, payload = 200, b"text/html", reply.encode()
        elif reply is not None:
            status, payload = 200, json.dumps(reply).encode()
    elif scope["method"] != "DELETE":
        status = 405
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
    await send({"type": "http.response.body", "body": payload})


async def endless_json(msg_id: Any, receive: Any, send: Any) -> None:
    """A 200 application/json answer whose text never ends, until the client hangs up."""
    hung_up = asyncio.ensure_future(receive())  # the next event of a request that was read whole: http.disconnect
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    start = json.dumps({"jsonrpc": "2.0", "id": msg_id, "result": {"content": [{"type": "text", "text": ""}]}})
    await send({"type": "http.response.body", "body": start[: start.rindex('""') + 1].encode(), "more_body": True})
    chunk = b"x" * 65536
    try:
        while not hung_up.done():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)
    except Exception:  # the client went away
        pass
    hung_up.cancel()


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="transport", required=True)
    sub.add_parser("stdio")
    sub.add_parser("http").add_argument("--port", type=int, required=True)
    ns = ap.parse_args()
    if ns.transport == "stdio":
        serve_stdio()
        return
    import uvicorn

    uvicorn.run(http_app, host="127.0.0.1", port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
