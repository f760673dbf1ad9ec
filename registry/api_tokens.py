"""The valid API tokens, held in memory by every process and kept coherent through the cache.

Checking a token reads a dict of SHA-256 hashes; no database round trip per request. Like the
catalog (registry/catalog.py), every token write bumps a version key in the shared cache, and
each process asks for it at most every MCP_GATEWAY_CATALOG_POLL_INTERVAL, reloading the table
when it changed, so a revocation is refused by every process within a second. With the memory
cache (one process, nothing shared) the table is reloaded from the database on that interval
instead, so tokens revoked by `manage.py` in another process are still refused in time.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from .models import ApiToken, hash_token

logger = logging.getLogger(__name__)

VERSION_KEY = "api-tokens:version"
LAST_USED_EVERY = 60.0  # seconds between writes of one token's last_used_at


def _publish_new_version() -> None:
    cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    token_table.invalidate()


def bump_token_version() -> None:
    """Tell every process that tokens changed, once, after the transaction commits."""
    connection = transaction.get_connection()
    if any(entry[1] is _publish_new_version for entry in connection.run_on_commit):
        return
    transaction.on_commit(_publish_new_version)


@dataclass(frozen=True, slots=True)
class ValidToken:
    name: str
    expires_at: float | None  # epoch seconds


class TokenTable:
    """Hash -> token for every token not revoked; `lookup()` is cheap once `needs_refresh()` is false."""

    def __init__(self) -> None:
        self._tokens: dict[str, ValidToken] = {}
        self._version: object = None
        self._loaded = False
        self._checked_at = 0.0
        self._stale = True
        self._lock = threading.Lock()
        self._last_used: dict[str, float] = {}

    def invalidate(self) -> None:
        self._stale = True

    def needs_refresh(self) -> bool:
        """Whether `lookup()` would touch the cache or the database (async callers then use a thread)."""
        if self._stale or not self._loaded:
            return True
        return time.monotonic() - self._checked_at >= settings.MCP_GATEWAY_CATALOG_POLL_INTERVAL

    def refresh(self) -> None:
        if not self.needs_refresh():
            return
        with self._lock:
            if not self.needs_refresh():
                return
            shared = settings.STORAGE_BACKEND == "redis"
            version = cache.get(VERSION_KEY) if shared else None
            # A None version (memory cache, or Redis unreachable) reloads from the database every poll:
            # a revocation must never wait for the cache to come back.
            if self._stale or not self._loaded or version is None or version != self._version:
                self._tokens = self._load()
                self._version = version
                self._loaded = True
                self._stale = False
            self._checked_at = time.monotonic()

    @staticmethod
    def _load() -> dict[str, ValidToken]:
        rows = ApiToken.objects.filter(revoked_at__isnull=True).values_list("token_hash", "name", "expires_at")
        return {h: ValidToken(name, expires.timestamp() if expires else None) for h, name, expires in rows}

    def lookup(self, raw: str) -> tuple[str | None, str]:
        """(token name, hash) for a valid token, (None, hash) otherwise. Expiry is checked now, per call."""
        self.refresh()
        digest = hash_token(raw)
        entry = self._tokens.get(digest)
        if entry is None or (entry.expires_at is not None and entry.expires_at <= time.time()):
            return None, digest
        return entry.name, digest

    def should_record_use(self, digest: str) -> bool:
        now = time.monotonic()
        last = self._last_used.get(digest)
        if last is not None and now - last < LAST_USED_EVERY:
            return False
        self._last_used[digest] = now
        return True


def record_use(digest: str) -> None:
    """Write last_used_at (an UPDATE: no version bump); run off the request path, in a worker thread."""
    try:
        ApiToken.objects.filter(token_hash=digest).update(last_used_at=timezone.now())
    except Exception:
        logger.warning("could not record a token's last use", exc_info=True)
    finally:
        connection.close()  # the worker thread's own connection


token_table = TokenTable()
