"""Errors of the call path, each with a message safe to show to the model (no secrets)."""

from __future__ import annotations


class ProxyError(Exception):
    """A downstream call failed; `str(error)` is shown to the caller as the tool error text."""


class ConnectError(ProxyError):
    """The gateway could not open a session with the server: the request never reached it."""


class CallTimeout(ProxyError):
    """The server did not answer within the call's deadline."""


class ServerGone(ProxyError):
    """The session broke while the call was in flight (process died, connection dropped)."""


def describe(exc: BaseException) -> str:
    """A one-line description of a transport failure, unwrapping exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


class CircuitOpen(ProxyError):
    """The server failed too often lately; calls are refused at once for a cool-down."""


class Overloaded(ProxyError):
    """Every call slot for the server stayed taken until the call's deadline."""


class ResultTooLarge(ProxyError):
    """The server's result is bigger than MCP_GATEWAY_MAX_RESULT_BYTES."""
