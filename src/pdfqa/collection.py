"""``Collection``: a directory of indexed PDFs you can add to, search and prune from Python.

>>> from pdfqa import Collection
>>> col = Collection.open("my-collection", create=True)           # doctest: +SKIP
>>> report = col.index(["examples/"])                             # doctest: +SKIP
>>> for hit in col.search("What is byte pair encoding?", k=3):    # doctest: +SKIP
...     print(hit.chunk.doc, hit.chunk.page, round(hit.score, 3))

Each :class:`~pdfqa.documents.Hit` carries the chunk (``doc``, ``pages``, ``page_label``,
``heading_path``, ``kinds``, ``chunk_id``, character offsets) and its cosine ``score``.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .chunking import DEFAULT_MAX_TOKENS, DEFAULT_MIN_TOKENS, chunk_document
from .documents import Hit
from .embeddings import DEFAULT_EMBEDDER, Embedder, get_embedder
from .errors import CollectionError, EmbedderMismatchError
from .faiss_index import DenseIndex
from .ingest import FileResult, IndexReport, Prepared, content_hash, discover, prefetch, prepare
from .pdf import DEFAULT_READER
from .store import DocumentRecord, Store, slug

log = logging.getLogger(__name__)
#: write the FAISS files at least this often during a long batch (they are also rebuilt on demand)
SAVE_EVERY_S = 60.0


class Collection:
    """A persistent collection: chunks and metadata in SQLite, one FAISS index per embedder."""

    def __init__(self, store: Store, embedder: str | None = None):
        self.store = store
        self.embedder_spec = embedder or store.manifest["default_embedder"]
        self._indexes: dict[str, DenseIndex] = {}

    # ------------------------------------------------------------------ open / create

    @classmethod
    def open(cls, path: str | Path, *, embedder: str | None = None, create: bool = False,
             chunk_tokens: int = DEFAULT_MAX_TOKENS, reader: str = DEFAULT_READER,
             headings_in_embedding: bool = True, readonly: bool = False) -> "Collection":
        """Open the collection at ``path`` (``create=True`` makes a new one if there is none).

        ``embedder`` picks the index to search; a collection without an index for it raises
        :class:`~pdfqa.errors.EmbedderMismatchError` explaining what it has (``index`` adds one).
        """
        path = Path(path)
        if not (path / "manifest.json").exists():
            if not create:
                Store.open(path)  # raises the explanatory error
            spec = embedder or DEFAULT_EMBEDDER
            emb = get_embedder(spec)  # fail on unknown names before creating anything
            store = Store.create(path, default_embedder=emb.spec, chunking={
                "max_tokens": chunk_tokens, "min_tokens": DEFAULT_MIN_TOKENS, "reader": reader,
                "headings_in_embedding": headings_in_embedding, "tokenizer": emb.spec})
            return cls(store, emb.spec)
        store = Store.open(path, readonly=readonly)
        col = cls(store, embedder)
        if embedder is not None and not create:
            col._check_embedder(embedder)
        return col

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def embedders(self) -> dict[str, dict]:
        """Embedder spec → its manifest entry (dim, normalized, max_tokens, index file)."""
        return dict(self.store.manifest["embedders"])

    def _check_embedder(self, spec: str) -> dict:
        entry = self.store.manifest["embedders"].get(spec)
        if entry is None:
            have = ", ".join(f"{s} ({e['dim']}-d)" for s, e in self.embedders.items()) or "none yet"
            raise EmbedderMismatchError(
                f"{self.path}: no index for embedder {spec!r}; this collection has: {have}. Search with one of "
                f"those, or add one over the same chunks: pdfqa index --collection {self.path} --embedder {spec}")
        return entry

    # ------------------------------------------------------------------ indexing

    def _chunker(self, emb: Embedder) -> Callable:
        cfg = self.store.manifest["chunking"]
        max_tokens = min(int(cfg["max_tokens"]), emb.max_tokens - emb.passage_overhead)

        def run(content):
            return chunk_document(content, count_tokens=emb.count_tokens, max_tokens=max_tokens,
                                  min_tokens=int(cfg.get("min_tokens", DEFAULT_MIN_TOKENS)),
                                  heading_in_budget=cfg.get("headings_in_embedding", True))
        return run

    def _embed_text(self, chunk) -> str:
        return chunk.embed_text(self.store.manifest["chunking"].get("headings_in_embedding", True))

    def index(self, paths: Iterable[str | Path], *, progress: bool = True,
              on_file: Callable[[FileResult], None] | None = None) -> IndexReport:
        """Index PDF files and folders (recursive). Unchanged files cost nothing; changed ones are
        replaced; every failure is reported in the returned :class:`~pdfqa.ingest.IndexReport`."""
        t0 = time.perf_counter()
        files, results = discover(paths)
        for r in results:
            if on_file:
                on_file(r)
        stages = {"read": 0.0, "chunk": 0.0, "embed": 0.0, "store": 0.0}
        with self.store.write_lock():
            specs = self._ensure_embedders()
            primary = get_embedder(self.store.manifest["default_embedder"])
            chunker = self._chunker(primary)
            reader = self.store.manifest["chunking"].get("reader", DEFAULT_READER)
            names: dict[str, Path] = {}

            def work(path: Path) -> Prepared:
                if path.name in names and names[path.name] != path:
                    return Prepared(path=path, error=f"{path.name}: another file with this name is in the batch "
                                                     f"({names[path.name]}); documents are named by file name")
                names[path.name] = path
                doc = self.store.document(path.name)
                return prepare(path, known_hash=lambda _: doc.doc_hash if doc else None, chunker=chunker,
                               reader=reader)

            last_save = time.perf_counter()
            # the SQLite connection is used by this thread only; the worker reads documents via a lookup
            docs = {d.doc: d for d in self.store.documents()}
            self_document = self.store.document
            self.store.document = lambda name: docs.get(name)  # type: ignore[method-assign]
            try:
                for prep in prefetch(files, work):
                    r = self._commit(prep, specs, stages, progress)
                    if r.status == "indexed":
                        docs[r.doc] = self_document(r.doc)
                    results.append(r)
                    if on_file:
                        on_file(r)
                    if time.perf_counter() - last_save > SAVE_EVERY_S:
                        self._save_indexes()
                        last_save = time.perf_counter()
            finally:
                self.store.document = self_document  # type: ignore[method-assign]
                self._save_indexes()
        return IndexReport(files=results, seconds=time.perf_counter() - t0, stage_seconds=stages)

    def _commit(self, prep: Prepared, specs: list[str], stages: dict, progress: bool) -> FileResult:
        path = prep.path
        for k, v in prep.seconds.items():
            stages[k] = stages.get(k, 0.0) + v
        if prep.unchanged:
            rec = self.store.document(path.name)
            return FileResult(path=str(path), doc=path.name, status="unchanged", pages=rec.pages if rec else 0,
                              chunks=rec.chunks if rec else 0, skipped_pages=rec.skipped if rec else [])
        if prep.error:
            skipped = prep.content.skipped_pages if prep.content else []
            return FileResult(path=str(path), doc=path.name, status="failed", error=prep.error,
                              pages=len(prep.content.pages) if prep.content else 0, skipped_pages=skipped)
        t = t_start = time.perf_counter()
        content, chunks = prep.content, prep.chunks
        texts = [self._embed_text(c) for c in chunks]
        hashes = [content_hash(t) for t in texts]
        new_vectors: dict[str, dict[str, np.ndarray]] = {}
        embedded = 0
        for spec in specs:
            cached = self.store.cached_vectors(spec, hashes)
            todo = {h: tx for h, tx in zip(hashes, texts) if h not in cached}
            if todo:
                vecs = embed_in_batches(get_embedder(spec), list(todo.values()), progress=progress,
                                        desc=f"{path.name[:30]} [{spec}]")
                new_vectors[spec] = dict(zip(todo.keys(), vecs))
                embedded = max(embedded, len(todo))
        stages["embed"] += time.perf_counter() - t
        t = time.perf_counter()
        rec = DocumentRecord(doc=content.doc, doc_hash=content.doc_hash, path=str(path.resolve()),
                             bytes=path.stat().st_size, pages=len(content.pages), chunks=len(chunks),
                             skipped=content.skipped_pages, reader=content.reader)
        indexes = {spec: self._index(spec) for spec in specs}  # current state, before this commit
        removed, added = self.store.replace_document(rec, chunks, hashes, new_vectors)
        gen = self.store.generation
        for spec, idx in indexes.items():
            idx.remove(removed)
            vec_by_hash = {**self.store.cached_vectors(spec, [h for h in hashes if h not in new_vectors.get(spec, {})]),
                           **new_vectors.get(spec, {})}
            idx.add(added, np.stack([vec_by_hash[h] for h in hashes]))
            idx.generation = gen
        stages["store"] += time.perf_counter() - t
        return FileResult(path=str(path), doc=content.doc, status="indexed", pages=len(content.pages),
                          chunks=len(chunks), embedded=embedded, skipped_pages=content.skipped_pages,
                          seconds=sum(prep.seconds.values()) + time.perf_counter() - t_start)

    def _ensure_embedders(self) -> list[str]:
        """Register the requested embedder if new, and make every index cover every chunk."""
        m = self.store.manifest
        if self.embedder_spec not in m["embedders"]:
            emb = get_embedder(self.embedder_spec)
            m["embedders"][emb.spec] = {**emb.describe(), "index": "flat",
                                        "index_file": f"indexes/{slug(emb.spec)}.faiss"}
            self.store.save_manifest()
        for spec in m["embedders"]:
            self._fill_missing(spec)
        return list(m["embedders"])

    def _fill_missing(self, spec: str, progress: bool = True) -> int:
        """Embed stored chunks that have no vector for ``spec`` (a newly added embedder)."""
        missing = self.store.missing_vectors(spec)
        if not missing:
            return 0
        rows = self.store.chunks_by_rowid([rid for _, rid in missing])
        texts = [self._embed_text(rows[rid]) for _, rid in missing]
        emb = get_embedder(spec)
        limit = emb.max_tokens - emb.passage_overhead
        over = sum(1 for t in texts if emb.count_tokens(t) > limit)
        if over:
            log.warning("%d chunks exceed %s's %d-token limit and will be truncated by the model", over, spec, limit)
        vecs = embed_in_batches(emb, texts, progress=progress, desc=f"index [{spec}]")
        self.store.put_vectors({spec: {h: v for (h, _), v in zip(missing, vecs)}})
        self._indexes.pop(spec, None)
        return len(missing)

    def _index_path(self, spec: str) -> Path:
        return self.path / self.store.manifest["embedders"][spec]["index_file"]

    def _index(self, spec: str) -> DenseIndex:
        """The in-memory index for ``spec``: loaded from its file, or rebuilt from stored vectors when
        the file is missing or older than the SQLite state (a crash between the two writes)."""
        if spec in self._indexes:
            idx = self._indexes[spec]
            if idx.generation == self.store.generation:
                return idx
        entry = self._check_embedder(spec)
        path = self._index_path(spec)
        gen = self.store.generation
        idx = None
        if path.exists():
            try:
                idx = DenseIndex.load(path)
            except CollectionError as e:
                log.warning("%s; rebuilding it from stored vectors", e)
        if idx is None or idx.generation != gen or idx.dim != entry["dim"]:
            ids, vecs = self.store.index_vectors(spec, entry["dim"])
            idx = DenseIndex.build(ids, vecs, generation=gen) if len(ids) else DenseIndex.empty(entry["dim"])
            idx.generation = gen
        self._indexes[spec] = idx
        return idx

    def _save_indexes(self) -> None:
        if self.store.readonly:
            return
        for spec, idx in self._indexes.items():
            if idx.generation == self.store.generation:
                idx.save(self._index_path(spec), {"embedder": spec, "kind": "flat"})

    # ------------------------------------------------------------------ search / remove / info

    def search(self, query: str, k: int = 5, *, embedder: str | None = None) -> list[Hit]:
        """Top-``k`` chunks for ``query`` by cosine similarity, best first."""
        spec = embedder or self.embedder_spec
        entry = self._check_embedder(spec)
        emb = get_embedder(spec)
        if emb.dim != entry["dim"]:
            raise EmbedderMismatchError(f"{self.path}: the index for {spec!r} has {entry['dim']}-d vectors but the "
                                        f"model now gives {emb.dim}-d; re-index with the original model")
        idx = self._index(spec)
        ids, scores = idx.search(emb.embed_queries([query]), k)
        rows = self.store.chunks_by_rowid(ids)
        return [Hit(chunk=rows[i], score=s, retriever=spec) for i, s in zip(ids, scores) if i in rows]

    def remove(self, doc: str) -> bool:
        """Delete a document and its chunks from every index; False if there was no such document."""
        with self.store.write_lock():
            if self.store.document(doc) is None:
                return False
            indexes = {s: self._index(s) for s in self.store.manifest["embedders"]}
            removed = self.store.remove_document(doc)
            gen = self.store.generation
            for idx in indexes.values():
                idx.remove(removed)
                idx.generation = gen
            self._save_indexes()
        return True

    def documents(self) -> list[DocumentRecord]:
        return self.store.documents()

    def info(self) -> dict:
        """Summary for humans and scripts: documents, chunks, embedders, format."""
        docs = self.store.documents()
        m = self.store.manifest
        return {"path": str(self.path), "format_version": m["format_version"],
                "default_embedder": m["default_embedder"], "chunking": m["chunking"],
                "embedders": {s: {**e, "vectors": len(self._index(s))} for s, e in m["embedders"].items()},
                "documents": [d.to_json() for d in docs], "n_documents": len(docs),
                "n_chunks": self.store.count_chunks(), "generation": self.store.generation}

    def as_retriever(self, k: int = 5, embedder: str | None = None):
        """This collection as a LangChain ``BaseRetriever`` (see :mod:`pdfqa.retrieval`)."""
        from .retrieval import CollectionRetriever

        return CollectionRetriever(collection=self, k=k, embedder=embedder)


def embed_in_batches(emb: Embedder, texts: list[str], *, batch_size: int = 32, progress: bool = True,
                     desc: str = "embedding") -> np.ndarray:
    """Embed ``texts`` in length-sorted batches (less padding), with a progress bar on long runs."""
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), emb.dim), dtype=np.float32)
    bar = tqdm(total=len(texts), desc=desc, unit="chunk", disable=not progress or len(texts) < 64, leave=False)
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        out[sel] = emb.embed_passages([texts[i] for i in sel])
        bar.update(len(sel))
    bar.close()
    return out
