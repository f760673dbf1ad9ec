"""The call history in the admin: read-only, filterable by server, tool, outcome, caller and date."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from .models import CallRecord


class ValueFilter(admin.SimpleListFilter):
    """A filter on the distinct values of a text column, most frequent first (bounded)."""

    field = ""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        from django.db.models import Count

        values = (
            CallRecord.objects.exclude(**{self.field: ""})
            .values(self.field)
            .annotate(n=Count("id"))
            .order_by("-n")[:50]
        )
        return [(v[self.field], v[self.field]) for v in values]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class ServerFilter(ValueFilter):
    title = parameter_name = field = "server"


class ToolFilter(ValueFilter):
    title = parameter_name = field = "tool"


class CallerFilter(ValueFilter):
    title = parameter_name = field = "caller"


@admin.register(CallRecord)
class CallRecordAdmin(admin.ModelAdmin):
    list_display = ["started_at", "tool", "server", "caller", "outcome_badge", "duration", "short_error"]
    list_filter = ["outcome", ServerFilter, ToolFilter, CallerFilter, ("started_at", admin.DateFieldListFilter)]
    search_fields = ["tool", "server", "caller", "error"]
    date_hierarchy = "started_at"
    show_full_result_count = False  # no COUNT(*) over a large history on every page
    fields = [
        "started_at", "tool", "server", "caller", "outcome", "duration_ms", "error",
        "arguments_pretty", "result_pretty",
    ]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="outcome", ordering="outcome")
    def outcome_badge(self, record: CallRecord) -> str:
        colour = {"ok": "#2e7d32", "tool_error": "#ef6c00", "gateway_error": "#c62828"}[record.outcome]
        return format_html('<span style="color:{};font-weight:bold">{}</span>', colour, record.get_outcome_display())

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, record: CallRecord) -> str:
        return f"{record.duration_ms:.1f} ms"

    @admin.display(description="error")
    def short_error(self, record: CallRecord) -> str:
        return record.error if len(record.error) <= 100 else record.error[:100] + "…"

    @staticmethod
    def _pretty(value: Any) -> str:
        if value is None:
            return "— (not stored: enable “store call payloads” on the server)"
        text = json.dumps(value, indent=2, ensure_ascii=False)
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', text)

    @admin.display(description="arguments")
    def arguments_pretty(self, record: CallRecord) -> str:
        return self._pretty(record.arguments)

    @admin.display(description="result")
    def result_pretty(self, record: CallRecord) -> str:
        return self._pretty(record.result)
