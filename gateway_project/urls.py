from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView

from .api import api

admin.site.site_header = "MCP Orchestration Gateway"
admin.site.site_title = "MCP Gateway"
admin.site.index_title = "Servers and tools"


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# A database outage answers 503 with a clear message instead of the 500 page.
handler500 = "gateway_project.database_errors.server_error"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("", include("monitoring.urls")),  # /readyz, /metrics, /admin/dashboard/ (before the admin's catch-all)
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("healthz", healthz),
]
