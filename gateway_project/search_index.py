"""Keeps a search index in step with the catalog snapshot, re-indexing only servers that changed."""

from __future__ import annotations

import threading

from registry.catalog import Snapshot, ToolEntry
from search import ToolDocument, ToolIndex


def tool_document(entry: ToolEntry) -> ToolDocument:
    return ToolDocument(
        name=entry.name,
        server=entry.server,
        tool=entry.tool,
        title=entry.title,
        description=entry.description,
        input_schema=entry.input_schema,
    )


class SnapshotSearchIndex:
    def __init__(self) -> None:
        self._index = ToolIndex()
        self._version: str | None = None
        self._fingerprints: dict[str, frozenset[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def index(self, snapshot: Snapshot) -> ToolIndex:
        if snapshot.version != self._version:
            self._sync(snapshot)
        return self._index

    def documents(self, snapshot: Snapshot) -> list[ToolDocument]:
        return self.index(snapshot).documents()

    def _sync(self, snapshot: Snapshot) -> None:
        with self._lock:
            if snapshot.version == self._version:
                return
            by_server: dict[str, list[ToolEntry]] = {}
            for entry in snapshot.tools.values():
                by_server.setdefault(entry.server, []).append(entry)
            for server in set(self._fingerprints) - set(by_server):
                self._index.remove_server(server)
                del self._fingerprints[server]
            for server, entries in by_server.items():
                fingerprint = frozenset((e.name, e.definition_hash) for e in entries)
                if self._fingerprints.get(server) != fingerprint:
                    self._index.replace_server(server, [tool_document(e) for e in entries])
                    self._fingerprints[server] = fingerprint
            self._version = snapshot.version


search_index = SnapshotSearchIndex()
