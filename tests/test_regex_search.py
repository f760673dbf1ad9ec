"""Regex mode: exact, case-insensitive re.search semantics, and safe against catastrophic patterns."""

from __future__ import annotations

import time

import pytest

from search import SearchError, SearchHit, SearchResult, ToolDocument, regex_search

DOCS = [
    ToolDocument("github__create_issue", "github", "create_issue", description="Create a GitHub issue."),
    ToolDocument("linear__createIssue", "linear", "createIssue", title="New issue", description="Create in Linear."),
    ToolDocument("weather__forecast", "weather", "forecast", description="Get the weather forecast."),
    ToolDocument("notes__add", "notes", "add", description="Add a note about an Issue."),
]


def names(result: SearchResult) -> list[str]:
    return [hit.name for hit in result.hits]


def test_matches_anywhere_in_a_text_ignoring_case():
    result = regex_search(DOCS, "ISSUE", 10)
    assert names(result) == ["github__create_issue", "linear__createIssue", "notes__add"]
    assert result.total_matches == 3


def test_name_matches_come_before_matches_elsewhere_then_by_name():
    result = regex_search(DOCS, "linear|note", 10)
    assert names(result) == ["linear__createIssue", "notes__add"]
    assert [hit.score for hit in regex_search(DOCS, "forecast|about", 10).hits] == [1.0, 0.5]
    assert names(regex_search(DOCS, "about|forecast", 10)) == ["weather__forecast", "notes__add"]


def test_anchors_apply_to_each_text_on_its_own():
    assert names(regex_search(DOCS, "^weather__", 10)) == ["weather__forecast"]
    assert names(regex_search(DOCS, "^create", 10)) == ["github__create_issue", "linear__createIssue"]
    assert names(regex_search(DOCS, r"forecast\.$", 10)) == ["weather__forecast"]


def test_python_re_features_work_lookarounds_and_backreferences():
    assert names(regex_search(DOCS, r"create(?!_)", 10)) == ["linear__createIssue", "github__create_issue"]
    assert names(regex_search(DOCS, r"(?<=create)Issue", 10)) == ["linear__createIssue"]
    assert names(regex_search([ToolDocument("a__b", "a", "b", description="abab")], r"(ab)\1", 10)) == ["a__b"]


def test_max_results_limits_hits_but_not_the_count():
    result = regex_search(DOCS, "create", 1)
    assert isinstance(result, SearchResult)
    assert result.hits == [SearchHit("github__create_issue", 1.0)]
    assert result.total_matches == 2


def test_no_match_gives_an_empty_result():
    assert regex_search(DOCS, "kubernetes", 5) == SearchResult([], 0)


def test_invisible_characters_cannot_hide_words_from_a_pattern():
    docs = [ToolDocument("p__t", "p", "t", description="del\u200bete every\U000e0020thing")]
    assert names(regex_search(docs, "delete every", 5)) == ["p__t"]


@pytest.mark.parametrize(
    ("pattern", "max_results", "message"),
    [
        ("(unclosed", 3, r"invalid regex: missing \) at position 9"),
        ("a{2,1}", 3, "invalid regex: min repeat greater than max repeat at position 2"),
        ("[z-a]", 3, "invalid regex: bad character range"),
        ("a" * 201, 3, "the regex pattern has 201 characters; the limit is 200"),
        ("", 3, "the regex pattern is empty"),
        ("issue", 0, "max_results must be a whole number from 1 to 50"),
        ("issue", False, "max_results must be a whole number from 1 to 50"),
    ],
)
def test_bad_patterns_get_clear_errors(pattern, max_results, message):
    with pytest.raises(SearchError, match=message):
        regex_search(DOCS, pattern, max_results)


@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)+$", "^(a|a)*$"])
def test_a_catastrophic_pattern_is_stopped_with_a_clear_error(pattern):
    docs = [ToolDocument(f"s__t{i}", "s", f"t{i}", description="a" * 5000 + "!") for i in range(50)]
    started = time.monotonic()
    with pytest.raises(SearchError, match=r"took longer than .* nested repetition"):
        regex_search(docs, pattern)
    assert time.monotonic() - started < 5
