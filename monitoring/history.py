"""The call history: every call_tool recorded off the call path, in batches, and pruned after a retention period.

The call path only appends a small record to an in-memory queue (`on_tool_called`); a background
thread writes the queue with bulk_create at most every second (sooner when a batch fills) and once
more on shutdown. Arguments and results are kept only for servers with `store_call_payloads`.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

from proxy.calls import CallEvent

from . import metrics
from .redaction import redact, secret_values

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0  # seconds between writes
BATCH_SIZE = 500  # a full batch is written at once
MAX_PENDING = 50_000  # beyond this (database down for long) new records are dropped and counted
PRUNE_EVERY = 3600.0  # seconds; the lease in the cache makes it once an hour across processes
PAYLOAD_SERVERS_TTL = 5.0  # seconds a process trusts its list of servers that store payloads
PRUNE_LEASE_KEY = "monitoring:prune-lease"
UNFINISHED = "the call did not finish: cancelled by the caller or failed in the gateway"


@dataclass(slots=True)
class PendingCall:
    started_at: float
    caller: str
    tool: str
    server: str
    duration: float
    outcome: str
    error: str = ""  # raw: redacted by the writer, with the secrets below
    secrets: tuple[str, ...] = ()
    arguments: Any = None
    result: Any = None  # a CallToolResult, serialised by the writer
    store_payload: bool = False


def outcome_of(call: CallEvent) -> tuple[str, str]:
    """(outcome, error text) of a finished call: the values of CallRecord.Outcome."""
    if call.result is None:
        return "gateway_error", UNFINISHED
    if not call.result.is_error:
        return "ok", ""
    text = " ".join(getattr(block, "text", "") for block in call.result.content)[:4000].strip()
    if call.answered:
        return "tool_error", text or "the tool returned isError without a message"
    return "gateway_error", text


def on_tool_called(sender: Any, call: CallEvent, **kwargs: Any) -> None:
    """The call path's listener: update the metrics and queue the record. Never raises into the call."""
    try:
        outcome, error = outcome_of(call)
        metrics.observe_call(call.server, call.tool if call.server else "", outcome, call.duration)
        store = bool(call.server) and call.server in writer.payload_servers()
        writer.enqueue(
            PendingCall(
                started_at=call.started_at,
                caller=(call.caller or "")[:200],
                tool=call.tool[:200],
                server=call.server,
                duration=call.duration,
                outcome=outcome,
                error=error,
                secrets=tuple(secret_values(call.spec)) if error else (),
                arguments=call.arguments if store else None,
                result=call.result if store else None,
                store_payload=store,
            )
        )
    except Exception:
        logger.exception("could not record the call to %s", call.tool)


def without_nul(value: Any) -> Any:
    """The value with NUL characters replaced: PostgreSQL's text and jsonb cannot store them."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    return value


def capped_json(value: Any, limit: int) -> Any:
    """The value when its JSON fits in `limit` bytes, else a marked, cut preview of it (never a NUL)."""
    value = without_nul(value)
    text = json.dumps(value, ensure_ascii=False, default=str)
    size = len(text.encode())
    if size <= limit:
        return value
    preview = text.encode()[: max(0, limit - 100)].decode(errors="ignore")
    return {"truncated": True, "size_bytes": size, "preview": preview}


class CallHistoryWriter:
    def __init__(self) -> None:
        self._queue: deque[PendingCall] = deque()
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._atexit = False
        self._payload_servers: frozenset[str] = frozenset()
        self._payload_servers_at = 0.0
        self._last_prune = time.monotonic()

    def payload_servers(self) -> frozenset[str]:
        """Names of servers whose calls keep arguments and results (read by the writer thread, not here)."""
        return self._payload_servers

    def note_server(self, name: str, store_call_payloads: bool) -> None:
        """A server was saved in this process: apply its payload setting to the next call at once."""
        names = set(self._payload_servers)
        (names.add if store_call_payloads else names.discard)(name)
        self._payload_servers = frozenset(names)

    def pending(self) -> int:
        return len(self._queue)

    def enqueue(self, call: PendingCall) -> None:
        if len(self._queue) >= MAX_PENDING:
            metrics.HISTORY_DROPPED.inc()
            return
        self._queue.append(call)
        self.start()
        if len(self._queue) >= BATCH_SIZE:
            self._wakeup.set()

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="call-history-writer", daemon=True)
            self._thread.start()
            if not self._atexit:
                atexit.register(self.stop)  # a stdio gateway has no lifespan: write what is left at exit
                self._atexit = True

    def stop(self) -> None:
        """Stop the thread and write everything queued (shutdown)."""
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)
        self.flush()

    def _run(self) -> None:
        try:
            self._refresh_payload_servers()
        finally:
            close_old_connections()
        while not self._stopping.is_set():
            self._wakeup.wait(FLUSH_INTERVAL)
            self._wakeup.clear()
            try:
                self.flush()
                self._maybe_prune()
            except Exception:
                # The database may be down; the records stay queued (up to MAX_PENDING) for the next try.
                logger.exception("could not write the call history; retrying in %.0fs", FLUSH_INTERVAL)
            finally:
                close_old_connections()

    def _refresh_payload_servers(self) -> None:
        from registry.models import Server

        if time.monotonic() - self._payload_servers_at < PAYLOAD_SERVERS_TTL:
            return
        names = Server.objects.filter(store_call_payloads=True).values_list("name", flat=True)
        self._payload_servers = frozenset(names)
        self._payload_servers_at = time.monotonic()

    def flush(self) -> int:
        """Write every queued record now; the number written."""
        from .models import CallRecord

        with self._flush_lock:
            if not self._queue:
                return 0  # idle: no database access at all
            self._refresh_payload_servers()
            written = 0
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
                try:
                    CallRecord.objects.bulk_create([self._record(call) for call in batch])
                except Exception:
                    self._queue.extendleft(reversed(batch))
                    raise
                written += len(batch)
            return written

    @staticmethod
    def _record(call: PendingCall) -> Any:
        from .models import CallRecord

        limit = settings.MCP_GATEWAY_CALL_PAYLOAD_MAX_BYTES
        result = None
        if call.store_payload and call.result is not None:
            result = capped_json(call.result.model_dump(mode="json", by_alias=True, exclude_none=True), limit)
        return CallRecord(
            started_at=datetime.fromtimestamp(call.started_at, tz=UTC),
            caller=without_nul(call.caller),
            tool=without_nul(call.tool),
            server=without_nul(call.server),
            duration_ms=round(call.duration * 1000, 3),
            outcome=call.outcome,
            error=without_nul(redact(call.error, call.secrets)) if call.error else "",
            arguments=capped_json(call.arguments, limit) if call.store_payload and call.arguments else None,
            result=result,
        )

    def _maybe_prune(self) -> None:
        if time.monotonic() - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = time.monotonic()
        if cache.add(PRUNE_LEASE_KEY, "1", timeout=PRUNE_EVERY):
            deleted = prune_call_history()
            if deleted:
                days = settings.MCP_GATEWAY_CALL_HISTORY_DAYS
                logger.info("pruned %d call records older than %d days", deleted, days)


def prune_call_history(days: float | None = None) -> int:
    """Delete records older than `days` (default MCP_GATEWAY_CALL_HISTORY_DAYS); how many were deleted."""
    from .models import CallRecord

    days = settings.MCP_GATEWAY_CALL_HISTORY_DAYS if days is None else days
    total = 0
    while True:
        # In chunks: one huge DELETE would hold the table's lock (SQLite: the database's) for long.
        ids = list(CallRecord.objects.older_than(days).values_list("pk", flat=True)[:5000])
        if not ids:
            return total
        total += CallRecord.objects.filter(pk__in=ids).delete()[0]


writer = CallHistoryWriter()
