"""Exec shim for stdio servers: tie the child's life to the gateway's, then become the server.

    python -I -S stdio_launch.py <gateway pid> <pid file> <command> [args...]

Run without Django or site-packages (tens of milliseconds, no memory kept: it execs away).
On Linux it asks the kernel to SIGKILL the process when the gateway thread that spawned it
dies (PR_SET_PDEATHSIG survives exec), so a gateway killed with SIGKILL or by the OOM killer
leaves no server behind. The pid file lets the gateway show the pid for monitoring.
"""

import os
import sys

PR_SET_PDEATHSIG = 1
SIGKILL = 9


def main() -> None:
    parent, pid_file, command = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
    # The gateway may have died between fork and prctl: then nobody would ever kill us.
    if os.getppid() != parent:
        sys.exit(1)
    try:
        with open(pid_file, "w") as fh:
            fh.write(str(os.getpid()))
    except OSError:
        pass  # the pid is for monitoring only
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"could not start {command[0]!r}: {exc.strerror}\n")
        sys.exit(127)


if __name__ == "__main__":
    main()
