"""Per-server health on the call path: circuit breaker, stdio crash-loop give-up, concurrency limit.

What the gateway decides, per server and per gateway process:
- A *failure* is a call that could not reach the server (connect failure, after the retries) or
  whose session broke under it (process died, connection dropped). A timeout or an error result
  is not one. Any call that gets an answer resets the count.
- After MCP_GATEWAY_CIRCUIT_FAILURES consecutive failures the circuit opens: calls fail at once,
  saying why, for MCP_GATEWAY_CIRCUIT_COOLDOWN seconds. Then one trial call goes through
  (half-open): an answer closes the circuit, another failure opens it again.
- A stdio child that exits without being asked is restarted in the background at once, with
  backoff (0.25 s, 0.5 s, 1 s, ... up to 30 s) between crashes close together. When it has died
  MCP_GATEWAY_CIRCUIT_FAILURES times within CRASH_WINDOW seconds the gateway gives up: the
  server is `unhealthy`, it is not restarted, and calls fail fast, until the cool-down has passed
  (then one trial call starts it again) or its configuration changes (editing the server in the
  admin starts afresh with a clean record).
- At most MCP_GATEWAY_MAX_CONCURRENT_CALLS calls per server are in flight; more wait for a slot
  within their own deadline, so one hung server holds only its own slots.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field

import anyio
from django.conf import settings

from registry.catalog import ServerSpec

from .errors import CircuitOpen

CRASH_WINDOW = 60.0
MAX_RESTART_DELAY = 30.0

_USERINFO = re.compile(r"(\w+://)[^/\s@]+@")
_QUERY = re.compile(r"(\w+://[^\s?'\"]*)\?[^\s'\"]*")


def redact(message: str) -> str:
    """Drop URL credentials and query strings (tokens travel there) from an error kept for monitoring."""
    return _QUERY.sub(r"\1?…", _USERINFO.sub(r"\1", message))[:500]


@dataclass(eq=False)
class ServerHealth:
    spec: ServerSpec
    failures: int = 0  # consecutive
    crashes: deque[float] = field(default_factory=deque)  # monotonic times of unasked stdio exits
    open_until: float = 0.0  # circuit open (monotonic) until then; 0 when closed
    given_up: bool = False
    trial: bool = False
    restarting: bool = False
    restart_at: float = 0.0  # anyio clock: no stdio restart before then (backoff)
    restarts: int = 0
    last_error: str = ""
    last_error_at: float | None = None  # wall clock
    limiter: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(settings.MCP_GATEWAY_MAX_CONCURRENT_CALLS)

    @property
    def name(self) -> str:
        return self.spec.name

    def admit(self) -> bool:
        """Let a call through, or raise CircuitOpen. True when this call is the half-open trial."""
        if not self.open_until:
            return False
        now = time.monotonic()
        if now < self.open_until:
            raise CircuitOpen(self._refusal(self.open_until - now))
        if self.trial:
            raise CircuitOpen(
                f"server '{self.name}' is {self._state_words()}; a trial call is checking whether it recovered, "
                "try again in a few seconds"
            )
        self.trial = True
        return True

    def _state_words(self) -> str:
        if self.given_up:
            return f"unhealthy: its process crashed {len(self.crashes)} times within {CRASH_WINDOW:g}s"
        return f"failing: {self.failures} consecutive calls could not reach it"

    def _refusal(self, remaining: float) -> str:
        return (
            f"server '{self.name}' is {self._state_words()} (last error: {self.last_error}). "
            f"Calls are refused for another {remaining:.0f}s (MCP_GATEWAY_CIRCUIT_COOLDOWN), then one trial "
            "call is let through; fix the server or its configuration in the admin to retry at once"
        )

    def end_trial(self) -> None:
        self.trial = False

    def record_success(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.given_up = False
        self.trial = False

    def record_failure(self, message: str) -> None:
        self.failures += 1
        self._note(message)
        if self.trial or self.failures >= settings.MCP_GATEWAY_CIRCUIT_FAILURES:
            self._open()

    def record_crash(self, message: str) -> float | None:
        """A stdio child exited unasked: the delay before restarting it, or None to give up."""
        now = time.monotonic()
        self.crashes.append(now)
        while self.crashes and self.crashes[0] < now - CRASH_WINDOW:
            self.crashes.popleft()
        self._note(message)
        if len(self.crashes) >= settings.MCP_GATEWAY_CIRCUIT_FAILURES:
            self.given_up = True
            self._open()
            return None
        return min(0.25 * 2 ** (len(self.crashes) - 1), MAX_RESTART_DELAY)

    def _open(self) -> None:
        self.open_until = time.monotonic() + settings.MCP_GATEWAY_CIRCUIT_COOLDOWN
        self.trial = False

    def _note(self, message: str) -> None:
        self.last_error = redact(message)
        self.last_error_at = time.time()

    def status(self, connected: bool) -> str:
        if self.open_until:
            return "unhealthy" if self.given_up else "circuit-open"
        if self.restarting:
            return "restarting"
        return "connected" if connected else "idle"
