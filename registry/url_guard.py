"""SSRF guard: which addresses the gateway may send requests to, checked when a URL is saved and when it connects.

A server URL is checked when saved (`Server.clean`, so the admin, the REST API and imports all
refuse it) and again at every connection, by `GuardedNetworkBackend`: it resolves the host
itself, checks every address the name resolves to, and connects to an address it checked, so
DNS rebinding between the check and the connect cannot point the gateway elsewhere.

Always refused: cloud metadata addresses and names, link-local, the unspecified address ("this
host"), multicast and reserved ranges. Loopback and private networks only with
MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS=true. Host names are read the way resolvers read them:
`2852039166`, `0251.0376.0251.0376`, `0xa9fea9fe` and `169.254.43518` are all 169.254.169.254.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpcore2
import httpx2
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SETTING = "MCP_GATEWAY_ALLOW_PRIVATE_NETWORKS"

# Cloud instance metadata endpoints (AWS, GCP, Azure, Oracle, DigitalOcean: 169.254.169.254; AWS ECS and
# EKS: 169.254.170.2 and .23; AWS over IPv6: fd00:ec2::254; Alibaba: 100.100.100.200; Azure wireserver).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
        "168.63.129.16",
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
    }
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})

_net = ipaddress.ip_network
# (networks, what they are, always refused?) — the first match names the address in the error.
RANGES: list[tuple[tuple[Any, ...], str, bool]] = [
    ((_net("0.0.0.0/8"), _net("::/128")), "the unspecified address (it reaches this host)", True),
    ((_net("169.254.0.0/16"), _net("fe80::/10")), "a link-local address", True),
    ((_net("224.0.0.0/4"), _net("ff00::/8")), "a multicast address", True),
    ((_net("240.0.0.0/4"),), "a reserved address", True),
    ((_net("127.0.0.0/8"), _net("::1/128")), "a loopback address", False),
    (
        (
            _net("10.0.0.0/8"),
            _net("172.16.0.0/12"),
            _net("192.168.0.0/16"),
            _net("100.64.0.0/10"),
            _net("192.0.0.0/24"),
            _net("198.18.0.0/15"),
            _net("fc00::/7"),
            _net("fec0::/10"),
        ),
        "a private network address",
        False,
    ),
]
_NAT64 = _net("64:ff9b::/96")
_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


class BlockedAddress(ValueError):
    """The gateway refuses to connect there; `str()` says why and what setting, if any, allows it."""


def allow_private() -> bool:
    return bool(getattr(settings, SETTING, False))


def parse_ipv4_number(host: str) -> ipaddress.IPv4Address | None:
    """A host in any numeric IPv4 form inet_aton(3) and browsers accept, or None if it is a name.

    1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part fills the remaining
    bytes (`127.1`, `169.254.43518`, `2852039166`). One trailing dot is ignored, as by resolvers.
    """
    if host.endswith("."):
        host = host[:-1]
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally (IPv6 with or without brackets, any IPv4 form), else None."""
    host = host.strip("[]")
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.replace("%25", "%"))
        except ValueError:
            return None
    return parse_ipv4_number(host)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    packed = int(address)
    if packed >> 32 == 0 and packed > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(packed)
    return None


def address_problem(address: IPAddress, *, allow_private_networks: bool | None = None) -> str | None:
    """Why the gateway must not connect to `address`, or None when it may."""
    allowed = allow_private() if allow_private_networks is None else allow_private_networks
    address = ipaddress.ip_address(str(address).split("%")[0])
    inner = embedded_ipv4(address)
    if inner is not None:
        problem = address_problem(inner, allow_private_networks=allowed)
        return f"an IPv6 form of {inner}, {problem}" if problem else None
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address; the gateway never connects there"
    for networks, what, always in RANGES:
        if any(address in network for network in networks if network.version == address.version):
            if always:
                return f"{what}; the gateway never connects there"
            if not allowed:
                return f"{what}; set {SETTING}=true to allow loopback and private networks"
            return None
    return None


def host_problem(host: str, *, allow_private_networks: bool | None = None) -> str | None:
    """Why a host name or literal address is refused before any lookup ("host, what it is; advice"), or None."""
    allowed = allow_private() if allow_private_networks is None else allow_private_networks
    address = literal_address(host)
    if address is not None:
        problem = address_problem(address, allow_private_networks=allowed)
        if problem is None:
            return None
        numeric_form = address.version == 4 and str(address) != host
        shown = f"{host} (which is {address})" if numeric_form else host.strip("[]")
        return f"{shown}, {problem}"
    name = host.rstrip(".").lower()
    if name in METADATA_NAMES:
        return f"{host}, a cloud metadata service; the gateway never connects there"
    if (name in LOOPBACK_NAMES or name.endswith(".localhost")) and not allowed:
        return f"{host}, a loopback name; set {SETTING}=true to allow loopback and private networks"
    return None


def check_server_url(url: str) -> None:
    """Refuse a URL the gateway must not send requests to; BlockedAddress says why. No lookup, no connection."""
    if any(c.isspace() or ord(c) < 32 or c == "\\" for c in url):
        raise BlockedAddress("The URL contains spaces, control characters or a backslash; write a plain URL.")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise BlockedAddress("The URL must start with http:// or https://.")
    if "@" in parts.netloc:
        raise BlockedAddress(
            "The URL contains a user name or password (user:…@host); the gateway refuses credentials in URLs: "
            "put them in the server's auth headers instead."
        )
    hosts = {parts.hostname or ""}
    try:
        # The host as the HTTP client will read it (IDNA, full-width dots), checked as well.
        hosts.add(httpx2.URL(url).host)
    except httpx2.InvalidURL as exc:
        # Forms the client rejects are still checked, for a precise message (e.g. octal IPv4).
        problem = host_problem(parts.hostname or "")
        raise BlockedAddress(
            f"The URL points at {problem}." if problem else f"Not a URL the gateway's HTTP client accepts: {exc}."
        ) from None
    if not all(hosts):
        raise BlockedAddress("The URL has no host; write e.g. https://mcp.example.com/mcp.")
    if any("%" in host and ":" not in host for host in hosts):  # a percent outside an IPv6 zone id
        raise BlockedAddress("The URL's host is percent-encoded; write the host plainly, e.g. mcp.example.com.")
    for host in sorted(hosts):
        problem = host_problem(host)
        if problem:
            raise BlockedAddress(f"The URL points at {problem}.")


async def resolve_checked(host: str, port: int) -> list[str]:
    """The addresses of `host`, each checked; BlockedAddress if any of them is refused."""
    problem = host_problem(host)
    if problem:
        raise BlockedAddress(f"refused to connect: {problem}")
    address = literal_address(host)
    if address is not None:
        return [str(address)]
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for resolved in addresses:
        problem = address_problem(ipaddress.ip_address(resolved.split("%")[0]))
        if problem:
            # Any refused address refuses the name: a name answering both is a rebinding attempt.
            raise BlockedAddress(f"refused to connect: {host} resolves to {resolved}, {problem}")
    return addresses


class GuardedNetworkBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's network backend, resolving names itself and connecting only to addresses it checked."""

    def __init__(self) -> None:
        self._backend = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await resolve_checked(host, port)
        except BlockedAddress as exc:
            raise httpcore2.ConnectError(str(exc)) from None
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"resolving {host} took longer than {timeout:g}s") from None
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host}: {exc}") from None
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> Any:
        raise httpcore2.ConnectError("the gateway connects to servers over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def guarded_transport(**kwargs: Any) -> httpx2.AsyncHTTPTransport:
    """An httpx transport whose every connection goes through `GuardedNetworkBackend` (kwargs: httpx's)."""
    transport = httpx2.AsyncHTTPTransport(**kwargs)
    pool = getattr(transport, "_pool", None)
    # httpx exposes no network_backend argument; its pool keeps the backend in `_network_backend`.
    if not isinstance(pool, httpcore2.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise RuntimeError("httpx2/httpcore2 changed: the SSRF guard cannot be installed; pin the versions")
    pool._network_backend = GuardedNetworkBackend()
    return transport
