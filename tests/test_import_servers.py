"""manage.py import_servers / export_servers: all or nothing, idempotent, both file formats."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from registry.models import Server

pytestmark = pytest.mark.django_db

ORIGINAL = {
    "servers": [
        {
            "name": "my-server",
            "url": "http://localhost:8080/mcp",
            "transport": "http",
            "auth_type": "static",
            "auth_headers": {"Authorization": "Bearer my-token"},
        },
        {
            "name": "my-stdio-server",
            "url": "server.py",
            "transport": "stdio",
            "command": "uv",
            "args": ["run", "server.py"],
        },
    ]
}
MCP_SERVERS = {
    "mcpServers": {
        "github": {"type": "http", "url": "https://api.example.com/mcp", "headers": {"X-Api-Key": "k"}},
        "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
        "cursor-style": {"url": "https://cursor.example.com/mcp"},
        "off": {"command": "node", "args": ["x.js"], "env": {"TOKEN": "t"}, "disabled": True},
    }
}


def write(tmp_path: Path, data, name="server_config.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def run(*args) -> str:
    out = StringIO()
    call_command("import_servers", *args, stdout=out)
    return out.getvalue()


def snapshot() -> list[tuple]:
    return list(Server.objects.order_by("name").values_list("name", "transport", "url", "command", "auth_headers"))


def test_original_format_is_imported_with_its_auth_headers(tmp_path):
    out = run(str(write(tmp_path, ORIGINAL)))
    assert "2 created" in out
    server = Server.objects.get(name="my-server")
    assert (server.transport, server.url, server.auth_type) == ("http", "http://localhost:8080/mcp", "static")
    assert server.auth_headers == {"Authorization": "Bearer my-token"}
    stdio = Server.objects.get(name="my-stdio-server")
    assert (stdio.command, stdio.args) == ("uv", ["run", "server.py"])


def test_mcp_servers_format_of_claude_and_cursor_is_imported(tmp_path):
    run(str(write(tmp_path, MCP_SERVERS)))
    github = Server.objects.get(name="github")
    assert (github.transport, github.auth_type, github.auth_headers) == ("http", "static", {"X-Api-Key": "k"})
    assert Server.objects.get(name="files").transport == "stdio"
    assert Server.objects.get(name="cursor-style").transport == "http"
    off = Server.objects.get(name="off")
    assert off.enabled is False and off.env == {"TOKEN": "t"}


def test_reimport_of_same_file_changes_nothing_and_says_so(tmp_path):
    path = str(write(tmp_path, ORIGINAL))
    run(path)
    before = list(Server.objects.values_list("name", "updated_at"))
    out = run(path)
    assert "nothing to change" in out
    assert "unchanged: my-server, my-stdio-server" in out
    assert list(Server.objects.values_list("name", "updated_at")) == before


def test_changed_file_reports_updates_and_prune_removes_the_rest(tmp_path):
    run(str(write(tmp_path, ORIGINAL)))
    changed = {"servers": [{**ORIGINAL["servers"][0], "url": "http://localhost:9090/mcp"}]}
    out = run(str(write(tmp_path, changed, "v2.json")), "--prune")
    assert "updated: my-server" in out and "removed: my-stdio-server" in out
    assert list(Server.objects.values_list("name", "url")) == [("my-server", "http://localhost:9090/mcp")]


BAD_FILES = [
    ("{not json", "not valid JSON"),
    ({"tools": []}, 'expected an object with "servers"'),
    (
        {
            "servers": [
                {"name": "ok", "transport": "stdio", "command": "x"},
                {"name": "ok", "transport": "stdio", "command": "y"},
            ]
        },
        "server 'ok': field 'name' is a duplicate",
    ),
    (
        {"servers": [{"name": "Bad_Name", "transport": "stdio", "command": "x"}]},
        "server 'Bad_Name': field 'name' is invalid",
    ),
    ({"servers": [{"name": "a__b", "transport": "stdio", "command": "x"}]}, "server 'a__b': field 'name' is invalid"),
    (
        {"servers": [{"name": "s", "transport": "sse", "url": "http://x/sse"}]},
        "server 's': field 'transport' is unknown: 'sse'",
    ),
    ({"servers": [{"name": "s", "transport": "http"}]}, "server 's': field 'url' is required"),
    ({"servers": [{"name": "s", "transport": "stdio"}]}, "server 's': field 'command' is required"),
    (
        {"servers": [{"name": "s", "transport": "stdio", "command": "x", "args": "--flag"}]},
        "server 's': field 'args' must be a list",
    ),
    (
        {"servers": [{"name": "s", "transport": "http", "url": "ftp://x"}]},
        "server 's': field 'url' must start with http",
    ),
    (
        {"servers": [{"name": "s", "transport": "http", "url": "http://x", "auth_type": "oauth"}]},
        "field 'auth_type' is unknown",
    ),
    ({"mcpServers": {"s": {"command": "x", "env": {"A": 1}}}}, "server 's': field 'env': must be an object of strings"),
    ({"mcpServers": {"s": {"url": "http://x/${NO_SUCH_VARIABLE_HERE}"}}}, "NO_SUCH_VARIABLE_HERE is not set"),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_a_bad_file_exits_non_zero_naming_the_problem_and_changes_nothing(tmp_path, content, message):
    run(str(write(tmp_path, ORIGINAL, "good.json")))
    before = snapshot()
    path = write(tmp_path, content)
    with pytest.raises(CommandError) as excinfo:
        run(str(path))
    assert message in str(excinfo.value)
    assert str(path) in str(excinfo.value)
    assert "Nothing was imported" in str(excinfo.value)
    assert snapshot() == before


def test_a_later_bad_entry_keeps_earlier_good_entries_out_too(tmp_path):
    content = {"servers": [{"name": "good", "transport": "stdio", "command": "x"}, {"name": "bad", "transport": "tcp"}]}
    with pytest.raises(CommandError):
        run(str(write(tmp_path, content)))
    assert Server.objects.count() == 0


def test_missing_file_names_the_setting(tmp_path, settings):
    settings.SERVER_CONFIG_PATH = str(tmp_path / "absent.json")
    with pytest.raises(CommandError, match=r"no such file.*SERVER_CONFIG_PATH"):
        run()


def test_server_config_path_setting_is_the_default_file(tmp_path, settings):
    settings.SERVER_CONFIG_PATH = str(write(tmp_path, MCP_SERVERS, "elsewhere.json"))
    run()
    assert Server.objects.filter(name="github").exists()


def test_environment_variables_are_expanded_so_secrets_stay_out_of_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "s3cret")
    run(
        str(
            write(
                tmp_path,
                {
                    "mcpServers": {
                        "gh": {"url": "https://x/mcp", "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"}}
                    }
                },
            )
        )
    )
    assert Server.objects.get(name="gh").auth_headers == {"Authorization": "Bearer s3cret"}


def test_export_leaves_secrets_out_unless_asked_and_round_trips(tmp_path, monkeypatch):
    run(str(write(tmp_path, ORIGINAL)))
    out = StringIO()
    call_command("export_servers", stdout=out)
    assert "my-token" not in out.getvalue()
    exported = json.loads(out.getvalue())
    assert exported["servers"][0]["auth_headers"] == {"Authorization": "${MY_SERVER_AUTHORIZATION}"}
    full = StringIO()
    call_command("export_servers", "--include-secrets", "--format", "mcpServers", stdout=full)
    data = json.loads(full.getvalue())
    assert data["mcpServers"]["my-server"]["headers"] == {"Authorization": "Bearer my-token"}
    # The exported file imports back to the same registry.
    assert "nothing to change" in run(str(write(tmp_path, full.getvalue(), "export.json")))
