"""/readyz, /metrics and the staff dashboard."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from registry.api_tokens import token_table

from .dashboard import dashboard_context
from .metrics import exposition
from .readiness import readiness


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = readiness()
    failed = {name: state for name, state in checks.items() if state != "ok"}
    if failed:
        return JsonResponse({"status": "not ready", "failed": sorted(failed), "checks": checks}, status=503)
    return JsonResponse({"status": "ready", "checks": checks})


def _may_read_metrics(request: HttpRequest) -> bool:
    """With GATEWAY_AUTH on, /metrics (server and tool names, traffic) needs an API token or a staff login."""
    if not settings.GATEWAY_AUTH or (request.user.is_authenticated and request.user.is_staff):
        return True
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(raw.strip()) and token_table.lookup(raw.strip())[0] is not None


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not _may_read_metrics(request):
        body = {"error": "unauthorized", "error_description": "a valid bearer token is needed"}
        response = JsonResponse(body, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="mcp-orchestration-gateway"'
        return response
    body, content_type = exposition()
    return HttpResponse(body, content_type=content_type)


@staff_member_required
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {**admin.site.each_context(request), "title": "Gateway dashboard", **dashboard_context()}
    return render(request, "monitoring/dashboard.html", context)
