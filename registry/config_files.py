"""Reading and writing server_config.json: the original design's format and the mcpServers format
of Claude Desktop, Claude Code and Cursor.

A file is validated whole before anything is written; errors name the file, the server and the
field. `${VAR}` and `${VAR:-default}` in url, command, args, env and headers are expanded from
the environment, so secrets can stay out of the file.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from .models import SERVER_NAME_MAX, SERVER_NAME_RE, Server
from .url_guard import BlockedAddress, check_server_url

TRANSPORT_ALIASES = {"stdio": "stdio", "http": "http", "streamable-http": "http", "streamable_http": "http"}
AUTH_TYPES = {"none", "static", "forward"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The file cannot be imported; the message says where and what to fix."""


@dataclass
class ServerConfig:
    name: str
    transport: str
    url: str = ""
    command: str = ""
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    auth_type: str = "none"
    auth_headers: dict[str, str] = field(default_factory=dict)
    enabled: bool = True
    timeout: float | None = None
    connection_mode: str = ""
    description: str = ""

    def model_fields(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("name")
        return data


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed_anything(self) -> bool:
        return bool(self.created or self.updated or self.removed)


def _expand(value: str, where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set (set it, or write ${{{name}:-default}})")

    return _VAR.sub(substitute, value)


def _string_map(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ConfigError(f"{where}: must be an object of strings")
    return {k: _expand(v, f"{where}.{k}") for k, v in raw.items()}


def _parse_server(name: Any, raw: Any, where: str) -> ServerConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: field 'name' is required")
    where = f"{where.rsplit(':', 1)[0]}: server '{name}'"
    if len(name) > SERVER_NAME_MAX or not SERVER_NAME_RE.match(name):
        suggestion = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:SERVER_NAME_MAX] or "my-server"
        raise ConfigError(
            f"{where}: field 'name' is invalid: use lowercase letters, digits and single hyphens, "
            f"at most {SERVER_NAME_MAX} characters (e.g. '{suggestion}')"
        )
    declared = raw.get("transport", raw.get("type"))
    if declared is None:
        declared = "http" if raw.get("url") and not raw.get("command") else "stdio"
    transport = TRANSPORT_ALIASES.get(str(declared).lower()) if isinstance(declared, str) else None
    if transport is None:
        raise ConfigError(f"{where}: field 'transport' is unknown: {declared!r} (use 'stdio' or 'http')")
    config = ServerConfig(name=name, transport=transport)
    for key in ("url", "command", "description", "connection_mode"):
        value = raw.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ConfigError(f"{where}: field '{key}' must be a string")
        setattr(config, key, _expand(value, f"{where}: field '{key}'") if key in ("url", "command") else value)
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}: field 'args' must be a list of strings")
    config.args = [_expand(a, f"{where}: field 'args'") for a in args]
    config.env = _string_map(raw.get("env"), f"{where}: field 'env'")
    headers = raw.get("auth_headers", raw.get("headers"))
    config.auth_headers = _string_map(headers, f"{where}: field 'auth_headers'")
    auth_type = raw.get("auth_type", "static" if config.auth_headers else "none")
    if auth_type not in AUTH_TYPES:
        raise ConfigError(f"{where}: field 'auth_type' is unknown: {auth_type!r} (use none, static or forward)")
    config.auth_type = auth_type
    enabled = raw.get("enabled", not raw.get("disabled", False))
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: field 'enabled' must be true or false")
    config.enabled = enabled
    timeout = raw.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf  # not NaN
    ):
        raise ConfigError(f"{where}: field 'timeout' must be a positive number of seconds")
    config.timeout = float(timeout) if timeout is not None else None
    if config.connection_mode not in ("", "persistent", "stateless"):
        raise ConfigError(f"{where}: field 'connection_mode' must be 'persistent' or 'stateless'")
    if transport == "http":
        if not config.url:
            raise ConfigError(f"{where}: field 'url' is required for an HTTP server")
        if not re.match(r"^https?://", config.url):
            raise ConfigError(f"{where}: field 'url' must start with http:// or https://")
    elif not config.command:
        raise ConfigError(f"{where}: field 'command' is required for a stdio server")
    else:
        config.url = ""  # the original design put a label such as "server.py" here; stdio has no URL
    # The model's own checks too, so the file and the admin agree on what is valid.
    try:
        Server(name=name, **config.model_fields()).clean()
    except ValidationError as exc:
        field_name, messages = next(iter(exc.message_dict.items()))
        raise ConfigError(f"{where}: field '{field_name}': {' '.join(messages)}") from None
    return config


def parse_config(text: str, source: str = "config") -> list[ServerConfig]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, dict) or ("servers" not in data and "mcpServers" not in data):
        raise ConfigError(f'{source}: expected an object with "servers" (a list) or "mcpServers" (an object)')
    entries: list[tuple[Any, Any, str]] = []
    if "servers" in data:
        if not isinstance(data["servers"], list):
            raise ConfigError(f'{source}: "servers" must be a list')
        for i, raw in enumerate(data["servers"]):
            name = raw.get("name") if isinstance(raw, dict) else None
            entries.append((name, raw, f"{source}: servers[{i}]"))
    if "mcpServers" in data:
        if not isinstance(data["mcpServers"], dict):
            raise ConfigError(f'{source}: "mcpServers" must be an object of name to server')
        for name, raw in data["mcpServers"].items():
            entries.append((name, raw, f"{source}: mcpServers.{name}"))
    configs: list[ServerConfig] = []
    seen: set[str] = set()
    for name, raw, where in entries:
        config = _parse_server(name, raw, where)
        if config.name in seen:
            raise ConfigError(f"{source}: server '{config.name}': field 'name' is a duplicate")
        seen.add(config.name)
        configs.append(config)
    return configs


def read_config_file(path: str | Path) -> list[ServerConfig]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (pass a path, or set SERVER_CONFIG_PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    return parse_config(text, str(path))


@transaction.atomic
def import_servers(configs: list[ServerConfig], *, prune: bool = False) -> ImportReport:
    report = ImportReport()
    for config in configs:
        # Configs built without parse_config (import_servers --url) meet the SSRF guard here.
        if config.transport == "http":
            try:
                check_server_url(config.url)
            except BlockedAddress as exc:
                raise ConfigError(f"server '{config.name}': field 'url': {exc}") from None
    existing = {s.name: s for s in Server.objects.select_for_update()}
    for config in configs:
        fields = config.model_fields()
        server = existing.get(config.name)
        if server is None:
            Server.objects.create(name=config.name, **fields)
            report.created.append(config.name)
            continue
        if all(getattr(server, k) == v for k, v in fields.items()):
            report.unchanged.append(config.name)
            continue
        for key, value in fields.items():
            setattr(server, key, value)
        server.save()
        report.updated.append(config.name)
    if prune:
        wanted = {c.name for c in configs}
        gone = [name for name in existing if name not in wanted]
        Server.objects.filter(name__in=gone).delete()
        report.removed = sorted(gone)
    return report


def export_servers(servers: list[Server], *, include_secrets: bool = False, fmt: str = "servers") -> dict[str, Any]:
    """The registry as a config file. Header values and env values are secrets: left out unless asked."""
    out: list[tuple[str, dict[str, Any]]] = []
    for s in servers:
        entry: dict[str, Any] = {"transport": s.transport}
        if s.transport == "http":
            entry["url"] = s.url
        else:
            entry["command"] = s.command
            entry["args"] = list(s.args)
            if s.env:
                entry["env"] = dict(s.env) if include_secrets else {k: "${" + k + "}" for k in s.env}
        if s.auth_type != "none":
            entry["auth_type"] = s.auth_type
        if s.auth_headers:
            entry["auth_headers"] = (
                dict(s.auth_headers)
                if include_secrets
                else {k: "${" + _env_name(s.name, k) + "}" for k in s.auth_headers}
            )
        if not s.enabled:
            entry["enabled"] = False
        if s.timeout:
            entry["timeout"] = s.timeout
        if s.connection_mode:
            entry["connection_mode"] = s.connection_mode
        if s.description:
            entry["description"] = s.description
        out.append((s.name, entry))
    if fmt == "mcpServers":
        servers_obj = {}
        for name, entry in out:
            entry["type"] = entry.pop("transport")
            if "auth_headers" in entry:
                entry["headers"] = entry.pop("auth_headers")
            servers_obj[name] = entry
        return {"mcpServers": servers_obj}
    return {"servers": [{"name": name, **entry} for name, entry in out]}


def _env_name(server: str, header: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{server}_{header}".upper()).strip("_")
