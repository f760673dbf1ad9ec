"""The admin: the gateway's main screen. Secrets (auth headers, stdio env values) are write-only."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from .discovery import discover_server_tools
from .encryption import UnreadableSecrets
from .models import Server, Tool
from .pinning_admin import ApprovalFilter, ToolApprovalAdminMixin
from .stdio_commands import (
    COMMAND_FIELDS,
    CommandConfirmationField,
    check_command_change,
    command_line,
    environment_names,
    may_register_commands,
)

MASK = "••••••••"


class SecretMapField(forms.CharField):
    """A JSON object of strings whose saved values are never sent to the browser."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "autocomplete": "off", "spellcheck": "false"})

    def to_python(self, value: Any) -> dict[str, str] | None:
        value = super().to_python(value).strip()
        if not value:
            return None  # blank: keep what is saved
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise forms.ValidationError('Write a JSON object of strings, e.g. {"Authorization": "Bearer …"}.')
        return data


class ServerForm(forms.ModelForm):
    auth_headers = SecretMapField(
        required=False,
        label="Auth headers",
        help_text='JSON object, e.g. {"Authorization": "Bearer …"}. Saved values are never shown; '
        "leave blank to keep them.",
    )
    clear_auth_headers = forms.BooleanField(required=False, label="Remove the saved auth headers")
    env = SecretMapField(
        required=False,
        label="Environment",
        help_text="stdio: JSON object of extra environment variables. Saved values are never shown; "
        "leave blank to keep them.",
    )
    clear_env = forms.BooleanField(required=False, label="Remove the saved environment")
    args = forms.JSONField(
        required=False,
        initial=list,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text='stdio: JSON list of arguments, e.g. ["--port", "3000"]. Passed as is, never through a shell.',
    )
    command_confirmation = CommandConfirmationField()
    user: Any = None  # the admin user, set by ServerAdmin.get_form (stdio commands are for superusers)

    class Meta:
        model = Server
        fields = [
            "name",
            "description",
            "enabled",
            "transport",
            "url",
            "command",
            "args",
            "env",
            "auth_type",
            "auth_headers",
            "timeout",
            "connection_mode",
            "store_call_payloads",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("auth_headers", "env"):
            self.initial[name] = ""  # never render a saved secret
            saved = getattr(self.instance, name, None) or {}
            if saved:
                shown = ", ".join(f"{key}: {MASK}" for key in sorted(saved))
                self.fields[name].help_text = f"Saved: {shown}. " + self.fields[name].help_text
                if isinstance(saved, UnreadableSecrets):
                    self.fields[name].help_text = f"{saved.message}. " + self.fields[name].help_text
        if self.instance.pk is None:
            self.fields.pop("clear_auth_headers")
            self.fields.pop("clear_env", None)
        if not may_register_commands(self.user):
            for name in COMMAND_FIELDS:
                self.fields.pop(name, None)

    def _merged(self, name: str) -> dict[str, str]:
        if self.cleaned_data.get(f"clear_{name}"):
            return {}
        new = self.cleaned_data.get(name)
        if new is None:
            saved = getattr(self.instance, name, None) or {}
            if isinstance(saved, UnreadableSecrets):
                return saved  # kept as saved: the model's clean() asks for them again
            return dict(saved) if self.instance.pk else {}
        return new

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["args"] = data.get("args") or []
        check_command_change(self, data, self._merged("env") if "env" in self.fields else None)
        return data

    def _update_errors(self, errors: ValidationError) -> None:
        # Model errors about fields this user is not shown (a stdio command) become form-wide errors.
        if hasattr(errors, "error_dict"):
            regrouped: dict[str, list[Any]] = {}
            for name, messages in errors.error_dict.items():
                key = name if name in self.fields else NON_FIELD_ERRORS
                regrouped.setdefault(key, []).extend(messages)
            errors = ValidationError(regrouped)
        super()._update_errors(errors)

    def _post_clean(self) -> None:
        # Model validation sees the merged secrets, not the blank "keep" value.
        self.cleaned_data["auth_headers"] = self._merged("auth_headers")
        self.cleaned_data["env"] = self._merged("env")
        super()._post_clean()


class ToolInline(admin.TabularInline):
    model = Tool
    fields = ["tool_link", "title", "short_description", "last_seen_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="tool")
    def tool_link(self, tool: Tool) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:registry_tool_change", args=[tool.pk]), tool.name)

    @admin.display(description="description")
    def short_description(self, tool: Tool) -> str:
        text = tool.description.strip().splitlines()[0] if tool.description.strip() else ""
        return text[:140] + ("…" if len(text) > 140 else "")


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    form = ServerForm
    list_display = [
        "name",
        "status",
        "probe_health",
        "transport",
        "enabled",
        "tools_link",
        "discovered",
        "error_summary",
        "auth_type",
    ]
    list_display_links = ["name"]
    list_select_related = ["health_probe"]  # the monitoring app's last health probe (reverse one-to-one)
    list_filter = ["enabled", "transport", "auth_type", "connection_mode"]
    search_fields = ["name", "description", "url", "command"]
    actions = ["discover_now", "enable", "disable"]
    readonly_fields = ["state", "command_line"]
    inlines = [ToolInline]
    change_form_template = "admin/registry/server/change_form.html"
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled", "state"]}),
        (
            "Connection",
            {
                "fields": [
                    "transport",
                    "url",
                    "command",
                    "args",
                    "env",
                    "clear_env",
                    "command_line",
                    "command_confirmation",
                ]
            },
        ),
        ("Authentication", {"fields": ["auth_type", "auth_headers", "clear_auth_headers"]}),
        ("Calls", {"fields": ["timeout", "connection_mode", "store_call_payloads"]}),
    ]

    def get_fieldsets(self, request: HttpRequest, obj: Server | None = None) -> list[Any]:
        hidden: set[str] = set()
        if obj is None:
            hidden |= {"clear_env", "clear_auth_headers", "state"}  # no saved secrets to clear, no state to show
        if not may_register_commands(request.user):
            hidden |= set(COMMAND_FIELDS)  # shown read-only as the command line instead
        return [(title, {"fields": [f for f in opts["fields"] if f not in hidden]}) for title, opts in self.fieldsets]

    def get_form(self, request: HttpRequest, obj: Server | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user
        return form

    @admin.display(description="status")
    def status(self, server: Server) -> str:
        colours = {"ok": "#2e7d32", "error": "#c62828", "disabled": "#757575", "never discovered": "#ef6c00"}
        return format_html(
            '<span style="color:{};font-weight:bold" title="{}">● {}</span>',
            colours[server.health],
            server.last_error[:300],
            server.health,
        )

    @admin.display(description="health probe", ordering="health_probe__status")
    def probe_health(self, server: Server) -> str:
        probe = getattr(server, "health_probe", None)  # monitoring.ServerHealth, without importing monitoring
        if probe is None or probe.checked_at is None:
            return "—"
        colours = {"healthy": "#2e7d32", "unhealthy": "#c62828", "unknown": "#ef6c00"}
        latency = f" {probe.latency_ms:.0f} ms" if probe.latency_ms is not None else ""
        title = f"checked {timesince(probe.checked_at)} ago" + (f": {probe.last_error}" if probe.last_error else "")
        return format_html(
            '<span style="color:{};font-weight:bold" title="{}">● {}{}</span>',
            colours.get(probe.status, "#757575"),
            title[:400],
            probe.status,
            latency,
        )

    @admin.display(description="tools", ordering="tool_count")
    def tools_link(self, server: Server) -> str:
        url = reverse("admin:registry_tool_changelist") + f"?server__id__exact={server.pk}"
        return format_html('<a href="{}">{}</a>', url, server.tool_count)

    @admin.display(description="last discovery", ordering="last_discovered_at")
    def discovered(self, server: Server) -> str:
        if server.last_discovered_at is None:
            return "never"
        return format_html(
            '<span title="{}">{} ago</span>',
            server.last_discovered_at.isoformat(),
            timesince(server.last_discovered_at),
        )

    @admin.display(description="last error")
    def error_summary(self, server: Server) -> str:
        if not server.last_error:
            return "—"
        text = server.last_error if len(server.last_error) <= 90 else server.last_error[:90] + "…"
        return format_html('<span title="{}">{}</span>', server.last_error, text)

    @admin.display(description="state")
    def state(self, server: Server) -> str:
        rows = [
            ("Health", server.health),
            ("Tools", str(server.tool_count)),
            ("Last discovery", server.last_discovered_at.isoformat() if server.last_discovered_at else "never"),
            ("Last error", server.last_error or "—"),
            ("Last error at", server.last_error_at.isoformat() if server.last_error_at else "—"),
        ]
        return format_html(
            "<table>{}</table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", ((k, v) for k, v in rows))
        )

    @admin.display(description="command line")
    def command_line(self, server: Server) -> str:
        if server.transport != Server.Transport.STDIO or not server.command:
            return "—"
        env = f"With the environment variables {environment_names(server.env)}." if server.env else ""
        return format_html(
            "<code>{}</code><br><small>Executed directly, without a shell. {}</small>",
            command_line(server.command, server.args),
            env,
        )

    def _discover(self, request: HttpRequest, servers: list[Server]) -> None:
        for server in servers:
            result = discover_server_tools(server)
            if result.ok:
                self.message_user(request, f"Discovered {result.summary}", messages.SUCCESS)
            else:
                self.message_user(request, f"Discovery of {result.server} failed: {result.error}", messages.ERROR)

    @admin.action(description="Discover tools now")
    def discover_now(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        self._discover(request, list(queryset))

    @admin.action(description="Enable")
    def enable(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        for server in queryset:
            server.enabled = True
            server.save(update_fields=["enabled", "updated_at"])
        self.message_user(request, f"Enabled {queryset.count()} servers.", messages.SUCCESS)

    @admin.action(description="Disable")
    def disable(self, request: HttpRequest, queryset: QuerySet[Server]) -> None:
        for server in queryset:
            server.enabled = False
            server.save(update_fields=["enabled", "updated_at"])
        self.message_user(request, f"Disabled {queryset.count()} servers.", messages.SUCCESS)

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:pk>/discover/",
                self.admin_site.admin_view(self.discover_view),
                name="registry_server_discover",
            )
        ]
        return extra + super().get_urls()

    def discover_view(self, request: HttpRequest, pk: int) -> HttpResponseRedirect:
        server = get_object_or_404(Server, pk=pk)
        if request.method != "POST" or not self.has_change_permission(request, server):
            return HttpResponseRedirect(reverse("admin:registry_server_change", args=[pk]))
        self._discover(request, [server])
        return HttpResponseRedirect(reverse("admin:registry_server_change", args=[pk]))


@admin.register(Tool)
class ToolAdmin(ToolApprovalAdminMixin, admin.ModelAdmin):
    list_display = [
        "namespaced_name",
        "server_link",
        "approval",
        "flag_count",
        "title",
        "short_description",
        "last_seen_at",
    ]
    list_filter = [ApprovalFilter, "server"]
    search_fields = ["namespaced_name", "name", "title", "description"]
    list_select_related = ["server"]
    fields = [
        "namespaced_name",
        "server_link",
        "name",
        "title",
        "description",
        "input_schema_pretty",
        "output_schema_pretty",
        "annotations_pretty",
        "approval_state",
        "flag_list",
        "definition_hash",
        "announced_pretty",
        "first_seen_at",
        "last_seen_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="server", ordering="server__name")
    def server_link(self, tool: Tool) -> str:
        url = reverse("admin:registry_server_change", args=[tool.server_id])
        return format_html('<a href="{}">{}</a>', url, tool.server.name)

    @admin.display(description="description")
    def short_description(self, tool: Tool) -> str:
        text = tool.description.strip().splitlines()[0] if tool.description.strip() else ""
        return text[:120] + ("…" if len(text) > 120 else "")

    @staticmethod
    def _pretty(value: Any) -> str:
        if value is None:
            return "—"
        return format_html('<pre style="white-space:pre-wrap">{}</pre>', json.dumps(value, indent=2, sort_keys=True))

    @admin.display(description="input schema")
    def input_schema_pretty(self, tool: Tool) -> str:
        return self._pretty(tool.input_schema)

    @admin.display(description="output schema")
    def output_schema_pretty(self, tool: Tool) -> str:
        return self._pretty(tool.output_schema)

    @admin.display(description="annotations")
    def annotations_pretty(self, tool: Tool) -> str:
        return self._pretty(tool.annotations)


from .token_admin import ApiTokenAdmin  # noqa: E402, F401  (API tokens have their own module)
