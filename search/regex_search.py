"""Regex tool search: Python `re.search` semantics, case-insensitive, that no pattern can hang.

Patterns run on the `regex` module (re-compatible syntax, VERSION0) because it takes a `timeout`:
a catastrophic pattern such as `(a+)+$` stops at the time budget with a clear error instead of
holding the process. Each of a tool's fields is searched on its own, so `^` and `$` anchor to
the namespaced name, the tool's own name, its title or its description.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import regex

from .documents import (
    MAX_PATTERN_LENGTH,
    SearchError,
    SearchHit,
    SearchResult,
    ToolDocument,
    check_max_results,
    check_text,
)
from .tokens import clean

TIME_BUDGET = 1.0  # seconds for one whole search


def regex_search(documents: Iterable[ToolDocument], pattern: str, max_results: int = 3) -> SearchResult:
    check_text(pattern, what="regex pattern", limit=MAX_PATTERN_LENGTH)
    check_max_results(max_results)
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
    except regex.error as exc:
        where = f" at position {exc.pos}" if getattr(exc, "pos", None) is not None else ""
        raise SearchError(f"invalid regex: {exc.msg if hasattr(exc, 'msg') else exc}{where}") from None
    deadline = time.monotonic() + TIME_BUDGET
    in_name: list[str] = []
    elsewhere: list[str] = []
    try:
        for doc in documents:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if compiled.search(doc.name, timeout=remaining) or compiled.search(doc.tool, timeout=remaining):
                in_name.append(doc.name)
                continue
            for text in (doc.title, clean(doc.description), doc.server):
                if text and compiled.search(text, timeout=remaining):
                    elsewhere.append(doc.name)
                    break
    except TimeoutError:
        raise SearchError(
            f"the regex pattern took longer than {TIME_BUDGET:g}s (nested repetition such as (a+)+ backtracks "
            "without end): simplify it"
        ) from None
    ordered = sorted(in_name) + sorted(elsewhere)
    return SearchResult([SearchHit(name, 1.0) for name in ordered[:max_results]], len(ordered))
