from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/dashboard/", views.dashboard, name="monitoring-dashboard"),
]
