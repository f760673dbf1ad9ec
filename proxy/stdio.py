"""Starting stdio servers: parameters for the SDK's stdio client, and where their stderr goes."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from django.conf import settings
from mcp.client.stdio import StdioServerParameters

from registry.catalog import ServerSpec


def stdio_parameters(spec: ServerSpec) -> StdioServerParameters:
    # The SDK execs the command directly (no shell), so arguments are never re-parsed.
    return StdioServerParameters(command=spec.command, args=list(spec.args), env=dict(spec.env) or None)


def stderr_log(spec: ServerSpec) -> TextIO:
    """The child's stderr goes to a per-server file, so a crash can be explained from its tail."""
    directory = Path(settings.DATA_DIR) / "logs"
    directory.mkdir(parents=True, exist_ok=True)
    return open(directory / f"{spec.name}.stderr.log", "a", encoding="utf-8", errors="replace")


def stderr_tail(spec: ServerSpec, lines: int = 3) -> str:
    path = Path(settings.DATA_DIR) / "logs" / f"{spec.name}.stderr.log"
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 4000))
            tail = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in tail[-lines:])
