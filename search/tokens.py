"""Text to search terms: strip invisible characters, split identifiers, stem, drop stop words."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import snowballstemmer

# Zero-width, bidi controls, soft hyphen, word joiners and Unicode tag characters: text a person
# cannot see but a model reads. Poisoned descriptions use them to hide instructions.
INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\U000e0000-\U000e007f]")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[a-z]+|[0-9]+")
STOP_WORDS = frozenset(
    "a an and are as at be by can could do for from how i in into is it its me my of on or our please "
    "should some that the their them then there these this to using use want we what when which will with "
    "would you your".split()
)
# Words users say for what tools call otherwise (query side only, on a lower weight).
SYNONYMS = {
    "ticket": ("issue",),
    "bug": ("issue",),
    "repo": ("repository",),
    "pr": ("pull", "request"),
    "msg": ("message",),
    "dm": ("direct", "message"),
    "mail": ("email",),
    "email": ("mail",),
    "remove": ("delete",),
    "delete": ("remove",),
    "fetch": ("get",),
    "retrieve": ("get",),
    "find": ("search",),
    "lookup": ("search",),
    "look": ("search",),
    "make": ("create",),
    "add": ("create",),
    "new": ("create",),
    "open": ("create",),
    "edit": ("update",),
    "modify": ("update",),
    "change": ("update",),
    "show": ("list", "get"),
    "folder": ("directory",),
    "directory": ("folder",),
    "db": ("database",),
    "sql": ("query",),
    "webpage": ("url", "page"),
    "website": ("url", "page"),
    "clock": ("time",),
    "timezone": ("time", "zone"),
}

_stemmer = snowballstemmer.stemmer("english")


def clean(text: str) -> str:
    return INVISIBLE.sub("", text)


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    return _stemmer.stemWord(word)


def words(text: str) -> list[str]:
    """Lowercase words of text, identifiers split: getUserID, get_user_id, get-user-id -> get user id."""
    return _WORD.findall(_CAMEL.sub(" ", clean(text)).lower())


def terms(text: str) -> list[str]:
    return [stem(w) for w in words(text) if w not in STOP_WORDS]


def query_terms(text: str) -> tuple[list[str], list[str]]:
    """The query's own terms, and the extra terms its synonyms add."""
    own: list[str] = []
    extra: list[str] = []
    for word in words(text):
        if word in STOP_WORDS:
            continue
        own.append(stem(word))
        extra.extend(stem(s) for s in SYNONYMS.get(word, ()))
    return own, [t for t in extra if t not in own]


def schema_text(schema: Mapping[str, Any], depth: int = 0) -> tuple[list[str], list[str]]:
    """Parameter names and parameter descriptions of a JSON Schema, nested ones included."""
    names: list[str] = []
    descriptions: list[str] = []
    if depth > 5 or not isinstance(schema, Mapping):
        return names, descriptions
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            names.append(str(name))
            if isinstance(sub, Mapping):
                if isinstance(sub.get("description"), str):
                    descriptions.append(sub["description"])
                n, d = schema_text(sub, depth + 1)
                names += n
                descriptions += d
    items = schema.get("items")
    if isinstance(items, Mapping):
        n, d = schema_text(items, depth + 1)
        names += n
        descriptions += d
    return names, descriptions


def joined(parts: Iterable[str]) -> str:
    return " ".join(parts)
