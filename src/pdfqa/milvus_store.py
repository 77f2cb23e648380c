"""The ``milvus`` collection backend: the same records as :mod:`pdfqa.store`, kept in Milvus.

``--collection milvus:PATH.db`` opens Milvus Lite (Milvus's C++ engine, which the milvus-lite package runs as a
child process of this one over a local socket, its data in one file; ``milvus:PATH.db#NAME`` picks a
collection name other than ``pdfqa``);
``--collection milvus://HOST:PORT/NAME`` a Milvus server or cluster (``milvus+https://`` for TLS),
with the token from ``MILVUS_TOKEN``. Needs ``pip install 'pdfqa[milvus]'``.

One pdfqa collection ``NAME`` is four Milvus collections::

    NAME           one row per chunk: id (auto), chunk_id, doc, token, ord, content_hash, text,
                   meta (JSON: every other Chunk field, so metadata added to Chunk later is stored as is),
                   lex (its BM25 terms) and lex_sparse (Milvus's BM25 vector of them),
                   and one FLOAT_VECTOR field per embedder (v_<slug>, named in the manifest)
    NAME__docs     one row per document: doc, token, the DocumentRecord as JSON
    NAME__meta     manifest (JSON), generation, pending (the write in flight, JSON or "")
    NAME__tokens   the lexical postings: a chunk's tokens under one tokenizer, by content hash

Dense search runs in Milvus (:class:`MilvusDenseIndex`, FLAT/HNSW/IVF_PQ per ``--index-kind``; Milvus Lite
builds FLAT, IVF_FLAT and AUTOINDEX only, so ``hnsw`` is its AUTOINDEX there, an HNSW graph, and ``ivfpq``
needs a server), and on a server so does ``bm25`` (:class:`MilvusBM25Index`): each chunk row carries its tokens under pdfqa's own
tokenizer (MeCab content words, English stems) in the ``lex`` field, each token written as one
letters-only word (a 64-bit hash in base 26) so that Milvus's ``standard`` analyzer passes it through
unchanged; Milvus's BM25 function (k1=1.5, b=0.75 like bm25s) turns them into the sparse vectors
``lex_sparse``. Measured against pdfqa's BM25 on jsquad_valid and squad_expmrc this gives the same
top-5 for every question, while Milvus's own analyzers on the raw text do not (benchmarks/README.md,
"Milvus and Ray"). On Milvus Lite, and for the other lexical indexes (TF-IDF, other tokenizers, the
document prior), the index is derived from the tokens in ``NAME__tokens`` and held in memory by each
process, rebuilt when the generation changes (bm25s: the ranking is the same either way): Lite serves
one process, which needs the tokens for the document prior anyway, and its BM25 search costs a request
of ~12 ms at 100k chunks where bm25s takes 1–4 ms in memory.

Per query, a reader asks Milvus as little as it can: a dense search returns its hits' rows with it, rows
and documents' hashes already seen are kept until the generation changes, and a reader re-reads the
generation at most every ``READER_TTL_S``.

Atomicity without transactions: a document's new chunk rows are written under a fresh random
``token``; the document row's token is the commit point (one upsert); the old rows are deleted after
it. A chunk row is visible only when its token is its document's token, so a crash at any point leaves
either the old version or the new one visible, never a mix. While a write is in flight its
``pending`` record tells readers which document to check; the next writer finishes or undoes it
(:meth:`MilvusStore._recover`).

One writer at a time: Milvus Lite locks its data file (one process per file; a second process gets
a clear error); a server collection has no lock (Milvus has no compare-and-set), so run one
``pdfqa index`` per collection at a time.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import numpy as np

from .documents import Chunk
from .errors import CollectionError, EmbedderMismatchError
from .store import FORMAT, FORMAT_VERSION, DocumentRecord, slug
from .text.tokenize import cache_key, get_tokenizer

PREFIX = "milvus:"
DEFAULT_NAME = "pdfqa"
#: Milvus caps VARCHAR fields at 65,535 bytes
MAX_VARCHAR = 65535
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
#: what Milvus Lite accepts as its data file's name
_LITE_FILE_RE = re.compile(r"^[A-Za-z0-9.\-_]{1,36}$")
#: rows per insert/query request
BATCH = 500
#: a reader re-reads the generation at most this often (a writer knows its own)
READER_TTL_S = 0.5
#: chunk rows kept between queries (search hits, fetched rows) until the generation changes
ROW_CACHE = 8192
#: BM25 parameters of bm25s (pdfqa.lexical.BM25Index), so that Milvus's BM25 scores the same
BM25_K1, BM25_B = 1.5, 0.75
_CHUNK_COLUMNS = ("chunk_id", "doc", "doc_hash", "text")


def is_milvus(location: str | Path) -> bool:
    """True for ``milvus:…`` collection locations."""
    return str(location).startswith(PREFIX) or str(location).startswith("milvus+")


def parse_location(location: str) -> tuple[str, str, Path | None]:
    """(pymilvus uri, collection name, Lite data path or None) of a ``milvus:`` location.

    >>> parse_location("milvus://db.example.org:19530/course_ml")
    ('http://db.example.org:19530', 'course_ml', None)
    >>> parse_location("milvus:/tmp/x.db")[1:]
    ('pdfqa', PosixPath('/tmp/x.db'))
    """
    loc = str(location)
    if loc.startswith(("milvus://", "milvus+http://", "milvus+https://")):
        u = urlparse(loc)
        scheme = "https" if u.scheme == "milvus+https" else "http"
        name = u.path.strip("/")
        if not u.hostname or not name:
            raise CollectionError(f"{loc}: expected milvus://HOST:PORT/NAME")
        _check_name(loc, name)
        return f"{scheme}://{u.hostname}:{u.port or 19530}", name, None
    rest = loc[len(PREFIX):]
    path, _, name = rest.partition("#")
    if not path.endswith(".db"):
        raise CollectionError(f"{loc}: expected milvus:PATH.db (Milvus Lite) or milvus://HOST:PORT/NAME (a server)")
    name = name or DEFAULT_NAME
    _check_name(loc, name)
    p = Path(path).expanduser().resolve()
    if not _LITE_FILE_RE.match(p.name):
        raise CollectionError(f"{loc}: Milvus Lite needs a file name of at most 36 letters, digits, '.', '-' "
                              f"or '_' (got {p.name!r})")
    return str(p), name, p


def pool_location(location: str, pool: str) -> str:
    """A location beside ``location`` for a named pool (evaluation keeps one collection per pool).

    >>> pool_location("milvus:/tmp/eval.db", "squad-1a2b")
    'milvus:/tmp/eval.db#squad_1a2b'
    >>> pool_location("milvus://h:19530/eval", "squad-1a2b")
    'milvus://h:19530/eval_squad_1a2b'
    """
    suffix = re.sub(r"[^A-Za-z0-9_]", "_", pool)
    if location.startswith(("milvus://", "milvus+")):
        return f"{location.rstrip('/')}_{suffix}"
    return f"{location.partition('#')[0]}#{suffix}"


def _check_name(loc: str, name: str) -> None:
    if not _NAME_RE.match(name):
        raise CollectionError(f"{loc}: {name!r} is not a valid Milvus collection name (letters, digits, _)")


def _import():
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # gRPC's C core logs keepalive chatter to stderr
    try:
        import pymilvus  # noqa: F401
    except ImportError as e:
        raise CollectionError("Milvus collections need the milvus extra: pip install 'pdfqa[milvus]'") from e
    import logging

    import pymilvus

    # pymilvus logs every failed RPC and iterator detail itself; pdfqa reports the error once, in its words
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    return pymilvus


def _unreachable(e: Exception) -> bool:
    """A connection-level failure (server down or gone), as opposed to a refused request."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(s in text for s in ("unavailable", "connect", "deadline", "timed out", "timeout", "closed",
                                   "fail connecting", "not ready", "rpc error"))


class MilvusStore:
    """The :class:`~pdfqa.store.Store` interface over Milvus (see the module docstring)."""

    native_dense = True
    #: where derived indexes are saved: nowhere, they are rebuilt in memory from the tokens
    derived_dir = None

    def __init__(self, location: str, client, name: str, manifest: dict, *, readonly: bool = False,
                 lite_path: Path | None = None):
        self.location, self.client, self.name = location, client, name
        self._manifest, self.readonly, self.lite_path = manifest, readonly, lite_path
        self.docs_name, self.meta_name, self.tokens_name = f"{name}__docs", f"{name}__meta", f"{name}__tokens"
        self._gen: int | None = None
        self._manifest_text = ""
        self._pending: dict | None = None
        self._read_at = 0.0
        self._pending_vectors: dict[str, dict[str, np.ndarray]] = {}
        self._has_chunks: bool | None = None
        self._lock_file = None
        self._cache_gen: int | None = None
        self._rows: dict[int, dict] = {}  # row id -> chunk row (the _ROW fields), this generation's
        self._doc_hash: dict[str, str] = {}  # document -> its hash, this generation's
        if not readonly:
            self._read_state(force=True)

    @property
    def manifest(self) -> dict:
        """The manifest; a reader re-reads it with the generation (the writer may add to it)."""
        if self.readonly:
            self._read_state()
        return self._manifest

    def unreachable(self, e: Exception) -> str | None:
        """The message for a batch whose server went away (None for an error of one request)."""
        if not _unreachable(e):
            return None
        why = str(getattr(e, "message", "") or e).splitlines()[0][:160]
        return f"Milvus at {self.location} unreachable ({why}); what was committed before stays"

    @property
    def path(self) -> str:
        """The location, as given (shown in messages)."""
        return self.location

    # -------------------------------------------------------------- connect / create / open

    @classmethod
    def connect(cls, location: str):
        """(client, name, lite path) for a location; a clear error when the server cannot be reached."""
        pm = _import()
        uri, name, lite = parse_location(location)
        if lite is not None:
            lite.parent.mkdir(parents=True, exist_ok=True)
        try:
            if lite is not None:
                with _LITE_LOCK:  # two threads starting the in-process server for one file race for its lock
                    client = pm.MilvusClient(uri)
                    _LITE_USERS[lite] = _LITE_USERS.get(lite, 0) + 1
            else:
                client = pm.MilvusClient(uri=uri, token=os.environ.get("MILVUS_TOKEN", ""), timeout=10)
                _no_retry_storm(client)
            client.list_collections()
        except Exception as e:  # noqa: BLE001 - pymilvus raises several types for one cause
            # Milvus Lite refuses a file another process holds ("Open local milvus failed", it logs why)
            if lite is not None and any(w in str(e).lower() for w in ("lock", "open local milvus failed")):
                raise CollectionError(f"{location}: the Milvus Lite file is open in another process (Milvus Lite "
                                      f"serves one process per file; use a Milvus server for shared access)") from e
            where = lite or uri
            why = str(getattr(e, "message", "") or e).splitlines()[0][:200]
            raise CollectionError(f"{location}: cannot reach Milvus at {where} ({why})") from e
        return client, name, lite

    @classmethod
    def exists(cls, location: str) -> bool:
        lite = parse_location(location)[2]
        if lite is not None and not lite.exists():
            return False  # not even started: opening it would create the file
        client, name, lite = cls.connect(location)
        try:
            return client.has_collection(f"{name}__meta") or client.has_collection(name)
        finally:
            _disconnect(client, lite)

    @classmethod
    def create(cls, location: str, *, default_embedder: str, chunking: dict) -> "MilvusStore":
        client, name, lite = cls.connect(location)
        try:
            return cls._create(location, client, name, lite, default_embedder, chunking)
        except BaseException:
            _disconnect(client, lite)
            raise

    @classmethod
    def _create(cls, location, client, name, lite, default_embedder, chunking) -> "MilvusStore":
        if client.has_collection(f"{name}__meta"):
            raise CollectionError(f"{location}: a collection already exists here")
        if client.has_collection(name):
            raise CollectionError(f"{location}: Milvus already has a collection {name!r} that pdfqa did not create; "
                                  f"pick another name")
        for n, fields_ in ((f"{name}__docs", [("doc", 1024), ("token", 64)]), (f"{name}__tokens", [("key", 128)]),
                           (f"{name}__meta", [("key", 64)])):
            cls._create_side(client, n, fields_, json_field="record" if n.endswith("__docs") else None,
                             text_field=None if n.endswith("__docs") else "value")
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "created": time.time(),
                    "default_embedder": default_embedder, "chunking": chunking, "embedders": {},
                    "backend": "milvus"}
        store = cls(location, client, name, manifest, lite_path=lite)
        store._put_meta({"generation": "0", "pending": ""})
        store.save_manifest()  # written last: its presence marks a usable collection
        return store

    @staticmethod
    def _create_side(client, name: str, keys: list[tuple[str, int]], *, json_field: str | None,
                     text_field: str | None) -> None:
        from pymilvus import DataType

        s = client.create_schema(auto_id=False, enable_dynamic_field=False)
        for i, (k, n) in enumerate(keys):
            s.add_field(k, DataType.VARCHAR, max_length=n, is_primary=i == 0)
        if json_field:
            s.add_field(json_field, DataType.JSON)
        if text_field:
            s.add_field(text_field, DataType.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("_v", DataType.FLOAT_VECTOR, dim=2)  # Milvus requires a vector field in every collection
        ip = client.prepare_index_params()
        ip.add_index("_v", index_type="FLAT", metric_type="L2")
        client.create_collection(name, schema=s, index_params=ip, consistency_level="Strong")

    @classmethod
    def open(cls, location: str, *, readonly: bool = False) -> "MilvusStore":
        lite = parse_location(location)[2]
        if lite is not None and not lite.exists():
            raise CollectionError(f"{location}: no pdfqa collection here; create one with "
                                  f"`pdfqa index FILES --collection {location}`")
        client, name, lite = cls.connect(location)
        try:
            return cls._open(location, client, name, lite, readonly)
        except BaseException:
            _disconnect(client, lite)
            raise

    @classmethod
    def _open(cls, location, client, name, lite, readonly) -> "MilvusStore":
        if not client.has_collection(f"{name}__meta"):
            if client.has_collection(name):
                raise CollectionError(f"{location}: Milvus collection {name!r} was not created by pdfqa (no {name}__meta "
                                      f"manifest); pdfqa will not write into it; pick another name")
            raise CollectionError(f"{location}: no pdfqa collection here; create one with "
                                  f"`pdfqa index FILES --collection {location}`")
        for n in (f"{name}__meta", f"{name}__docs", f"{name}__tokens"):
            client.load_collection(n)
        rows = client.query(f"{name}__meta", filter='key == "manifest"', output_fields=["value"])
        if not rows:
            raise CollectionError(f"{location}: the collection has no manifest (its creation did not finish); "
                                  f"drop it and index again")
        try:
            manifest = json.loads(rows[0]["value"])
        except json.JSONDecodeError as e:
            raise CollectionError(f"{location}: manifest is unreadable ({e})") from e
        if manifest.get("format") != FORMAT:
            raise CollectionError(f"{location}: {name}__meta does not hold a pdfqa collection manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CollectionError(f"{location}: collection format version {manifest.get('format_version')} is not "
                                  f"supported by this pdfqa (reads version {FORMAT_VERSION})")
        store = cls(location, client, name, manifest, readonly=readonly, lite_path=lite)
        if store._chunks_exist():
            client.load_collection(name)
            store._check_schema()
        return store

    def _check_schema(self) -> None:
        """Refuse a chunk collection whose vector fields do not match the manifest's embedders."""
        desc = self.client.describe_collection(self.name)
        have = {f["name"]: f.get("params", {}).get("dim") for f in desc["fields"]}
        for spec, e in self.manifest["embedders"].items():
            field = e.get("milvus_field")
            if field not in have or int(have[field] or 0) != int(e["dim"]):
                raise EmbedderMismatchError(f"{self.location}: Milvus collection {self.name!r} has no {e['dim']}-d field "
                                            f"{field!r} for embedder {spec!r}; it was built by another embedder or "
                                            f"program: index into a new collection")

    def save_manifest(self) -> None:
        if self.readonly:
            return
        text = json.dumps(self.manifest, ensure_ascii=False)
        if len(text.encode()) > MAX_VARCHAR:
            raise CollectionError(f"{self.location}: manifest exceeds {MAX_VARCHAR} bytes")
        self._put_meta({"manifest": text})

    def _put_meta(self, kv: dict[str, str]) -> None:
        self.client.upsert(self.meta_name, [{"key": k, "value": v, "_v": [0.0, 0.0]} for k, v in kv.items()])

    @contextmanager
    def write_lock(self) -> Iterator[None]:
        """One writer per Milvus Lite file (a lock beside it); on a server, a no-op (see the module
        docstring). A write left unfinished by a crash is recovered first."""
        f = None
        if self.lite_path is not None:
            f = open(f"{self.lite_path}.pdfqa-lock", "a+")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            self._read_state(force=True)
            self._recover()
            yield
        finally:
            if f is not None:
                fcntl.flock(f, fcntl.LOCK_UN)
                f.close()

    def flush(self) -> None:
        """Seal what was written into Milvus segments (Milvus Lite searches sealed segments through
        their built index, unsealed rows by a scan per query); the collection calls it after a batch."""
        if not self.readonly and self._chunks_exist():
            self.client.flush(self.name)

    def close(self) -> None:
        _disconnect(self.client, self.lite_path)

    # -------------------------------------------------------------- generation / pending

    def _read_state(self, force: bool = False) -> None:
        if not force and self._gen is not None and (not self.readonly or time.monotonic() - self._read_at < READER_TTL_S):
            return
        keys = '["generation", "pending", "manifest"]' if self.readonly else '["generation", "pending"]'
        rows = self.client.query(self.meta_name, filter=f"key in {keys}", output_fields=["key", "value"])
        kv = {r["key"]: r["value"] for r in rows}
        self._gen = int(kv.get("generation") or 0)
        self._pending = json.loads(kv["pending"]) if kv.get("pending") else None
        if kv.get("manifest") and kv["manifest"] != self._manifest_text:  # a reader follows the writer's manifest
            self._manifest_text = kv["manifest"]
            self._manifest.clear()
            self._manifest.update(json.loads(kv["manifest"]))
        self._read_at = time.monotonic()

    @property
    def generation(self) -> int:
        self._read_state()
        return int(self._gen or 0)

    def _bump(self) -> None:
        self._read_state(force=True)
        self._gen = int(self._gen or 0) + 1
        self._put_meta({"generation": str(self._gen)})

    def _set_pending(self, pending: dict | None) -> None:
        self._put_meta({"pending": json.dumps(pending) if pending else ""})
        self._pending = pending

    def _recover(self) -> None:
        """Finish or undo a write a crash left in flight: rows under a token that is not their
        document's are deleted (the new version if the commit point was not reached, else the old)."""
        p = self._pending
        if not p or self.readonly:
            return
        if self._chunks_exist():
            live = self._doc_token(p["doc"])
            self._delete(f'doc == {_q(p["doc"])}' + (f' and token != {_q(live)}' if live else ""))
        self._set_pending(None)
        self._bump()

    # -------------------------------------------------------------- the chunk collection

    def _chunks_exist(self) -> bool:
        if not self._has_chunks:
            self._has_chunks = self.client.has_collection(self.name)
        return bool(self._has_chunks)

    def embedder_entry(self, spec: str, dim: int) -> dict:
        """Manifest fields locating ``spec``'s vectors; refuses an embedder the chunk collection has no
        field for (Milvus fixes a collection's fields when it is created)."""
        field = "v_" + re.sub(r"[^A-Za-z0-9_]", "_", slug(spec))[:60]
        if self._chunks_exist() and self.count_chunks() + len(self.documents()) > 0:
            raise EmbedderMismatchError(
                f"{self.location}: cannot add embedder {spec!r}: a Milvus collection's vector fields are fixed when its "
                f"first document is written (this one has {', '.join(self.manifest['embedders']) or 'none'}); index "
                f"with {spec} into a new collection")
        if self._chunks_exist():  # created but still empty: start again with the new set of fields
            self.client.drop_collection(self.name)
            self._has_chunks = False
        return {"milvus_field": field}

    def _create_chunks(self) -> None:
        from pymilvus import DataType, Function, FunctionType

        s = self.client.create_schema(auto_id=True, enable_dynamic_field=False)
        s.add_field("id", DataType.INT64, is_primary=True)
        for k, n in (("chunk_id", 512), ("doc", 1024), ("token", 64), ("content_hash", 64)):
            s.add_field(k, DataType.VARCHAR, max_length=n)
        s.add_field("ord", DataType.INT64)
        s.add_field("text", DataType.VARCHAR, max_length=MAX_VARCHAR)
        s.add_field("meta", DataType.JSON)
        s.add_field("lex", DataType.VARCHAR, max_length=MAX_VARCHAR, enable_analyzer=True,
                    analyzer_params={"tokenizer": "standard"})
        s.add_field("lex_sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["lex"],
                                output_field_names=["lex_sparse"]))
        ip = self.client.prepare_index_params()
        ip.add_index("lex_sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                     params={"bm25_k1": BM25_K1, "bm25_b": BM25_B})
        for spec, e in self.manifest["embedders"].items():
            s.add_field(e["milvus_field"], DataType.FLOAT_VECTOR, dim=int(e["dim"]))
            ip.add_index(e["milvus_field"], **_index_params(e.get("index", "flat"), self.lite_path is not None))
        self.client.create_collection(self.name, schema=s, index_params=ip, consistency_level="Strong")
        self._has_chunks = True

    def set_index_kind(self, spec: str, kind: str) -> None:
        """Rebuild ``spec``'s Milvus index as ``kind`` (flat → FLAT, hnsw → HNSW, on Milvus Lite its AUTOINDEX,
        ivfpq → IVF_PQ, refused on Lite before anything changes)."""
        params = _index_params(kind, self.lite_path is not None)
        if not self._chunks_exist():
            return
        field = self.manifest["embedders"][spec]["milvus_field"]
        self.client.release_collection(self.name)
        self.client.drop_index(self.name, field)
        ip = self.client.prepare_index_params()
        ip.add_index(field, **params)
        self.client.create_index(self.name, ip)
        self.client.load_collection(self.name)
        self._bump()

    def _delete(self, expr: str) -> None:
        self.client.delete(self.name, filter=expr)

    def _doc_token(self, doc: str) -> str | None:
        rows = self.client.query(self.docs_name, filter=f"doc == {_q(doc)}", output_fields=["token"])
        return rows[0]["token"] if rows else None

    def _visible(self, rows: list[dict]) -> list[dict]:
        """Rows whose token is their document's (only a document with a write in flight needs checking)."""
        self._read_state()
        p = self._pending
        if not p:
            return rows
        live = self._doc_token(p["doc"])
        return [r for r in rows if r["doc"] != p["doc"] or r["token"] == live]

    # -------------------------------------------------------------- documents

    def documents(self) -> list[DocumentRecord]:
        rows = self._query_all(self.docs_name, "", ["doc", "record"])
        return sorted((self._doc(r) for r in rows), key=lambda d: d.doc)

    def document(self, doc: str) -> DocumentRecord | None:
        rows = self.client.query(self.docs_name, filter=f"doc == {_q(doc)}", output_fields=["doc", "record"])
        return self._doc(rows[0]) if rows else None

    @staticmethod
    def _doc(r: dict) -> DocumentRecord:
        rec = r["record"]
        return DocumentRecord(doc=r["doc"], doc_hash=rec["doc_hash"], path=rec["path"], bytes=rec["bytes"],
                              pages=rec["pages"], chunks=rec["chunks"], skipped=[tuple(x) for x in rec["skipped"]],
                              reader=rec["reader"], indexed_at=rec.get("indexed_at", 0.0), title=rec.get("title", ""),
                              chunking=int(rec.get("chunking", 1)))

    def replace_document(self, record: DocumentRecord, chunks: list[Chunk], content_hashes: list[str],
                         vectors: dict[str, dict[str, np.ndarray]]) -> tuple[list[int], list[int]]:
        """Replace ``record.doc``'s chunks (token commit, see the module docstring); returns (removed
        row ids, added row ids). ``vectors`` holds the vectors not stored yet, by spec and content hash."""
        if not self._chunks_exist():
            self._create_chunks()
        embedders = self.manifest["embedders"]
        vec_of: dict[str, dict[str, np.ndarray]] = {}
        for spec in embedders:
            given = vectors.get(spec, {})
            vec_of[spec] = {**self.cached_vectors(spec, [h for h in content_hashes if h not in given]), **given}
            missing = [h for h in content_hashes if h not in vec_of[spec]]
            if missing:
                raise CollectionError(f"{record.doc}: {len(missing)} chunks have no {spec} vector")
        tokenizer = cache_key(self._bm25_tokenizer())
        toks = self.cached_tokens(tokenizer, content_hashes)
        if len(toks) < len(set(content_hashes)):  # not cached by the caller: tokenize here
            tok = get_tokenizer(self._bm25_tokenizer())
            from .collection import context_mode_of

            new = {h: tok(c.embed_text(context_mode_of(self._manifest["chunking"])))
                   for c, h in zip(chunks, content_hashes) if h not in toks}
            self.put_tokens(tokenizer, new)
            toks.update(new)
        token = uuid.uuid4().hex
        # a new document has no rows to replace (a crashed first write's rows were removed by _recover)
        known = self._doc_token(record.doc) is not None
        removed = [r["id"] for r in self._query_all(self.name, f"doc == {_q(record.doc)}", ["id"])] if known else []
        rows = []
        for i, (c, h) in enumerate(zip(chunks, content_hashes)):
            if len(c.text.encode()) > MAX_VARCHAR:
                raise CollectionError(f"{record.doc}: chunk {c.chunk_id} is longer than Milvus's {MAX_VARCHAR}-byte text field")
            lex = " ".join(term_word(t) for t in (toks[h] or [""]))  # bm25s indexes an empty chunk as [""]
            if len(lex) > MAX_VARCHAR:
                lex = lex[:MAX_VARCHAR].rsplit(" ", 1)[0]
            row = {"chunk_id": c.chunk_id, "doc": c.doc, "token": token, "ord": i, "content_hash": h, "text": c.text,
                   "lex": lex,
                   "meta": {f.name: getattr(c, f.name) for f in fields(Chunk) if f.name not in _CHUNK_COLUMNS}}
            for spec, e in embedders.items():
                row[e["milvus_field"]] = np.asarray(vec_of[spec][h], dtype=np.float32).tolist()
            rows.append(row)
        self._set_pending({"doc": record.doc, "token": token})
        added: list[int] = []
        for start in range(0, len(rows), BATCH):
            added.extend(int(i) for i in self.client.insert(self.name, rows[start:start + BATCH])["ids"])
        rec = record.to_json()
        rec.update(chunks=len(chunks), reader=record.reader, indexed_at=time.time(),
                   skipped=[list(s) for s in record.skipped])
        rec.pop("doc")
        self.client.upsert(self.docs_name, [{"doc": record.doc, "token": token, "record": rec, "_v": [0.0, 0.0]}])
        # committed: the new rows are the visible ones; the old rows go now (or in _recover after a crash)
        if removed:
            self._delete(f"doc == {_q(record.doc)} and token != {_q(token)}")
        self._set_pending(None)
        self._bump()
        for spec in self._pending_vectors:
            for h in content_hashes:
                self._pending_vectors[spec].pop(h, None)
        return removed, added

    def remove_document(self, doc: str) -> list[int]:
        if self.document(doc) is None:
            return []
        removed = [r["id"] for r in self._query_all(self.name, f"doc == {_q(doc)}", ["id"])] if self._chunks_exist() else []
        self._set_pending({"doc": doc, "token": ""})
        self.client.delete(self.docs_name, filter=f"doc == {_q(doc)}")  # the commit point
        if removed:
            self._delete(f"doc == {_q(doc)}")
        self._set_pending(None)
        self._bump()
        return removed

    # -------------------------------------------------------------- chunks, vectors, tokens

    #: rows per page when reading whole collections: rows of small fields in large pages; rows that carry a
    #: vector, a text or JSON in pages of ~2 MB (Milvus Lite 2.5 stalls for minutes on a 16,384-row page of
    #: 384-d vectors, measured)
    PAGE_ROWS, WIDE_PAGE_ROWS = 16384, 1000
    _NARROW_FIELDS = frozenset({"id", "chunk_id", "doc", "token", "ord", "content_hash", "key"})

    def _query_all(self, collection: str, expr: str, output: list[str]) -> list[dict]:
        """Every row matching ``expr`` (paged: Milvus caps one query's offset+limit)."""
        if collection == self.name and not self._chunks_exist():
            return []
        wide = not self._NARROW_FIELDS.issuperset(output)
        it = self.client.query_iterator(collection, batch_size=self.WIDE_PAGE_ROWS if wide else self.PAGE_ROWS,
                                        filter=expr, output_fields=output)
        out: list[dict] = []
        try:
            while True:
                page = it.next()
                if not page:
                    break
                out.extend(page)
        finally:
            it.close()
        return out

    def _select_in(self, collection: str, key: str, values: list, output: list[str], extra: str = "") -> list[dict]:
        out: list[dict] = []
        if collection == self.name and not self._chunks_exist():
            return out
        uniq = list(dict.fromkeys(values))
        for start in range(0, len(uniq), BATCH):
            part = uniq[start:start + BATCH]
            expr = f"{key} in {json.dumps(part, ensure_ascii=False)}" + (f" and {extra}" if extra else "")
            out.extend(self.client.query(collection, filter=expr, output_fields=output, limit=16384))
        return out

    def count_chunks(self) -> int:
        if not self._chunks_exist():
            return 0
        self._read_state()
        if not self._pending:
            return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])
        return len(self._visible(self._query_all(self.name, "", ["doc", "token"])))

    def _chunk(self, r: dict, doc_hash: dict[str, str]) -> Chunk:
        known = {f.name for f in fields(Chunk)}
        meta = {k: v for k, v in (r.get("meta") or {}).items() if k in known}
        return Chunk(chunk_id=r["chunk_id"], doc=r["doc"], doc_hash=doc_hash.get(r["doc"], ""), text=r["text"], **meta)

    def _fresh(self) -> None:
        """Forget the rows and document hashes kept from earlier queries once the generation has moved."""
        gen = self.generation
        if gen != self._cache_gen:
            self._rows.clear()
            self._doc_hash.clear()
            self._cache_gen = gen

    def _remember(self, rows: list[dict]) -> None:
        if len(self._rows) + len(rows) > ROW_CACHE:
            self._rows.clear()
        self._rows.update((int(r["id"]), r) for r in rows)

    def _doc_hashes(self, docs: set[str]) -> dict[str, str]:
        self._fresh()
        todo = [d for d in docs if d not in self._doc_hash]
        for r in self._select_in(self.docs_name, "doc", todo, ["doc", "record"]) if todo else []:
            self._doc_hash[r["doc"]] = r["record"]["doc_hash"]
        return {d: self._doc_hash[d] for d in docs if d in self._doc_hash}

    _ROW = ["id", "chunk_id", "doc", "token", "ord", "content_hash", "text", "meta"]

    def chunks_by_rowid(self, ids: list[int]) -> dict[int, Chunk]:
        """Chunks by row id: rows a search of this generation returned are not asked for again."""
        if not len(ids) or not self._chunks_exist():
            return {}
        self._fresh()
        want = [int(i) for i in dict.fromkeys(ids)]
        todo = [i for i in want if i not in self._rows]
        if todo:
            self._remember(self.client.get(self.name, ids=todo, output_fields=self._ROW))
        rows = self._visible([self._rows[i] for i in want if i in self._rows])
        hashes = self._doc_hashes({r["doc"] for r in rows})
        return {int(r["id"]): self._chunk(r, hashes) for r in rows}

    def iter_chunks(self, doc: str | None = None) -> Iterator[tuple[int, Chunk, str]]:
        """(row id, chunk, content hash) in document order."""
        rows = self._visible(self._query_all(self.name, f"doc == {_q(doc)}" if doc is not None else "", self._ROW))
        rows.sort(key=lambda r: (r["doc"], r["ord"]))
        hashes = self._doc_hashes({r["doc"] for r in rows})
        for r in rows:
            yield int(r["id"]), self._chunk(r, hashes), r["content_hash"]

    def rowids(self, chunk_ids: list[str]) -> dict[str, int]:
        rows = self._visible(self._select_in(self.name, "chunk_id", chunk_ids, ["id", "chunk_id", "doc", "token"]))
        return {r["chunk_id"]: int(r["id"]) for r in rows}

    def chunk_docs(self) -> tuple[np.ndarray, list[str], list[str]]:
        """(row ids, documents, content hashes) of every chunk, in row-id order."""
        rows = sorted(self._visible(self._query_all(self.name, "", ["id", "doc", "token", "content_hash"])),
                      key=lambda r: r["id"])
        return (np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows)), [r["doc"] for r in rows],
                [r["content_hash"] for r in rows])

    def chunk_pages(self) -> list[list[int]]:
        """The pages of every chunk, in row-id order (aligned with :meth:`chunk_docs`)."""
        rows = sorted(self._visible(self._query_all(self.name, "", ["id", "doc", "token", "meta"])),
                      key=lambda r: r["id"])
        return [list((r.get("meta") or {}).get("pages") or [1]) for r in rows]

    def cached_vectors(self, embedder: str, hashes: list[str]) -> dict[str, np.ndarray]:
        """Vectors by content hash: those of stored chunks, plus this process's cache fills (put_vectors)."""
        pending = self._pending_vectors.get(embedder, {})
        out = {h: pending[h] for h in hashes if h in pending}
        entry = self.manifest["embedders"].get(embedder)
        todo = [h for h in hashes if h not in out]
        if entry and todo:
            field = entry["milvus_field"]
            for r in self._select_in(self.name, "content_hash", todo, ["content_hash", field]):
                out[r["content_hash"]] = np.asarray(r[field], dtype=np.float32)
        return out

    def put_vectors(self, vectors: dict[str, dict[str, np.ndarray]], *, bump: bool = True) -> None:
        """Vectors are stored with their chunks (one field per embedder): until then they wait here."""
        for spec, by_hash in vectors.items():
            self._pending_vectors.setdefault(spec, {}).update(by_hash)

    def index_vectors(self, embedder: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        field = self.manifest["embedders"][embedder]["milvus_field"]
        rows = sorted(self._visible(self._query_all(self.name, "", ["id", "doc", "token", field])),
                      key=lambda r: r["id"])
        ids = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.asarray([r[field] for r in rows], dtype=np.float32).reshape(len(rows), dim)
        return ids, vecs

    def missing_vectors(self, embedder: str) -> list[tuple[str, int]]:
        """Always empty: every chunk row carries a vector for every embedder of the collection."""
        return []

    def _token_key(self, tokenizer: str, h: str) -> str:
        import hashlib

        return f"{h}:{hashlib.sha1(tokenizer.encode()).hexdigest()[:16]}"

    def cached_tokens(self, tokenizer: str, hashes: list[str]) -> dict[str, list[str]]:
        keys = {self._token_key(tokenizer, h): h for h in hashes}
        if len(keys) > 10 * BATCH:  # a whole collection's (deriving BM25): one scan, not a filter per 500 keys
            rows = [r for r in self._query_all(self.tokens_name, "", ["key", "value"]) if r["key"] in keys]
        else:
            rows = self._select_in(self.tokens_name, "key", list(keys), ["key", "value"])
        return {keys[r["key"]]: json.loads(r["value"]) for r in rows}

    def put_tokens(self, tokenizer: str, by_hash: dict[str, list[str]]) -> None:
        rows = []
        for h, toks in by_hash.items():
            text = json.dumps(toks, ensure_ascii=False)
            while len(text.encode()) > MAX_VARCHAR:  # a pathological chunk: keep what fits
                toks = toks[: len(toks) * 9 // 10]
                text = json.dumps(toks, ensure_ascii=False)
            rows.append({"key": self._token_key(tokenizer, h), "value": text, "_v": [0.0, 0.0]})
        for start in range(0, len(rows), BATCH):
            self.client.upsert(self.tokens_name, rows[start:start + BATCH])

    # -------------------------------------------------------------- search

    def _bm25_tokenizer(self) -> str:
        return self._manifest.get("lexical", {}).get("bm25", {}).get("tokenizer", "default")

    def lexical_index(self) -> "MilvusBM25Index | None":
        """``bm25`` served by Milvus on a server; None on Milvus Lite, whose BM25 is pure Python (about 2 s
        a query at 100k chunks, benchmarks/README.md): the collection then derives the same BM25 from
        the stored tokens in memory (bm25s, same ranking)."""
        return MilvusBM25Index(self) if self.lite_path is None else None

    def bm25_search(self, tokens: list[str], k: int) -> tuple[list[int], list[float]]:
        """Top-``k`` (row ids, scores / best score) by Milvus's BM25 over the ``lex`` terms."""
        if not self._chunks_exist() or not tokens or k <= 0:
            return [], []
        query = " ".join(term_word(t) for t in dict.fromkeys(tokens))
        vis = self._search("lex_sparse", query, k, {"metric_type": "BM25"})
        # Milvus Lite reports BM25 as a distance (minus the score), a server as the score: best first either way
        scores = [abs(float(h["score"])) for h in vis]
        top = scores[0] if scores and scores[0] > 0 else 1.0
        return [int(h["id"]) for h in vis], [round(sc / top, 3) for sc in scores]

    def _search(self, field: str, data, k: int, params: dict) -> list[dict]:
        """Visible hits (id, score, doc, token) of one search, looking deeper while rows of an unfinished
        write take places."""
        limit = k
        while True:
            # the hits' rows come with them: loading the hit chunks asks Milvus nothing more
            res = self.client.search(self.name, data=[data], anns_field=field, limit=limit,
                                     output_fields=self._ROW, search_params=params)
            hits = [{**h["entity"], "id": h["id"], "score": h["distance"]} for h in res[0]]
            vis = self._visible(hits)
            self._fresh()
            self._remember([{k: h[k] for k in self._ROW} for h in vis])
            if len(vis) >= k or len(hits) < limit:
                return vis[:k]
            limit *= 4

    def dense_index(self, spec: str) -> "MilvusDenseIndex":
        return MilvusDenseIndex(self, spec)

    def dense_search(self, spec: str, query: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        if not self._chunks_exist() or k <= 0:
            return [], []
        e = self.manifest["embedders"][spec]
        vis = self._search(e["milvus_field"], np.asarray(query, dtype=np.float32).ravel().tolist(), k,
                           {"metric_type": "IP", "params": _search_params(e.get("index", "flat"))})
        return [int(h["id"]) for h in vis], [round(float(h["score"]), 6) for h in vis]


class MilvusBM25Index:
    """``bm25`` served by Milvus, with the :class:`~pdfqa.lexical.BM25Index` interface (see the module
    docstring)."""

    kind = "bm25"

    def __init__(self, store: MilvusStore):
        self.store = store

    @property
    def generation(self) -> int:
        return self.store.generation

    def __len__(self) -> int:
        return self.store.count_chunks()

    def search(self, tokens: list[str], k: int) -> tuple[list[int], list[float]]:
        return self.store.bm25_search(tokens, k)


class MilvusDenseIndex:
    """One embedder's vectors in Milvus, with the :class:`~pdfqa.faiss_index.DenseIndex` interface the
    collection uses (Milvus keeps it in step with the chunks: add/remove/save do nothing)."""

    supports_remove = True

    def __init__(self, store: MilvusStore, spec: str):
        self.store, self.spec = store, spec
        self.entry = store.manifest["embedders"][spec]

    @property
    def generation(self) -> int:
        return self.store.generation

    @generation.setter
    def generation(self, value: int) -> None:  # the collection stamps its indexes; Milvus is always current
        pass

    @property
    def kind(self) -> str:
        return self.entry.get("index", "flat")

    @property
    def dim(self) -> int:
        return int(self.entry["dim"])

    def __len__(self) -> int:
        return self.store.count_chunks()

    def memory_bytes(self) -> int:
        """The raw vectors' size (Milvus's own index overhead is measured in benchmarks/README.md)."""
        return len(self) * self.dim * 4

    def add(self, ids, vecs) -> None:
        pass

    def remove(self, ids) -> None:
        pass

    def save(self, path, meta) -> None:
        pass

    def search(self, queries: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        return self.store.dense_search(self.spec, np.asarray(queries)[0], k)

    def vectors(self, ids: list[int]) -> np.ndarray:
        field = self.entry["milvus_field"]
        rows = {int(r["id"]): r[field] for r in self.store.client.get(self.store.name, ids=[int(i) for i in ids],
                                                                       output_fields=["id", field])}
        return np.asarray([rows[int(i)] for i in ids], dtype=np.float32).reshape(len(ids), self.dim)


def term_word(token: str) -> str:
    """A token as one lowercase letters-only word that Milvus's standard analyzer keeps whole (a 64-bit
    hash in base 26: collisions are negligible at any vocabulary size).

    >>> term_word("梅雨") == term_word("梅雨") != term_word("雨季")
    True
    """
    import hashlib

    n = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
    out = []
    while n:
        n, r = divmod(n, 26)
        out.append(chr(97 + r))
    return "".join(out) or "a"


def _index_params(kind: str, lite: bool = False) -> dict:
    """Milvus index parameters for a pdfqa index kind; Milvus Lite builds FLAT, IVF_FLAT and AUTOINDEX only:
    its AUTOINDEX is an HNSW graph (M=18, efConstruction=240, chosen by Milvus), and IVF_PQ needs a server."""
    if kind == "hnsw":
        if lite:
            return {"index_type": "AUTOINDEX", "metric_type": "IP"}
        return {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 32, "efConstruction": 80}}
    if kind == "ivfpq":
        if lite:
            raise CollectionError("Milvus Lite builds FLAT, IVF_FLAT and AUTOINDEX indexes only: use --index-kind "
                                  "flat or hnsw (its AUTOINDEX, an HNSW graph) here, ivfpq on a Milvus server")
        return {"index_type": "IVF_PQ", "metric_type": "IP", "params": {"nlist": 1024, "m": 48, "nbits": 8}}
    return {"index_type": "FLAT", "metric_type": "IP"}


def _search_params(kind: str) -> dict:
    return {"ef": 128} if kind == "hnsw" else ({"nprobe": 32} if kind == "ivfpq" else {})


#: stores open per Milvus Lite path in this process: they share one in-process server, stopped with the last
_LITE_USERS: dict[Path, int] = {}
_LITE_LOCK = threading.Lock()


def _disconnect(client, lite: Path | None) -> None:
    try:
        client.close()
    except Exception:  # noqa: BLE001 - closing a client whose server is gone
        pass
    if lite is None:
        return
    with _LITE_LOCK:
        if _lite_release(lite):
            try:  # Milvus Lite keeps its data directory locked by the in-process server until released
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(str(lite))
            except Exception:  # noqa: BLE001
                pass


def _lite_release(path: Path) -> bool:
    """Count a store closing; True when it was the last one on ``path``."""
    n = _LITE_USERS.get(path, 1) - 1
    if n > 0:
        _LITE_USERS[path] = n
        return False
    _LITE_USERS.pop(path, None)
    return True


def _no_retry_storm(client) -> None:
    """Fail an RPC to a dead server within seconds: pymilvus otherwise retries each call with backoff
    for minutes, once per file of the batch."""
    handler = getattr(client, "_get_connection", None)
    try:
        conn = handler() if handler else None
        if conn is not None and hasattr(conn, "_retry_times"):
            conn._retry_times = 1
    except Exception:  # noqa: BLE001 - an internal knob; without it only the wait is longer
        pass


def _q(s: str | None) -> str:
    """A Milvus filter string literal."""
    return json.dumps(s or "", ensure_ascii=False)
