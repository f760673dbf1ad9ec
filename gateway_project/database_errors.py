"""Requests that need the database while it is down get a clear 503, not Django's 500 page."""

from __future__ import annotations

import logging
import sys

from django.db import Error as DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from registry.catalog import drop_broken_connection

logger = logging.getLogger(__name__)

DATABASE_DOWN = (
    "the gateway's database is unavailable; try again shortly "
    "(operators: check that the database at DATABASE_URL is running and reachable)"
)
RETRY_AFTER = {"Retry-After": "5"}


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a database outage is a 503 the client can retry; anything else Django's 500 page."""
    exc = sys.exc_info()[1]
    if not isinstance(exc, DatabaseError):
        return defaults.server_error(request)
    drop_broken_connection()
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": DATABASE_DOWN}, status=503, headers=RETRY_AFTER)
    return HttpResponse(DATABASE_DOWN, status=503, content_type="text/plain; charset=utf-8", headers=RETRY_AFTER)
