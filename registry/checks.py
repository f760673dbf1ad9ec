"""System checks for settings that only make sense together (run by `manage.py check` and at start)."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


def is_loopback(host: str) -> bool:
    """Whether a listen address only accepts connections from this machine."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def auth_off_refusal(host: str) -> str | None:
    """Why the gateway must not listen on `host` with GATEWAY_AUTH=off, or None when it may."""
    if settings.GATEWAY_AUTH or is_loopback(host):
        return None
    return (
        f"GATEWAY_AUTH is off and the gateway would listen on {host!r}, which is not a loopback address: anyone "
        "who can reach it could call every tool with the credentials the gateway holds. Turn auth on "
        "(GATEWAY_AUTH=on, then create a token with `manage.py create_token NAME`), or listen on 127.0.0.1."
    )


@register(Tags.security)
def check_auth_off_only_on_loopback(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    reason = auth_off_refusal(settings.GATEWAY_HOST)
    return [Error(reason, id="gateway.E001")] if reason else []
