"""BM25 tool search over weighted fields, with an inverted index that updates one server at a time.

Scoring is BM25 (k1=1.2, b=0.75) over a weighted term frequency (BM25F-style): a term in the
tool's name counts more than one in a parameter description. rank-bm25 is not used on this path:
its `get_scores` walks every document for every query term in Python, which measured about
10x slower at 10,000 tools than the postings walk here (benchmarks/search_perf.py); the
baseline in benchmarks/search_eval uses it.

On top of BM25: a query naming a server favours that server's tools, and a query that is a
tool's name (in any spelling: getUser, get_user, "get user") puts that tool first.

The index is a set of per-server shards; an update builds a new shard and swaps an immutable
state in one assignment, so a reader on another thread never sees half an update.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .documents import MAX_QUERY_LENGTH, SearchHit, SearchResult, ToolDocument, check_max_results, check_text
from .tokens import query_terms, schema_text, terms, words

K1 = 1.2
B = 0.75
FIELD_WEIGHTS = {
    "tool": 3.0,
    "server": 2.0,
    "title": 2.0,
    "description": 1.0,
    "param_names": 0.7,
    "param_descriptions": 0.4,
}
SYNONYM_WEIGHT = 0.4  # a synonym's share of a query term's weight
SERVER_MENTION_BOOST = 1.6  # multiplies the score of tools whose server the query names
EXACT_NAME_BONUS = 1000.0  # the tool the query names outranks any keyword match


def _name_key(text: str) -> str:
    return "".join(words(text))


@dataclass(frozen=True, slots=True)
class _Shard:
    documents: tuple[ToolDocument, ...]
    postings: dict[str, dict[int, float]]  # term -> document position -> BM25 term weight (before idf)
    lengths: tuple[float, ...]
    server_terms: frozenset[str]
    name_keys: dict[str, int]  # squashed tool / namespaced name -> document position
    literal_names: dict[str, int]  # lowercased tool / namespaced name as written -> position

    @property
    def total_length(self) -> float:
        return sum(self.lengths)

    def normalised(self, avg_length: float) -> _Shard:
        """Fold BM25's length normalisation into the postings, against the corpus average now.

        The average drifts a little as other servers change; a shard is renormalised whenever it
        is rebuilt. Folding it in keeps the query loop to one multiply-add per posting.
        """
        postings = {}
        for term, posting in self.postings.items():
            postings[term] = {
                position: tf * (K1 + 1) / (tf + K1 * (1 - B + B * self.lengths[position] / avg_length))
                for position, tf in posting.items()
            }
        return _Shard(self.documents, postings, self.lengths, self.server_terms, self.name_keys, self.literal_names)


def _build_shard(server: str, documents: Iterable[ToolDocument]) -> _Shard:
    docs = tuple(sorted(documents, key=lambda d: d.name))
    postings: dict[str, dict[int, float]] = {}
    lengths = []
    name_keys: dict[str, int] = {}
    literal_names: dict[str, int] = {}
    for position, doc in enumerate(docs):
        param_names, param_descriptions = schema_text(doc.input_schema)
        fields = {
            "tool": terms(doc.tool),
            "server": terms(doc.server),
            "title": terms(doc.title),
            "description": terms(doc.description),
            "param_names": terms(" ".join(param_names)),
            "param_descriptions": terms(" ".join(param_descriptions)),
        }
        weighted: Counter[str] = Counter()
        length = 0.0
        for field_name, field_terms in fields.items():
            weight = FIELD_WEIGHTS[field_name]
            for term in field_terms:
                weighted[term] += weight
            length += weight * len(field_terms)
        for term, tf in weighted.items():
            postings.setdefault(term, {})[position] = tf
        lengths.append(length or 1.0)
        name_keys.setdefault(_name_key(doc.tool), position)
        name_keys.setdefault(_name_key(doc.name), position)
        if doc.title:
            name_keys.setdefault(_name_key(doc.title), position)
        literal_names.setdefault(doc.tool.lower(), position)
        literal_names.setdefault(doc.name.lower(), position)
    return _Shard(docs, postings, tuple(lengths), frozenset(terms(server)), name_keys, literal_names)


@dataclass(frozen=True, slots=True)
class _State:
    shards: dict[str, _Shard]
    document_frequency: dict[str, int]
    count: int
    total_length: float


class ToolIndex:
    def __init__(self, documents: Iterable[ToolDocument] = ()) -> None:
        by_server: dict[str, list[ToolDocument]] = {}
        for doc in documents:
            by_server.setdefault(doc.server, []).append(doc)
        # One pass for the global statistics: swapping shard by shard would copy them per server.
        shards = {server: _build_shard(server, docs) for server, docs in by_server.items() if docs}
        total_length = sum(shard.total_length for shard in shards.values())
        count = sum(len(shard.documents) for shard in shards.values())
        avg_length = total_length / count if count else 1.0
        shards = {server: shard.normalised(avg_length) for server, shard in shards.items()}
        df: dict[str, int] = {}
        for shard in shards.values():
            for term, posting in shard.postings.items():
                df[term] = df.get(term, 0) + len(posting)
        self._state = _State(shards, df, count, total_length)

    def __len__(self) -> int:
        return self._state.count

    def documents(self) -> list[ToolDocument]:
        return [doc for shard in self._state.shards.values() for doc in shard.documents]

    def replace_server(self, server: str, documents: Iterable[ToolDocument]) -> None:
        self._swap(server, _build_shard(server, documents))

    def remove_server(self, server: str) -> None:
        self._swap(server, None)

    def _swap(self, server: str, shard: _Shard | None) -> None:
        state = self._state
        shards = dict(state.shards)
        df = dict(state.document_frequency)
        count, total = state.count, state.total_length
        old = shards.pop(server, None)
        if old is not None:
            for term, posting in old.postings.items():
                left = df[term] - len(posting)
                if left:
                    df[term] = left
                else:
                    del df[term]
            count -= len(old.documents)
            total -= old.total_length
        if shard is not None and shard.documents:
            new_count = count + len(shard.documents)
            shard = shard.normalised((total + shard.total_length) / new_count)
            shards[server] = shard
            for term, posting in shard.postings.items():
                df[term] = df.get(term, 0) + len(posting)
            count += len(shard.documents)
            total += shard.total_length
        self._state = _State(shards, df, count, total)  # one assignment: readers see old or new

    def search(
        self, query: str, max_results: int = 3, *, allowed: Callable[[ToolDocument], bool] | None = None
    ) -> SearchResult:
        check_text(query, what="query", limit=MAX_QUERY_LENGTH)
        check_max_results(max_results)
        state = self._state
        own, extra = query_terms(query)
        weights: dict[str, float] = {}
        for term in own:
            weights[term] = weights.get(term, 0.0) + 1.0
        for term in extra:
            weights.setdefault(term, SYNONYM_WEIGHT)
        if state.count == 0:
            return SearchResult([], 0)
        idf = {}
        for term in weights:
            df = state.document_frequency.get(term, 0)
            if df:
                idf[term] = weights[term] * math.log(1 + (state.count - df + 0.5) / (df + 0.5))
        query_key = _name_key(query)
        query_literal = query.strip().lower()
        own_set = set(own)
        ranked: list[tuple[float, str]] = []  # (-score, name): the smallest tuples are the best hits
        for shard in state.shards.values():
            scores: dict[int, float] = {}
            for term, term_weight in idf.items():
                posting = shard.postings.get(term)
                if posting:
                    get = scores.get
                    for position, contribution in posting.items():
                        scores[position] = get(position, 0.0) + term_weight * contribution
            # The name in another spelling (create issue, createIssue) first; the name as written before it.
            exact = shard.name_keys.get(query_key)
            if exact is not None:
                scores[exact] = scores.get(exact, 0.0) + EXACT_NAME_BONUS
            literal = shard.literal_names.get(query_literal)
            if literal is not None:
                scores[literal] = scores.get(literal, 0.0) + EXACT_NAME_BONUS
            if not scores:
                continue
            factor = -SERVER_MENTION_BOOST if shard.server_terms and shard.server_terms <= own_set else -1.0
            documents = shard.documents
            if allowed is None:
                ranked.extend((factor * score, documents[position].name) for position, score in scores.items())
            else:
                ranked.extend(
                    (factor * score, documents[position].name)
                    for position, score in scores.items()
                    if allowed(documents[position])
                )
        best = heapq.nsmallest(max_results, ranked)
        hits = [SearchHit(name, round(-negative, 6)) for negative, name in best]
        scored = ranked
        return SearchResult(hits, len(scored))
