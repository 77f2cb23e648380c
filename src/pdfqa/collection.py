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

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .chunking import CHUNKING_VERSION, DEFAULT_MAX_TOKENS, DEFAULT_MIN_TOKENS, chunk_document
from .documents import CONTEXT_MODES, DEFAULT_CONTEXT, Chunk, Hit, Page, PdfContent
from .embeddings import DEFAULT_EMBEDDER, Embedder, get_embedder
from .errors import CollectionError, EmbedderMismatchError
from .faiss_index import DenseIndex
from .lexical import LEXICAL_KINDS, DocumentIndex, LexicalIndex, PageIndex, build_lexical
from .text.tokenize import cache_key, get_tokenizer
from .backend import Backend, create as create_backend, exists as backend_exists, open_backend
from .ingest import FileResult, IndexReport, Prepared, content_hash, discover, prefetch, prepare
from .pdf import DEFAULT_READER
from .pdf.ocr import OcrSettings, OcrUnavailableError, ocr_unavailable
from .pdf.reader import require_reader
from .quiet import bar_disable
from .store import DocumentRecord, slug

log = logging.getLogger(__name__)
DEFAULT_LEXICAL_TOKENIZER = "default"
#: write the FAISS files at least this often during a long batch (they are also rebuilt on demand)
SAVE_EVERY_S = 60.0


class Collection:
    """A persistent collection over a backend (:mod:`pdfqa.backend`): a local directory (SQLite, one
    FAISS index per embedder) or Milvus (``milvus:PATH.db``, ``milvus://HOST:PORT/NAME``)."""

    def __init__(self, store: Backend, embedder: str | None = None, *, base_url: str | None = None):
        self.store = store
        #: the OpenAI-compatible server for ``openai:`` embedders (else the one the manifest recorded,
        #: else ``OPENAI_BASE_URL``, else OpenAI's)
        self.base_url = base_url
        self.embedder_spec = embedder or store.manifest["default_embedder"]
        self._indexes: dict[str, DenseIndex] = {}
        self._lexical_cache: dict[str, LexicalIndex] = {}
        self._doc_index: DocumentIndex | None = None
        self._page_index: PageIndex | None = None
        self._page_vectors: tuple | None = None  # (generation, embedder, pages, vectors)
        self._query_cache: dict[tuple[str, str], np.ndarray] = {}
        self._query_cache_size = 1024
        #: embedders this collection holds itself: fitted on its chunks (word2vec:train) or bound to its
        #: server (openai:)
        self._own: dict[str, Embedder] = {}

    # ------------------------------------------------------------------ open / create

    @classmethod
    def open(cls, path: str | Path, *, embedder: str | None = None, create: bool = False,
             chunk_tokens: int = DEFAULT_MAX_TOKENS, reader: str = DEFAULT_READER,
             context: str = DEFAULT_CONTEXT, readonly: bool = False,
             base_url: str | None = None) -> "Collection":
        """Open the collection at ``path`` (``create=True`` makes a new one if there is none).

        ``base_url`` is the OpenAI-compatible server of ``openai:`` embedders (Ollama, vLLM, LM Studio,
        text-embeddings-inference...); without it, the server recorded when the index was built is used.

        ``embedder`` picks the index to search; a collection without an index for it raises
        :class:`~pdfqa.errors.EmbedderMismatchError` explaining what it has (``index`` adds one).
        """
        if not backend_exists(path):
            if not create:
                open_backend(path)  # raises the explanatory error
            spec = embedder or DEFAULT_EMBEDDER
            emb = get_embedder(spec)  # fail on unknown names before creating anything
            require_reader(reader)  # and on readers that are unknown or not installed
            if context not in CONTEXT_MODES:
                from .errors import UnknownComponentError

                raise UnknownComponentError("chunk context", context, list(CONTEXT_MODES))
            store = create_backend(path, default_embedder=emb.spec, chunking={
                "max_tokens": chunk_tokens, "min_tokens": DEFAULT_MIN_TOKENS, "reader": reader,
                "context": context, "version": CHUNKING_VERSION, "tokenizer": emb.spec})
            store.manifest["lexical"] = {"bm25": {"tokenizer": DEFAULT_LEXICAL_TOKENIZER}}
            store.save_manifest()
            return cls(store, emb.spec, base_url=base_url)
        store = open_backend(path, readonly=readonly)
        col = cls(store, embedder, base_url=base_url)
        if embedder is not None and not create:
            col.check_embedder(embedder)
        return col

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def path(self) -> Path | str:
        """The collection's directory, or its ``milvus:`` location."""
        return self.store.path

    @property
    def embedders(self) -> dict[str, dict]:
        """Embedder spec → its manifest entry (dim, normalized, max_tokens, index file)."""
        return dict(self.store.manifest["embedders"])

    def check_embedder(self, spec: str) -> dict:
        entry = self.store.manifest["embedders"].get(spec)
        if entry is None:
            have = ", ".join(f"{s} ({e['dim']}-d)" for s, e in self.embedders.items()) or "none yet"
            raise EmbedderMismatchError(
                f"{self.path}: no index for embedder {spec!r}; this collection has: {have}. Search with one of "
                f"those, or add one over the same chunks: pdfqa index --collection {self.path} --embedder {spec}")
        return entry

    # ------------------------------------------------------------------ indexing

    def embedder(self, spec: str) -> Embedder:
        """The embedder for ``spec`` in this collection. Models trained on the collection itself
        (``word2vec:train``) are fitted on its chunks once and stored in ``models/`` beside the indexes."""
        if spec.startswith("openai:"):
            return self._openai(spec)
        emb = get_embedder(spec)
        if not getattr(emb, "needs_fit", False) and spec not in self._own:
            return emb
        if spec in self._own:
            return self._own[spec]
        from .embeddings.word2vec import from_spec

        own = from_spec(spec)
        path = self.store.derived_dir / "models" / f"{slug(spec)}.bin" if self.store.derived_dir else None
        if path is not None and path.exists():
            own.load(str(path))
        else:
            texts = [self._embed_text(c) for _, c, _ in self.store.iter_chunks()]
            if not texts:
                raise CollectionError(f"{spec} is trained on the collection's chunks: index some documents first")
            own.fit(texts)
            if path is not None and not self.store.readonly:
                path.parent.mkdir(exist_ok=True)
                own.save(str(path))
        self._own[spec] = own
        return own

    def _openai(self, spec: str) -> Embedder:
        """One ``openai:`` embedder per collection, talking to :attr:`base_url`, else to the server
        the manifest recorded for ``spec``, else to ``OPENAI_BASE_URL`` / OpenAI."""
        if spec not in self._own:
            from .embeddings.openai import from_spec

            recorded = self.store.manifest["embedders"].get(spec, {}).get("base_url")
            self._own[spec] = from_spec(spec, base_url=self.base_url or recorded)
        return self._own[spec]

    def _chunker(self, emb: Embedder) -> Callable:
        return chunker_for(self.store.manifest["chunking"], emb)

    @property
    def context_mode(self) -> str:
        """What is embedded with each chunk's text (``chunking.context`` in the manifest; see
        :meth:`~pdfqa.documents.Chunk.embed_text`). Collections made before it existed said
        ``headings_in_embedding``."""
        return context_mode_of(self.store.manifest["chunking"])

    def _embed_text(self, chunk) -> str:
        return chunk.embed_text(self.context_mode)

    @property
    def reader(self) -> str:
        """The PDF reader this collection reads with (``chunking.reader`` in the manifest; see
        :data:`pdfqa.pdf.READERS`)."""
        return self.store.manifest["chunking"].get("reader", DEFAULT_READER)

    def _use_reader(self, reader: str | None) -> str:
        """The reader for this batch: ``reader`` when given (recorded for an empty collection), else
        the collection's. One collection, one reader: a different one on a collection that holds PDFs
        is refused before anything changes, as an unknown or uninstalled one is."""
        current = self.reader
        if reader is None or reader == current:
            require_reader(current)
            return current
        require_reader(reader)
        pdfs = [d for d in self.store.documents() if d.reader != "text"]
        if pdfs:
            raise CollectionError(
                f"{self.path}: its {len(pdfs)} PDF(s) were read with the {current} reader; a collection reads "
                f"with one reader. Index without --reader (or with --reader {current}), or into a new "
                f"collection for {reader}.")
        self.store.manifest["chunking"]["reader"] = reader
        self.store.save_manifest()
        return reader

    def index(self, paths: Iterable[str | Path], *, progress: bool = True,
              on_file: Callable[[FileResult], None] | None = None, executor: str = "local",
              ray_address: str = "local", ocr: str | OcrSettings | None = None,
              reader: str | None = None) -> IndexReport:
        """Index PDF files and folders (recursive). Unchanged files cost nothing; changed ones are
        replaced; every failure is reported in the returned :class:`~pdfqa.ingest.IndexReport`.

        ``reader`` (one of :data:`pdfqa.pdf.READERS`) reads the PDFs; by default the collection's
        (:attr:`reader`, chosen when it was created). An empty collection takes the one given; one that
        holds PDFs read otherwise refuses it (:class:`~pdfqa.errors.CollectionError`).

        ``executor="ray"`` reads, chunks and embeds on a Ray cluster (:mod:`pdfqa.ray_ingest`;
        ``ray_address="local"`` starts one on this machine, else the address of one to join); this
        process still writes every document, so the store and the report are the same.

        ``ocr``: ``auto`` (default: pages without a usable text layer are OCR'd when the OCR packages
        are installed, else reported, with one note naming the packages), ``always``, ``never``, or
        :class:`~pdfqa.pdf.ocr.OcrSettings`. OCR'd chunks carry ``ocr=True`` and ``ocr_confidence``.
        """
        if executor not in ("local", "ray"):
            raise CollectionError(f"unknown executor {executor!r}; expected local or ray")
        if executor == "ray":
            from .ray_ingest import require_ray

            require_ray()  # before anything is opened or locked
        t0 = time.perf_counter()
        settings = self._ocr_settings(ocr, progress)
        files, results = discover(paths)
        for r in results:
            if on_file:
                on_file(r)
        stages = {"read": 0.0, "chunk": 0.0, "embed": 0.0, "store": 0.0}
        with self.store.write_lock():
            reader = self._use_reader(reader)
            specs = self._ensure_embedders()
            primary = self.embedder(self.store.manifest["default_embedder"])
            chunker = self._chunker(primary)
            names: dict[str, Path] = {}
            files = self._with_stale(files)
            # the reader thread must not touch the SQLite connection: it sees a snapshot of doc hashes
            # (documents chunked by an older version count as unknown, so they are read again)
            hashes = {d.doc: d.doc_hash for d in self.store.documents() if not self._stale(d)}

            def work(path: Path) -> Prepared:
                if path.name in names and names[path.name] != path:
                    return Prepared(path=path, error=f"{path.name}: another file with this name is in the batch "
                                                     f"({names[path.name]}); documents are named by file name")
                names[path.name] = path
                return prepare(path, known_hash=hashes.get, chunker=chunker, reader=reader, ocr=settings)

            if executor == "ray":
                from .ray_ingest import ray_prepared

                # the progress callback stays here (it holds the terminal's lock); the settings travel
                source = ray_prepared(self, files, known=hashes, address=ray_address, progress=progress,
                                      ocr=dataclasses.replace(settings, on_page=None))
            else:
                source = prefetch(files, work)
            last_save = time.perf_counter()
            down: str | None = None  # the store's server is gone: the rest of the batch is reported
            try:
                for prep in source:
                    if down:
                        r = FileResult(path=str(prep.path), doc=prep.path.name, status="failed",
                                       error=f"{prep.path.name}: not indexed: {down}")
                        results.append(r)
                        if on_file:
                            on_file(r)
                        continue
                    try:
                        r = self._commit(prep, specs, stages, progress)
                    except Exception as e:  # noqa: BLE001 - an embedder or storage failure on one file
                        # nothing of this file was committed (SQLite rolls the document back; Milvus shows
                        # the previous version, see pdfqa.milvus_store); the in-memory FAISS indexes may
                        # be off, so they are rebuilt from the store on next use
                        self._indexes.clear()
                        log.warning("%s: not indexed: %s: %s", prep.path.name, type(e).__name__, e)
                        down = getattr(self.store, "unreachable", lambda e: None)(e)
                        r = FileResult(path=str(prep.path), doc=prep.path.name, status="failed",
                                       error=f"{prep.path.name}: not indexed: {down}" if down else
                                       f"{prep.path.name}: embedding or storing failed ({type(e).__name__}: {e})")
                    results.append(r)
                    if on_file:
                        on_file(r)
                    if time.perf_counter() - last_save > SAVE_EVERY_S:
                        self._save_indexes(lexical=False)  # lexical indexes: once, at the end
                        last_save = time.perf_counter()
            finally:
                if not down:  # with the server gone there is nothing to save into
                    self._record_build_seconds(stages)
                    self._save_indexes()
                self._close_ocr_bar()
        report = IndexReport(files=results, seconds=time.perf_counter() - t0, stage_seconds=stages)
        missing = ocr_unavailable(settings.languages) if settings.mode == "auto" else None
        if missing and any("OCR unavailable" in why for f in results for _, why in f.skipped_pages):
            report.notes.append(f"pages without a usable text layer were not OCR'd: {missing}")
        return report

    def _ocr_settings(self, ocr: str | OcrSettings | None, progress: bool) -> OcrSettings:
        """The run's OCR settings; ``always`` without the OCR packages fails here, before any work."""
        settings = ocr if isinstance(ocr, OcrSettings) else OcrSettings(mode=ocr or "auto")
        if settings.mode == "always":
            why = ocr_unavailable(settings.languages)
            if why:
                raise OcrUnavailableError(f"--ocr always: {why}")
        user = settings.on_page

        def on_page(doc: str, done: int, total: int) -> None:
            self._ocr_progress(doc, done, total, progress)
            if user:
                user(doc, done, total)
        settings.on_page = on_page
        return settings

    def _ocr_progress(self, doc: str, done: int, total: int, progress: bool) -> None:
        """After each OCR'd page: a progress bar per file (subclasses report elsewhere: the web app)."""
        if not progress:
            return
        from tqdm.auto import tqdm

        bar = getattr(self, "_ocr_bar", None)
        # the file is tracked here: a disabled tqdm (TQDM_DISABLE, no terminal) keeps no desc
        if bar is None or getattr(self, "_ocr_bar_doc", None) != doc:
            self._close_ocr_bar()
            bar = self._ocr_bar = tqdm(total=total, desc=f"OCR {doc[:30]}", unit="page", leave=False, delay=2.0,
                                       disable=bar_disable(progress))
            self._ocr_bar_doc = doc
        bar.update(done - bar.n)
        if done >= total:
            self._close_ocr_bar()

    def _close_ocr_bar(self) -> None:
        bar = getattr(self, "_ocr_bar", None)
        if bar is not None:
            bar.close()
            self._ocr_bar = None

    @staticmethod
    def _stale(d: DocumentRecord) -> bool:
        return d.reader != "text" and d.chunking != CHUNKING_VERSION

    def stale_documents(self) -> list[DocumentRecord]:
        """PDFs whose chunks were made by an older chunking version (the next :meth:`index` redoes them)."""
        return [d for d in self.store.documents() if self._stale(d)]

    def _with_stale(self, files: list[Path]) -> list[Path]:
        """``files`` plus every document chunked by an older version, from the path it was indexed from:
        a collection never mixes two chunkings. Refuses (nothing changed) when such a file is gone."""
        stale = self.stale_documents()
        if not stale:
            return files
        given = {f.name for f in files}
        missing = [d for d in stale if d.doc not in given and not Path(d.path).is_file()]
        if missing:
            names = ", ".join(d.doc for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise CollectionError(
                f"{self.path}: {len(stale)} document(s) were chunked by an older pdfqa (chunking v"
                f"{min(d.chunking for d in stale)}, now v{CHUNKING_VERSION}) and must be re-chunked before "
                f"anything is added, but these files are no longer where they were indexed from: {names}. "
                f"Index them again from their new place (pdfqa index FILE --collection {self.path}) or remove "
                f"them (pdfqa remove DOC --collection {self.path}).")
        log.info("re-chunking %d document(s) made by an older chunking version", len(stale))
        return files + [Path(d.path) for d in stale if d.doc not in given]

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
            given = (prep.vectors or {}).get(spec, {})
            if todo and all(h in given for h in todo):  # embedded by the Ray pipeline
                new_vectors[spec] = {h: given[h] for h in todo}
                embedded = max(embedded, len(todo))
            elif todo:
                t_spec = time.perf_counter()
                vecs = embed_in_batches(self.embedder(spec), list(todo.values()), progress=progress,
                                        desc=f"{path.name[:30]} [{spec}]")
                stages[f"embed:{spec}"] = stages.get(f"embed:{spec}", 0.0) + time.perf_counter() - t_spec
                new_vectors[spec] = dict(zip(todo.keys(), vecs))
                embedded = max(embedded, len(todo))
        stages["embed"] += time.perf_counter() - t
        t = time.perf_counter()
        self._cache_tokens(hashes, texts)
        stages["tokenize"] = stages.get("tokenize", 0.0) + time.perf_counter() - t
        t = time.perf_counter()
        is_file = content.reader != "text"
        rec = DocumentRecord(doc=content.doc, doc_hash=content.doc_hash, path=str(path.resolve()) if is_file else "",
                             bytes=path.stat().st_size if is_file else sum(len(c.text) for c in chunks),
                             pages=len(content.pages), chunks=len(chunks),
                             skipped=content.skipped_pages, reader=content.reader,
                             title=chunks[0].title if chunks else "", chunking=CHUNKING_VERSION if is_file else 1)
        indexes = {spec: self._index(spec) for spec in specs}  # current state, before this commit
        ocr_pages = {p.number: {"confidence": p.ocr_confidence, "rotation": p.ocr_rotation, "words": p.ocr_words}
                     for p in content.pages if p.ocr}
        # the OCR word boxes (highlighting) live beside the chunks in the SQLite store; other stores skip them
        extra = {"ocr_pages": ocr_pages} if hasattr(self.store, "ocr_page") else {}
        removed, added = self.store.replace_document(rec, chunks, hashes, new_vectors, **extra)
        gen = self.store.generation
        for spec, idx in indexes.items():
            if self.store.native_dense:
                continue  # the backend's own index already holds this commit
            if removed and not idx.supports_remove:
                self._indexes.pop(spec, None)  # rebuilt from stored vectors on next use
                continue
            idx.remove(removed)
            vec_by_hash = {**self.store.cached_vectors(spec, [h for h in hashes if h not in new_vectors.get(spec, {})]),
                           **new_vectors.get(spec, {})}
            idx.add(added, np.stack([vec_by_hash[h] for h in hashes]))
            idx.generation = gen
        stages["store"] += time.perf_counter() - t
        return FileResult(path=str(path), doc=content.doc, status="indexed", pages=len(content.pages),
                          chunks=len(chunks), embedded=embedded, skipped_pages=content.skipped_pages,
                          seconds=sum(prep.seconds.values()) + time.perf_counter() - t_start,
                          ocr_pages=len(ocr_pages),
                          ocr_confidence=min((o["confidence"] for o in ocr_pages.values()), default=None))

    def add_passages(self, passages: Iterable[dict], *, progress: bool = True) -> IndexReport:
        """Index plain-text passages (``{"doc_id", "title"?, "text"}``): each is one document and one
        chunk unless it is longer than the chunk budget (then split at sentences). Used for passage
        QA corpora; a passage whose text is unchanged costs nothing."""
        import hashlib

        from .chunking import chunk_blocks
        from .documents import Block

        t0 = time.perf_counter()
        stages = {"read": 0.0, "chunk": 0.0, "embed": 0.0, "store": 0.0}
        results: list[FileResult] = []
        with self.store.write_lock():
            specs = self._ensure_embedders()
            primary = self.embedder(self.store.manifest["default_embedder"])
            cfg = self.store.manifest["chunking"]
            max_tokens = min(int(cfg["max_tokens"]), primary.max_tokens - primary.passage_overhead)
            known = {d.doc: d.doc_hash for d in self.store.documents()}
            batch: list[Prepared] = []

            def flush():
                # one embedding call per spec for the whole batch, into the cache; commits then hit it
                texts = {content_hash(t): t for prep in batch for t in map(self._embed_text, prep.chunks)}
                t = time.perf_counter()
                for spec in specs:
                    have = self.store.cached_vectors(spec, list(texts))
                    todo = [h for h in texts if h not in have]
                    if todo:
                        t_spec = time.perf_counter()
                        vecs = embed_in_batches(self.embedder(spec), [texts[h] for h in todo], progress=False)
                        self.store.put_vectors({spec: dict(zip(todo, vecs))}, bump=False)
                        stages[f"embed:{spec}"] = stages.get(f"embed:{spec}", 0.0) + time.perf_counter() - t_spec
                stages["embed"] += time.perf_counter() - t
                for prep in batch:
                    results.append(self._commit(prep, specs, stages, progress=False))
                batch.clear()

            from tqdm.auto import tqdm

            items = list(passages)
            for p in tqdm(items, desc="passages", unit="passage", disable=bar_disable(progress and len(items) >= 64)):
                doc, text, title = str(p["doc_id"]), str(p.get("text") or ""), str(p.get("title") or "")
                digest = hashlib.sha256(f"{title}\0{text}".encode()).hexdigest()
                if known.get(doc) == digest:
                    results.append(FileResult(path=doc, doc=doc, status="unchanged", pages=1, chunks=1))
                    continue
                if not text.strip():
                    results.append(FileResult(path=doc, doc=doc, status="failed", error=f"{doc}: empty passage"))
                    continue
                t = time.perf_counter()
                block = Block(kind="paragraph", text=text, pages=[1], heading_path=[title] if title else [],
                              char_start=0, char_end=len(text))
                chunks = chunk_blocks([block], doc=doc, doc_hash=digest, page_labels={1: None},
                                      count_tokens=primary.count_tokens, max_tokens=max_tokens,
                                      context=self.context_mode)
                stages["chunk"] += time.perf_counter() - t
                content = PdfContent(path=doc, doc=doc, doc_hash=digest, pages=[Page(1, None, 0, 0)], reader="text")
                batch.append(Prepared(path=Path(doc), content=content, chunks=chunks))
                if len(batch) >= 64:  # embed in batches: one embedding call per 64 passages per spec
                    flush()
            flush()
            self._record_build_seconds(stages)
            self._save_indexes()
        return IndexReport(files=results, seconds=time.perf_counter() - t0, stage_seconds=stages)

    def _record_build_seconds(self, stages: dict) -> None:
        """Add this run's embedding seconds per embedder to the manifest (the cost of each index)."""
        changed = False
        for key, secs in stages.items():
            spec = key.partition("embed:")[2]
            if spec and spec in self.store.manifest["embedders"]:
                e = self.store.manifest["embedders"][spec]
                e["build_seconds"] = round(e.get("build_seconds", 0.0) + secs, 3)
                changed = True
        if changed and not self.store.readonly:
            self.store.save_manifest()

    def add_embedder(self, spec: str, *, progress: bool = True) -> float:
        """Add (or complete) a dense index for ``spec`` over the stored chunks, no re-parsing.
        Returns the seconds its vectors took to compute (recorded in the manifest)."""
        with self.store.write_lock():
            emb = self.embedder(spec)  # fitted on the chunks first where the embedder needs it
            m = self.store.manifest
            if emb.spec not in m["embedders"]:
                m["embedders"][emb.spec] = {**emb.describe(), "index": "flat",
                                            **self.store.embedder_entry(emb.spec, emb.dim)}
                self.store.save_manifest()
            t = time.perf_counter()
            if self._fill_missing(emb.spec, progress=progress):
                m["embedders"][emb.spec]["build_seconds"] = round(
                    m["embedders"][emb.spec].get("build_seconds", 0.0) + time.perf_counter() - t, 3)
                self.store.save_manifest()
            self._index(emb.spec)
            self._save_indexes()
        return float(m["embedders"][emb.spec].get("build_seconds", 0.0))

    def _ensure_embedders(self) -> list[str]:
        """Register the requested embedder if new, and make every index cover every chunk."""
        m = self.store.manifest
        if self.embedder_spec not in m["embedders"]:
            emb = self.embedder(self.embedder_spec)
            m["embedders"][emb.spec] = {**emb.describe(), "index": "flat",
                                        **self.store.embedder_entry(emb.spec, emb.dim)}
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
        emb = self.embedder(spec)
        limit = emb.max_tokens - emb.passage_overhead
        over = sum(1 for t in texts if emb.count_tokens(t) > limit)
        if over:
            log.warning("%d chunks exceed %s's %d-token limit and will be truncated by the model", over, spec, limit)
        vecs = embed_in_batches(emb, texts, progress=progress, desc=f"index [{spec}]")
        self.store.put_vectors({spec: {h: v for (h, _), v in zip(missing, vecs)}})
        self._indexes.pop(spec, None)
        return len(missing)

    def _index_path(self, spec: str) -> Path:
        return self.store.derived_dir / self.store.manifest["embedders"][spec]["index_file"]

    def _index(self, spec: str) -> DenseIndex:
        """The in-memory index for ``spec``: loaded from its file, or rebuilt from stored vectors when
        the file is missing or older than the SQLite state (a crash between the two writes). A backend
        that searches vectors itself (Milvus) gives its own index instead."""
        if self.store.native_dense:
            self.check_embedder(spec)
            return self.store.dense_index(spec)
        if spec in self._indexes:
            idx = self._indexes[spec]
            if idx.generation == self.store.generation:
                return idx
        entry = self.check_embedder(spec)
        path = self._index_path(spec)
        gen = self.store.generation
        idx = None
        if path.exists():
            try:
                idx = DenseIndex.load(path)
            except CollectionError as e:
                log.warning("%s; rebuilding it from stored vectors", e)
        kind = entry.get("index", "flat")
        if idx is None or idx.generation != gen or idx.dim != entry["dim"] or (idx.kind != kind and kind != "ivfpq"):
            ids, vecs = self.store.index_vectors(spec, entry["dim"])
            idx = DenseIndex.build(ids, vecs, generation=gen, kind=kind) if len(ids) else DenseIndex.empty(entry["dim"])
            idx.generation = gen
        self._indexes[spec] = idx
        return idx

    def _save_indexes(self, *, lexical: bool = True) -> None:
        """Write the FAISS files that are current; with ``lexical``, bring the lexical indexes (rebuilt
        from cached tokens, so a crash never needs them saved early) up to date as well."""
        if self.store.readonly:
            return
        if hasattr(self.store, "flush"):
            self.store.flush()  # Milvus: seal the batch's rows into indexed segments
        for spec, idx in self._indexes.items():
            if not self.store.native_dense and idx.generation == self.store.generation:
                idx.save(self._index_path(spec), {"embedder": spec, "kind": idx.kind})
        if not lexical:
            return
        for kind in self.store.manifest.get("lexical", {}):
            self.lexical(kind)  # rebuilt from cached tokens and saved when behind
        if "bm25" in self.store.manifest.get("lexical", {}):
            self.document_index()  # hybrid's document and page priors, kept in step with the chunks
            self.page_index()

    # ------------------------------------------------------------------ lexical indexes

    def _tokenizers(self) -> set[str]:
        return {e.get("tokenizer", DEFAULT_LEXICAL_TOKENIZER) for e in self.store.manifest.get("lexical", {}).values()}

    def _cache_tokens(self, hashes: list[str], texts: list[str], tokenizers: set[str] | None = None) -> None:
        for name in tokenizers or self._tokenizers():
            have = self.store.cached_tokens(cache_key(name), hashes)
            todo = {h: t for h, t in zip(hashes, texts) if h not in have}
            if todo:
                tok = get_tokenizer(name)
                toks = {h: tok(t) for h, t in todo.items()}
                if not self.store.readonly:
                    self.store.put_tokens(cache_key(name), toks)

    def _chunk_tokens(self, name: str, ids: np.ndarray, hashes: list[str]) -> dict[str, list[str]]:
        """Content hash → tokens under tokenizer ``name`` for the given chunks: cached ones from the
        store, the rest tokenized from the stored text (and cached, unless the collection is readonly)."""
        toks = self.store.cached_tokens(cache_key(name), hashes)
        missing = [i for i, h in zip(ids.tolist(), hashes) if h not in toks]
        if missing:
            rows = self.store.chunks_by_rowid(missing)
            tok = get_tokenizer(name)
            new = {h: tok(self._embed_text(rows[i])) for i, h in zip(ids.tolist(), hashes) if i in rows}
            toks.update(new)
            if not self.store.readonly:
                self.store.put_tokens(cache_key(name), new)
        return toks

    def lexical(self, kind: str = "bm25", *, tokenizer: str | None = None) -> LexicalIndex:
        """The ``bm25`` or ``tfidf`` index over every chunk, rebuilt from cached tokens when behind."""
        if kind not in LEXICAL_KINDS:
            from .errors import UnknownComponentError

            raise UnknownComponentError("lexical index", kind, list(LEXICAL_KINDS))
        entry = self.store.manifest.setdefault("lexical", {}).get(kind)
        name = tokenizer or (entry or {}).get("tokenizer", DEFAULT_LEXICAL_TOKENIZER)
        native = getattr(self.store, "lexical_index", None)
        if native is not None and kind == "bm25" and entry is not None and name == entry.get("tokenizer"):
            idx = native()  # BM25 in the backend itself (a Milvus server), over the same tokens
            if idx is not None:
                return idx
        path = self._derived("lexical", kind if name == DEFAULT_LEXICAL_TOKENIZER else f"{kind}-{slug(name)}")

        def build(ids: np.ndarray, docs: list[str], hashes: list[str], toks: dict) -> LexicalIndex:
            return build_lexical(kind, ids, [toks[h] for h in hashes])

        key = f"{kind}:{name}"
        idx, rebuilt = self._load_or_build(path, name, self._lexical_cache.get(key), LexicalIndex.load, build)
        if rebuilt and not self.store.readonly and entry is None and name == DEFAULT_LEXICAL_TOKENIZER:
            self.store.manifest["lexical"][kind] = {"tokenizer": name}
            self.store.save_manifest()
        self._lexical_cache[key] = idx
        return idx

    def document_index(self) -> DocumentIndex:
        """BM25 over whole documents (see :class:`~pdfqa.lexical.DocumentIndex`), with the ``bm25``
        index's tokenizer; rebuilt from the cached chunk tokens when the collection has changed."""
        name = self.store.manifest.get("lexical", {}).get("bm25", {}).get("tokenizer", DEFAULT_LEXICAL_TOKENIZER)

        def build(ids: np.ndarray, docs: list[str], hashes: list[str], toks: dict) -> DocumentIndex:
            tok = get_tokenizer(name)
            titles = {d.doc: d.title or Path(d.doc).stem for d in self.store.documents()}
            return DocumentIndex.build(docs, [toks[h] for h in hashes],
                                       title_tokens=[tok(titles.get(d, "")) for d in dict.fromkeys(docs)])

        self._doc_index, _ = self._load_or_build(self._derived("lexical", "documents"), name, self._doc_index,
                                                 DocumentIndex.load, build)
        return self._doc_index

    def page_index(self) -> PageIndex:
        """BM25 over whole pages (see :class:`~pdfqa.lexical.PageIndex`), with the ``bm25`` index's
        tokenizer; rebuilt from the cached chunk tokens when the collection has changed."""
        name = self.store.manifest.get("lexical", {}).get("bm25", {}).get("tokenizer", DEFAULT_LEXICAL_TOKENIZER)

        def build(ids: np.ndarray, docs: list[str], hashes: list[str], toks: dict) -> PageIndex:
            # a statement page: a page with a table whose title is printed on it (its caption, or a title
            # line opening a chunk); headings inherited from earlier pages would flag the notes too
            titles: dict[tuple[str, int], list[str]] = {}
            tabled: set[tuple[str, int]] = set()
            for _, c, _ in self.store.iter_chunks():
                heads = [ln for ln in c.text.split("\n", 4)[:4] if len(ln) <= 160 and not ln.rstrip().endswith(".")]
                for pg in c.pages:
                    titles.setdefault((c.doc, pg), []).extend(heads)
                    if "table" in c.kinds:
                        tabled.add((c.doc, pg))
            titles = {pg: t for pg, t in titles.items() if pg in tabled}
            return PageIndex.build(ids, docs, self.store.chunk_pages(), [toks[h] for h in hashes], page_titles=titles)

        self._page_index, _ = self._load_or_build(self._derived("lexical", "pages"), name, self._page_index,
                                                  PageIndex.load, build)
        return self._page_index

    def page_vectors(self, embedder: str | None = None) -> tuple[list[tuple[str, int]], np.ndarray]:
        """(pages, one unit vector per page): each (document, page)'s mean chunk vector in ``embedder``'s
        index (default: the collection's), in :meth:`page_index` order; computed from the stored vectors
        (nothing re-embedded) and kept until the collection changes. A chunk spanning pages counts on each.

        >>> col = Collection.open("examples/.pdfqa", readonly=True)  # doctest: +SKIP
        >>> pages, vecs = col.page_vectors(); pages[0], vecs.shape  # doctest: +SKIP
        (('cio_dp2020_03_zero_trust.pdf', 1), (160, 384))
        """
        spec = embedder or self.embedder_spec
        gen = self.store.generation
        if self._page_vectors is not None and self._page_vectors[:2] == (gen, spec):
            return self._page_vectors[2], self._page_vectors[3]
        idx = self.page_index()
        ids, vecs = self.store.index_vectors(spec, self.check_embedder(spec)["dim"])
        row = dict(zip(ids.tolist(), range(len(ids))))
        out = np.zeros((len(idx.pages), vecs.shape[1]), dtype=np.float32)
        for i, members in enumerate(idx.chunk_ids):
            rows = [row[r] for r in members if r in row]
            if rows:
                out[i] = vecs[rows].mean(axis=0)
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-9
        self._page_vectors = (gen, spec, list(idx.pages), out)
        return self._page_vectors[2], out

    def _derived(self, *parts: str) -> Path | None:
        """Where a derived index is saved (None: the backend keeps none on disk, it lives in memory)."""
        return self.store.derived_dir.joinpath(*parts) if self.store.derived_dir else None

    def _load_or_build(self, path: Path | None, tokenizer: str, cached, load: Callable, build: Callable) -> tuple:
        """A lexical index derived from the chunks' tokens under ``tokenizer``: ``cached`` if it is
        current, else the one saved at ``path`` if that is, else rebuilt with ``build(ids, docs,
        hashes, tokens)`` (and saved, unless readonly or ``path`` is None). Returns (index, rebuilt)."""
        gen, key = self.store.generation, cache_key(tokenizer)
        if cached is not None and cached.generation == gen and cached.tokenizer_key in ("", key):
            return cached, False
        idx = None
        if path is not None and path.exists():
            try:
                idx = load(path)
            except Exception as e:  # derived data: rebuild rather than fail
                log.warning("%s: %s; rebuilding", path, e)
        if idx is not None and idx.generation == gen and idx.tokenizer_key in ("", key):
            return idx, False
        ids, docs, hashes = self.store.chunk_docs()
        idx = build(ids, docs, hashes, self._chunk_tokens(tokenizer, ids, hashes))
        idx.generation, idx.tokenizer_key = gen, key
        if path is not None and not self.store.readonly:
            path.parent.mkdir(exist_ok=True)
            idx.save(path, {"tokenizer": tokenizer, "tokenizer_key": key})
        return idx, True

    # ------------------------------------------------------------------ search / remove / info

    @property
    def default_retriever(self) -> str:
        """``hybrid`` (BM25 + the default embedder, fused) when the collection has a lexical index."""
        from .retrieval import DEFAULT_RETRIEVER

        return self.store.manifest.get("default_retriever") or (
            DEFAULT_RETRIEVER if self.store.manifest.get("lexical") else "dense")

    def search(self, query: str, k: int = 5, *, retriever: str | None = None,
               embedder: str | None = None) -> list[Hit]:
        """Top-``k`` chunks for ``query``, best first.

        ``retriever`` is a spec (see :mod:`pdfqa.retrieval`; default :attr:`default_retriever`);
        ``embedder`` alone means dense search with that embedder.
        """
        from .retrieval import get_retriever

        if retriever is None and embedder is not None:
            retriever = embedder
        return get_retriever(self, retriever).search(query, k)

    def dense_search(self, query: str, k: int = 5, *, embedder: str | None = None) -> list[Hit]:
        """Top-``k`` chunks by cosine similarity in ``embedder``'s FAISS index."""
        spec = embedder or self.embedder_spec
        entry = self.check_embedder(spec)
        emb = self.embedder(spec)
        if emb.dim != entry["dim"]:
            raise EmbedderMismatchError(f"{self.path}: the index for {spec!r} has {entry['dim']}-d vectors but the "
                                        f"model now gives {emb.dim}-d; re-index with the original model")
        idx = self._index(spec)
        ids, scores = idx.search(self.query_vector(query, spec)[None, :], k)
        rows = self.store.chunks_by_rowid(ids)
        return [Hit(chunk=rows[i], score=s, retriever=spec) for i, s in zip(ids, scores) if i in rows]

    def prime_queries(self, queries: list[str], embedder: str | None = None, batch_size: int = 64) -> float:
        """Embed many queries in batches into the query cache (evaluation); returns the seconds it took."""
        spec = embedder or self.embedder_spec
        emb = self.embedder(spec)
        todo = [q for q in dict.fromkeys(queries) if (spec, q) not in self._query_cache]
        t = time.perf_counter()
        self._query_cache_size = max(self._query_cache_size, len(todo) + 1024)
        for i in range(0, len(todo), batch_size):
            part = todo[i:i + batch_size]
            for q, v in zip(part, emb.embed_queries(part)):
                self._query_cache[(spec, q)] = v
        return time.perf_counter() - t

    def query_vector(self, query: str, embedder: str | None = None) -> np.ndarray:
        """The query's embedding, memoised (fusion, MMR and evaluation ask for the same query repeatedly)."""
        spec = embedder or self.embedder_spec
        key = (spec, query)
        vec = self._query_cache.get(key)
        if vec is None:
            vec = self.embedder(spec).embed_queries([query])[0]
            if len(self._query_cache) >= self._query_cache_size:
                self._query_cache.pop(next(iter(self._query_cache)))
            self._query_cache[key] = vec
        return vec

    def vectors_for(self, query: str, hits: list[Hit], embedder: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(query vector, stored passage vectors of ``hits``) for the default embedder (used by MMR)."""
        spec = embedder or self.embedder_spec
        entry = self.check_embedder(spec)
        idx = self._index(spec)
        id_of = self.store.rowids([h.chunk.chunk_id for h in hits])
        vecs = idx.vectors([int(id_of[h.chunk.chunk_id]) for h in hits])
        return self.query_vector(query, spec), vecs.reshape(len(hits), entry["dim"])

    def remove(self, doc: str) -> bool:
        """Delete a document and its chunks from every index; False if there was no such document."""
        with self.store.write_lock():
            if self.store.document(doc) is None:
                return False
            indexes = {s: self._index(s) for s in self.store.manifest["embedders"]}
            removed = self.store.remove_document(doc)
            gen = self.store.generation
            for spec, idx in indexes.items():
                if not idx.supports_remove:
                    self._indexes.pop(spec, None)
                    self._index(spec)
                    continue
                idx.remove(removed)
                idx.generation = gen
            self._save_indexes()
        return True

    def documents(self) -> list[DocumentRecord]:
        return self.store.documents()

    def chunks(self, doc: str, page: int | None = None) -> list[Chunk]:
        """The chunks of document ``doc`` (its file name) in reading order, or only those on ``page``
        (1-based): what was indexed, for debugging retrieval. Each :class:`~pdfqa.documents.Chunk`
        carries its text, ``pages``, ``kinds``, ``title``, ``heading_path`` and ``context``;
        ``self.embedded_text(chunk)`` is exactly what was embedded.

        >>> [c.kinds for c in col.chunks("3M_2018_10K.pdf", page=60)]      # doctest: +SKIP
        [['table'], ['table']]
        """
        if self.store.document(doc) is None:
            names = [d.doc for d in self.store.documents()]
            raise CollectionError(f"{self.path}: no document {doc!r}; documents: "
                                  f"{', '.join(names[:20]) + (' ...' if len(names) > 20 else '') or 'none'}")
        out = [c for _, c, _ in self.store.iter_chunks(doc)]
        return [c for c in out if page in c.pages] if page is not None else out

    def embedded_text(self, chunk: Chunk) -> str:
        """The exact text embedded (and tokenized for BM25) for ``chunk``: context line, then text."""
        return self._embed_text(chunk)

    def info(self) -> dict:
        """Summary for humans and scripts: documents, chunks, embedders, format."""
        docs = self.store.documents()
        m = self.store.manifest
        return {"path": str(self.path), "format_version": m["format_version"],
                "default_embedder": m["default_embedder"], "chunking": m["chunking"],
                "embedders": {s: self._index_info(s, e) for s, e in m["embedders"].items()},
                "documents": [d.to_json() for d in docs], "n_documents": len(docs),
                "n_chunks": self.store.count_chunks(), "generation": self.store.generation}

    def _index_info(self, spec: str, entry: dict) -> dict:
        idx = self._index(spec)
        size = idx.memory_bytes()
        return {**entry, "vectors": len(idx), "index_kind": idx.kind, "index_bytes": size,
                "bytes_per_chunk": round(size / len(idx), 1) if len(idx) else None}

    def set_index_kind(self, kind: str, embedder: str | None = None) -> None:
        """Switch an embedder's FAISS index to ``flat``, ``hnsw`` or ``ivfpq`` (rebuilt from stored vectors)."""
        from .faiss_index import INDEX_KINDS

        if kind not in INDEX_KINDS:
            from .errors import UnknownComponentError

            raise UnknownComponentError("index kind", kind, list(INDEX_KINDS))
        spec = embedder or self.embedder_spec
        with self.store.write_lock():
            entry = self.check_embedder(spec)
            if self.store.native_dense:  # the backend builds it first: a kind it lacks is refused, nothing changed
                self.store.set_index_kind(spec, kind)
            entry["index"] = kind
            self.store.save_manifest()
            self._indexes.pop(spec, None)
            if self.store.native_dense:
                return
            ids, vecs = self.store.index_vectors(spec, self.embedders[spec]["dim"])
            idx = DenseIndex.build(ids, vecs, generation=self.store.generation, kind=kind)
            self._indexes[spec] = idx
            self._save_indexes()

    def as_retriever(self, k: int = 5, retriever: str | None = None, embedder: str | None = None):
        """This collection as a LangChain ``BaseRetriever`` (see :mod:`pdfqa.langchain_retriever`); ``k`` can
        also be given per call: ``retriever.invoke(query, k=1)``."""
        from .langchain_retriever import CollectionRetriever

        return CollectionRetriever(collection=self, k=k, retriever=retriever, embedder=embedder)


def context_mode_of(cfg: dict) -> str:
    """The chunk context mode of chunking settings ``cfg`` (see :attr:`Collection.context_mode`)."""
    return cfg.get("context") or (DEFAULT_CONTEXT if cfg.get("headings_in_embedding", True) else "none")


def chunker_for(cfg: dict, emb: Embedder) -> Callable:
    """The chunker a collection with chunking settings ``cfg`` uses for the primary embedder ``emb``
    (also built inside Ray workers, :mod:`pdfqa.ray_ingest`)."""
    max_tokens = min(int(cfg["max_tokens"]), emb.max_tokens - emb.passage_overhead)

    def run(content):
        return chunk_document(content, count_tokens=emb.count_tokens, max_tokens=max_tokens,
                              min_tokens=int(cfg.get("min_tokens", DEFAULT_MIN_TOKENS)),
                              context=context_mode_of(cfg))
    return run


def embed_in_batches(emb: Embedder, texts: list[str], *, batch_size: int | None = None, progress: bool = True,
                     desc: str = "embedding") -> np.ndarray:
    """Embed ``texts`` in length-sorted calls of ``batch_size`` (default: the embedder's
    ``embed_batch_size``), with a progress bar on long runs."""
    from tqdm.auto import tqdm

    batch_size = batch_size or emb.embed_batch_size
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), emb.dim), dtype=np.float32)
    bar = tqdm(total=len(texts), desc=desc, unit="chunk", disable=bar_disable(progress and len(texts) >= 64),
               leave=False)
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        out[sel] = emb.embed_passages([texts[i] for i in sel])
        bar.update(len(sel))
    bar.close()
    return out
