"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright): it shows the servers."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import anyio
import pytest
from mcp import Client

from monitoring.models import CallRecord, ServerHealth
from registry.discovery import discover_server_tools
from registry.models import Server

from .conftest import free_port
from .test_monitoring import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def png_facts(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the image data): a blank page has very few."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.fixture(autouse=True)
def loopback_servers_allowed(settings, monkeypatch):
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = True
    monkeypatch.setenv("MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS", "true")


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is not installed: run scripts/test.sh (it installs Debian's chromium package)")
    return CHROMIUM


def test_the_dashboard_renders_the_servers_in_a_real_browser(
    chromium, start_gateway, probe_http_url, django_user_model, tmp_path
):
    from playwright.sync_api import sync_playwright

    probe = Server.objects.create(name="probe", transport="http", url=probe_http_url)
    assert discover_server_tools(probe).ok
    Server.objects.create(name="offline-crm", transport="http", url=f"http://127.0.0.1:{free_port()}/mcp")
    django_user_model.objects.create_user("operator", password="dashboard-pw-1", is_staff=True)
    gateway = start_gateway(MCP_GATEWAY_HEALTH_INTERVAL="0.3", MCP_GATEWAY_MAX_RETRIES="0")

    async def calls() -> None:
        async with Client(gateway.mcp_url) as client:
            await client.call_tool("probe__echo", {"text": "hi"})
            await client.call_tool("probe__sleep", {"seconds": 0.2})
            await client.call_tool("probe__fail", {})

    anyio.run(calls)
    wait_until(lambda: ServerHealth.objects.filter(status__in=["healthy", "unhealthy"]).count() == 2, "both probed")
    wait_until(lambda: CallRecord.objects.count() == 3, "the three call records")

    shot = tmp_path / "dashboard.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{gateway.url}/admin/dashboard/")
            assert "/admin/login/" in page.url  # staff only
            page.fill("#id_username", "operator")
            page.fill("#id_password", "dashboard-pw-1")
            page.click("input[type=submit]")
            page.wait_for_url("**/admin/dashboard/")
            servers = page.inner_text("#servers")
            slowest = page.inner_text("#slowest")
            errors = page.inner_text("#errors")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert "probe" in servers and "offline-crm" in servers
    assert "● healthy" in servers and "● unhealthy" in servers
    assert "probe__sleep" in slowest.splitlines()[1]  # the slowest tool first
    assert "probe__fail" in errors and "this tool always fails" in errors
    width, height, distinct = png_facts(shot.read_bytes())
    assert width == 1280 and height >= 600
    assert distinct > 100, "the screenshot looks blank"
