"""The REST API's registry routes: servers, their tools, discovery, import and export of config files.

The same rules as the admin and `import_servers`: the model's validators decide what is valid, and
secrets (auth header values, stdio env values) are write-only. stdio servers start a command on the
gateway's host, so the API may not create them or change how they are started.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as ModelValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError, ValidationError
from ninja.pagination import LimitOffsetPagination, paginate
from pydantic import ConfigDict

from .config_files import ConfigError, ServerConfig, export_servers, import_servers, parse_config
from .discovery import discover_server_tools
from .models import SERVER_NAME_MAX, SERVER_NAME_RE, TOOL_NAME_MAX, Server, Tool

router = Router()

STDIO_REFUSED = (
    "stdio servers start a command on the gateway's host, so the API cannot create them or change their "
    "command, args or env: a superuser does that in the admin (/admin/registry/server/) or with "
    "`manage.py import_servers`"
)
LAUNCH_FIELDS = ("command", "args", "env")
# `${VAR}` as config_files expands it from the gateway's environment: never on behalf of an API caller.
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}")
MAX_PAGE = 500
TOOL_NAME_RE = re.compile(rf"^[a-zA-Z0-9_-]{{1,{TOOL_NAME_MAX}}}$")  # what namespaced_tool_name produces


class LimitOffset(LimitOffsetPagination):
    class Input(Schema):
        limit: int = Field(100, ge=1, le=MAX_PAGE, description=f"Items per page, 1 to {MAX_PAGE}")
        offset: int = Field(0, ge=0, le=1_000_000_000, description="Items to skip")


class Error(Schema):
    detail: str


class FieldError(Schema):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrors(Schema):
    detail: list[FieldError]


def field_errors(errors: dict[str, list[str]], *, source: str = "body", param: str = "payload") -> ValidationError:
    """A 422 in django-ninja's own shape, so model and schema validation errors read the same."""
    return ValidationError(
        [
            {"loc": [source, param] if name == "__all__" else [source, param, name], "msg": msg, "type": "invalid"}
            for name, messages in errors.items()
            for msg in messages
        ]
    )


# --- servers ---------------------------------------------------------------------------------------


class ProbeOut(Schema):
    status: str = Field(description="healthy, unhealthy or unknown")
    checked_at: datetime | None
    last_success_at: datetime | None
    last_error: str = Field(description="Redacted: never a header or environment value")
    last_error_at: datetime | None
    latency_ms: float | None


class ServerOut(Schema):
    name: str
    description: str
    transport: str
    url: str
    command: str
    args: list[str]
    env_names: list[str] = Field(description="Names of the stdio environment variables; values are never returned")
    auth_type: str
    auth_header_names: list[str] = Field(description="Names of the saved auth headers; values are never returned")
    enabled: bool
    timeout: float | None
    connection_mode: str
    health: str = Field(description="From discovery: ok, error, never discovered or disabled")
    probe: ProbeOut | None = Field(description="The last periodic health probe; null before the first one")
    tool_count: int
    last_discovered_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def resolve_env_names(server: Server) -> list[str]:
        return sorted(server.env or {})

    @staticmethod
    def resolve_auth_header_names(server: Server) -> list[str]:
        return sorted(server.auth_headers or {})

    @staticmethod
    def resolve_probe(server: Server) -> Any:
        # The monitoring app adds this relation; registry does not import it.
        try:
            return getattr(server, "health_probe", None)
        except ObjectDoesNotExist:
            return None


Transport = Literal["stdio", "http"]
AuthType = Literal["none", "static", "forward"]
ConnectionMode = Literal["", "persistent", "stateless"]
Timeout = float | None


class ServerIn(Schema):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        description="Lowercase letters, digits and single hyphens, e.g. 'github'",
        # Documented, and checked by the model's validator (whose message says how to fix a bad name).
        json_schema_extra={"pattern": SERVER_NAME_RE.pattern, "maxLength": SERVER_NAME_MAX, "examples": ["github"]},
    )
    transport: Transport | None = Field(None, description="Default: 'http' when url is given without a command")
    url: str = Field(
        "",
        description="The streamable HTTP endpoint",
        json_schema_extra={"pattern": "^https?://", "examples": ["https://mcp.example.com/mcp"]},
    )
    description: str = ""
    enabled: bool = True
    auth_type: AuthType = "none"
    auth_headers: dict[str, str] = Field(default_factory=dict, description="Write-only: header name to value")
    timeout: Timeout = Field(None, allow_inf_nan=False, description="Seconds; blank: MCP_GATEWAY_CALL_TIMEOUT")
    connection_mode: ConnectionMode = ""
    command: str = Field("", description="stdio only, refused through the API (403)")
    args: list[str] = Field(default_factory=list, description="stdio only, refused through the API (403)")
    env: dict[str, str] = Field(default_factory=dict, description="stdio only, refused through the API (403)")


class ServerPatch(Schema):
    """Only the fields sent change. auth_headers replaces the saved headers ({} removes them)."""

    model_config = ConfigDict(extra="forbid")

    transport: Transport | None = None
    url: str | None = None
    description: str | None = None
    enabled: bool | None = None
    auth_type: AuthType | None = None
    auth_headers: dict[str, str] | None = Field(None, description="Write-only: replaces the saved headers")
    timeout: Timeout = Field(None, allow_inf_nan=False, description="Seconds; null: MCP_GATEWAY_CALL_TIMEOUT")
    connection_mode: ConnectionMode | None = None
    command: str | None = None
    args: list[str] | None = None
    env: dict[str, str] | None = None


def get_server(name: str) -> Server:
    # A name that cannot exist is not looked up (PostgreSQL refuses some strings, e.g. with NUL, outright).
    valid = len(name) <= SERVER_NAME_MAX and SERVER_NAME_RE.fullmatch(name)
    server = Server.objects.filter(name=name).first() if valid else None
    if server is None:
        raise HttpError(404, f"no server named '{name}' (GET /api/v1/servers lists them)")
    return server


def _save(server: Server, *, creating: bool) -> None:
    try:
        server.full_clean(validate_unique=creating)
    except ModelValidationError as exc:
        raise field_errors(exc.message_dict) from None
    try:
        with transaction.atomic():
            server.save()
    except IntegrityError:
        raise HttpError(409, f"a server named '{server.name}' already exists") from None


def _refuse_http_launch_fields(values: dict[str, Any]) -> None:
    sent = {k: ["only stdio servers are started with a command, args and env; send the url"] for k in LAUNCH_FIELDS}
    errors = {k: v for k, v in sent.items() if values.get(k)}
    if errors:
        raise field_errors(errors)


@router.get("/servers", response=list[ServerOut], tags=["servers"])
@paginate(LimitOffset)
def list_servers(request: HttpRequest, enabled: bool | None = None) -> Any:
    servers = Server.objects.order_by("name")
    if hasattr(Server, "health_probe"):
        servers = servers.select_related("health_probe")
    if enabled is not None:
        servers = servers.filter(enabled=enabled)
    return servers


@router.post(
    "/servers",
    response={201: ServerOut, 403: Error, 409: Error, 422: ValidationErrors},
    tags=["servers"],
)
def create_server(request: HttpRequest, payload: ServerIn) -> Any:
    data = payload.model_dump()
    transport = data.pop("transport") or ("http" if data["url"] and not data["command"] else "stdio")
    if transport == Server.Transport.STDIO:
        raise HttpError(403, STDIO_REFUSED)
    _refuse_http_launch_fields(data)
    server = Server(transport=transport, **data)
    _save(server, creating=True)
    return Status(201, server)


@router.get("/servers/{name}", response={200: ServerOut, 404: Error}, tags=["servers"])
def read_server(request: HttpRequest, name: str) -> Any:
    return get_server(name)


@router.patch(
    "/servers/{name}",
    response={200: ServerOut, 403: Error, 404: Error, 422: ValidationErrors},
    tags=["servers"],
)
def update_server(request: HttpRequest, name: str, payload: ServerPatch) -> Any:
    server = get_server(name)
    changes = payload.model_dump(exclude_unset=True)
    nulls = {k: ["may not be null"] for k, v in changes.items() if v is None and k != "timeout"}
    if nulls:
        raise field_errors(nulls)
    transport = changes.get("transport", server.transport)
    if transport == Server.Transport.STDIO:
        launch_changed = any(k in changes and changes[k] != getattr(server, k) for k in LAUNCH_FIELDS)
        if server.transport != Server.Transport.STDIO or launch_changed:
            raise HttpError(403, STDIO_REFUSED)
    else:
        _refuse_http_launch_fields(changes)
    for key, value in changes.items():
        setattr(server, key, value)
    _save(server, creating=False)
    return server


@router.delete("/servers/{name}", response={204: None, 404: Error}, tags=["servers"])
def delete_server(request: HttpRequest, name: str) -> Any:
    get_server(name).delete()
    return Status(204, None)


def _set_enabled(name: str, enabled: bool) -> Server:
    server = get_server(name)
    if server.enabled != enabled:
        server.enabled = enabled
        server.save(update_fields=["enabled", "updated_at"])
    return server


@router.post("/servers/{name}/enable", response={200: ServerOut, 404: Error}, tags=["servers"])
def enable_server(request: HttpRequest, name: str) -> Any:
    return _set_enabled(name, True)


@router.post("/servers/{name}/disable", response={200: ServerOut, 404: Error}, tags=["servers"])
def disable_server(request: HttpRequest, name: str) -> Any:
    return _set_enabled(name, False)


class DiscoveryOut(Schema):
    server: str
    tool_count: int
    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: int
    quarantined: list[str] = Field(description="New or changed tools not served until approved in the admin")


@router.post(
    "/servers/{name}/discover",
    response={200: DiscoveryOut, 404: Error, 409: Error, 502: Error},
    tags=["servers"],
    summary="List a server's tools now and store them",
)
def discover_server(request: HttpRequest, name: str) -> Any:
    server = get_server(name)
    if not server.enabled:
        raise HttpError(409, f"server '{name}' is disabled; POST /api/v1/servers/{name}/enable first")
    result = discover_server_tools(server)
    if not result.ok:
        raise HttpError(502, f"discovery of '{name}' failed: {result.error} (its last known tools are kept)")
    return {
        "server": result.server,
        "tool_count": len(result.tools),
        "added": result.added,
        "changed": result.changed,
        "removed": result.removed,
        "unchanged": result.unchanged,
        "quarantined": result.quarantined,
    }


# --- tools -----------------------------------------------------------------------------------------


class ToolOut(Schema):
    name: str = Field(description="The namespaced name clients call: server__tool")
    server: str
    original_name: str
    title: str
    description: str
    server_enabled: bool
    quarantined: bool = Field(description="Its definition is new or changed and not yet approved: not served")
    definition_hash: str
    first_seen_at: datetime
    last_seen_at: datetime

    @staticmethod
    def resolve_name(tool: Tool) -> str:
        return tool.namespaced_name

    @staticmethod
    def resolve_server(tool: Tool) -> str:
        return tool.server.name

    @staticmethod
    def resolve_original_name(tool: Tool) -> str:
        return tool.name

    @staticmethod
    def resolve_server_enabled(tool: Tool) -> bool:
        return tool.server.enabled


class ToolDetailOut(ToolOut):
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any] | None


@router.get("/tools", response=list[ToolOut], tags=["tools"])
@paginate(LimitOffset)
def list_tools(
    request: HttpRequest, server: str | None = None, enabled: bool | None = None, quarantined: bool | None = None
) -> Any:
    """Filters: `server` (a server's name), `enabled` (tools of enabled or of disabled servers),
    `quarantined` (tools waiting for approval of a new or changed definition, or the approved ones)."""
    tools = Tool.objects.select_related("server").order_by("namespaced_name")
    if server is not None:
        tools = tools.filter(server__name=server) if SERVER_NAME_RE.fullmatch(server) else Tool.objects.none()
    if enabled is not None:
        tools = tools.filter(server__enabled=enabled)
    if quarantined is not None:
        held = Tool.objects.quarantined().values("pk")
        tools = tools.filter(pk__in=held) if quarantined else tools.exclude(pk__in=held)
    return tools


@router.get("/tools/{name}", response={200: ToolDetailOut, 404: Error}, tags=["tools"])
def read_tool(request: HttpRequest, name: str) -> Any:
    valid = TOOL_NAME_RE.fullmatch(name)
    tool = Tool.objects.select_related("server").filter(namespaced_name=name).first() if valid else None
    if tool is None:
        raise HttpError(404, f"no tool named '{name}' (names look like server__tool; GET /api/v1/tools lists them)")
    return tool


# --- import and export -----------------------------------------------------------------------------


class ConfigIn(Schema):
    """A server_config.json: the original "servers" list, or the "mcpServers" object of Claude and Cursor."""

    servers: list[Any] | None = None
    mcpServers: dict[str, Any] | None = None


class ImportOut(Schema):
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    removed: list[str]


def _refuse_env_references(entries: list[tuple[str, Any]]) -> None:
    for where, raw in entries:
        if not isinstance(raw, dict):
            continue
        values: list[tuple[str, Any]] = [(k, raw.get(k)) for k in ("url", "command")]
        values += [("args", a) for a in raw.get("args") or [] if isinstance(raw.get("args"), list)]
        for key in ("env", "auth_headers", "headers"):
            if isinstance(raw.get(key), dict):
                values += [(f"{key}.{k}", v) for k, v in raw[key].items()]
        for field_name, value in values:
            if isinstance(value, str) and _ENV_REFERENCE.search(value):
                raise ConfigError(
                    f"{where}: field '{field_name}': ${{VAR}} references are expanded only by "
                    "`manage.py import_servers`; through the API send the value itself"
                )


def _config_entries(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """(where, raw server) pairs, named as config_files names them in its errors."""
    entries: list[tuple[str, Any]] = []
    if isinstance(data.get("servers"), list):
        for i, raw in enumerate(data["servers"]):
            name = raw.get("name") if isinstance(raw, dict) else None
            entries.append((f"server '{name}'" if isinstance(name, str) else f"servers[{i}]", raw))
    if isinstance(data.get("mcpServers"), dict):
        entries += [(f"server '{name}'", raw) for name, raw in data["mcpServers"].items()]
    return [(f"request body: {where}", raw) for where, raw in entries]


def _refuse_stdio_changes(configs: list[ServerConfig]) -> None:
    existing = {s.name: s for s in Server.objects.filter(name__in=[c.name for c in configs])}
    for config in configs:
        if config.transport != Server.Transport.STDIO:
            continue
        server = existing.get(config.name)
        same = (
            server is not None
            and server.transport == Server.Transport.STDIO
            and all(getattr(server, k) == getattr(config, k) for k in LAUNCH_FIELDS)
        )
        if not same:
            raise HttpError(403, f"server '{config.name}': {STDIO_REFUSED}; nothing was imported")


@router.post(
    "/import",
    response={200: ImportOut, 400: Error, 403: Error},
    tags=["config"],
    summary="Register the servers of a config file, all or nothing",
)
def import_config(request: HttpRequest, payload: ConfigIn, prune: bool = False) -> Any:
    data = payload.model_dump(exclude_unset=True)
    try:
        _refuse_env_references(_config_entries(data))
        configs = parse_config(json.dumps(data), source="request body")
        _refuse_stdio_changes(configs)
        report = import_servers(configs, prune=prune)
    except ConfigError as exc:
        raise HttpError(400, f"{exc}; nothing was imported") from None
    return {
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
    }


@router.get("/export", response=dict[str, Any], tags=["config"], summary="The registry as a config file")
def export_config(request: HttpRequest, format: Literal["servers", "mcpServers"] = "servers") -> Any:
    """Secret values are never exported: env values and auth headers come back as ${VAR} placeholders."""
    return export_servers(list(Server.objects.order_by("name")), include_secrets=False, fmt=format)
