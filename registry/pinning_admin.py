"""The admin side of tool pinning: quarantine state and flags in the tool list, the diff, approval.

An admin with `registry.approve_tool` (superusers have it) approves a quarantined tool only from a
page that shows the diff between the approved definition and the one announced now: the
"Review and approve" action on the tool list, or the review link on a tool's page.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from .models import Tool
from .pinning import CHANGED, NEW, approve_tools, definition_diff, pretty_definition, quarantine_reason

STATE_LABELS = {
    None: ("approved", "#2e7d32"),
    CHANGED: ("quarantined: definition changed", "#c62828"),
    NEW: ("waiting for approval", "#ef6c00"),
}


class ApprovalFilter(admin.SimpleListFilter):
    title = "approval"
    parameter_name = "approval"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("quarantined", "quarantined or waiting"), ("approved", "approved"), ("flagged", "flagged text")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tool]) -> QuerySet[Tool]:
        if self.value() == "quarantined":
            return queryset.exclude(definition_hash=F("approved_definition_hash"))
        if self.value() == "approved":
            return queryset.filter(definition_hash=F("approved_definition_hash"))
        if self.value() == "flagged":
            return queryset.exclude(flags=[])
        return queryset


class ToolApprovalAdminMixin:
    """For ToolAdmin: approval and flags columns, the review page and the approve action."""

    actions = ["review_and_approve"]

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("registry.approve_tool")

    @admin.display(description="approval")
    def approval(self, tool: Tool) -> str:
        label, colour = STATE_LABELS[quarantine_reason(tool.definition_hash, tool.approved_definition_hash)]
        if not tool.quarantined:
            return format_html('<span style="color:{}">● {}</span>', colour, label)
        url = reverse("admin:registry_tool_review", args=[tool.pk])
        return format_html('<a href="{}" style="color:{};font-weight:bold">● {} (review)</a>', url, colour, label)

    @admin.display(description="flags")
    def flag_count(self, tool: Tool) -> str:
        if not tool.flags:
            return "—"
        return format_html(
            '<span style="color:#c62828;font-weight:bold" title="{}">⚑ {}</span>',
            "\n".join(tool.flags),
            len(tool.flags),
        )

    @admin.display(description="flags (what sanitizing removed or found)")
    def flag_list(self, tool: Tool) -> str:
        if not tool.flags:
            return "—"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((flag,) for flag in tool.flags)))

    @admin.display(description="approved")
    def approval_state(self, tool: Tool) -> str:
        who = f" by {tool.approved_by}" if tool.approved_by else ""
        when = f" at {tool.approved_at.isoformat()}" if tool.approved_at else ""
        return format_html("{}<br><small>last approval{}{}</small>", self.approval(tool), who, when)

    @admin.display(description="definition as announced")
    def announced_pretty(self, tool: Tool) -> str:
        text = pretty_definition(tool.announced_definition) or "—"
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', text)

    def get_urls(self) -> list[Any]:
        review = path(
            "<int:pk>/review/",
            self.admin_site.admin_view(self.review_view),
            name="registry_tool_review",
        )
        return [review, *super().get_urls()]

    def _review_page(self, request: HttpRequest, tools: list[Tool], *, action: bool) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Review changed tool definitions" if len(tools) != 1 else f"Review {tools[0].namespaced_name}",
            "opts": Tool._meta,
            "reviews": [
                {
                    "tool": tool,
                    "state": STATE_LABELS[quarantine_reason(tool.definition_hash, tool.approved_definition_hash)][0],
                    "diff": definition_diff(tool),
                }
                for tool in tools
            ],
            "can_approve": self.has_approve_permission(request),
            "action": action,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/registry/tool/review.html", context)

    @admin.action(description="Review and approve the new definitions of the selected tools", permissions=["approve"])
    def review_and_approve(self, request: HttpRequest, queryset: QuerySet[Tool]) -> HttpResponse | None:
        tools = [t for t in queryset.select_related("server") if t.quarantined]
        if not tools:
            self.message_user(request, "None of the selected tools is waiting for approval.", messages.INFO)
            return None
        if request.POST.get("confirm") != "yes":
            return self._review_page(request, tools, action=True)
        if not self.has_approve_permission(request):
            raise PermissionDenied
        self._approve(request, tools)
        return None

    def review_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        tool = get_object_or_404(Tool.objects.select_related("server"), pk=pk)
        if not self.has_view_permission(request, tool):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_approve_permission(request):
                raise PermissionDenied
            self._approve(request, [tool])
            return HttpResponseRedirect(reverse("admin:registry_tool_change", args=[pk]))
        return self._review_page(request, [tool], action=False)

    def _approve(self, request: HttpRequest, tools: list[Tool]) -> None:
        # Each form field carries the hash of the definition shown: only what the admin saw is approved.
        reviewed = {t.pk: request.POST.get(f"reviewed_{t.pk}", "") for t in tools}
        names = approve_tools(tools, by=request.user.get_username(), reviewed=reviewed)
        if names:
            self.message_user(request, f"Approved: {', '.join(names)}. They are served again.", messages.SUCCESS)
        stale = [t.namespaced_name for t in tools if t.quarantined and t.namespaced_name not in names]
        if stale:
            self.message_user(
                request,
                f"Not approved: {', '.join(stale)}: the definition changed since the page was shown; review it again.",
                messages.WARNING,
            )
        elif not names:
            self.message_user(request, "Nothing was waiting for approval.", messages.INFO)
