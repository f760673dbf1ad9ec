"""Search latency, index build time, one-server rebuild time and index memory at 1,000 / 10,000 / 50,000 tools.

    .venv/bin/python benchmarks/search_perf.py

The corpus grows from the real tools in benchmarks/search_eval/tools.json: each copy of a server gets a
new name (github-17) and perturbed descriptions (words dropped, words from other tools mixed in), so
postings lists are as long and as skewed as a large real catalog's. Queries are the evaluation queries.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search import ToolDocument, ToolIndex  # noqa: E402

EVAL = ROOT / "benchmarks" / "search_eval"
SIZES = (1_000, 10_000, 50_000)
REBUILD_TOOLS = 50


def real_servers() -> list[dict]:
    return json.loads((EVAL / "tools.json").read_text())


def perturbed(text: str, vocabulary: list[str], rng: random.Random) -> str:
    words = [word for word in text.split() if rng.random() > 0.15]
    for _ in range(rng.randint(0, 4)):
        words.insert(rng.randint(0, len(words)), rng.choice(vocabulary))
    return " ".join(words)


def server_copy(server: dict, copy: int, vocabulary: list[str], rng: random.Random) -> list[ToolDocument]:
    name = server["name"] if copy == 0 else f"{server['name']}-{copy}"
    return [
        ToolDocument(
            name=f"{name}__{tool['name']}"[:64],
            server=name,
            tool=tool["name"],
            description=tool["description"] if copy == 0 else perturbed(tool["description"], vocabulary, rng),
            input_schema=tool.get("inputSchema", {}),
        )
        for tool in server["tools"]
    ]


def corpus(size: int, seed: int = 7) -> list[ToolDocument]:
    rng = random.Random(seed)
    servers = real_servers()
    vocabulary = [word for server in servers for tool in server["tools"] for word in tool["description"].split()]
    documents: list[ToolDocument] = []
    copy = 0
    while len(documents) < size:
        for server in servers:
            documents.extend(server_copy(server, copy, vocabulary, rng))
        copy += 1
    return documents[:size]


def rebuild_server(documents: list[ToolDocument], version: int) -> list[ToolDocument]:
    """A 50-tool server, different on every version, as a re-discovered server would be."""
    rng = random.Random(version)
    picked = rng.sample(documents, REBUILD_TOOLS)
    return [
        ToolDocument(name=f"rebuilt__{i}_{doc.tool}"[:64], server="rebuilt", tool=f"{i}_{doc.tool}",
                     description=doc.description, input_schema=doc.input_schema)
        for i, doc in enumerate(picked)
    ]  # fmt: skip


def percentile(timings: list[float], fraction: float) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    queries = [item["query"] for item in json.loads((EVAL / "queries.json").read_text())]
    print(f"{len(queries)} queries x 5 rounds per size; times in ms unless marked\n")
    print(
        f"{'tools':>7} {'build s':>8} {'rebuild 50':>11} {'p50':>6} {'p99':>6} {'max':>6}"
        f" {'p99 allowed':>12} {'memory MB':>10}"
    )
    for size in SIZES:
        documents = corpus(size)
        started = time.perf_counter()
        index = ToolIndex(documents)
        build = time.perf_counter() - started

        rebuilds = []
        for version in range(7):
            replacement = rebuild_server(documents, version)
            started = time.perf_counter()
            index.replace_server("rebuilt", replacement)
            rebuilds.append((time.perf_counter() - started) * 1000)
        index.remove_server("rebuilt")

        for query in queries[:20]:  # warm caches, as a running gateway's would be
            index.search(query, 5)
        timings, allowed_timings = [], []
        enabled = {doc.server for doc in documents[::2]}
        for _ in range(5):
            for query in queries:
                started = time.perf_counter()
                index.search(query, 5)
                timings.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                index.search(query, 5, allowed=lambda doc, enabled=enabled: doc.server in enabled)
                allowed_timings.append((time.perf_counter() - started) * 1000)

        # Memory from a separate build: tracemalloc slows allocation-heavy code several times over.
        del index
        tracemalloc.start()
        kept = ToolIndex(documents)
        memory = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        del kept

        print(
            f"{size:>7} {build:>8.2f} {statistics.median(rebuilds):>11.1f} {percentile(timings, 0.5):>6.2f}"
            f" {percentile(timings, 0.99):>6.2f} {max(timings):>6.2f} {percentile(allowed_timings, 0.99):>12.2f}"
            f" {memory:>10.1f}"
        )
    print("\nrebuild 50: median replace_server() of a 50-tool server with the rest indexed;")
    print("p99 allowed: with an allowed= predicate that admits half the servers; memory: tracemalloc, index only")


if __name__ == "__main__":
    main()
