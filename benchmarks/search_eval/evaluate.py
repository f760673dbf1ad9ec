"""Tool search quality on real MCP tool definitions: the original plain BM25 against ours, side by side.

    .venv/bin/python benchmarks/search_eval/evaluate.py [--ablation] [--misses]

tools.json holds the published tools of 40+ public MCP servers (SOURCES.md says where each came from);
queries.json holds queries written before the ranker was tuned, each with the namespaced tools that
answer it. Any listed tool is a correct answer, so Recall@k is the share of queries with a correct
tool in the first k results, and MRR@10 is the mean of 1/rank of the first correct tool (0 past 10).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rank_bm25 import BM25Okapi

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from search import Ranking, ToolDocument, ToolIndex  # noqa: E402
from search import tokens as search_tokens  # noqa: E402
from search.index import DEFAULT_RANKING  # noqa: E402

KS = (1, 3, 5, 10)
Ranker = Callable[[str], list[str]]


def load_documents() -> list[ToolDocument]:
    servers = json.loads((HERE / "tools.json").read_text())
    return [
        ToolDocument(
            name=f"{server['name']}__{tool['name']}",
            server=server["name"],
            tool=tool["name"],
            description=tool.get("description", ""),
            input_schema=tool.get("inputSchema", {}),
        )
        for server in servers
        for tool in server["tools"]
    ]


def plain_bm25(documents: list[ToolDocument]) -> Ranker:
    """The original design: rank_bm25's BM25Okapi over lowercased whitespace tokens of name + description."""
    corpus = [f"{doc.name} {doc.description}".lower().split() for doc in documents]
    bm25 = BM25Okapi(corpus)
    names = [doc.name for doc in documents]

    def rank(query: str) -> list[str]:
        scores = bm25.get_scores(query.lower().split())
        ranked = sorted((-score, name) for score, name in zip(scores, names, strict=True) if score > 0)
        return [name for _, name in ranked[:10]]

    return rank


def ours(documents: list[ToolDocument], ranking: Ranking = DEFAULT_RANKING) -> Ranker:
    index = ToolIndex(documents, ranking=ranking)
    return lambda query: [hit.name for hit in index.search(query, 10).hits]


def measure(rank: Ranker, queries: list[dict]) -> dict[str, dict[str, float]]:
    """Metrics per category, and over all queries under the key 'all'."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0] * (len(KS) + 2))
    for item in queries:
        ranked = rank(item["query"])
        relevant = set(item["relevant"])
        first = next((position for position, name in enumerate(ranked, 1) if name in relevant), None)
        for category in (item["category"], "all"):
            row = totals[category]
            for i, k in enumerate(KS):
                row[i] += first is not None and first <= k
            row[len(KS)] += 1 / first if first else 0.0
            row[len(KS) + 1] += 1
    return {
        category: {**{f"R@{k}": row[i] / row[-1] for i, k in enumerate(KS)}, "MRR@10": row[len(KS)] / row[-1]}
        | {"n": row[-1]}
        for category, row in totals.items()
    }


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    systems = list(results)
    categories = ["all", *sorted(c for c in results[systems[0]] if c != "all")]
    metrics = [f"R@{k}" for k in KS] + ["MRR@10"]
    header = f"{'category':<10} {'n':>4}  {'system':<14}" + "".join(f"{m:>8}" for m in metrics)
    print(header)
    print("-" * len(header))
    for category in categories:
        for number, system in enumerate(systems):
            row = results[system][category]
            label = f"{category:<10} {int(row['n']):>4}" if number == 0 else " " * 15
            print(f"{label}  {system:<14}" + "".join(f"{row[m]:>8.3f}" for m in metrics))


def ablations(documents: list[ToolDocument], queries: list[dict]) -> None:
    """One change at a time from our default, to show what each part is worth on this set."""
    default = DEFAULT_RANKING
    variants: dict[str, Ranking] = {
        "ours": default,
        "equal fields": replace(default, field_weights=(1.0,) * 6),
        "no param text": replace(default, field_weights=(*default.field_weights[:4], 0.0, 0.0)),
        "no synonyms": replace(default, synonym_weight=0.0),
        "no server boost": replace(default, server_boost=1.0),
        "server boost 2": replace(default, server_boost=2.0),
        "no name bonus": replace(default, exact_name_bonus=0.0),
        "b=0.75 all": replace(default, field_b=(0.75,) * 6),
        "tool name weight 2": replace(default, field_weights=(2.0, *default.field_weights[1:])),
    }
    results = {name: measure(ours(documents, ranking), queries)["all"] for name, ranking in variants.items()}
    original_stem = search_tokens.stem
    for label, stemmer in (("no stemming", lambda word: word), ("plural folding only", search_tokens.plural_stem)):
        search_tokens.stem = stemmer  # type: ignore[assignment]
        try:
            results[label] = measure(ours(documents), queries)["all"]
        finally:
            search_tokens.stem = original_stem
    metrics = [f"R@{k}" for k in KS] + ["MRR@10"]
    print(f"\n{'ablation (all queries)':<24}" + "".join(f"{m:>8}" for m in metrics))
    for name, row in results.items():
        print(f"{name:<24}" + "".join(f"{row[m]:>8.3f}" for m in metrics))


def print_misses(rank: Ranker, queries: list[dict]) -> None:
    for item in queries:
        ranked = rank(item["query"])
        if not set(ranked[:3]) & set(item["relevant"]):
            print(f"MISS@3 {item['query']!r}: got {ranked[:3]}, want one of {item['relevant'][:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation", action="store_true", help="also score variants of our ranking")
    parser.add_argument("--misses", action="store_true", help="list queries ours misses in the top 3")
    args = parser.parse_args()
    documents = load_documents()
    queries = json.loads((HERE / "queries.json").read_text())
    servers = len({doc.server for doc in documents})
    print(f"{len(documents)} tools from {servers} servers, {len(queries)} queries\n")
    print_table({"plain BM25": measure(plain_bm25(documents), queries), "ours": measure(ours(documents), queries)})
    if args.ablation:
        ablations(documents, queries)
    if args.misses:
        print()
        print_misses(ours(documents), queries)


if __name__ == "__main__":
    main()
