"""/readyz, /metrics and the staff dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

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


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    body, content_type = exposition()
    return HttpResponse(body, content_type=content_type)


@staff_member_required
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    context = {**admin.site.each_context(request), "title": "Gateway dashboard", **dashboard_context()}
    return render(request, "monitoring/dashboard.html", context)
