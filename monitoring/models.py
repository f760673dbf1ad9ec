"""What the gateway observed: each server's last health probe, and the history of tool calls."""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

from registry.models import Server


class ServerHealth(models.Model):
    class Status(models.TextChoices):
        HEALTHY = "healthy", "healthy"
        UNHEALTHY = "unhealthy", "unhealthy"
        UNKNOWN = "unknown", "unknown"

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="health_probe")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNKNOWN)
    checked_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, help_text="Redacted: never header or environment values.")
    last_error_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "server health"
        verbose_name_plural = "server health"

    def __str__(self) -> str:
        return f"{self.server_id}: {self.status}"


class CallRecordQuerySet(models.QuerySet):
    def since(self, delta: timedelta) -> CallRecordQuerySet:
        return self.filter(started_at__gte=timezone.now() - delta)

    def older_than(self, days: float) -> CallRecordQuerySet:
        return self.filter(started_at__lt=timezone.now() - timedelta(days=days))


class CallRecord(models.Model):
    class Outcome(models.TextChoices):
        OK = "ok", "ok"
        TOOL_ERROR = "tool_error", "tool error"
        GATEWAY_ERROR = "gateway_error", "gateway error"

    started_at = models.DateTimeField(db_index=True)
    caller = models.CharField(max_length=200, blank=True, help_text="The API token's name; blank when auth is off.")
    tool = models.CharField(max_length=200, help_text="The namespaced name that was called.")
    server = models.CharField(max_length=64, blank=True, help_text="Blank when the name matched no server.")
    duration_ms = models.FloatField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True, help_text="Redacted and capped.")
    arguments = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)

    objects = CallRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["server", "tool", "started_at"], name="callrecord_server_tool_time")]

    def __str__(self) -> str:
        return f"{self.tool} at {self.started_at:%Y-%m-%d %H:%M:%S} ({self.outcome})"
