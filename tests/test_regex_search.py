"""Regex mode: exact, case-insensitive re.search semantics, and safe."""

from __future__ import annotations

import time

import pytest

from search import SearchError, ToolDocument, regex_search

DOCS = [
    ToolDocument("github__create_issue", "github", "create_issue", description="Create a GitHub issue."),
    ToolDocument("linear__createIssue", "linear", "createIssue", description="Create an issue in Linear."),
    ToolDocument("weather__forecast", "weather", "forecast", description="Get the weather forecast."),
]


def test_matches_case_insensitively_with_search_semantics():
    result = regex_search(DOCS, "ISSUE", 10)
    assert [h.name for h in result.hits] == ["github__create_issue", "linear__createIssue"]
    assert result.total_matches == 2


def test_anchors_apply_to_each_field_and_name_matches_come_first():
    assert [h.name for h in regex_search(DOCS, "^weather__", 10).hits] == ["weather__forecast"]
    result = regex_search(DOCS, "weather|linear", 10)
    assert [h.name for h in result.hits] == ["linear__createIssue", "weather__forecast"]


def test_max_results_limits_hits_but_not_the_count():
    result = regex_search(DOCS, "create", 1)
    assert len(result.hits) == 1 and result.total_matches == 2


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("(unclosed", "invalid regex: missing \\)"), ("a" * 201, "limit is 200"), ("", "empty")],
)
def test_bad_patterns_get_clear_errors(pattern, message):
    with pytest.raises(SearchError, match=message):
        regex_search(DOCS, pattern)


def test_a_catastrophic_pattern_is_stopped_with_a_clear_error():
    docs = [ToolDocument(f"s__t{i}", "s", f"t{i}", description="a" * 60 + "!") for i in range(5)]
    started = time.monotonic()
    with pytest.raises(SearchError, match="took longer than"):
        regex_search(docs, "(a|aa)+$")
    assert time.monotonic() - started < 5
