"""Ranking behaviour that must hold, asserted on ranked names."""

from __future__ import annotations

import pytest

from search import SearchError, ToolDocument, ToolIndex


def doc(server: str, tool: str, description: str = "", **schema_props: str) -> ToolDocument:
    props = {name: {"type": "string", "description": text} for name, text in schema_props.items()}
    return ToolDocument(
        name=f"{server}__{tool}", server=server, tool=tool, description=description,
        input_schema={"type": "object", "properties": props},
    )  # fmt: skip


CORPUS = [
    doc("github", "create_issue", "Create a new issue in a GitHub repository.", title="Issue title"),
    doc("github", "search_repositories", "Search for GitHub repositories.", query="Search query"),
    doc("github", "create_pull_request", "Create a new pull request in a GitHub repository."),
    doc("linear", "createIssue", "Create a new issue in Linear.", teamId="The team"),
    doc("linear", "searchIssues", "Search issues by text."),
    doc("slack", "send_message", "Post a message to a Slack channel.", channel="Channel id"),
    doc("time", "get_current_time", "Get current time in a specific timezone.", timezone="IANA timezone name"),
    doc("time", "convert_time", "Convert time between timezones."),
    doc("filesystem", "read_file", "Read the complete contents of a file from the file system.", path="File path"),
    doc("filesystem", "list_directory", "Get a detailed listing of all files and directories in a path."),
    doc("spam", "helper", "create issue create issue create issue issue issue github linear ticket"),
]


@pytest.fixture
def index() -> ToolIndex:
    return ToolIndex(CORPUS)


def names(index: ToolIndex, query: str, n: int = 3) -> list[str]:
    return [h.name for h in index.search(query, n).hits]


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("create_issue", "github__create_issue"),
        ("createIssue", "linear__createIssue"),
        ("linear__createIssue", "linear__createIssue"),
        ("get current time", "time__get_current_time"),
        ("open a Linear ticket", "linear__createIssue"),
        ("file an issue on github", "github__create_issue"),
        ("post a message to slack", "slack__send_message"),
        ("what time is it in Tokyo timezone", "time__get_current_time"),
        ("read a file", "filesystem__read_file"),
        ("list files in a folder", "filesystem__list_directory"),
    ],
)
def test_the_right_tool_ranks_first(index, query, first):
    assert names(index, query)[0] == first


def test_an_exact_tool_name_outranks_a_keyword_stuffed_description(index):
    assert names(index, "create issue", 11)[0] in ("github__create_issue", "linear__createIssue")
    assert names(index, "create_issue")[0] == "github__create_issue"
    assert names(index, "create_issue").index("github__create_issue") < 1


def test_identifier_splitting_matches_camel_snake_and_kebab_spellings():
    idx = ToolIndex([doc("x", "getUserProfile"), doc("y", "delete-all-records"), doc("z", "list_v2_items")])
    assert names(idx, "user profile")[0] == "x__getUserProfile"
    assert names(idx, "delete records")[0] == "y__delete-all-records"
    assert names(idx, "v2 items")[0] == "z__list_v2_items"


def test_parameter_names_and_descriptions_are_searched():
    idx = ToolIndex([doc("a", "run", "Run it.", sql="The SQL statement"), doc("b", "go", "Go there.")])
    assert names(idx, "sql statement") == ["a__run"]


def test_replacing_one_server_changes_its_tools_and_keeps_the_others(index):
    index.replace_server("slack", [doc("slack", "post_reaction", "Add an emoji reaction to a message.")])
    assert "slack__send_message" not in names(index, "slack message", 11)
    assert names(index, "emoji reaction")[0] == "slack__post_reaction"
    assert names(index, "get current time")[0] == "time__get_current_time"
    index.remove_server("time")
    assert "time__get_current_time" not in names(index, "get current time", 11)
    assert len(index) == len(CORPUS) - 2


def test_allowed_filter_removes_tools_and_their_count(index):
    everything = index.search("issue", 50)
    filtered = index.search("issue", 50, allowed=lambda d: d.server != "github")
    assert all(not h.name.startswith("github__") for h in filtered.hits)
    assert filtered.total_matches == everything.total_matches - 1


def test_ties_are_broken_by_name():
    idx = ToolIndex([doc("b", "same", "identical words"), doc("a", "same", "identical words")])
    assert names(idx, "identical words") == ["a__same", "b__same"]


def test_invisible_characters_cannot_hide_words_from_search():
    hidden = "cre\u200bate iss\U000e0041ue"
    idx = ToolIndex([doc("p", "tool", hidden)])
    assert names(idx, "create issue") == ["p__tool"]


@pytest.mark.parametrize(
    ("query", "max_results", "message"),
    [
        ("", 3, "empty"),
        ("   ", 3, "empty"),
        ("x" * 501, 3, "limit is 500"),
        ("time", 0, "max_results"),
        ("time", 51, "max_results"),
        ("time", True, "max_results"),
        ("time", "3", "max_results"),
    ],
)
def test_bad_input_is_refused_with_a_message(index, query, max_results, message):
    with pytest.raises(SearchError, match=message):
        index.search(query, max_results)
