from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import admin
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "MCP Orchestration Gateway"
admin.site.site_title = "MCP Gateway"
admin.site.index_title = "Servers and tools"

API_APP_NAME, API_NAMESPACE = "ninja", "api-v1"  # what gateway_project/api.py's `api.urls` says


class Deferred(Sequence):
    """URL patterns built on the first request under their prefix, or the first `reverse()` (the admin's pages).

    The REST API (django-ninja and its schemas, about 3 MB a process) is then loaded only by the API and
    the admin: /mcp, /healthz, /readyz and /metrics serve without it. Django's resolver looks inside an
    include only when a path matches its prefix, and iterates it as a sequence.
    """

    def __init__(self, build: Callable[[], list[Any]]) -> None:
        self._build = functools.cache(build)

    def __len__(self) -> int:
        return len(self._build())

    def __getitem__(self, index: Any) -> Any:
        return self._build()[index]


def api_patterns() -> list[Any]:
    from .api import api

    patterns, app_name, namespace = api.urls
    if (app_name, namespace) != (API_APP_NAME, API_NAMESPACE):
        raise ImproperlyConfigured(f"gateway_project/urls.py: API_NAMESPACE says {API_NAMESPACE}, the API {namespace}")
    return patterns


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# A database outage answers 503 with a clear message instead of the 500 page.
handler500 = "gateway_project.database_errors.server_error"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("", include("monitoring.urls")),  # /readyz, /metrics, /admin/dashboard/ (before the admin's catch-all)
    path("admin/", admin.site.urls),
    path("api/v1/", include((Deferred(api_patterns), API_APP_NAME), namespace=API_NAMESPACE)),
    path("healthz", healthz),
]
