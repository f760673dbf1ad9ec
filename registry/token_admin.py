"""The admin of API tokens: create (the value is shown once, on the page after saving), list, revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from .models import ApiToken


class ApiTokenAddForm(forms.ModelForm):
    expires_in_days = forms.IntegerField(
        required=False, min_value=1, max_value=3650, label="Expires in (days)", help_text="Blank: never expires."
    )

    class Meta:
        model = ApiToken
        fields = ["name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix_shown", "state_shown", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    actions = ["revoke"]

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiTokenAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["name", "expires_in_days"]
        return ["name", "prefix_shown", "state_shown", "created_at", "expires_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return []
        # Only the expiry may change; a token's value is never shown again (create a new token instead).
        return ["name", "prefix_shown", "state_shown", "created_at", "last_used_at", "revoked_at"]

    @admin.display(description="token")
    def prefix_shown(self, token: ApiToken) -> str:
        return f"{token.prefix}…"

    @admin.display(description="state")
    def state_shown(self, token: ApiToken) -> str:
        colours = {"active": "#2e7d32", "expired": "#ef6c00", "revoked": "#c62828"}
        return format_html('<span style="color:{};font-weight:bold">{}</span>', colours[token.state], token.state)

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if not change:
            days = form.cleaned_data.get("expires_in_days")
            obj.expires_at = timezone.now() + timedelta(days=days) if days else None
            request._new_api_token = obj.assign_new_value()  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiToken, post_url_continue: str | None = None) -> HttpResponse:
        # The value goes into this page only: not into a message (cookie or session), not into a log.
        raw = getattr(request, "_new_api_token", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": f"API token '{obj.name}' created",
            "token": obj,
            "raw_token": raw,
            "mcp_url": request.build_absolute_uri("/mcp"),
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/registry/apitoken/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = 0
        for token in queryset:
            if token.revoked_at is None:
                token.revoke()  # saves: every process refuses the token within a second
                revoked += 1
        self.message_user(request, f"Revoked {revoked} tokens.", messages.SUCCESS)
