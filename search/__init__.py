"""Tool search: BM25F over weighted fields on an incremental inverted index, and safe regex search.

Pure Python (numpy cost every gateway process 11 MB), no Django. The gateway builds ToolDocuments from
its catalog and calls ToolIndex.search or regex_search.
"""

from .documents import (
    MAX_PATTERN_LENGTH,
    MAX_QUERY_LENGTH,
    MAX_RESULTS,
    SearchError,
    SearchHit,
    SearchResult,
    ToolDocument,
)
from .index import Ranking, ToolIndex
from .regex_search import regex_search

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_QUERY_LENGTH",
    "MAX_RESULTS",
    "Ranking",
    "SearchError",
    "SearchHit",
    "SearchResult",
    "ToolDocument",
    "ToolIndex",
    "regex_search",
]
