"""Reaper of stdio servers' process groups, for when the gateway dies without closing them.

    python -I -S stdio_reaper.py        (started by proxy/stdio.py, one per gateway process)

The gateway writes `+PGID` when a stdio server starts and `-PGID` when it has stopped it. When
the gateway dies, even by SIGKILL, this pipe reaches end-of-file: the reaper then sends SIGTERM
to every group still registered, waits up to 2 s, SIGKILLs what is left and exits. The exec
shim's PR_SET_PDEATHSIG kills a server itself; this reaches the grandchildren that wrappers
such as `npx` or `uvx` start, which the kernel would otherwise leave running. Signals meant for
the gateway's terminal or process group are ignored here: only the gateway's death counts.
"""

import os
import signal
import sys
import time


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pgids: set[int], sig: int) -> None:
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        text = line.strip().decode("ascii", "replace")
        if len(text) > 1 and text[1:].isdigit() and int(text[1:]) > 1:
            (groups.add if text[0] == "+" else groups.discard)(int(text[1:]))
    if not groups:
        return
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(g) for g in groups):
        time.sleep(0.05)
    _signal({g for g in groups if _alive(g)}, signal.SIGKILL)


if __name__ == "__main__":
    main()
