"""The admin through the test client: lists show state, actions work, secrets never reach the HTML."""

from __future__ import annotations

import pytest
from django.urls import reverse

from registry.discovery import discover_server_tools
from registry.models import Server, Tool

pytestmark = pytest.mark.django_db(transaction=True)

CANARY = "canary-secret-7f3a9b"


@pytest.fixture
def admin(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def probe(probe_http_url):
    server = Server.objects.create(
        name="probe",
        transport="http",
        url=probe_http_url,
        auth_type="static",
        auth_headers={"Authorization": f"Bearer {CANARY}"},
    )
    assert discover_server_tools(server).ok
    return server


def form(**fields: str) -> dict[str, str]:
    """What the server change form posts, with the given fields changed."""
    data = {
        "name": "probe", "description": "", "enabled": "on", "transport": "http", "url": "", "command": "",
        "args": "[]", "env": "", "auth_type": "static", "auth_headers": "", "timeout": "", "connection_mode": "",
        "tools-TOTAL_FORMS": "0", "tools-INITIAL_FORMS": "0",
    }  # fmt: skip
    return {**data, **fields}


def test_server_list_shows_state_at_a_glance(admin, probe):
    Server.objects.create(
        name="broken", transport="http", url="http://127.0.0.1:9/mcp", last_error="connection refused"
    )
    html = admin.get(reverse("admin:registry_server_changelist")).content.decode()
    assert "probe" in html and "broken" in html
    assert "connection refused" in html
    assert ">8</a>" in html  # the probe's tool count links to its tools
    assert "● ok" in html and "● error" in html
    assert CANARY not in html


def test_change_form_masks_auth_headers_and_blank_keeps_them(admin, probe):
    url = reverse("admin:registry_server_change", args=[probe.pk])
    html = admin.get(url).content.decode()
    assert CANARY not in html
    assert "Authorization: ••••••••" in html
    assert "probe__echo" not in html or "echo" in html  # tools listed inline
    response = admin.post(url, form(url=probe.url))
    assert response.status_code == 302, response.content.decode()[:2000]
    probe.refresh_from_db()
    assert probe.auth_headers == {"Authorization": f"Bearer {CANARY}"}


def test_new_auth_headers_replace_the_saved_ones(admin, probe):
    url = reverse("admin:registry_server_change", args=[probe.pk])
    data = form(url=probe.url, auth_headers='{"X-Api-Key": "new"}')
    assert admin.post(url, data).status_code == 302
    probe.refresh_from_db()
    assert probe.auth_headers == {"X-Api-Key": "new"}


def test_invalid_json_headers_get_a_clear_form_error(admin, probe):
    url = reverse("admin:registry_server_change", args=[probe.pk])
    data = form(url=probe.url, auth_headers="{oops")
    html = admin.post(url, data).content.decode()
    assert "Not valid JSON" in html


def test_adding_a_stdio_server_without_command_names_the_field(admin):
    data = form(name="s", transport="stdio", auth_type="none")
    html = admin.post(reverse("admin:registry_server_add"), data).content.decode()
    assert "A stdio server needs the command that starts it." in html
    assert not Server.objects.exists()


def test_discover_action_refreshes_tools_and_reports_each_server(admin, probe):
    Tool.objects.filter(server=probe, name="add").delete()
    response = admin.post(
        reverse("admin:registry_server_changelist"),
        {"action": "discover_now", "_selected_action": [probe.pk]},
        follow=True,
    )
    assert "Discovered probe: 8 tools (1 new" in response.content.decode()
    assert Tool.objects.filter(server=probe, name="add").exists()


def test_discover_button_on_the_change_page_works(admin, probe):
    response = admin.post(reverse("admin:registry_server_discover", args=[probe.pk]), follow=True)
    assert "Discovered probe: 8 tools" in response.content.decode()


def test_enable_and_disable_actions(admin, probe):
    changelist = reverse("admin:registry_server_changelist")
    admin.post(changelist, {"action": "disable", "_selected_action": [probe.pk]})
    probe.refresh_from_db()
    assert probe.enabled is False
    admin.post(changelist, {"action": "enable", "_selected_action": [probe.pk]})
    probe.refresh_from_db()
    assert probe.enabled is True


def test_tools_are_read_only_searchable_and_show_their_schema(admin, probe):
    html = admin.get(reverse("admin:registry_tool_changelist") + "?q=integers").content.decode()
    assert "probe__add" in html and "probe__echo" not in html
    tool = Tool.objects.get(namespaced_name="probe__add")
    detail = admin.get(reverse("admin:registry_tool_change", args=[tool.pk])).content.decode()
    assert "&quot;required&quot;: [" in detail  # pretty-printed JSON schema
    assert reverse("admin:registry_server_change", args=[probe.pk]) in detail
    assert admin.get(reverse("admin:registry_tool_add")).status_code == 403


def test_stdio_change_page_shows_the_exact_command_and_hides_env_values(admin, probe_stdio_config):
    server = Server.objects.create(name="local", env={"API_KEY": CANARY}, **probe_stdio_config)
    html = admin.get(reverse("admin:registry_server_change", args=[server.pk])).content.decode()
    assert "probe_server.py" in html and "without a shell" in html
    assert "API_KEY: ••••••••" in html
    assert CANARY not in html


def test_disabling_in_the_admin_takes_the_servers_tools_out_of_the_catalog_at_once(admin, probe):
    from registry.catalog import catalog

    assert "probe__echo" in catalog.current().tools
    admin.post(reverse("admin:registry_server_changelist"), {"action": "disable", "_selected_action": [probe.pk]})
    assert "probe__echo" not in catalog.current().tools
    assert "probe" in catalog.current().disabled


def test_the_running_gateway_serves_the_admin_styles(start_gateway):
    import httpx

    gateway = start_gateway()
    response = httpx.get(f"{gateway.url}/static/admin/css/base.css", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "body" in response.text
