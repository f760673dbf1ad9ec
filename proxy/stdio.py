"""Starting stdio servers: parameters for the SDK's stdio client, their pid, and where their stderr goes.

Every server is started through `stdio_launch.py`, an exec shim that makes the kernel kill it
when the gateway dies (see that module). The SDK's stdio client puts it in its own process
group and, on close, shuts it down the MCP way: stdin EOF, 2 s, SIGTERM to the whole group
(so `npx`/`uvx` grandchildren go too), 2 s, SIGKILL; and reaps it, so no zombie is left.
While a server runs, its group is registered with `stdio_reaper.py`, a small process that
outlives a gateway killed with SIGKILL and then stops the groups it still holds.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import anyio
from anyio.abc import ObjectReceiveStream
from django.conf import settings
from mcp.client.stdio import StdioServerParameters

from registry.catalog import ServerSpec

LAUNCHER = str(Path(__file__).resolve().parent / "stdio_launch.py")
REAPER = str(Path(__file__).resolve().parent / "stdio_reaper.py")

_reaper: subprocess.Popen[bytes] | None = None
_reaper_lock = threading.Lock()  # discovery starts servers from worker threads too
_groups: set[int] = set()
_starts = itertools.count()


def _tell_reaper(line: str) -> None:
    global _reaper
    with _reaper_lock:
        if _reaper is None or _reaper.poll() is not None:
            if not _groups:
                return
            # Its own session: a signal to the gateway's process group must not take it along.
            _reaper = subprocess.Popen(
                [sys.executable, "-I", "-S", REAPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
            line = "".join(f"+{pgid}\n" for pgid in _groups)
        try:
            assert _reaper.stdin is not None
            _reaper.stdin.write(line.encode())
            _reaper.stdin.flush()
        except OSError:
            _reaper = None  # it died; the next registration starts another with every group


def watch_group(pid: int) -> None:
    """Have the reaper stop this server's process group if the gateway dies (the shim made pid the pgid)."""
    _groups.add(pid)
    _tell_reaper(f"+{pid}\n")


def unwatch_group(pid: int) -> None:
    if pid in _groups:
        _groups.discard(pid)
        _tell_reaper(f"-{pid}\n")


def _run_dir() -> Path:
    directory = Path(settings.DATA_DIR) / "run"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def pid_file(spec: ServerSpec) -> Path:
    # One per start: workers, discovery and the persistent session may each start the same server.
    return _run_dir() / f"{spec.name}.{os.getpid()}.{next(_starts)}.pid"


def stdio_parameters(spec: ServerSpec, pid_path: Path) -> StdioServerParameters:
    # The SDK execs the command directly (no shell), so arguments are never re-parsed.
    # `-I -S`: the shim ignores PYTHON* variables and site-packages; it only sets a flag and execs.
    if os.name != "posix":  # exec replaces no process on Windows; the SDK's job object covers it there
        return StdioServerParameters(command=spec.command, args=list(spec.args), env=dict(spec.env) or None)
    launcher = [LAUNCHER, str(os.getpid()), str(pid_path), spec.command, *spec.args]
    return StdioServerParameters(command=sys.executable, args=["-I", "-S", *launcher], env=dict(spec.env) or None)


def stdio_pid(pid_path: Path) -> int | None:
    """The pid the shim wrote (the server's, as it execs in place); the file is removed."""
    try:
        pid = int(pid_path.read_text())
    except (OSError, ValueError):
        return None
    pid_path.unlink(missing_ok=True)
    return pid


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


class WatchedReceiveStream(ObjectReceiveStream[Any]):
    """The transport's read stream, calling `on_end` when the server's output ends.

    The SDK notices a dead child only when a request is waiting; an idle session would keep
    a dead process's session until the next call failed on it. This lets the pool restart it
    at once instead, without an extra hop per message.
    """

    def __init__(self, inner: ObjectReceiveStream[Any], on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()
