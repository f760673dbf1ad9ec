"""The result size guard: a result bigger than MCP_GATEWAY_MAX_RESULT_BYTES is refused, not passed on.

The size is the bytes of the result's payload (text, base64 data, resource contents and the
JSON of `structuredContent`), measured after the SDK has parsed the response. Over streamable
HTTP the read itself is bounded too: the SDK stops reading a server-sent event longer than
`sse_event_limit()` (twice the limit plus 64 KiB, for JSON escaping and the structured copy),
so a huge result is never buffered whole; a plain JSON body is cut at the same size by the HTTP
client (proxy/http_client.py). Not bounded while read: stdio, whose SDK reader buffers a line whole.
"""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from django.conf import settings

from registry.catalog import ServerSpec

from .errors import ResultTooLarge


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def result_size(result: types.CallToolResult) -> int:
    total = 0
    for block in result.content:
        if isinstance(block, types.TextContent):
            total += _size(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            total += len(block.data)
        elif isinstance(block, types.EmbeddedResource):
            resource: Any = block.resource
            total += _size(getattr(resource, "text", None) or getattr(resource, "blob", None) or "")
    if result.structured_content is not None:
        total += _size(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return total


def sse_event_limit() -> int:
    return 2 * settings.MCP_GATEWAY_MAX_RESULT_BYTES + 65536


def too_large_while_read(spec: ServerSpec, tool: str) -> ResultTooLarge:
    return ResultTooLarge(
        f"the result of {tool} on server '{spec.name}' is bigger than the gateway reads ({sse_event_limit():,} bytes "
        f"of response for a {settings.MCP_GATEWAY_MAX_RESULT_BYTES:,}-byte result, MCP_GATEWAY_MAX_RESULT_BYTES); "
        "ask the tool for less (a smaller page or range)"
    )


def check_result_size(spec: ServerSpec, tool: str, result: types.CallToolResult) -> None:
    limit = settings.MCP_GATEWAY_MAX_RESULT_BYTES
    size = result_size(result)
    if size > limit:
        raise ResultTooLarge(
            f"the result of {tool} on server '{spec.name}' is {size:,} bytes, more than the gateway passes on "
            f"({limit:,} bytes, MCP_GATEWAY_MAX_RESULT_BYTES); ask the tool for less (a smaller page or range)"
        )
