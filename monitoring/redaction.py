"""Error text made safe to store and show: the server's secret values and anything shaped like a credential removed.

Stricter than the log filter (registry.redaction), which it applies too: error text is stored and shown in
the admin, so URL userinfo, key=value pairs named like secrets and long opaque tokens are masked as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from registry.catalog import ServerSpec
from registry.redaction import redact as redact_log_text

REDACTED = "[redacted]"
ERROR_MAX_CHARS = 1000

# Credential-shaped text: auth schemes, key=value pairs named like secrets, URL userinfo, long opaque tokens.
_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(
        r"(?i)\b([a-z0-9_-]*(?:authorization|token|secret|password|passwd|api[_-]?key|apikey|credential|"
        r"session|cookie)[a-z0-9_-]*)(\s*[=:]\s*|\"\s*:\s*\")[^\s,;\"'&}]+"
    ),
    re.compile(r"(?i)(?<=://)[^/\s:@]*:[^/\s@]*@"),
    re.compile(r"\b(?:sk|pk|ghp|gho|ghs|xox[abp]|glpat|AKIA)[A-Za-z0-9_-]{8,}"),
    re.compile(r"\b(?=[A-Za-z0-9+_-]*\d)(?=[A-Za-z0-9+_-]*[A-Za-z])[A-Za-z0-9+_-]{32,}={0,2}"),
]


def secret_values(spec: ServerSpec | None) -> list[str]:
    """The server's header and environment values, longest first (a value may contain another)."""
    if spec is None:
        return []
    values = [*spec.auth_headers.values(), *spec.env.values()]
    for value in list(values):
        scheme, _, rest = value.partition(" ")
        if rest and scheme.lower() in ("bearer", "basic", "token"):
            values.append(rest)
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str] = (), *, limit: int = ERROR_MAX_CHARS) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    text = redact_log_text(text)  # what the log filter masks (the gateway's own API tokens among it)
    for pattern in _PATTERNS:
        text = pattern.sub(_replacement, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _replacement(match: re.Match[str]) -> str:
    # Keep the name of a key=value pair so the reader knows what was there.
    if match.re is _PATTERNS[1]:
        return f"{match.group(1)}{match.group(2)}{REDACTED}"
    if match.re is _PATTERNS[0]:
        return f"{match.group(1)} {REDACTED}"
    if match.re is _PATTERNS[2]:
        return f"{REDACTED}@"
    return REDACTED
