"""The collection on disk: one directory, no pickle.

::

    DIR/manifest.json          format version, default embedder, chunking settings, one entry per embedder
    DIR/chunks.sqlite          documents, chunks (text + metadata), vectors by (embedder, content hash)
    DIR/indexes/<name>.faiss   one FAISS index per embedder over the same chunk ids
    DIR/indexes/<name>.json    the SQLite generation the index file was built from

SQLite is the source of truth and commits each document atomically; vectors live there too (they
double as the content-hash embedding cache). A FAISS file is derived data, written aside and renamed
into place; when its generation differs from SQLite's (a crash between the two), it is rebuilt from
the stored vectors without embedding anything again.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .documents import Chunk
from .errors import CollectionError

FORMAT = "pdfqa-collection"
FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc TEXT PRIMARY KEY, doc_hash TEXT NOT NULL, path TEXT, bytes INTEGER, pages INTEGER,
    chunks INTEGER, skipped TEXT NOT NULL DEFAULT '[]', reader TEXT, indexed_at REAL,
    title TEXT NOT NULL DEFAULT '', chunking INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id TEXT UNIQUE NOT NULL, doc TEXT NOT NULL REFERENCES documents(doc), ord INTEGER NOT NULL,
    text TEXT NOT NULL, pages TEXT NOT NULL, page_label TEXT, heading_path TEXT NOT NULL,
    kinds TEXT NOT NULL, char_start INTEGER, char_end INTEGER, content_hash TEXT NOT NULL,
    ocr INTEGER NOT NULL DEFAULT 0, ocr_confidence REAL
);
CREATE TABLE IF NOT EXISTS ocr_pages (
    doc TEXT NOT NULL, page INTEGER NOT NULL, confidence REAL, rotation INTEGER NOT NULL DEFAULT 0,
    words TEXT NOT NULL, PRIMARY KEY (doc, page)
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc);
CREATE TABLE IF NOT EXISTS tokens (
    tokenizer TEXT NOT NULL, content_hash TEXT NOT NULL, tokens TEXT NOT NULL,
    PRIMARY KEY (tokenizer, content_hash)
);
CREATE TABLE IF NOT EXISTS vectors (
    embedder TEXT NOT NULL, content_hash TEXT NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY (embedder, content_hash)
);
"""


def slug(spec: str) -> str:
    """A file-name-safe name for an embedder spec (``st:/a/b`` → ``st_a_b``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_")
    return s[:80] or "default"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write aside, fsync, rename: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode())


@dataclass
class DocumentRecord:
    doc: str
    doc_hash: str
    path: str
    bytes: int
    pages: int
    chunks: int
    skipped: list[tuple[int, str]]
    reader: str
    indexed_at: float = 0.0
    title: str = ""
    #: the chunking version the document's chunks were made with (see pdfqa.chunking.CHUNKING_VERSION)
    chunking: int = 1

    def to_json(self) -> dict:
        return {"doc": self.doc, "doc_hash": self.doc_hash, "path": self.path, "bytes": self.bytes,
                "pages": self.pages, "chunks": self.chunks, "title": self.title, "chunking": self.chunking,
                "skipped": [{"page": p, "reason": r} for p, r in self.skipped], "indexed_at": self.indexed_at}


#: columns added after format version 1 (table, column, declaration with its default); readonly opens
#: of older files read them as absent
ADDED_COLUMNS = (("documents", "title", "TEXT NOT NULL DEFAULT ''"),
                 ("documents", "chunking", "INTEGER NOT NULL DEFAULT 1"),
                 ("chunks", "ocr", "INTEGER NOT NULL DEFAULT 0"),
                 ("chunks", "ocr_confidence", "REAL"))


class Store:
    """Low-level access to a collection directory (see the module docstring for the layout); the
    ``local`` implementation of :class:`pdfqa.backend.Backend`."""

    #: dense search runs in FAISS indexes the collection derives from the stored vectors
    native_dense = False

    def __init__(self, path: Path, manifest: dict, *, readonly: bool = False):
        self.path = Path(path)
        self.manifest = manifest
        self.readonly = readonly
        uri = f"file:{self.path / 'chunks.sqlite'}" + ("?mode=ro" if readonly else "")
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        except sqlite3.Error as e:
            raise CollectionError(f"{self.path}: cannot open chunks.sqlite ({e})") from e
        self.db.row_factory = sqlite3.Row
        if not readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            self._migrate()
        cols = self._columns("documents")
        # collections written before documents had a title read as untitled, chunking version 1
        self._doc_extra = ", ".join([
            "d.title AS doc_title" if "title" in cols else "'' AS doc_title",
            "d.chunking AS doc_chunking" if "chunking" in cols else "1 AS doc_chunking"])

    def _columns(self, table: str) -> set[str]:
        try:
            return {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
        except sqlite3.Error:
            return set()

    def _migrate(self) -> None:
        """Add the columns later versions introduced (:data:`ADDED_COLUMNS`; same format version:
        additive, with defaults: untitled documents of chunking version 1, chunks not OCR'd)."""
        have = {table: self._columns(table) for table, _, _ in ADDED_COLUMNS}
        with self.db:
            for table, column, decl in ADDED_COLUMNS:
                if column not in have[table]:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")

    # -------------------------------------------------------------- create / open

    @classmethod
    def create(cls, path: str | Path, *, default_embedder: str, chunking: dict) -> "Store":
        path = Path(path)
        if (path / "manifest.json").exists():
            raise CollectionError(f"{path}: a collection already exists here")
        if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".")):
            raise CollectionError(f"{path}: directory is not empty and holds no pdfqa collection; pick a new directory")
        (path / "indexes").mkdir(parents=True, exist_ok=True)
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "created": time.time(),
                    "default_embedder": default_embedder, "chunking": chunking, "embedders": {}}
        store = cls(path, manifest)
        store.save_manifest()  # the manifest is written last: its presence marks a usable collection
        return store

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False) -> "Store":
        path = Path(path)
        mpath = path / "manifest.json"
        if not mpath.exists():
            raise CollectionError(f"{path}: no pdfqa collection here (manifest.json missing); create one with "
                                  f"`pdfqa index FILES --collection {path}`")
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CollectionError(f"{path}: manifest.json is unreadable ({e})") from e
        if manifest.get("format") != FORMAT:
            raise CollectionError(f"{path}: manifest.json is not a pdfqa collection manifest")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise CollectionError(f"{path}: collection format version {version} is not supported by this pdfqa "
                                  f"(reads version {FORMAT_VERSION}); re-index the PDFs into a new collection")
        return cls(path, manifest, readonly=readonly)

    @property
    def derived_dir(self) -> Path:
        """Derived indexes (FAISS, lexical, fitted models) are saved inside the collection directory."""
        return self.path

    def save_manifest(self) -> None:
        atomic_write_json(self.path / "manifest.json", self.manifest)

    def embedder_entry(self, spec: str, dim: int) -> dict:
        """Manifest fields locating ``spec``'s derived index."""
        return {"index_file": f"indexes/{slug(spec)}.faiss"}

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer at a time per collection (a second `pdfqa index` waits for the first)."""
        with open(self.path / ".lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def close(self) -> None:
        self.db.close()

    # -------------------------------------------------------------- generation

    @property
    def generation(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def _bump(self) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES('generation', '1') ON CONFLICT(key) "
                        "DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    # -------------------------------------------------------------- documents

    def documents(self) -> list[DocumentRecord]:
        rows = self.db.execute(f"SELECT d.*, {self._doc_extra} FROM documents d ORDER BY doc").fetchall()
        return [self._doc(r) for r in rows]

    def document(self, doc: str) -> DocumentRecord | None:
        r = self.db.execute(f"SELECT d.*, {self._doc_extra} FROM documents d WHERE doc=?", (doc,)).fetchone()
        return self._doc(r) if r else None

    @staticmethod
    def _doc(r: sqlite3.Row) -> DocumentRecord:
        return DocumentRecord(doc=r["doc"], doc_hash=r["doc_hash"], path=r["path"], bytes=r["bytes"],
                              pages=r["pages"], chunks=r["chunks"],
                              skipped=[tuple(x) for x in json.loads(r["skipped"])], reader=r["reader"],
                              indexed_at=r["indexed_at"], title=r["doc_title"], chunking=r["doc_chunking"])

    def replace_document(self, record: DocumentRecord, chunks: list[Chunk], content_hashes: list[str],
                         vectors: dict[str, dict[str, np.ndarray]],
                         ocr_pages: dict[int, dict] | None = None) -> tuple[list[int], list[int]]:
        """Atomically replace ``record.doc``'s chunks; returns (removed row ids, added row ids).

        ``vectors`` maps embedder spec → {content hash → vector} for hashes not stored yet;
        ``ocr_pages``: page → ``{"confidence", "rotation", "words"}`` of its OCR'd pages (highlighting).
        """
        with self.db:
            removed = [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE doc=?", (record.doc,))]
            self.db.execute("DELETE FROM chunks WHERE doc=?", (record.doc,))
            self.db.execute(
                "INSERT OR REPLACE INTO documents(doc, doc_hash, path, bytes, pages, chunks, skipped, reader, indexed_at,"
                " title, chunking) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (record.doc, record.doc_hash, record.path, record.bytes, record.pages, len(chunks),
                 json.dumps(record.skipped, ensure_ascii=False), record.reader, time.time(), record.title,
                 record.chunking))
            added = []
            for i, (c, h) in enumerate(zip(chunks, content_hashes)):
                cur = self.db.execute(
                    "INSERT INTO chunks(chunk_id, doc, ord, text, pages, page_label, heading_path, kinds,"
                    " char_start, char_end, content_hash, ocr, ocr_confidence) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (c.chunk_id, c.doc, i, c.text, json.dumps(c.pages), c.page_label,
                     json.dumps(c.heading_path, ensure_ascii=False), json.dumps(c.kinds), c.char_start, c.char_end, h,
                     int(c.ocr), c.ocr_confidence))
                added.append(cur.lastrowid)
            self.db.execute("DELETE FROM ocr_pages WHERE doc=?", (record.doc,))
            self.db.executemany(
                "INSERT INTO ocr_pages(doc, page, confidence, rotation, words) VALUES (?,?,?,?,?)",
                [(record.doc, n, o.get("confidence"), o.get("rotation", 0), json.dumps(o["words"], ensure_ascii=False))
                 for n, o in (ocr_pages or {}).items()])
            self._put_vectors(vectors)
            self._bump()
        return removed, added

    def remove_document(self, doc: str) -> list[int]:
        with self.db:
            removed = [r[0] for r in self.db.execute("SELECT id FROM chunks WHERE doc=?", (doc,))]
            self.db.execute("DELETE FROM chunks WHERE doc=?", (doc,))
            if self._has_table("ocr_pages"):
                self.db.execute("DELETE FROM ocr_pages WHERE doc=?", (doc,))
            n = self.db.execute("DELETE FROM documents WHERE doc=?", (doc,)).rowcount
            if n:
                self._bump()
        return removed if n else []

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    def ocr_page(self, doc: str, page: int) -> dict | None:
        """``{"confidence", "rotation", "words": [[text, conf, x0, y0, x1, y1], ...]}`` (points, the page
        as rendered) of an OCR'd page, ``None`` for pages read from their text layer."""
        if not self._has_table("ocr_pages"):  # a collection from before OCR, opened readonly
            return None
        r = self.db.execute("SELECT confidence, rotation, words FROM ocr_pages WHERE doc=? AND page=?",
                            (doc, page)).fetchone()
        return {"confidence": r[0], "rotation": r[1], "words": json.loads(r[2])} if r else None

    # -------------------------------------------------------------- chunks and vectors

    def count_chunks(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def _select_in(self, sql: str, args: list, keys: list) -> Iterator[sqlite3.Row]:
        """Rows of ``sql`` (ending in ``IN ({})``) for ``keys``, in batches that stay under SQLite's
        parameter limit."""
        uniq = list(dict.fromkeys(keys))
        for start in range(0, len(uniq), 500):
            part = uniq[start:start + 500]
            yield from self.db.execute(sql.format(",".join("?" * len(part))), [*args, *part])

    def chunks_by_rowid(self, ids: list[int]) -> dict[int, Chunk]:
        q = f"SELECT c.*, d.doc_hash, {self._doc_extra} FROM chunks c JOIN documents d ON d.doc = c.doc WHERE c.id IN ({{}})"
        return {r["id"]: self._chunk(r) for r in self._select_in(q, [], ids)}

    def iter_chunks(self, doc: str | None = None) -> Iterator[tuple[int, Chunk, str]]:
        """(row id, chunk, content hash) in document order."""
        q = f"SELECT c.*, d.doc_hash, {self._doc_extra} FROM chunks c JOIN documents d ON d.doc = c.doc"
        args: tuple = ()
        if doc is not None:
            q += " WHERE c.doc=?"
            args = (doc,)
        for r in self.db.execute(q + " ORDER BY c.doc, c.ord", args):
            yield r["id"], self._chunk(r), r["content_hash"]

    @staticmethod
    def _chunk(r: sqlite3.Row) -> Chunk:
        return Chunk(chunk_id=r["chunk_id"], doc=r["doc"], doc_hash=r["doc_hash"], text=r["text"],
                     pages=json.loads(r["pages"]), page_label=r["page_label"],
                     heading_path=json.loads(r["heading_path"]), kinds=json.loads(r["kinds"]),
                     char_start=r["char_start"], char_end=r["char_end"], title=r["doc_title"],
                     **({"ocr": bool(r["ocr"]), "ocr_confidence": r["ocr_confidence"]} if "ocr" in r.keys() else {}))

    def cached_vectors(self, embedder: str, hashes: list[str]) -> dict[str, np.ndarray]:
        q = "SELECT content_hash, vec FROM vectors WHERE embedder=? AND content_hash IN ({})"
        return {h: np.frombuffer(blob, dtype=np.float32) for h, blob in self._select_in(q, [embedder], hashes)}

    def _put_vectors(self, vectors: dict[str, dict[str, np.ndarray]]) -> None:
        for spec, by_hash in vectors.items():
            self.db.executemany("INSERT OR IGNORE INTO vectors(embedder, content_hash, vec) VALUES (?,?,?)",
                                [(spec, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in by_hash.items()])

    def put_vectors(self, vectors: dict[str, dict[str, np.ndarray]], *, bump: bool = True) -> None:
        """Store vectors by content hash; ``bump=False`` for pure cache fills (no chunk changes)."""
        with self.db:
            self._put_vectors(vectors)
            if bump:
                self._bump()

    def index_vectors(self, embedder: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, vectors) of every chunk for ``embedder``; chunks lacking a vector are left out."""
        rows = self.db.execute(
            "SELECT c.id, v.vec FROM chunks c JOIN vectors v ON v.content_hash = c.content_hash AND v.embedder = ?"
            " ORDER BY c.id", (embedder,)).fetchall()
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim) \
            if rows else np.zeros((0, dim), dtype=np.float32)
        return ids, vecs

    def rowids(self, chunk_ids: list[str]) -> dict[str, int]:
        return {r[0]: r[1] for r in self._select_in("SELECT chunk_id, id FROM chunks WHERE chunk_id IN ({})", [], chunk_ids)}

    def cached_tokens(self, tokenizer: str, hashes: list[str]) -> dict[str, list[str]]:
        q = "SELECT content_hash, tokens FROM tokens WHERE tokenizer=? AND content_hash IN ({})"
        return {h: json.loads(toks) for h, toks in self._select_in(q, [tokenizer], hashes)}

    def put_tokens(self, tokenizer: str, by_hash: dict[str, list[str]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO tokens(tokenizer, content_hash, tokens) VALUES (?,?,?)",
                                [(tokenizer, h, json.dumps(t, ensure_ascii=False)) for h, t in by_hash.items()])

    def chunk_docs(self) -> tuple[np.ndarray, list[str], list[str]]:
        """(row ids, documents, content hashes) of every chunk, in row-id order."""
        rows = self.db.execute("SELECT id, doc, content_hash FROM chunks ORDER BY id").fetchall()
        return (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [r[1] for r in rows],
                [r[2] for r in rows])

    def chunk_pages(self) -> list[list[int]]:
        """The pages of every chunk, in row-id order (aligned with :meth:`chunk_docs`)."""
        return [json.loads(r[0]) for r in self.db.execute("SELECT pages FROM chunks ORDER BY id")]

    def missing_vectors(self, embedder: str) -> list[tuple[str, int]]:
        """(content hash, one row id) of chunks with no vector for ``embedder``."""
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT c.content_hash, MIN(c.id) FROM chunks c LEFT JOIN vectors v ON v.content_hash = c.content_hash"
            " AND v.embedder = ? WHERE v.vec IS NULL GROUP BY c.content_hash", (embedder,))]
