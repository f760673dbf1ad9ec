"""Redaction of credentials in log records: a last line of defence behind "never log a secret".

Code must not log header values or tokens in the first place; this filter, installed on the log
handler (settings.LOGGING), masks what slips through anyway: bearer/basic credentials, the
gateway's own API tokens, and the values of Authorization-like headers or auth_header arguments.
"""

from __future__ import annotations

import logging
import re

MASK = "[redacted]"
_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"mcpgw_[A-Za-z0-9_-]{8,}"),
    # "authorization": "…", 'x-api-key': '…', auth_header=…, Authorization: …
    re.compile(
        r"(?i)([\"']?(?:authorization|x-upstream-authorization|proxy-authorization|x-api-key|api[_-]?key|"
        r"auth_header|cookie|set-cookie|password|secret|token)[\"']?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;}]+)"
    ),
]


def redact(text: str) -> str:
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = _PATTERNS[1].sub(MASK, text)
    return _PATTERNS[2].sub(lambda m: f"{m.group(1)}{MASK}", text)


class RedactSecrets(logging.Filter):
    """Rewrites each record's message (and traceback text) with credentials masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for the handler to report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
