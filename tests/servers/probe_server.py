"""A downstream MCP server for the gateway's tests, on the mcp SDK's low-level Server.

    python probe_server.py stdio
    python probe_server.py http --port 3100

Tools: echo, add, structured (text + structuredContent), fail (isError), whoami (the credential
it received: the Authorization header over HTTP, PROBE_SECRET over stdio), sleep (progress),
count (appends to PROBE_COUNT_FILE, so tests can count executions), crash (exits the process).
PROBE_VARIANT=2 drops `add` and rewords `echo`, to test rediscovery.
"""

from __future__ import annotations

import argparse
import json
import os

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.shared.exceptions import MCPError

VARIANT = os.environ.get("PROBE_VARIANT", "1")
OBJ = "object"


def _tool(name: str, description: str, properties: dict | None = None, required: list | None = None) -> types.Tool:
    schema: dict = {"type": OBJ, "properties": properties or {}}
    if required:
        schema["required"] = required
    return types.Tool(name=name, description=description, input_schema=schema)


TOOLS = [
    _tool(
        "echo",
        "Return the given text unchanged." if VARIANT == "1" else "Repeat the text back, version two.",
        {"text": {"type": "string"}},
        ["text"],
    ),
    _tool("add", "Add two integers.", {"a": {"type": "integer"}, "b": {"type": "integer"}}, ["a", "b"]),
    _tool("structured", "Return a point as structured content.", {"x": {"type": "number"}}),
    _tool("fail", "Always fail with an error result."),
    _tool("whoami", "Report the credential this server received."),
    _tool("sleep", "Sleep for some seconds, reporting progress.", {"seconds": {"type": "number"}}, ["seconds"]),
    _tool("count", "Record one execution in the count file.", {"tag": {"type": "string"}}),
    _tool("crash", "Exit the server process at once."),
]
if VARIANT != "1":
    TOOLS = [t for t in TOOLS if t.name != "add"]


def _text(s: str) -> list[types.ContentBlock]:
    return [types.TextContent(type="text", text=s)]


async def list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams) -> types.CallToolResult:
    args = params.arguments or {}
    name = params.name
    if name == "echo":
        return types.CallToolResult(content=_text(str(args.get("text", ""))))
    if name == "add" and VARIANT == "1":
        return types.CallToolResult(content=_text(str(int(args["a"]) + int(args["b"]))))
    if name == "structured":
        point = {"x": args.get("x", 1), "y": 2}
        return types.CallToolResult(content=_text(json.dumps(point)), structured_content=point)
    if name == "fail":
        return types.CallToolResult(content=_text("this tool always fails"), is_error=True)
    if name == "whoami":
        headers = getattr(ctx.request, "headers", None)
        if headers is not None:
            seen = {k: headers.get(k) for k in ("authorization", "x-api-key", "x-upstream-authorization")}
        else:
            seen = {"PROBE_SECRET": os.environ.get("PROBE_SECRET")}
        return types.CallToolResult(content=_text(json.dumps(seen)))
    if name == "sleep":
        seconds = float(args.get("seconds", 0))
        steps = max(1, round(seconds / 0.1))
        for i in range(steps):
            await anyio.sleep(seconds / steps)
            await ctx.session.report_progress(i + 1, steps, f"step {i + 1}")
        return types.CallToolResult(content=_text(f"slept {seconds:g}s"))
    if name == "count":
        path = os.environ.get("PROBE_COUNT_FILE")
        if path:
            with open(path, "a") as fh:
                fh.write(str(args.get("tag", "x")) + "\n")
        return types.CallToolResult(content=_text(f"pid {os.getpid()}"))
    if name == "crash":
        os._exit(3)
    raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {name}")


def build_server() -> Server:
    return Server("probe", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="transport", required=True)
    sub.add_parser("stdio")
    http = sub.add_parser("http")
    http.add_argument("--port", type=int, required=True)
    ns = ap.parse_args()
    server = build_server()
    if ns.transport == "stdio":
        from mcp.server.stdio import stdio_server

        async def run() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(run)
        return
    import uvicorn

    uvicorn.run(server.streamable_http_app(host="127.0.0.1"), host="127.0.0.1", port=ns.port, log_level="warning")


if __name__ == "__main__":
    main()
