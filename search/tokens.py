"""Text to search terms: strip invisible characters, split identifiers, stem, drop stop words, expand synonyms."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import snowballstemmer

# Characters a person cannot see but a model reads: zero-width spaces and joiners, bidi embeddings,
# overrides and isolates, invisible math operators, the BOM, soft hyphens, Hangul fillers and the
# Unicode tag block (U+E0000-U+E007F, "ASCII smuggling"). Poisoned tool descriptions hide words and
# instructions with them; we delete them before indexing so "cre<ZWSP>ate" is indexed as "create".
_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xE0000, 0xE007F),
)
_DELETE_INVISIBLE = {code: None for low, high in _INVISIBLE_RANGES for code in range(low, high + 1)}

# Split camelCase and acronyms (getHTTPResponse -> get HTTP Response) before lowercasing.
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_ALNUM = re.compile(r"[a-z0-9]+")
_LETTERS_OR_DIGITS = re.compile(r"[a-z]+|[0-9]+")

STOP_WORDS = frozenset(
    """a about all an and any are as at be been by can could did do does for from get give got have how i
    if in into is it its let me my no not of on or our please should show so some tell that the their them
    then there these this those to up us use using want was we what when where which who why will with would
    you your""".split()
)
# "get" and "show" carry no meaning in a request ("get me the weather") but are tool verbs; they are stop
# words for the query only when other words remain (see query_terms), and always indexed in documents.
_SOFT_STOP_WORDS = frozenset({"get", "show", "give", "tell", "let"})

# Words people say for what tool authors call otherwise. Query side only, at a lower weight than the
# words actually typed, so an exact word still beats a synonym. Keep entries general-purpose vocabulary.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "ticket": ("issue",),
    "bug": ("issue",),
    "repo": ("repository",),
    "repos": ("repository",),
    "pr": ("pull", "request"),
    "mr": ("merge", "request"),
    "msg": ("message",),
    "chat": ("message",),
    "dm": ("direct", "message"),
    "mail": ("email",),
    "email": ("mail",),
    "send": ("post",),
    "post": ("send",),
    "remove": ("delete",),
    "delete": ("remove",),
    "fetch": ("get",),
    "retrieve": ("get",),
    "read": ("get",),
    "view": ("get",),
    "find": ("search",),
    "lookup": ("search",),
    "look": ("search",),
    "query": ("search",),
    "search": ("query", "find"),
    "make": ("create",),
    "add": ("create",),
    "new": ("create",),
    "open": ("create",),
    "edit": ("update",),
    "modify": ("update",),
    "change": ("update",),
    "folder": ("directory",),
    "folders": ("directory",),
    "directory": ("folder",),
    "db": ("database",),
    "sql": ("query",),
    "webpage": ("url", "page"),
    "website": ("url", "site"),
    "link": ("url",),
    "internet": ("web",),
    "photo": ("image",),
    "picture": ("image",),
    "doc": ("document",),
    "docs": ("documentation", "document"),
}

_snowball = snowballstemmer.stemmer("english")


def plural_stem(word: str) -> str:
    """English plurals to singular (S-stemmer, Harman 1991, with -ches/-shes/-xes/-sses/-zes): files -> file."""
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss", "is")):
        return word[:-1]
    return word


def clean(text: str) -> str:
    """The text a person would see: compatibility forms folded (fullwidth letters), invisible characters gone."""
    return unicodedata.normalize("NFKC", text).translate(_DELETE_INVISIBLE)


@lru_cache(maxsize=131072)
def stem(word: str) -> str:
    # Snowball measured better than plural folding or no stemming on benchmarks/search_eval (see README there).
    return _snowball.stemWord(word)


def words(text: str) -> list[str]:
    """Lowercase words of text with identifiers split: getUserID, get_user_id, get-user-id -> get user id.

    Letters and digits are split too (s3 -> s 3), and the whole token is kept beside its parts (s3) so
    that names such as ec2, oauth2 and base64 still match as written.
    """
    result: list[str] = []
    for token in _ALNUM.findall(_CAMEL.sub(" ", clean(text)).lower()):
        parts = _LETTERS_OR_DIGITS.findall(token)
        result.extend(parts)
        if len(parts) > 1:
            result.append(token)
    return result


@lru_cache(maxsize=65536)
def terms(text: str) -> tuple[str, ...]:
    """Search terms of a document field, stop words removed: each word's stem, and the word too if it differs.

    Keeping the surface form beside the stem lets "users" match "users" a little better than "user":
    plurals in a request point at the tools that list things (slack_get_users, list_containers).
    """
    result: list[str] = []
    for word in words(text):
        if word in STOP_WORDS:
            continue
        stemmed = stem(word)
        result.append(stemmed)
        if stemmed != word:
            result.append(word)
    # Cached and a tuple: parameter descriptions ("Repository owner") and tool names repeat across servers.
    return tuple(result)


@lru_cache(maxsize=65536)
def squashed(text: str) -> str:
    """Case and separators gone: create_issue, createIssue, Create-Issue and "create issue" -> createissue."""
    return "".join(_ALNUM.findall(clean(text).lower()))


@lru_cache(maxsize=65536)
def name_key(text: str) -> str:
    """Like squashed, with each word stemmed, so "create issues" still names create_issue."""
    return "".join(stem(word) for word in _LETTERS_OR_DIGITS.findall(_CAMEL.sub(" ", clean(text)).lower()))


def query_name_keys(text: str) -> set[str]:
    """The keys under which a query would name a tool: as typed, stemmed, and stemmed without stop words."""
    typed = _LETTERS_OR_DIGITS.findall(_CAMEL.sub(" ", clean(text)).lower())
    kept = [word for word in typed if word not in STOP_WORDS]
    keys = {squashed(text), "".join(stem(word) for word in typed), "".join(stem(word) for word in kept)}
    keys.discard("")
    return keys


def query_terms(text: str) -> tuple[list[str], list[str]]:
    """The query's own terms, and the extra terms its synonyms add (excluding terms already present)."""
    typed = words(text)
    content = [word for word in typed if word not in STOP_WORDS]
    if not content:  # "get" alone is still a query
        content = [word for word in typed if word in _SOFT_STOP_WORDS]
    own: list[str] = []
    for word in content:
        stemmed = stem(word)
        own.append(stemmed)
        if stemmed != word:
            own.append(word)
    extra: list[str] = []
    for word in content:
        extra.extend(stem(synonym) for synonym in SYNONYMS.get(word, ()))
    present = set(own)
    return own, [term for term in dict.fromkeys(extra) if term not in present]


def query_grams(text: str, longest: int = 3) -> set[str]:
    """Runs of up to `longest` adjacent query words glued together: "google maps" -> googlemaps.

    Used to spot server names in a query however they are spaced (brave search, brave-search).
    """
    typed = _LETTERS_OR_DIGITS.findall(_CAMEL.sub(" ", clean(text)).lower())
    grams: set[str] = set()
    for start in range(len(typed)):
        for end in range(start + 1, min(start + longest, len(typed)) + 1):
            grams.add("".join(typed[start:end]))
    return grams


def schema_text(schema: Any, depth: int = 0) -> tuple[list[str], list[str]]:
    """Parameter names and parameter descriptions of a JSON Schema, nested objects and array items included."""
    names: list[str] = []
    descriptions: list[str] = []
    if depth > 6 or not isinstance(schema, Mapping):
        return names, descriptions
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for name, sub in properties.items():
            names.append(str(name))
            if isinstance(sub, Mapping):
                description = sub.get("description")
                if isinstance(description, str):
                    descriptions.append(description)
                nested_names, nested_descriptions = schema_text(sub, depth + 1)
                names += nested_names
                descriptions += nested_descriptions
    for key in ("items", "additionalProperties"):
        nested = schema.get(key)
        if isinstance(nested, Mapping):
            nested_names, nested_descriptions = schema_text(nested, depth + 1)
            names += nested_names
            descriptions += nested_descriptions
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                nested_names, nested_descriptions = schema_text(option, depth + 1)
                names += nested_names
                descriptions += nested_descriptions
    return names, descriptions
