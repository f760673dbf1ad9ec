"""Poisoned tool descriptions: strip invisible Unicode, cap lengths, flag instruction-like text.

A downstream server writes the text a model reads (tool descriptions, parameter descriptions).
What the gateway stores, indexes and serves is cleaned here; what was changed or looks like an
attempt to instruct the model is recorded as human-readable flags shown in the admin. The
definition as announced is kept apart (pinning hashes and diffs that).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import regex
from django.conf import settings

# Characters that render as nothing (or reorder text) but reach the model: tag characters
# (U+E0000 to U+E007F, "ASCII smuggling"), zero-width and bidi controls and every other format (Cf)
# character, control characters but newline, tab and carriage return, variation selectors and
# invisible fillers used to hide data.
INVISIBLE = regex.compile(
    r"[\p{Cf}\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\U000E0000-\U000E007F\uFE00-\uFE0F\U000E0100-\U000E01EF"
    r"\u180B-\u180F\u034F\u115F\u1160\u3164\uFFA0\uFFF0-\uFFF8]"
)

# Phrases that address the model rather than describe the tool; matched case-insensitively on
# the cleaned text, after compatibility normalisation (full-width letters read as ASCII).
SUSPICIOUS: list[tuple[str, re.Pattern[str]]] = [
    (
        "asks the model to ignore its instructions",
        re.compile(
            r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|other|system)\b"
            r".{0,20}\b(instructions?|prompts?|rules|directions|messages)\b",
            re.I | re.S,
        ),
    ),
    (
        "markup that addresses the model (<IMPORTANT>, <system>…)",
        re.compile(r"<\s*/?\s*(important|system|instructions?|secret|hidden|admin|assistant)\b[^>]*>|\[/?INST\]", re.I),
    ),
    (
        "asks to keep something from the user",
        re.compile(
            r"\b(do\s*n[o']t|never|must\s+not|without)\b.{0,30}\b(tell|telling|inform|informing|mention|mentioning|"
            r"reveal|revealing|show|showing|notify|notifying|ask|asking|alert|alerting)\b.{0,20}\buser\b",
            re.I | re.S,
        ),
    ),
    (
        "mentions credentials or private files",
        re.compile(
            r"~/\.ssh|\bid_(rsa|ed25519|ecdsa)\b|\.aws/credentials|\.netrc\b|\bmcp\.json\b|claude_desktop_config|"
            r"/etc/(passwd|shadow)|\bprivate[\s_-]?keys?\b|\b(read|send|include|pass|upload|share|exfiltrate|copy|"
            r"append|attach)\b.{0,40}\b(credentials?|api[\s_-]?keys?|tokens?|passwords?|secrets?|ssh[\s_-]?keys?)\b",
            re.I | re.S,
        ),
    ),
    (
        "tells the model how to use other tools",
        re.compile(
            r"\b(before|after|instead\s+of|rather\s+than|when(ever)?)\b.{0,40}\b(using|calling|call|use|invoking|"
            r"invoke|running|run)\b.{0,40}\b(any|other|another|every|all)\b.{0,20}\btools?\b|\bother\s+tools?\b",
            re.I | re.S,
        ),
    ),
    (
        "claims a new role or system authority",
        re.compile(r"\byou\s+are\s+now\b|\bsystem\s+prompt\b|\bnew\s+instructions\b", re.I),
    ),
    ("hidden HTML comment", re.compile(r"<!--", re.I)),
]
# Words one of which a pattern needs to match, so most texts skip the costlier patterns.
_TRIGGERS = [
    ("ignore", "disregard", "forget", "override"),
    ("<", "[inst", "[/inst"),
    ("user",),
    ("ssh", "id_", ".aws", "netrc", "mcp.json", "claude_desktop", "/etc/", "private", "credential", "key", "token",
     "password", "secret"),
    ("tool",),
    ("you", "system", "new"),
    ("<!--",),
]  # fmt: skip
_TAG_CHARACTERS = regex.compile(r"[\U000E0020-\U000E007E]")


@dataclass
class CleanText:
    text: str
    removed: int = 0
    hidden_ascii: str = ""  # what tag characters spelled out, for the admin


def clean_text(text: str) -> CleanText:
    """`text` without invisible characters; how many were removed and any ASCII hidden in tag characters."""
    cleaned = INVISIBLE.sub("", text)
    removed = len(text) - len(cleaned)
    if not removed:
        return CleanText(text)
    hidden = "".join(chr(ord(c) - 0xE0000) for c in _TAG_CHARACTERS.findall(text))
    return CleanText(cleaned, removed, hidden)


def suspicious_phrases(text: str) -> list[tuple[str, str]]:
    """(why, the matched text) for each kind of instruction-like text found."""
    normalised = unicodedata.normalize("NFKC", text)
    lowered = normalised.lower()
    found = []
    for (why, pattern), triggers in zip(SUSPICIOUS, _TRIGGERS, strict=True):
        if not any(word in lowered for word in triggers):
            continue
        match = pattern.search(normalised)
        if match:
            found.append((why, " ".join(match.group(0).split())[:80]))
    return found


@dataclass
class Sanitized:
    definition: dict[str, Any]
    flags: list[str] = field(default_factory=list)


def _shown(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class _Cleaner:
    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self.flags: list[str] = []

    def text(self, value: str, where: str, *, cap: bool) -> str:
        result = clean_text(value)
        if result.removed:
            self.flags.append(f"{where}: removed {result.removed} invisible characters")
        if result.hidden_ascii.strip():
            self.flags.append(f"{where}: hidden text in tag characters: “{_shown(result.hidden_ascii.strip())}”")
            self._scan(result.hidden_ascii, f"{where} (hidden text)")
        text = result.text
        self._scan(text, where)
        if cap and len(text) > self.max_length:
            self.flags.append(
                f"{where}: {len(text)} characters, cut to {self.max_length} (MCP_GATEWAY_MAX_DESCRIPTION_LENGTH)"
            )
            text = text[: self.max_length - 1] + "…"
        return text

    def _scan(self, text: str, where: str) -> None:
        for why, matched in suspicious_phrases(text):
            self.flags.append(f"{where}: {why}: “{matched}”")

    def schema(self, value: Any, where: str) -> Any:
        """Clean `description` and `title` texts at any depth; scan property names; keep the structure."""
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if key in ("description", "title") and isinstance(item, str):
                    out[key] = self.text(item, f"{where}.{key}", cap=True)
                elif key == "properties" and isinstance(item, dict):
                    for name in item:
                        if isinstance(name, str):
                            self._scan(name.replace("_", " "), f"{where}.properties: parameter name '{name}'")
                    out[key] = {name: self.schema(sub, f"{where}.properties.{name}") for name, sub in item.items()}
                else:
                    out[key] = self.schema(item, f"{where}.{key}")
            return out
        if isinstance(value, list):
            return [self.schema(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return value


def sanitize_definition(definition: dict[str, Any], *, max_length: int | None = None) -> Sanitized:
    """What the gateway stores, indexes and serves for a tool definition as announced, and its flags.

    The tool's own name is kept as is (calls must reach the server under it); its description,
    title, and the descriptions and titles inside its schemas and annotations are cleaned.
    """
    cleaner = _Cleaner(max_length or settings.MCP_GATEWAY_MAX_DESCRIPTION_LENGTH)
    out: dict[str, Any] = dict(definition)
    name = str(definition.get("name", ""))
    if clean_text(name).removed:
        cleaner.flags.append("name: contains invisible characters")
    cleaner._scan(name.replace("_", " "), "name")
    for key in ("title", "description"):
        if isinstance(definition.get(key), str):
            out[key] = cleaner.text(definition[key], key, cap=key == "description")
    for key in ("inputSchema", "outputSchema", "annotations"):
        if definition.get(key) is not None:
            out[key] = cleaner.schema(definition[key], key)
    return Sanitized(out, list(dict.fromkeys(cleaner.flags)))
