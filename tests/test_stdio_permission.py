"""Who may register a command: stdio servers' command, args and env are for superusers (and import_servers);
the admin shows the exact command before saving it; the command runs without a shell."""

from __future__ import annotations

import html
import json
import re
import shlex

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from registry.discovery import discover_server_tools
from registry.models import Server
from registry.stdio_commands import REFUSAL
from tests.conftest import PROBE, PYTHON

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "env-secret-5d1c"


@pytest.fixture
def staff(client, django_user_model):
    """A staff user with every ordinary permission on servers, but not a superuser."""
    user = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    codenames = ["add_server", "change_server", "delete_server", "view_server", "view_tool"]
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="registry", codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def superuser(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw"))
    return client


def form(**fields: str) -> dict[str, str]:
    data = {
        "name": "local", "description": "", "enabled": "on", "transport": "stdio", "url": "",
        "command": PYTHON, "args": json.dumps([str(PROBE), "stdio"]), "env": json.dumps({"PROBE_SECRET": SECRET}),
        "auth_type": "none", "auth_headers": "", "timeout": "", "connection_mode": "",
        "tools-TOTAL_FORMS": "0", "tools-INITIAL_FORMS": "0",
    }  # fmt: skip
    return {**data, **fields}


def page(response) -> str:
    return html.unescape(response.content.decode())


def test_staff_without_superuser_cannot_add_a_stdio_server(staff):
    add = reverse("admin:registry_server_add")
    shown = page(staff.get(add))
    assert 'name="url"' in shown and 'name="command"' not in shown and 'name="env"' not in shown
    response = staff.post(add, form())
    assert response.status_code == 200
    assert REFUSAL in page(response)
    assert not Server.objects.exists()


def test_staff_can_still_manage_http_servers(staff):
    response = staff.post(reverse("admin:registry_server_add"), form(transport="http", url="http://127.0.0.1:9/mcp"))
    assert response.status_code == 302
    assert Server.objects.get(name="local").transport == "http"


def test_staff_cannot_turn_an_http_server_into_a_stdio_server(staff):
    server = Server.objects.create(name="local", transport="http", url="http://127.0.0.1:9/mcp")
    response = staff.post(reverse("admin:registry_server_change", args=[server.pk]), form())
    assert REFUSAL in page(response)
    server.refresh_from_db()
    assert (server.transport, server.command) == ("http", "")


def test_staff_sees_a_stdio_servers_command_read_only_and_cannot_change_it(staff):
    server = Server.objects.create(
        name="local", command=PYTHON, args=[str(PROBE), "stdio"], env={"PROBE_SECRET": SECRET}
    )
    change = reverse("admin:registry_server_change", args=[server.pk])
    shown = page(staff.get(change))
    assert shlex.join([PYTHON, str(PROBE), "stdio"]) in shown  # the exact command, read-only
    assert 'name="command"' not in shown and 'name="args"' not in shown and 'name="env"' not in shown
    assert SECRET not in shown and "PROBE_SECRET" in shown
    # A crafted POST carrying the fields anyway changes the rest, never what runs.
    evil = form(description="renamed", command="/bin/sh", args='["-c", "id"]', env='{"LD_PRELOAD": "/tmp/x.so"}')
    assert staff.post(change, evil).status_code == 302
    server.refresh_from_db()
    assert server.description == "renamed"
    assert (server.command, server.args, server.env) == (PYTHON, [str(PROBE), "stdio"], {"PROBE_SECRET": SECRET})


def test_staff_cannot_copy_a_stdio_server_with_save_as_new(staff):
    server = Server.objects.create(name="local", command=PYTHON, args=[str(PROBE), "stdio"])
    data = form(name="copy", _saveasnew="Save as new")
    response = staff.post(reverse("admin:registry_server_change", args=[server.pk]), data)
    assert REFUSAL in page(response)
    assert list(Server.objects.values_list("name", flat=True)) == ["local"]


def test_staff_actions_on_a_stdio_server_never_change_what_it_runs(staff):
    server = Server.objects.create(name="local", command=PYTHON, args=[str(PROBE), "stdio"], enabled=False)
    changelist = reverse("admin:registry_server_changelist")
    staff.post(changelist, {"action": "enable", "_selected_action": [server.pk]})
    server.refresh_from_db()
    assert server.enabled and server.command == PYTHON and server.args == [str(PROBE), "stdio"]


def confirmation_code(shown: str) -> str:
    match = re.search(r'name="command_confirmation" value="([0-9a-f]+)"', shown)
    assert match, "the form carries the confirmation of the command it showed"
    return match.group(1)


def test_superuser_sees_the_exact_command_before_it_is_saved(superuser):
    add = reverse("admin:registry_server_add")
    first = page(superuser.post(add, form()))
    assert "Check the command before it is saved. The gateway will run, without a shell:" in first
    assert shlex.join([PYTHON, str(PROBE), "stdio"]) in first
    assert "with the environment variables PROBE_SECRET (values not shown)" in first
    assert SECRET not in first.split('name="env"')[0]  # the preview names the variable, never its value
    assert not Server.objects.exists()

    response = superuser.post(add, form(command_confirmation=confirmation_code(first)))
    assert response.status_code == 302
    server = Server.objects.get(name="local")
    assert (server.command, server.args, server.env) == (PYTHON, [str(PROBE), "stdio"], {"PROBE_SECRET": SECRET})
    assert discover_server_tools(server).ok


def test_a_confirmation_covers_only_the_command_that_was_shown(superuser):
    add = reverse("admin:registry_server_add")
    code = confirmation_code(page(superuser.post(add, form())))
    changed = page(superuser.post(add, form(args='["-c", "print(1)"]', command_confirmation=code)))
    assert shlex.join([PYTHON, "-c", "print(1)"]) in changed  # shown again, for the new command
    assert not Server.objects.exists()


def test_changing_a_saved_command_needs_a_new_confirmation(superuser):
    server = Server.objects.create(name="local", command=PYTHON, args=[str(PROBE), "stdio"])
    change = reverse("admin:registry_server_change", args=[server.pk])
    # Unchanged command: saved at once (env left blank keeps the saved one).
    assert superuser.post(change, form(description="notes", env="")).status_code == 302
    shown = page(superuser.post(change, form(args=json.dumps([str(PROBE), "stdio", "--verbose"]), env="")))
    assert shlex.join([PYTHON, str(PROBE), "stdio", "--verbose"]) in shown
    server.refresh_from_db()
    assert server.args == [str(PROBE), "stdio"]


def test_import_servers_may_register_commands(tmp_path):
    path = tmp_path / "servers.json"
    path.write_text(json.dumps({"mcpServers": {"local": {"command": PYTHON, "args": [str(PROBE), "stdio"]}}}))
    call_command("import_servers", str(path))
    assert Server.objects.get(name="local").command == PYTHON


def test_the_command_runs_without_a_shell(tmp_path):
    """Shell syntax in arguments reaches the program as literal text; nothing else runs."""
    out = tmp_path / "argv.json"
    marker = tmp_path / "pwned"
    hostile = [f"$(touch {marker})", f"; touch {marker}", f"`touch {marker}`", f"| touch {marker}"]
    script = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"
    server = Server.objects.create(name="argv", command=PYTHON, args=["-c", script, str(out), *hostile])
    discover_server_tools(server)  # not an MCP server: discovery fails, after the program ran once
    assert json.loads(out.read_text()) == hostile
    assert not marker.exists()
