"""Search latency and index build time at 1,000, 10,000 and 50,000 tools; prints numbers.

    .venv/bin/python benchmarks/search_perf.py

The corpus is synthetic: servers of 25 tools each, with names and descriptions drawn from a
vocabulary of common tool words, so that queries hit long postings lists as real ones do.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from search import ToolDocument, ToolIndex

VERBS = "create get list update delete search read write send fetch query run start stop sync export import".split()
NOUNS = (
    "issue repository file directory message channel user team project page database table record "
    "event calendar email ticket comment branch commit image document spreadsheet invoice payment "
    "customer order product weather forecast time timezone note task workflow deployment cluster"
).split()
FILLER = "the a for with from into by in of and to all given specified new existing current".split()
QUERIES = [
    "create an issue", "send a slack message", "current time in tokyo", "search repositories",
    "list files in a directory", "get the weather forecast", "update a database record",
    "delete a calendar event", "export invoices", "query the customer table", "create_issue",
    "open a ticket on server-42", "read file contents", "start a deployment", "sync the project notes",
]  # fmt: skip


def corpus(n: int, seed: int = 7) -> list[ToolDocument]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        server = f"server-{i // 25}"
        verb, noun = rng.choice(VERBS), rng.choice(NOUNS)
        tool = f"{verb}_{noun}_{i % 25}"
        words = [rng.choice(VERBS + NOUNS + FILLER) for _ in range(rng.randint(8, 30))]
        props = {rng.choice(NOUNS) + "_id": {"type": "string", "description": f"The {rng.choice(NOUNS)} to use"}}
        docs.append(
            ToolDocument(
                name=f"{server}__{tool}",
                server=server,
                tool=tool,
                description=f"{verb.title()} a {noun}. " + " ".join(words),
                input_schema={"type": "object", "properties": props},
            )
        )
    return docs


def main() -> None:
    print(f"{'tools':>7} {'build s':>8} {'rebuild 25 ms':>14} {'p50 ms':>7} {'p99 ms':>7} {'index MB':>9}")
    for n in (1_000, 10_000, 50_000):
        docs = corpus(n)
        started = time.perf_counter()
        index = ToolIndex(docs)
        build = time.perf_counter() - started
        # Memory from a second build: tracemalloc slows allocation-heavy code several times over.
        tracemalloc.start()
        kept = ToolIndex(docs)
        memory = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        del kept
        server_docs = [d for d in docs if d.server == "server-3"]
        started = time.perf_counter()
        index.replace_server("server-3", server_docs)
        rebuild = (time.perf_counter() - started) * 1000
        timings = []
        for _ in range(20):
            for query in QUERIES:
                started = time.perf_counter()
                index.search(query, 5)
                timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        p50 = statistics.median(timings)
        p99 = timings[int(len(timings) * 0.99) - 1]
        print(f"{n:>7} {build:>8.2f} {rebuild:>14.1f} {p50:>7.2f} {p99:>7.2f} {memory:>9.1f}")


if __name__ == "__main__":
    main()
