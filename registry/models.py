"""Downstream MCP servers and the tool definitions discovered on them."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

# A server name never contains "__", so a namespaced name "server__tool" splits one way only.
SERVER_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SERVER_NAME_MAX = 64
# Claude accepts tool names matching ^[a-zA-Z0-9_-]{1,64}$.
TOOL_NAME_MAX = 64
_TOOL_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")

validate_server_name = RegexValidator(
    SERVER_NAME_RE,
    "Use lowercase letters, digits and single hyphens (e.g. 'github' or 'my-server').",
    code="invalid_server_name",
)


def namespaced_tool_name(server: str, tool: str) -> str:
    """`server__tool`, made safe for clients: at most 64 characters of [a-zA-Z0-9_-].

    A name that had to be changed gets a short hash of the original appended, so two
    different tools never map to the same name and the mapping is the same every time.
    """
    full = f"{server}__{tool}"
    safe = _TOOL_NAME_UNSAFE.sub("_", full)
    if safe == full and len(full) <= TOOL_NAME_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{safe[: TOOL_NAME_MAX - 9]}_{digest}"


def definition_hash(definition: dict[str, Any]) -> str:
    """SHA-256 over canonical JSON of a tool's whole definition."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ServerQuerySet(models.QuerySet):
    def enabled(self) -> ServerQuerySet:
        return self.filter(enabled=True)


class Server(models.Model):
    class Transport(models.TextChoices):
        STDIO = "stdio", "stdio"
        HTTP = "http", "streamable HTTP"

    class AuthType(models.TextChoices):
        NONE = "none", "none"
        STATIC = "static", "static headers"
        FORWARD = "forward", "forwarded by the caller"

    class ConnectionMode(models.TextChoices):
        DEFAULT = "", "gateway default"
        PERSISTENT = "persistent", "persistent session"
        STATELESS = "stateless", "a session per call"

    name = models.CharField(max_length=SERVER_NAME_MAX, unique=True, validators=[validate_server_name])
    description = models.CharField(max_length=500, blank=True)
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.STDIO)
    url = models.CharField(
        "URL", max_length=2000, blank=True, help_text="Streamable HTTP endpoint, e.g. http://127.0.0.1:3001/mcp"
    )
    command = models.CharField(max_length=1000, blank=True, help_text="stdio: the executable to start (no shell).")
    args = models.JSONField(default=list, blank=True, help_text="stdio: a JSON list of arguments.")
    env = models.JSONField(default=dict, blank=True, help_text="stdio: extra environment variables (JSON object).")
    enabled = models.BooleanField(default=True)
    auth_type = models.CharField(max_length=10, choices=AuthType.choices, default=AuthType.NONE)
    auth_headers = models.JSONField(default=dict, blank=True)
    timeout = models.FloatField(
        "call timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Total deadline of one tool call. Blank: MCP_GATEWAY_CALL_TIMEOUT.",
    )
    connection_mode = models.CharField(max_length=12, choices=ConnectionMode.choices, default="", blank=True)

    last_discovered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    tool_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ServerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.transport == self.Transport.HTTP:
            if not self.url:
                errors["url"] = "An HTTP server needs the URL of its MCP endpoint."
            elif not re.match(r"^https?://", self.url):
                errors["url"] = "The URL must start with http:// or https://."
        elif self.transport == self.Transport.STDIO and not self.command:
            errors["command"] = "A stdio server needs the command that starts it."
        if not isinstance(self.args, list) or not all(isinstance(a, str) for a in self.args):
            errors["args"] = 'Arguments must be a JSON list of strings, e.g. ["--port", "3000"].'
        if not isinstance(self.env, dict) or not all(isinstance(v, str) for v in self.env.values()):
            errors["env"] = 'Environment must be a JSON object of strings, e.g. {"TOKEN": "..."}.'
        if not isinstance(self.auth_headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.auth_headers.items()
        ):
            errors["auth_headers"] = "Auth headers must be a JSON object of header names to string values."
        if errors:
            raise ValidationError(errors)

    def namespaced(self, tool: str) -> str:
        return namespaced_tool_name(self.name, tool)

    @property
    def effective_timeout(self) -> float:
        return self.timeout or settings.MCP_GATEWAY_CALL_TIMEOUT

    @property
    def effective_connection_mode(self) -> str:
        return self.connection_mode or settings.MCP_GATEWAY_DEFAULT_CONNECTION_MODE

    @property
    def health(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.last_error:
            return "error"
        if self.last_discovered_at is None:
            return "never discovered"
        return "ok"


class ToolQuerySet(models.QuerySet):
    def servable(self) -> ToolQuerySet:
        return self.filter(server__enabled=True)


class Tool(models.Model):
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField("original name", max_length=500)
    namespaced_name = models.CharField(max_length=TOOL_NAME_MAX, unique=True)
    title = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=dict)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(null=True, blank=True)
    definition_hash = models.CharField(max_length=64)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()

    objects = ToolQuerySet.as_manager()

    class Meta:
        ordering = ["server__name", "name"]
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="unique_tool_per_server")]

    def __str__(self) -> str:
        return self.namespaced_name

    def definition(self) -> dict[str, Any]:
        """The tool as the downstream announced it (the MCP Tool shape)."""
        data: dict[str, Any] = {"name": self.name, "inputSchema": self.input_schema}
        if self.title:
            data["title"] = self.title
        if self.description:
            data["description"] = self.description
        if self.output_schema is not None:
            data["outputSchema"] = self.output_schema
        if self.annotations is not None:
            data["annotations"] = self.annotations
        return data
