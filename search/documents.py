"""The data search works on and answers with, the limits clients impose on it, and input validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_QUERY_LENGTH = 500  # Claude's limit for tool search queries
MAX_PATTERN_LENGTH = 200  # Claude's limit for regex tool search patterns
# max_results runs from 1 to MAX_RESULTS: enough for a model to choose from, few enough to keep the
# answer small. Anything outside (0, 51, 3.0, True, "3") is refused with a SearchError.
MAX_RESULTS = 50


class SearchError(ValueError):
    """Bad search input. The message is shown to the model or user as is, and says how to fix it."""


@dataclass(frozen=True, slots=True)
class ToolDocument:
    name: str  # the namespaced name the client calls (possibly shortened to 64 chars: never parse it)
    server: str  # server name: lowercase letters, digits, hyphens
    tool: str  # the downstream's own tool name, e.g. "create_issue" or "createIssue"
    title: str = ""
    description: str = ""
    # JSON Schema of the arguments. Left out of hashing and equality: a dict is unhashable, and two
    # documents with the same name and text are the same search document.
    input_schema: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class SearchHit:
    name: str
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[SearchHit]  # best first, at most max_results
    total_matches: int  # every document that matched (and was allowed), before max_results


def check_max_results(max_results: Any) -> int:
    # bool is an int subclass; max_results=True is a caller's mistake, not "1".
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise SearchError(f"max_results must be a whole number from 1 to {MAX_RESULTS}; got {max_results!r}")
    return max_results


def check_query(query: Any) -> str:
    if not isinstance(query, str) or not query.strip():
        raise SearchError("the query is empty: describe the tool you need in a few words, e.g. 'create a github issue'")
    if len(query) > MAX_QUERY_LENGTH:
        raise SearchError(
            f"the query has {len(query)} characters; the limit is {MAX_QUERY_LENGTH}: "
            "shorten it to the few words that describe the tool"
        )
    return query


def check_pattern(pattern: Any) -> str:
    if not isinstance(pattern, str) or not pattern.strip():
        raise SearchError("the regex pattern is empty: give a pattern such as 'issue' or '^github__'")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise SearchError(
            f"the regex pattern has {len(pattern)} characters; the limit is {MAX_PATTERN_LENGTH}: shorten it"
        )
    return pattern
