"""SSRF guard: server URLs are refused when saved (admin), imported and connected, in every form a resolver
reads, and the gateway never follows a redirect. Listening sockets count connections to prove none was made."""

from __future__ import annotations

import html
import itertools
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from mcp import Client

from registry.config_files import ConfigError, parse_config
from registry.discovery import discover_server_tools
from registry.models import Server
from tests.conftest import PYTHON, ROOT

pytestmark = pytest.mark.django_db(transaction=True)

NEVER = "; the gateway never connects there."
PRIVATE_ADVICE = "; set MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS=true to allow loopback and private networks."


class CountingListener:
    """A TCP port on 127.0.0.1 that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[CountingListener]:
    counting = CountingListener()
    yield counting
    counting.close()


@pytest.fixture
def private_networks_refused(settings) -> None:
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = False


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw"))
    return client


def add_http_server(admin, url: str) -> str:
    data = {
        "name": "target", "description": "", "enabled": "on", "transport": "http", "url": url, "command": "",
        "args": "[]", "env": "", "auth_type": "none", "auth_headers": "", "timeout": "", "connection_mode": "",
        "tools-TOTAL_FORMS": "0", "tools-INITIAL_FORMS": "0",
    }  # fmt: skip
    response = admin.post(reverse("admin:registry_server_add"), data)
    return html.unescape(response.content.decode()) if response.status_code == 200 else ""


# Always refused, whatever MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS says: (URL, the precise reason).
ALWAYS_REFUSED = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a cloud metadata address" + NEVER),
    ("http://2852039166/", "2852039166 (which is 169.254.169.254), a cloud metadata address" + NEVER),
    ("http://0251.0376.0251.0376/", "0251.0376.0251.0376 (which is 169.254.169.254), a cloud metadata address" + NEVER),
    ("http://0xa9fea9fe/", "0xa9fea9fe (which is 169.254.169.254), a cloud metadata address" + NEVER),
    ("http://0xa9.0xfe.0xa9.0xfe/", "0xa9.0xfe.0xa9.0xfe (which is 169.254.169.254), a cloud metadata address" + NEVER),
    ("http://169.254.43518/", "169.254.43518 (which is 169.254.169.254), a cloud metadata address" + NEVER),
    ("http://169.254.169.254./", "169.254.169.254. (which is 169.254.169.254), a cloud metadata address" + NEVER),
    (
        "http://[::ffff:169.254.169.254]/",
        "::ffff:169.254.169.254, an IPv6 form of 169.254.169.254, a cloud metadata address" + NEVER,
    ),
    (
        "http://[::ffff:a9fe:a9fe]/",
        "::ffff:a9fe:a9fe, an IPv6 form of 169.254.169.254, a cloud metadata address" + NEVER,
    ),
    ("http://[fd00:ec2::254]/", "fd00:ec2::254, a cloud metadata address" + NEVER),
    (
        "http://metadata.google.internal/computeMetadata/v1/",
        "metadata.google.internal, a cloud metadata service" + NEVER,
    ),
    ("http://METADATA.google.internal./", "metadata.google.internal., a cloud metadata service" + NEVER),
    ("http://169.254.10.1/", "169.254.10.1, a link-local address" + NEVER),
    ("http://[fe80::1]/", "fe80::1, a link-local address" + NEVER),
    ("http://0.0.0.0:8080/mcp", "0.0.0.0, the unspecified address (it reaches this host)" + NEVER),
    ("http://0/", "0 (which is 0.0.0.0), the unspecified address (it reaches this host)" + NEVER),
    ("http://[::]/", "::, the unspecified address (it reaches this host)" + NEVER),
    ("http://224.0.0.1/", "224.0.0.1, a multicast address" + NEVER),
]

# Refused unless MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS=true.
PRIVATE = [
    ("http://10.0.0.5:8080/mcp", "10.0.0.5, a private network address" + PRIVATE_ADVICE),
    ("http://172.16.3.4/mcp", "172.16.3.4, a private network address" + PRIVATE_ADVICE),
    ("http://192.168.1.10/mcp", "192.168.1.10, a private network address" + PRIVATE_ADVICE),
    ("http://100.64.0.1/mcp", "100.64.0.1, a private network address" + PRIVATE_ADVICE),
    ("http://[fc00::1]/mcp", "fc00::1, a private network address" + PRIVATE_ADVICE),
    ("http://127.0.0.1:3001/mcp", "127.0.0.1, a loopback address" + PRIVATE_ADVICE),
    ("http://127.1:3001/mcp", "127.1 (which is 127.0.0.1), a loopback address" + PRIVATE_ADVICE),
    ("http://2130706433/mcp", "2130706433 (which is 127.0.0.1), a loopback address" + PRIVATE_ADVICE),
    ("http://[::1]:3001/mcp", "::1, a loopback address" + PRIVATE_ADVICE),
    (
        "http://[::ffff:127.0.0.1]/mcp",
        "::ffff:127.0.0.1, an IPv6 form of 127.0.0.1, a loopback address" + PRIVATE_ADVICE,
    ),
    ("http://localhost:3001/mcp", "localhost, a loopback name" + PRIVATE_ADVICE),
    ("http://mcp.localhost/mcp", "mcp.localhost, a loopback name" + PRIVATE_ADVICE),
]

MALFORMED = [
    (
        "http://admin:hunter2@mcp.example.com/mcp",
        "The URL contains a user name or password (user:…@host); the gateway refuses credentials in URLs: "
        "put them in the server's auth headers instead.",
    ),
    ("http://mcp.example.com\\@169.254.169.254/", "The URL contains spaces, control characters or a backslash"),
    ("http://%31%36%39.254.169.254/", "The URL's host is percent-encoded; write the host plainly"),
    ("file:///etc/passwd", "The URL must start with http:// or https://."),
    ("gopher://mcp.example.com/", "The URL must start with http:// or https://."),
]


@pytest.mark.parametrize(("url", "reason"), ALWAYS_REFUSED)
def test_metadata_link_local_and_unspecified_addresses_are_refused_in_every_form_even_when_private_is_allowed(
    admin, settings, url, reason
):
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = True
    page = add_http_server(admin, url)
    assert f"The URL points at {reason}" in page
    assert not Server.objects.exists()


@pytest.mark.parametrize(("url", "reason"), PRIVATE)
def test_private_and_loopback_addresses_need_the_setting(admin, settings, url, reason):
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = False
    assert f"The URL points at {reason}" in add_http_server(admin, url)
    assert not Server.objects.exists()

    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = True
    assert add_http_server(admin, url) == ""  # saved: the admin redirected
    assert Server.objects.get(name="target").url == url


@pytest.mark.parametrize(("url", "message"), MALFORMED)
def test_credentials_in_the_url_and_other_schemes_are_refused(admin, url, message):
    page = add_http_server(admin, url)
    assert message in page
    errors = re.findall(r'<ul class="errorlist[^>]*>(.*?)</ul>', page, re.S)
    assert errors and not any("hunter2" in e for e in errors)  # the form keeps what was typed, errors do not
    assert not Server.objects.exists()


def test_a_public_https_url_is_accepted(admin, private_networks_refused):
    assert add_http_server(admin, "https://mcp.example.com/mcp") == ""
    assert Server.objects.filter(name="target").exists()


@pytest.mark.parametrize(("url", "reason"), [ALWAYS_REFUSED[1], ALWAYS_REFUSED[2], ALWAYS_REFUSED[7], PRIVATE[0]])
def test_import_refuses_the_file_and_names_server_and_field(private_networks_refused, url, reason):
    text = json.dumps({"mcpServers": {"ok": {"url": "https://mcp.example.com/mcp"}, "evil": {"url": url}}})
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "servers.json")
    assert str(exc.value) == f"servers.json: server 'evil': field 'url': The URL points at {reason}"


def test_import_servers_url_option_is_checked_and_nothing_is_imported(private_networks_refused):
    with pytest.raises(CommandError) as exc:
        call_command("import_servers", "--url", "http://0xa9fea9fe/mcp", "--name", "meta")
    assert "server 'meta': field 'url': The URL points at 0xa9fea9fe (which is 169.254.169.254)" in str(exc.value)
    assert not Server.objects.exists()


def test_saving_a_refused_url_never_connects_to_it(admin, private_networks_refused, listener):
    for url in (
        f"http://127.0.0.1:{listener.port}/mcp",
        f"http://2130706433:{listener.port}/mcp",
        f"http://0177.0.0.1:{listener.port}/mcp",
        f"http://0x7f.1:{listener.port}/mcp",
        f"http://[::ffff:127.0.0.1]:{listener.port}/mcp",
        f"http://localhost:{listener.port}/mcp",
    ):
        assert "a loopback" in add_http_server(admin, url), url
    assert not Server.objects.exists()
    assert listener.accepted == 0


def connect_refusal(server: Server) -> str:
    result = discover_server_tools(server)
    assert not result.ok
    return result.error


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]", "localhost"], ids=lambda h: h
)
def test_a_saved_url_that_became_refused_is_refused_at_connect_with_no_connection(
    private_networks_refused, listener, settings, host
):
    settings.MCP_GATEWAY_MAX_RETRIES = 0
    # Saved without validation (before the guard existed, or in SQL): the connect step still refuses.
    server = Server.objects.create(name="old", transport="http", url=f"http://{host}:{listener.port}/mcp")
    error = connect_refusal(server)
    assert "refused to connect:" in error
    assert "a loopback" in error and "MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS=true" in error
    assert listener.accepted == 0


def test_a_name_is_resolved_and_every_address_checked_before_connecting(
    private_networks_refused, listener, settings, monkeypatch
):
    """A name answering with a metadata address beside an allowed one is refused whole (DNS rebinding)."""
    settings.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS = True
    settings.MCP_GATEWAY_MAX_RETRIES = 0
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):  # a local DNS override: no real name resolves this way
        if host in ("rebind.test", b"rebind.test"):
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port)),
            ]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    server = Server.objects.create(name="rebind", transport="http", url=f"http://rebind.test:{listener.port}/mcp")
    server.full_clean()  # a name passes when saved: names are checked when connecting
    error = connect_refusal(server)
    assert (
        "refused to connect: rebind.test resolves to 169.254.169.254, a cloud metadata address; "
        "the gateway never connects there"
    ) in error
    assert listener.accepted == 0


def test_the_gateway_connects_to_the_address_it_checked(listener, settings, monkeypatch):
    """Resolved once per connection, and the socket goes to that checked address, not to a second lookup."""
    settings.MCP_GATEWAY_MAX_RETRIES = 0
    answers = itertools.chain(["127.0.0.1"], itertools.repeat("169.254.169.254"))
    real_getaddrinfo = socket.getaddrinfo

    def resolver(host, port, *args, **kwargs):
        if host in ("flip.test", b"flip.test"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    server = Server.objects.create(name="flip", transport="http", url=f"http://flip.test:{listener.port}/mcp")
    connect_refusal(server)  # the listener closes the connection: no MCP session, but it was reached
    assert listener.accepted == 1  # the first answer, checked, is where the socket went


class Redirecting(BaseHTTPRequestHandler):
    target = ""

    def _redirect(self) -> None:
        self.send_response(307)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_DELETE = _redirect

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("target", ["listener", "metadata"])
def test_a_redirect_from_an_allowed_server_is_never_followed(listener, settings, target):
    settings.MCP_GATEWAY_MAX_RETRIES = 0
    location = f"http://127.0.0.1:{listener.port}/mcp" if target == "listener" else "http://169.254.169.254/latest"
    handler = type("Handler", (Redirecting,), {"target": location})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        server = Server.objects.create(
            name="redirector", transport="http", url=f"http://127.0.0.1:{httpd.server_address[1]}/mcp"
        )
        error = connect_refusal(server)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert f"Redirect to {location} not followed" in error
    assert listener.accepted == 0


def test_the_gateway_refuses_at_connect_when_the_setting_is_off(start_gateway, probe_http_url):
    """MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS read by a real gateway: a loopback server saved earlier is not reached."""
    server = Server.objects.create(name="probe", transport="http", url=probe_http_url)
    assert discover_server_tools(server).ok  # allowed in this test process (conftest), so tools are known
    gateway = start_gateway(MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS="false", MCP_GATEWAY_MAX_RETRIES="0")

    async def call():
        async with Client(gateway.mcp_url) as client:
            return await client.call_tool("probe__echo", {"text": "hi"})

    result = anyio.run(call)
    assert result.is_error
    assert (
        "refused to connect: 127.0.0.1, a loopback address; "
        "set MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS=true to allow loopback and private networks"
    ) in result.content[0].text


def test_private_networks_are_refused_by_default(tmp_path):
    """The documented defaults, read by a fresh process without the variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_GATEWAY_")}
    env.update(GATEWAY_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="gateway_project.settings")
    code = (
        "from django.conf import settings as s; "
        "print(s.MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS, s.MCP_GATEWAY_AUTO_APPROVE_NEW_TOOLS, "
        "s.MCP_GATEWAY_MAX_DESCRIPTION_LENGTH)"
    )
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "4000"]
