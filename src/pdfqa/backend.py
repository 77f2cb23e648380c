"""The store seam: where a :class:`~pdfqa.Collection` keeps its records.

A collection is a pair: a *backend* that is the source of truth, and indexes derived from it. The
backend holds five kinds of record, and nothing else:

- **documents**: one :class:`~pdfqa.store.DocumentRecord` per file (hash, pages, skipped pages);
- **chunks** with their metadata (row id, ``chunk_id``, document, order, text, content hash and every
  other :class:`~pdfqa.documents.Chunk` field — a field added to ``Chunk`` is stored as it is);
- **vectors** per embedder, by content hash (they double as the embedding cache);
- **lexical postings**: each chunk's tokens per tokenizer, by content hash;
- the **manifest** (embedders, chunking, lexical settings) and a **generation** that every change bumps.

Writes are per document and atomic as seen by readers (``replace_document``, ``remove_document``),
under ``write_lock()``. Everything else is *derived* and rebuilt from these records when its
generation is behind: the BM25/TF-IDF indexes and the document prior from the cached tokens, and,
for a backend without ``native_dense``, the FAISS index of each embedder from the stored vectors.
Derived indexes are saved in ``derived_dir`` when the backend has one and held in memory otherwise.

Two backends implement it (same method names, no base class to inherit from):

- ``local`` (:class:`pdfqa.store.Store`): a directory — SQLite for the records, FAISS and bm25s files
  as derived indexes (``native_dense = False``, ``derived_dir`` = the directory);
- ``milvus`` (:class:`pdfqa.milvus_store.MilvusStore`): Milvus Lite (``milvus:PATH.db``) or a Milvus
  server (``milvus://HOST:PORT/NAME``); dense search runs in Milvus (``native_dense = True``,
  ``dense_index(spec)``), lexical indexes are derived in memory (``derived_dir = None``).

>>> backend_name("milvus://localhost:19530/course"), backend_name("my-collection")
('milvus', 'local')
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from .documents import Chunk
from .store import DocumentRecord


class Backend(Protocol):
    """What :class:`~pdfqa.Collection` needs from a store (see the module docstring)."""

    manifest: dict
    readonly: bool
    #: True when the backend searches vectors itself (``dense_index``); else FAISS is derived
    native_dense: bool
    #: where derived indexes are saved (None: kept in memory, rebuilt per process)
    derived_dir: Path | None

    @property
    def path(self) -> Path | str: ...
    @property
    def generation(self) -> int: ...
    def save_manifest(self) -> None: ...
    def write_lock(self): ...
    def close(self) -> None: ...
    def embedder_entry(self, spec: str, dim: int) -> dict: ...
    def documents(self) -> list[DocumentRecord]: ...
    def document(self, doc: str) -> DocumentRecord | None: ...
    def replace_document(self, record: DocumentRecord, chunks: list[Chunk], content_hashes: list[str],
                         vectors: dict[str, dict[str, np.ndarray]]) -> tuple[list[int], list[int]]: ...
    def remove_document(self, doc: str) -> list[int]: ...
    def count_chunks(self) -> int: ...
    def chunks_by_rowid(self, ids: list[int]) -> dict[int, Chunk]: ...
    def iter_chunks(self, doc: str | None = None) -> Iterator[tuple[int, Chunk, str]]: ...
    def rowids(self, chunk_ids: list[str]) -> dict[str, int]: ...
    def chunk_docs(self) -> tuple[np.ndarray, list[str], list[str]]: ...
    def chunk_pages(self) -> list[list[int]]: ...
    def cached_vectors(self, embedder: str, hashes: list[str]) -> dict[str, np.ndarray]: ...
    def put_vectors(self, vectors: dict[str, dict[str, np.ndarray]], *, bump: bool = True) -> None: ...
    def index_vectors(self, embedder: str, dim: int) -> tuple[np.ndarray, np.ndarray]: ...
    def missing_vectors(self, embedder: str) -> list[tuple[str, int]]: ...
    def cached_tokens(self, tokenizer: str, hashes: list[str]) -> dict[str, list[str]]: ...
    def put_tokens(self, tokenizer: str, by_hash: dict[str, list[str]]) -> None: ...


def backend_name(location: str | Path) -> str:
    """``milvus`` for ``milvus:…`` locations, else ``local`` (a directory)."""
    from .milvus_store import is_milvus

    return "milvus" if is_milvus(location) else "local"


def exists(location: str | Path) -> bool:
    """Whether a collection is at ``location``."""
    if backend_name(location) == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore.exists(str(location))
    return (Path(location) / "manifest.json").exists()


def create(location: str | Path, *, default_embedder: str, chunking: dict) -> Backend:
    if backend_name(location) == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore.create(str(location), default_embedder=default_embedder, chunking=chunking)
    from .store import Store

    return Store.create(location, default_embedder=default_embedder, chunking=chunking)


def open_backend(location: str | Path, *, readonly: bool = False) -> Backend:
    """Open the collection at ``location`` (raises :class:`~pdfqa.errors.CollectionError` explaining
    what is missing)."""
    if backend_name(location) == "milvus":
        from .milvus_store import MilvusStore

        return MilvusStore.open(str(location), readonly=readonly)
    from .store import Store

    return Store.open(location, readonly=readonly)
