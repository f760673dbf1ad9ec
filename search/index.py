"""BM25F tool search on an inverted index that is updated one server at a time.

Scoring is BM25F (Robertson & Zaragoza): each field's term frequency is length-normalised against that
field's average, weighted, summed, and saturated once with k1. Postings hold, per term, its cells (a
document slot's field) and their term frequencies; normalisation and IDF are applied at query time from
the current corpus statistics, so they stay exact after incremental updates.

Pure Python on `array`s: a query walks only the postings of its terms (rank_bm25's `get_scores` loops
over every document for every query term: 7.8 ms a query at 10,000 tools). benchmarks/search_perf.py:
p50 0.14 ms at 1,000 tools, 0.9 ms at 10,000 (p99 3 ms), 5 ms at 50,000 (p99 20 ms). numpy did the walk
5-8x faster from 10,000 tools up, but importing it cost every gateway process 11 MB resident, for
catalogs that are mostly a few hundred tools. The baseline in benchmarks/search_eval still uses rank_bm25.

On top of BM25F: a query that names a server multiplies that server's tools' scores, and a query that
is a tool's name in any spelling (createIssue, create_issue, "create an issue", github__create_issue)
puts that tool above every keyword match.

Readers take `self._state` once and use only that immutable snapshot; writers build a new snapshot and
publish it with one assignment, so a reader on the event loop never sees half an update. Writers are
serialised by a lock that the read path never takes.
"""

from __future__ import annotations

import heapq
import math
import threading
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import compress
from operator import not_

from .documents import SearchHit, SearchResult, ToolDocument, check_max_results, check_query
from .tokens import name_key, query_grams, query_name_keys, query_terms, schema_text, squashed, terms

FIELDS = ("tool", "server", "title", "description", "param_names", "param_descriptions")
WIDTH = len(FIELDS)  # a "cell" is slot * WIDTH + field: one document's field, in flat per-slot arrays


@dataclass(frozen=True, slots=True)
class Ranking:
    """The ranking's tunable numbers, one per field in FIELDS order where a tuple."""

    field_weights: tuple[float, ...] = (3.0, 1.5, 2.0, 1.0, 0.5, 0.3)
    # Length normalisation per field: names are short and their length says little.
    field_b: tuple[float, ...] = (0.3, 0.0, 0.3, 0.75, 0.5, 0.75)
    k1: float = 1.2
    synonym_weight: float = 0.3  # a synonym's share of a typed word's weight
    server_boost: float = 1.5  # multiplies the scores of the tools of a server the query names
    exact_name_bonus: float = 1000.0  # added for a query that is the tool's name: above any keyword score


DEFAULT_RANKING = Ranking()
_MIN_SERVER_PREFIX = 5  # "postgresql" names server "postgres"; "git" does not name "github"


@dataclass(frozen=True, slots=True)
class _Posting:
    """One term's occurrences: `cells[i]` (slot * WIDTH + field) holds the term `counts[i]` times."""

    documents: int  # how many documents hold the term, for its IDF
    cells: array  # 'l', ascending field within a slot
    counts: array  # 'l'


@dataclass(frozen=True, slots=True)
class _State:
    documents: tuple[ToolDocument | None, ...]  # by slot; None marks a free slot
    count: int
    server_slots: dict[str, tuple[int, ...]]
    server_terms: dict[str, frozenset[str]]  # the terms a server's postings use, to remove them
    server_keys: dict[str, tuple[str, ...]]  # squashed server name -> servers
    postings: dict[str, _Posting]
    lengths: array  # 'l' by cell: the field's term count
    norms: array  # 'd' by cell: field weight / BM25 length normalisation, for current averages
    name_keys: dict[str, tuple[int, ...]]  # name in any spelling -> slots
    literal_names: dict[str, tuple[int, ...]]  # tool or namespaced name as written, lowercased -> slots
    free: tuple[int, ...]


def _empty_state() -> _State:
    return _State((), 0, {}, {}, {}, {}, array("l"), array("d"), {}, {}, ())


def _without(posting: _Posting, dead_cells: set[int]) -> _Posting | None:
    """`posting` less the `dead_cells`; None when nothing is left."""
    keep = [cell not in dead_cells for cell in posting.cells]
    if all(keep):
        return posting
    cells = array("l", compress(posting.cells, keep))
    if not cells:
        return None
    gone = {cell // WIDTH for cell in compress(posting.cells, map(not_, keep))}
    return _Posting(posting.documents - len(gone), cells, array("l", compress(posting.counts, keep)))


def _document_fields(doc: ToolDocument, server_terms: tuple[str, ...]) -> list[tuple[str, ...]]:
    param_names, param_descriptions = schema_text(doc.input_schema)
    return [
        terms(doc.tool),
        server_terms,
        terms(doc.title),
        terms(doc.description),
        terms(" ".join(param_names)),
        terms(" ".join(param_descriptions)),
    ]


def _literal_names(doc: ToolDocument) -> set[str]:
    return {doc.tool.lower(), doc.name.lower()}


def _document_name_keys(doc: ToolDocument) -> set[str]:
    keys = {
        name_key(doc.tool),
        squashed(doc.tool),
        name_key(doc.server) + name_key(doc.tool),
        squashed(doc.server) + squashed(doc.tool),
    }
    if doc.name != f"{doc.server}__{doc.tool}":  # shortened or otherwise namespaced
        keys |= {name_key(doc.name), squashed(doc.name)}
    if doc.title:
        keys |= {name_key(doc.title), squashed(doc.title)}
    keys.discard("")
    return keys


def _unlink(keys: dict[str, tuple[int, ...]], names: set[str], slot: int) -> None:
    for key in names:
        left = tuple(other for other in keys[key] if other != slot)
        if left:
            keys[key] = left
        else:
            del keys[key]


class ToolIndex:
    def __init__(self, documents: Iterable[ToolDocument] = (), *, ranking: Ranking = DEFAULT_RANKING) -> None:
        self._ranking = ranking
        self._write_lock = threading.Lock()
        by_server: dict[str, list[ToolDocument]] = {}
        for doc in documents:
            by_server.setdefault(doc.server, []).append(doc)
        self._state = self._updated(_empty_state(), by_server)

    def __len__(self) -> int:
        return self._state.count

    def documents(self) -> list[ToolDocument]:
        return [doc for doc in self._state.documents if doc is not None]

    def replace_server(self, server: str, documents: Iterable[ToolDocument]) -> None:
        """Index `documents` as the whole of `server`'s tools; other servers' tools are left as they are."""
        docs = list(documents)
        with self._write_lock:
            self._state = self._updated(self._state, {server: docs})

    def remove_server(self, server: str) -> None:
        with self._write_lock:
            self._state = self._updated(self._state, {server: []})

    def _updated(self, state: _State, changes: dict[str, list[ToolDocument]]) -> _State:
        """A new state with each server in `changes` replaced by its documents (an empty list removes it)."""
        documents = list(state.documents)
        lengths = state.lengths
        postings = dict(state.postings)
        server_slots = dict(state.server_slots)
        server_terms = dict(state.server_terms)
        name_keys = dict(state.name_keys)
        literal_names = dict(state.literal_names)
        free = list(state.free)
        count = state.count

        dead: set[int] = set()
        touched: set[str] = set()
        for server in changes:
            old = server_slots.pop(server, None)
            if old is None:
                continue
            dead.update(old)
            touched |= server_terms.pop(server)
            for slot in old:
                doc = documents[slot]
                assert doc is not None
                _unlink(name_keys, _document_name_keys(doc), slot)
                _unlink(literal_names, _literal_names(doc), slot)
                documents[slot] = None
            free.extend(old)
            count -= len(old)
        dead_cells = {slot * WIDTH + field for slot in dead for field in range(WIDTH)}
        for term in touched:
            left = _without(postings[term], dead_cells)
            if left is None:
                del postings[term]
            else:
                postings[term] = left

        free.sort(reverse=True)  # reuse the lowest free slots first, from the end of the list
        added: dict[str, dict[int, int]] = {}  # term -> cell -> count, for the new documents
        new_lengths: list[tuple[int, list[int]]] = []
        for server, docs in changes.items():
            if not docs:
                continue
            shard_terms = terms(server)
            slots: list[int] = []
            vocabulary: set[str] = set()
            for doc in docs:
                slot = free.pop() if free else len(documents)
                if slot == len(documents):
                    documents.append(None)
                documents[slot] = doc
                slots.append(slot)
                fields = _document_fields(doc, shard_terms)
                for position, field_terms in enumerate(fields):
                    cell = slot * WIDTH + position
                    for term in field_terms:
                        counts = added.get(term)
                        if counts is None:
                            counts = added[term] = {}
                        counts[cell] = counts.get(cell, 0) + 1
                vocabulary.update(*fields)
                new_lengths.append((slot, [len(field_terms) for field_terms in fields]))
                for key in _document_name_keys(doc):
                    name_keys[key] = (*name_keys.get(key, ()), slot)
                for key in _literal_names(doc):
                    literal_names[key] = (*literal_names.get(key, ()), slot)
            server_slots[server] = tuple(slots)
            server_terms[server] = frozenset(vocabulary)
            count += len(docs)
        for term, counts in added.items():
            cells = array("l", counts)  # within a slot in field order: the fields were walked in order
            posting = _Posting(len({cell // WIDTH for cell in cells}), cells, array("l", counts.values()))
            existing = postings.get(term)
            if existing is not None:  # slots are never in both: dead slots left the postings above
                posting = _Posting(
                    existing.documents + posting.documents, existing.cells + cells, existing.counts + posting.counts
                )
            postings[term] = posting

        lengths = array("l", state.lengths)
        lengths.extend(array("l", [0]) * ((len(documents) - len(state.documents)) * WIDTH))
        for slot in dead:
            lengths[slot * WIDTH : (slot + 1) * WIDTH] = array("l", [0] * WIDTH)
        for slot, field_lengths in new_lengths:
            lengths[slot * WIDTH : (slot + 1) * WIDTH] = array("l", field_lengths)

        server_keys: dict[str, tuple[str, ...]] = {}
        for server in server_slots:
            key = "".join(server.lower().replace("-", " ").replace("_", " ").split())
            server_keys[key] = (*server_keys.get(key, ()), server)

        return _State(
            documents=tuple(documents),
            count=count,
            server_slots=server_slots,
            server_terms=server_terms,
            server_keys=server_keys,
            postings=postings,
            lengths=lengths,
            norms=self._norms(lengths, count),
            name_keys=name_keys,
            literal_names=literal_names,
            free=tuple(free),
        )

    def _norms(self, lengths: array, count: int) -> array:
        """By cell: weight / (1 - b + b * length / average length), for BM25F's tf normalisation."""
        if count == 0:
            return array("d", [0.0]) * len(lengths)
        factors = []
        for field, (weight, b) in enumerate(zip(self._ranking.field_weights, self._ranking.field_b, strict=True)):
            average = sum(lengths[field::WIDTH]) / count or 1.0
            factors.append((weight, 1.0 - b, b / average))
        norms = array("d", [0.0]) * len(lengths)
        for field, (weight, base, scale) in enumerate(factors):
            norms[field::WIDTH] = array("d", [weight / (base + scale * length) for length in lengths[field::WIDTH]])
        return norms

    def search(
        self, query: str, max_results: int = 3, *, allowed: Callable[[ToolDocument], bool] | None = None
    ) -> SearchResult:
        """The tools that best match `query`, best first; `allowed` hides tools from hits and from total_matches."""
        check_query(query)
        check_max_results(max_results)
        state = self._state  # one read: everything below uses this snapshot
        if state.count == 0:
            return SearchResult([], 0)
        ranking = self._ranking
        scores = self._bm25f(state, query)
        for server in self._servers_named(state, query):
            for slot in state.server_slots[server]:
                if slot in scores:
                    scores[slot] *= ranking.server_boost
        # A name in another spelling (create issue, createIssue) beats keywords; the name as written beats both.
        for key in query_name_keys(query):
            for slot in state.name_keys.get(key, ()):
                scores[slot] = scores.get(slot, 0.0) + ranking.exact_name_bonus
        for slot in state.literal_names.get(query.strip().lower(), ()):
            scores[slot] = scores.get(slot, 0.0) + ranking.exact_name_bonus

        matched = sorted(slot for slot, score in scores.items() if score > 0)
        if allowed is not None:
            documents = state.documents
            matched = [slot for slot in matched if allowed(documents[slot])]  # type: ignore[arg-type]
        return SearchResult(self._top(state, scores, matched, max_results), len(matched))

    def _bm25f(self, state: _State, query: str) -> dict[int, float]:
        """Slot -> BM25F score, for the slots that hold a query term."""
        own, extra = query_terms(query)
        weights: dict[str, float] = {}
        for term in own:
            weights[term] = weights.get(term, 0.0) + 1.0
        for term in extra:
            weights.setdefault(term, self._ranking.synonym_weight)
        k1 = self._ranking.k1
        norms = state.norms
        scores: dict[int, float] = {}
        for term, weight in weights.items():
            posting = state.postings.get(term)
            if posting is None:
                continue
            frequency = posting.documents
            idf = math.log(1.0 + (state.count - frequency + 0.5) / (frequency + 0.5))
            normalised: dict[int, float] = {}  # slot -> sum over fields of tf * norm
            for cell, tf in zip(posting.cells, posting.counts, strict=True):
                slot = cell // WIDTH
                normalised[slot] = normalised.get(slot, 0.0) + tf * norms[cell]
            factor = weight * idf * (k1 + 1.0)
            for slot, value in normalised.items():
                scores[slot] = scores.get(slot, 0.0) + factor * value / (value + k1)
        return scores

    @staticmethod
    def _servers_named(state: _State, query: str) -> set[str]:
        named: set[str] = set()
        for gram in query_grams(query):
            named.update(state.server_keys.get(gram, ()))
            # A longer word that starts with a server's name names it (postgresql -> postgres).
            for end in range(_MIN_SERVER_PREFIX, len(gram)):
                named.update(state.server_keys.get(gram[:end], ()))
        return named

    @staticmethod
    def _top(state: _State, scores: dict[int, float], matched: list[int], max_results: int) -> list[SearchHit]:
        documents = state.documents
        ranked = heapq.nsmallest(
            max_results,
            ((-scores[slot], documents[slot].name) for slot in matched),  # type: ignore[union-attr]
        )
        return [SearchHit(name, round(-negative, 6)) for negative, name in ranked]
