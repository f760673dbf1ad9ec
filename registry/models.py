"""Downstream MCP servers and the tool definitions discovered on them."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from .encryption import EncryptedStringMap, UnreadableSecrets
from .url_guard import BlockedAddress, check_server_url

# A server name never contains "__", so a namespaced name "server__tool" splits one way only.
SERVER_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SERVER_NAME_MAX = 64
# Claude accepts tool names matching ^[a-zA-Z0-9_-]{1,64}$.
TOOL_NAME_MAX = 64
_TOOL_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
# RFC 9110 field names (tokens); a value may not break the header line (CR, LF) or hold NUL.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_HEADER_BREAK = re.compile(r"[\r\n\x00]")

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
    env = EncryptedStringMap(
        default=dict,
        blank=True,
        secret_label="environment",
        help_text="stdio: extra environment variables (JSON object).",
    )
    enabled = models.BooleanField(default=True)
    auth_type = models.CharField(max_length=10, choices=AuthType.choices, default=AuthType.NONE)
    auth_headers = EncryptedStringMap(default=dict, blank=True, secret_label="auth headers")
    timeout = models.FloatField(
        "call timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600)],
        help_text="Total deadline of one tool call. Blank: MCP_GATEWAY_CALL_TIMEOUT.",
    )
    connection_mode = models.CharField(max_length=12, choices=ConnectionMode.choices, default="", blank=True)
    store_call_payloads = models.BooleanField(
        default=False,
        help_text="Keep each call's arguments and result in the call history (size-capped by "
        "MCP_GATEWAY_CALL_PAYLOAD_MAX_BYTES). Off: only the tool, caller, duration and outcome are kept.",
    )

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
            else:
                try:
                    check_server_url(self.url)
                except BlockedAddress as exc:
                    errors["url"] = str(exc)
        elif self.transport == self.Transport.STDIO and not self.command:
            errors["command"] = "A stdio server needs the command that starts it."
        if not isinstance(self.args, list) or not all(isinstance(a, str) for a in self.args):
            errors["args"] = 'Arguments must be a JSON list of strings, e.g. ["--port", "3000"].'
        if isinstance(self.env, UnreadableSecrets):
            errors["env"] = self.env.message
        elif not isinstance(self.env, dict) or not all(isinstance(v, str) for v in self.env.values()):
            errors["env"] = 'Environment must be a JSON object of strings, e.g. {"TOKEN": "..."}.'
        if isinstance(self.auth_headers, UnreadableSecrets):
            errors["auth_headers"] = self.auth_headers.message
        elif not isinstance(self.auth_headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.auth_headers.items()
        ):
            errors["auth_headers"] = "Auth headers must be a JSON object of header names to string values."
        # PostgreSQL cannot store NUL in text; the admin's forms refuse it, the API and imports must too.
        for key in ("description", "url", "command"):
            if "\x00" in (getattr(self, key) or "") and key not in errors:
                errors[key] = "Null characters are not allowed."
        if "args" not in errors and any("\x00" in a for a in self.args):
            errors["args"] = "Null characters are not allowed."
        if "auth_headers" not in errors and isinstance(self.auth_headers, dict):
            bad = [k for k, v in self.auth_headers.items() if not _HEADER_NAME.fullmatch(k) or _HEADER_BREAK.search(v)]
            if bad:
                errors["auth_headers"] = (
                    f"Not a valid HTTP header: {bad[0]!r}. Names are letters, digits and !#$%&'*+-.^_`|~; "
                    "values have no line breaks or null characters."
                )
        if "env" not in errors and isinstance(self.env, dict):
            bad = [k for k, v in self.env.items() if not k or "=" in k or "\x00" in k + v]
            if bad:
                errors["env"] = f"Not a valid environment variable: {bad[0]!r} (no '=' or null characters)."
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

    def quarantined(self) -> ToolQuerySet:
        """Tools whose current definition is not the approved one (changed, or never approved)."""
        return self.exclude(definition_hash=models.F("approved_definition_hash"))


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
    # Pinning (registry/pinning.py): the tool is served only while definition_hash equals the approved one.
    announced_definition = models.JSONField(null=True, blank=True, help_text="The definition exactly as announced.")
    approved_definition_hash = models.CharField(max_length=64, blank=True)
    approved_definition = models.JSONField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.CharField(max_length=150, blank=True)
    # What registry/sanitize.py changed or found suspicious in the definition, for the admin.
    flags = models.JSONField(default=list, blank=True)

    objects = ToolQuerySet.as_manager()

    class Meta:
        ordering = ["server__name", "name"]
        constraints = [models.UniqueConstraint(fields=["server", "name"], name="unique_tool_per_server")]
        permissions = [("approve_tool", "Can approve new or changed tool definitions")]

    def __str__(self) -> str:
        return self.namespaced_name

    @property
    def quarantined(self) -> bool:
        return self.definition_hash != self.approved_definition_hash

    def definition(self) -> dict[str, Any]:
        """The tool as the gateway serves it (the MCP Tool shape, sanitized)."""
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


# --- API tokens: who may call /mcp and the REST API ----------------------------------------------

TOKEN_PREFIX = "mcpgw_"
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
validate_token_name = RegexValidator(
    TOKEN_NAME_RE,
    "Use letters, digits, '.', '_', '@' and '-', starting with a letter or digit (e.g. 'claude-desktop').",
    code="invalid_token_name",
)


def hash_token(raw: str) -> str:
    """Tokens are 256 random bits, so one SHA-256 is enough; a slow hash would only slow every request."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet):
    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiTokenManager(models.Manager.from_queryset(ApiTokenQuerySet)):  # type: ignore[misc]
    def create_token(self, name: str, *, expires_at: datetime | None = None) -> tuple[ApiToken, str]:
        """A new token and its value: the value is returned once and only its hash is stored."""
        token = ApiToken(name=name, expires_at=expires_at)
        raw = token.assign_new_value()
        token.full_clean()
        token.save()
        return token, raw


class ApiToken(models.Model):
    """A bearer token for /mcp and /api/v1; the gateway keeps its SHA-256, never the token."""

    name = models.CharField(
        max_length=100, unique=True, validators=[validate_token_name], help_text="Who uses it, e.g. 'claude-desktop'."
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False, help_text="The token's first characters, to recognise it.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Blank: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Updated at most once a minute."
    )

    objects = ApiTokenManager()

    class Meta:
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return self.name

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"

    def assign_new_value(self) -> str:
        """Give the token a fresh random value; returns it (the only time it exists in clear)."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(raw)
        self.prefix = raw[: len(TOKEN_PREFIX) + 6]
        return raw

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
