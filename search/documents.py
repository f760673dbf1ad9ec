"""The data search works on and answers with, and the limits clients impose on it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_QUERY_LENGTH = 500  # Claude's limit for tool search queries
MAX_PATTERN_LENGTH = 200  # Claude's regex tool search limit
MAX_RESULTS = 50  # the most results one search returns; the least is 1


class SearchError(ValueError):
    """Bad search input; the message is shown to the model as is, and says how to fix it."""


@dataclass(frozen=True, slots=True)
class ToolDocument:
    name: str  # the namespaced name the client calls (possibly shortened: never parse it)
    server: str
    tool: str  # the downstream's own name
    title: str = ""
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class SearchHit:
    name: str
    score: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[SearchHit]  # best first, at most max_results
    total_matches: int  # every document that matched, before max_results


def check_max_results(max_results: Any) -> int:
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise SearchError(f"max_results must be a whole number from 1 to {MAX_RESULTS}; got {max_results!r}")
    return max_results


def check_text(text: Any, *, what: str, limit: int) -> str:
    if not isinstance(text, str) or not text.strip():
        raise SearchError(f"the {what} is empty: describe the tool you need, e.g. 'create a github issue'")
    if len(text) > limit:
        raise SearchError(f"the {what} has {len(text)} characters; the limit is {limit}: shorten it")
    return text
