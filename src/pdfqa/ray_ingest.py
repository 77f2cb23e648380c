"""Ingestion on Ray Data: ``pdfqa index PATHS --ray local|ADDRESS`` and
``Collection.index(..., executor="ray")``. Needs ``pip install 'pdfqa[ray]'``.

The pipeline is one Ray Data dataset over the files (one block per file)::

    files ─map→ read_chunk tasks (read + chunk; the tokenizer loaded once per worker process)
          ─map→ Embed actors (one model load per actor; a file's chunks in the embedder's batches)
          ─→ this process: each file committed to the store as it arrives (Collection._commit)

Only reading, chunking and embedding move to the cluster; the driver writes every document through
the same code as the local pipeline, so a file's report, its atomic commit and the store are exactly
those of ``executor="local"``. A file that fails to read, chunk or embed comes back with its error
(reported as today). A worker that dies while reading a file (killed, out of memory) takes only that
file's task with it: the task is retried once on a fresh worker; if it dies again the file is reported
as failed and nothing of it is written (a document is written only once all its chunks and vectors
have arrived). Reading runs as tasks rather than an actor pool because a pool whose actor died for
good stalled the files still queued for it.

``address="local"`` starts a Ray cluster on this machine (kept for the life of the process);
any other address joins a running cluster (its nodes need pdfqa installed, and the PDFs must be
readable at the same paths on every node).

Embedders the collection holds itself (``word2vec:train``, fitted on its chunks) are not sent to
the cluster: index those without Ray. A changed file's chunks are all embedded on the cluster (the
local pipeline reuses the cached vectors of its unchanged chunks).

Fault injection for tests: ``PDFQA_TEST_KILL_WORKER=NAME:MARKER:N`` makes the read worker kill its
own process while it handles file NAME, the first N times (counted in the file MARKER).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .documents import Chunk, Page, PdfContent
from .errors import PdfqaError
from .ingest import Prepared, content_hash, prepare
from .pdf import DEFAULT_READER

if TYPE_CHECKING:
    from .collection import Collection

log = logging.getLogger(__name__)
#: object store for a local cluster: the pipeline holds a few files' pages and vectors at a time
LOCAL_OBJECT_STORE_BYTES = 512 * 1024 ** 2


def require_ray():
    """The ``ray`` module, or one error naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise PdfqaError("--ray needs Ray Data: pip install 'pdfqa[ray]'") from e
    return ray


def start(address: str = "local") -> dict:
    """Connect to (``address``) or start (``"local"``) a Ray cluster, quietly; returns its resources."""
    from .quiet import is_verbose

    ray = require_ray()
    verbose = is_verbose()  # pdfqa -v: Ray's own logs and bars too
    level = logging.WARNING if verbose else logging.ERROR
    if not verbose:
        # Ray's C++ core and gRPC log to this process's stderr directly; pdfqa reports failures itself
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    if not ray.is_initialized():
        kw = dict(include_dashboard=False, log_to_driver=verbose, configure_logging=True, logging_level=level)
        try:
            if address == "local":
                ray.init(num_cpus=os.cpu_count(), object_store_memory=LOCAL_OBJECT_STORE_BYTES, **kw)
            else:
                ray.init(address=address, **kw)
        except Exception as e:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
            raise PdfqaError(f"cannot start or join the Ray cluster at {address!r} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]})") from e
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(level)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = verbose
    ctx.print_on_execution_start = False
    return ray.cluster_resources()


_CHUNKERS: dict[tuple[str, str], object] = {}


def read_chunk(row: dict, *, chunking: dict, primary: str, reader: str, known: dict[str, str], ocr="auto") -> dict:
    """A Ray task: reads and chunks one file (the primary embedder's tokenizer loaded once per worker
    process and kept for the next file)."""
    from .collection import chunker_for
    from .embeddings import get_embedder

    key = (json.dumps(chunking, sort_keys=True), primary)
    if key not in _CHUNKERS:
        _CHUNKERS[key] = chunker_for(chunking, get_embedder(primary))
    path = Path(row["path"])
    _maybe_die(path.name)
    prep = prepare(path, known_hash=known.get, chunker=_CHUNKERS[key], reader=reader, ocr=ocr)
    return to_row(row["i"], prep)


class Embed:
    """A Ray actor: embeds one file's chunks with every embedder of the collection (each model loaded
    once per actor, in the embedder's own batch size)."""

    def __init__(self, specs: list[str], base_urls: dict[str, str | None], context: str):
        from .embeddings import get_embedder

        self.embedders = {}
        for spec in specs:
            if spec.startswith("openai:"):
                from .embeddings.openai import from_spec

                self.embedders[spec] = from_spec(spec, base_url=base_urls.get(spec))
            else:
                self.embedders[spec] = get_embedder(spec)
        self.context = context

    def __call__(self, row: dict) -> dict:
        from .collection import embed_in_batches

        prep = from_row(row)
        if prep.chunks and not prep.error and not prep.unchanged:
            texts = [c.embed_text(self.context) for c in prep.chunks]
            hashes = [content_hash(t) for t in texts]
            uniq = dict(zip(hashes, texts))
            try:
                prep.vectors = {spec: dict(zip(uniq, embed_in_batches(emb, list(uniq.values()), progress=False)))
                                for spec, emb in self.embedders.items()}
            except Exception as e:  # noqa: BLE001 - one file's embedding failure is that file's
                prep.error = f"{prep.path.name}: embedding or storing failed ({type(e).__name__}: {e})"
        return to_row(row["i"], prep)


#: what the driver's commit reads of a page (its lines and tables stay on the worker)
_PAGE_FIELDS = ("number", "label", "width", "height", "skip_reason", "ocr", "ocr_confidence", "ocr_rotation",
                "ocr_words")


def to_row(i: int, prep: Prepared) -> dict:
    """One file's result as a Ray row of JSON and float32 bytes (nothing pickled): what
    ``Collection._commit`` needs — the document's facts, its pages' skip reasons and OCR words, the
    chunks and, once embedded, their vectors."""
    c = prep.content
    vectors, blobs, offset = {}, [], 0
    for spec, by_hash in (prep.vectors or {}).items():
        mat = np.asarray(list(by_hash.values()), dtype=np.float32).reshape(len(by_hash), -1)
        vectors[spec] = {"hashes": list(by_hash), "dim": int(mat.shape[1]), "offset": offset}
        blobs.append(mat.tobytes())
        offset += mat.nbytes
    meta = {"path": str(prep.path), "error": prep.error, "unchanged": prep.unchanged, "seconds": prep.seconds,
            "content": None if c is None else {
                "path": c.path, "doc": c.doc, "doc_hash": c.doc_hash, "reader": c.reader,
                "pages": [{k: getattr(pg, k) for k in _PAGE_FIELDS} for pg in c.pages]},
            "chunks": None if prep.chunks is None else [dataclasses.asdict(ch) for ch in prep.chunks],
            "vectors": vectors}
    return {"i": i, "meta": json.dumps(meta, ensure_ascii=False, default=_plain), "vectors": b"".join(blobs)}


def from_row(row: dict) -> Prepared:
    """The :class:`~pdfqa.ingest.Prepared` a row of :func:`to_row` holds."""
    meta, blob = json.loads(row["meta"]), row["vectors"]
    c = meta["content"]
    content = None if c is None else PdfContent(
        path=c["path"], doc=c["doc"], doc_hash=c["doc_hash"], reader=c["reader"],
        pages=[Page(**pg) for pg in c["pages"]])
    vectors = None
    if meta["vectors"]:
        vectors = {}
        for spec, v in meta["vectors"].items():
            n = len(v["hashes"])
            mat = np.frombuffer(blob, dtype=np.float32, count=n * v["dim"], offset=v["offset"]).reshape(n, v["dim"])
            vectors[spec] = dict(zip(v["hashes"], mat))
    return Prepared(path=Path(meta["path"]), content=content, error=meta["error"], unchanged=meta["unchanged"],
                    seconds=meta["seconds"], vectors=vectors,
                    chunks=None if meta["chunks"] is None else [Chunk(**ch) for ch in meta["chunks"]])


def _plain(o):
    """numpy scalars in OCR word boxes, as JSON numbers."""
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _maybe_die(name: str) -> None:
    spec = os.environ.get("PDFQA_TEST_KILL_WORKER")
    if not spec:
        return
    target, marker, times = spec.rsplit(":", 2)
    if target != name:
        return
    m = Path(marker)
    done = len(m.read_text().splitlines()) if m.exists() else 0
    if done < int(times):
        with open(m, "a") as f:
            f.write(f"{os.getpid()}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def ray_prepared(col: "Collection", files: list[Path], *, known: dict[str, str], address: str = "local",
                 progress: bool = False, ocr="auto") -> Iterator[Prepared]:
    """Yield a :class:`~pdfqa.ingest.Prepared` per file (embedded, or with its error), read, chunked
    and embedded on Ray; in completion order."""
    if not files:
        return
    ray = require_ray()
    resources = start(address)
    m = col.store.manifest
    own = [s for s in m["embedders"] if s.startswith("word2vec:train")]
    if own:
        raise PdfqaError(f"{', '.join(own)} is fitted on the collection's chunks and cannot run on Ray; "
                         f"index without --ray")
    names: dict[str, Path] = {}
    todo = []
    for i, p in enumerate(files):
        if p.name in names and names[p.name] != p:
            yield Prepared(path=p, error=f"{p.name}: another file with this name is in the batch "
                                         f"({names[p.name]}); documents are named by file name")
            continue
        names[p.name] = p
        todo.append({"i": i, "path": str(p.resolve())})
    if not todo:
        return
    cpus = max(1, int(resources.get("CPU", 1)))
    pool = max(1, min(len(todo), cpus // 2))
    # a dead worker is restarted and its file retried once; a file whose worker dies twice is dropped
    # from the output (max_errored_blocks) and reported below instead of failing the whole batch
    retry = {"max_restarts": 1, "max_task_retries": 1}
    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = len(todo)
    base_urls = {s: col.base_url or e.get("base_url") for s, e in m["embedders"].items()}
    from .collection import context_mode_of

    context = context_mode_of(m["chunking"])
    import warnings

    with warnings.catch_warnings():  # retry options have no named parameter yet in every Ray 2.x
        warnings.simplefilter("ignore")
        ds = _pipeline(ray, todo, m, pool, retry, base_urls, context, known, ocr)
    seen: set[int] = set()
    for row in ds.iter_rows():
        seen.add(int(row["i"]))
        yield from_row(row)
    for item in todo:
        if item["i"] not in seen:
            p = files[item["i"]]
            yield Prepared(path=p, error=f"{p.name}: the Ray worker handling it died twice (retried once); "
                                         f"not indexed")


def _pipeline(ray, todo: list[dict], m: dict, pool: int, retry: dict, base_urls: dict, context: str, known: dict,
              ocr="auto"):
    """files → read_chunk tasks (each retried once, per file) → Embed actors (``pool`` actors of one CPU,
    retried per ``retry``)."""
    # one file in flight per actor: a worker that dies takes only its own file with it
    strategy = ray.data.ActorPoolStrategy(size=pool, max_tasks_in_flight_per_actor=1)
    read = {"chunking": m["chunking"], "primary": m["default_embedder"],
            "reader": m["chunking"].get("reader", DEFAULT_READER), "known": known, "ocr": ocr}
    embed = {"specs": list(m["embedders"]), "base_urls": base_urls, "context": context}
    return (ray.data.from_items(todo, override_num_blocks=len(todo))
            .map(read_chunk, fn_kwargs=read, num_cpus=1, max_retries=retry["max_task_retries"],
                 retry_exceptions=False)
            .map(Embed, fn_constructor_kwargs=embed, compute=strategy, num_cpus=1,
                 ray_remote_args_fn=lambda: dict(retry)))
