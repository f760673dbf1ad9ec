"""Ranking behaviour that must hold, asserted on ranked names. Pure Python: no database, no Django."""

from __future__ import annotations

import threading

import pytest

from search import SearchError, ToolDocument, ToolIndex


def doc(server: str, tool: str, description: str = "", title: str = "", **params: str) -> ToolDocument:
    properties = {name: {"type": "string", "description": text} for name, text in params.items()}
    return ToolDocument(
        name=f"{server}__{tool}", server=server, tool=tool, title=title, description=description,
        input_schema={"type": "object", "properties": properties},
    )  # fmt: skip


CORPUS = [
    doc("github", "create_issue", "Create a new issue in a GitHub repository.", repo="Repository name"),
    doc("github", "search_repositories", "Search for GitHub repositories.", query="Search query"),
    doc("github", "create_pull_request", "Create a new pull request in a GitHub repository."),
    doc("linear", "createIssue", "Create a new issue in Linear.", teamId="The team to create it in"),
    doc("linear", "searchIssues", "Search issues by text."),
    doc("slack", "send_message", "Post a message to a Slack channel.", channel="Channel id"),
    doc("time", "get_current_time", "Get current time in a specific timezone.", timezone="IANA timezone name"),
    doc("time", "convert_time", "Convert time between timezones."),
    doc("filesystem", "read_file", "Read the complete contents of a file from the file system.", path="File path"),
    doc("filesystem", "list_directory", "Get a detailed listing of all files and directories in a path."),
    doc("spam", "helper", "create issue create issue create issue issue issue github linear ticket new issue"),
]


@pytest.fixture
def index() -> ToolIndex:
    return ToolIndex(CORPUS)


def names(index: ToolIndex, query: str, n: int = 3) -> list[str]:
    return [hit.name for hit in index.search(query, n).hits]


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("create_issue", "github__create_issue"),
        ("createIssue", "linear__createIssue"),
        ("linear__createIssue", "linear__createIssue"),
        ("Create_Issue", "github__create_issue"),
        ("sendMessage", "slack__send_message"),
        ("get current time", "time__get_current_time"),
        ("convert_time", "time__convert_time"),
    ],
)
def test_an_exact_tool_name_ranks_first_in_any_spelling(index, query, first):
    assert names(index, query)[0] == first


@pytest.mark.parametrize(
    ("query", "first"),
    [
        ("open a Linear ticket", "linear__createIssue"),
        ("create an issue on github", "github__create_issue"),
        ("file a github issue", "github__create_issue"),
        ("search linear", "linear__searchIssues"),
        ("send a slack message", "slack__send_message"),
    ],
)
def test_a_query_naming_a_service_ranks_that_services_tool_first(index, query, first):
    assert names(index, query)[0] == first


def test_a_keyword_stuffed_description_does_not_outrank_the_exact_name(index):
    assert set(names(index, "create issue", 11)[:2]) == {"github__create_issue", "linear__createIssue"}
    assert names(index, "create_issue", 11)[0] == "github__create_issue"
    assert names(index, "create issue", 11).index("spam__helper") >= 2


def test_camel_snake_kebab_and_digit_identifiers_are_split_into_words():
    tools = ["getUserProfile", "delete-all-records", "list_v2_items", "s3ListBuckets"]
    idx = ToolIndex([doc(server, tool) for server, tool in zip("xyzs", tools, strict=True)])
    assert names(idx, "user profile") == ["x__getUserProfile"]
    assert names(idx, "delete records") == ["y__delete-all-records"]
    assert names(idx, "v2 items") == ["z__list_v2_items"]
    assert names(idx, "s3 buckets") == ["s__s3ListBuckets"]


def test_plurals_and_word_forms_match_the_same_tool():
    idx = ToolIndex(
        [doc("files", "list_files", "Lists the files in a folder."), doc("db", "run_query", "Runs a query.")]
    )
    assert names(idx, "list file") == ["files__list_files"]
    assert names(idx, "running queries") == ["db__run_query"]


def test_parameter_names_and_nested_parameter_descriptions_are_searched():
    nested = {
        "type": "object",
        "properties": {"options": {"type": "object", "properties": {"webhook": {"description": "Callback URL"}}}},
    }
    idx = ToolIndex([
        doc("a", "run", "Run it.", sql="The SQL statement"),
        ToolDocument("b__go", "b", "go", description="Go there.", input_schema=nested),
    ])  # fmt: skip
    assert names(idx, "sql statement") == ["a__run"]
    assert names(idx, "webhook callback") == ["b__go"]


def test_replacing_a_server_changes_its_tools_and_keeps_the_others(index):
    index.replace_server("slack", [doc("slack", "add_reaction", "Add an emoji reaction to a message.")])
    assert names(index, "emoji reaction") == ["slack__add_reaction"]
    assert "slack__send_message" not in names(index, "slack message", 11)
    assert names(index, "get current time")[0] == "time__get_current_time"
    assert len(index) == len(CORPUS)


def test_removing_a_server_drops_its_tools_and_keeps_the_others(index):
    index.remove_server("time")
    assert [name for name in names(index, "time timezone", 11) if name.startswith("time__")] == []
    assert names(index, "read file")[0] == "filesystem__read_file"
    assert len(index) == len(CORPUS) - 2
    assert {d.server for d in index.documents()} == {"github", "linear", "slack", "filesystem", "spam"}


def test_incremental_updates_score_exactly_like_a_fresh_build():
    extra = [doc("notes", "create_note", "Create a note in a notebook."), doc("notes", "search_notes", "Search notes.")]
    grown = ToolIndex(CORPUS)
    grown.replace_server("notes", extra)
    grown.remove_server("spam")
    fresh = ToolIndex([d for d in CORPUS if d.server != "spam"] + extra)
    for query in ("create issue", "search notes", "time in tokyo", "read a file"):
        assert grown.search(query, 10) == fresh.search(query, 10)


def test_allowed_filter_hides_tools_from_hits_and_from_total_matches(index):
    everything = index.search("issue", 50)
    filtered = index.search("issue", 50, allowed=lambda d: d.server != "github")
    assert "github__create_issue" in [hit.name for hit in everything.hits]
    assert [hit.name for hit in filtered.hits if hit.name.startswith("github__")] == []
    assert filtered.total_matches == everything.total_matches - 1
    assert index.search("issue", 50, allowed=lambda d: False).total_matches == 0


def test_total_matches_counts_every_match_beyond_max_results(index):
    result = index.search("issue", 1)
    assert len(result.hits) == 1
    assert result.total_matches == 4


def test_ties_are_broken_by_name():
    idx = ToolIndex([doc(server, "same", "identical words") for server in "cab"])
    assert names(idx, "identical words") == ["a__same", "b__same", "c__same"]
    assert names(idx, "identical words", 2) == ["a__same", "b__same"]


def test_invisible_characters_cannot_hide_words_from_search():
    hidden = "cre\u200bate iss\U000e0041ue with a gi\u202ethub bidi override"
    idx = ToolIndex([doc("p", "tool", hidden)])
    assert names(idx, "create issue github") == ["p__tool"]


def test_a_query_with_no_known_words_finds_nothing(index):
    assert index.search("zzzqqq", 5).hits == []
    assert index.search("zzzqqq", 5).total_matches == 0
    assert ToolIndex().search("anything", 5).total_matches == 0


def test_readers_see_whole_updates_while_a_writer_replaces_a_server():
    index = ToolIndex(CORPUS)
    versions = [
        [doc("slack", f"tool_{n}_{i}", "Post a message to a Slack channel.") for i in range(20)] for n in range(2)
    ]
    index.replace_server("slack", versions[1])
    stop = threading.Event()

    def write():
        n = 0
        while not stop.is_set():
            index.replace_server("slack", versions[n % 2])
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(300):
            hits = [hit.name for hit in index.search("slack message", 50).hits]
            slack = {name.split("_")[3] for name in hits if name.startswith("slack__")}
            assert len(slack) == 1 and len([h for h in hits if h.startswith("slack__")]) == 20
    finally:
        stop.set()
        writer.join()


@pytest.mark.parametrize(
    ("query", "max_results", "message"),
    [
        ("", 3, "the query is empty"),
        ("   ", 3, "the query is empty"),
        (None, 3, "the query is empty"),
        ("x" * 501, 3, "the limit is 500"),
        ("time", 0, "max_results must be a whole number from 1 to 50; got 0"),
        ("time", 51, "max_results must be a whole number from 1 to 50; got 51"),
        ("time", True, "got True"),
        ("time", "3", "got '3'"),
        ("time", 2.0, "got 2.0"),
    ],
)
def test_bad_input_is_refused_with_a_message_that_says_how_to_fix_it(index, query, max_results, message):
    with pytest.raises(SearchError, match=message):
        index.search(query, max_results)


def test_the_longest_allowed_query_and_the_largest_max_results_are_accepted(index):
    assert index.search(("issue " * 100)[:500], 50).total_matches == 4
