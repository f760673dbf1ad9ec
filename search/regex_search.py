"""Regex tool search: Python `re.search` semantics, case-insensitive, that no pattern can hang.

The pattern is searched, case-insensitively, in each of the texts a user reads for a tool, one at a
time: the namespaced name, the server name, the tool's own name, its title and its description (the
last two with invisible characters removed, as indexed). So `^` and `$` anchor to one of those texts,
and `^github__` finds every tool of the github server.

Engine: the `regex` module in VERSION0 mode, which takes re's syntax and semantics (what clients such as
Claude document for this tool: lookarounds and backreferences included) and, unlike `re`, a `timeout`.
google-re2 would make backtracking impossible by construction but rejects lookarounds and
backreferences, so valid patterns would fail; a time limit keeps every pattern answering instead.

A pattern that backtracks without end, such as `(a+)+$` against a long run of a's, stops when the whole
search has used TIME_BUDGET seconds and raises a SearchError saying so. Partial results are not returned:
they would be silently incomplete and total_matches would be wrong.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import regex

from .documents import SearchError, SearchHit, SearchResult, ToolDocument, check_max_results, check_pattern
from .tokens import clean

TIME_BUDGET = 0.5  # seconds for one whole search (the gateway runs it in a worker thread)


def regex_search(documents: Iterable[ToolDocument], pattern: str, max_results: int = 3) -> SearchResult:
    """Tools whose texts match `pattern`: matches in the tool's name first, then the rest, each by name.

    total_matches counts every matching tool; hits holds the first max_results (score 1.0 for a name
    match, 0.5 for a match elsewhere).
    """
    check_pattern(pattern)
    check_max_results(max_results)
    try:
        compiled = regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)
    except regex.error as exc:
        position = f" at position {exc.pos}" if exc.pos is not None else ""
        raise SearchError(
            f"invalid regex: {exc.msg}{position} in {pattern!r}; it must be a Python `re` pattern, "
            r"e.g. 'create.*issue' or '^github__' (escape literal characters such as \( and \.)"
        ) from None
    deadline = time.monotonic() + TIME_BUDGET
    in_name: list[str] = []
    elsewhere: list[str] = []
    try:
        for doc in documents:
            if _matches(compiled, deadline, doc.name, doc.tool):
                in_name.append(doc.name)
            elif _matches(compiled, deadline, doc.server, clean(doc.title), clean(doc.description)):
                elsewhere.append(doc.name)
    except TimeoutError:
        raise SearchError(
            f"the regex pattern {pattern!r} took longer than {TIME_BUDGET:g}s and was stopped: nested repetition "
            "such as (a+)+ or (a|aa)* backtracks without end; remove the nesting, e.g. a+ instead of (a+)+"
        ) from None
    hits = [SearchHit(name, 1.0) for name in sorted(in_name)] + [SearchHit(name, 0.5) for name in sorted(elsewhere)]
    return SearchResult(hits[:max_results], len(hits))


def _matches(compiled: regex.Pattern, deadline: float, *texts: str) -> bool:
    for text in texts:
        if not text:
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if compiled.search(text, timeout=remaining) is not None:
            return True
    return False
