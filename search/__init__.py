"""Tool search: BM25 over weighted fields, and safe regex search. Pure Python, no Django."""

from .documents import (
    MAX_PATTERN_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_RESULTS,
    SearchError,
    SearchHit,
    SearchResult,
    ToolDocument,
)
from .index import ToolIndex
from .regex_search import regex_search

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_QUERY_LENGTH",
    "MAX_RESULTS",
    "SearchError",
    "SearchHit",
    "SearchResult",
    "ToolDocument",
    "ToolIndex",
    "regex_search",
]
