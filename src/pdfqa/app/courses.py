"""Courses on disk, background indexing and question answering for the web app — plain Python, no
HTTP here (:mod:`pdfqa.app.server` is the HTTP layer over it).

::

    ROOT/<course-id>/course.json        {"id", "name", "created"}
    ROOT/<course-id>/collection/        a pdfqa collection (see pdfqa.store), or, for a course created
                                        with a Milvus store, the Milvus collection named in course.json
                                        ("collection": "milvus:…", see pdfqa.milvus_store)
    ROOT/<course-id>/files/<name>.pdf   the PDFs the collection was built from (pages are rendered from these)
    ROOT/<course-id>/files/.pending/<job>/<name>.pdf
                                        an upload waiting for (or in) indexing; moved into files/ once indexed

Indexing runs in one background thread for all courses (PDFium, which reads the PDFs, must not be
used by two threads at once), one file per job, with a progress value per file. Questions are
answered from a separate read-only :class:`~pdfqa.Collection` inside one SQLite read transaction, so
they see the last committed state — a document being indexed appears only once it is complete — and
pick up new documents as soon as the collection's generation changes.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..collection import Collection
from ..errors import PdfqaError

log = logging.getLogger(__name__)
COURSE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
#: readers kept open per course by default (one per question answered at once; the server passes its
#: number of answering threads)
READER_POOL = 4


class CourseError(PdfqaError):
    """A request the courses layer refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


def course_id_for(name: str) -> str:
    s = unicodedata.normalize("NFKC", name).lower()
    s = re.sub(r"[^a-z0-9]+", "-", s).strip("-")[:40].strip("-")
    return s or "course"


@dataclass
class DocState:
    """A document's life outside the collection: queued, indexing, failed or removing."""

    doc: str
    status: str
    progress: float = 0.0
    stage: str = ""
    error: str | None = None
    pages: int = 0
    chunks: int = 0
    skipped: list = field(default_factory=list)
    bytes: int = 0
    job: str = ""  # the upload this state belongs to (a newer upload of the same name supersedes it)
    ocr: str = "auto"  # which pages are OCR'd (pdfqa.pdf.ocr.OCR_MODES)
    updated: float = field(default_factory=time.time)

    def to_json(self) -> dict:
        return {"doc": self.doc, "status": self.status, "progress": round(self.progress, 3), "stage": self.stage,
                "pages": self.pages, "chunks": self.chunks, "skipped": self.skipped, "error": self.error,
                "bytes": self.bytes}


class _ProgressCollection(Collection):
    """A writable collection reporting progress while it embeds: it learns the chunk count from its
    chunker and counts the passages its embedder is given."""

    on_progress: Callable[[str, float], None] | None = None
    #: True while questions wait for the CPU: indexing then pauses between its calls (see _CountingEmbedder)
    questions_waiting: Callable[[], bool] | None = None
    #: the longest pause per call, so indexing advances under a constant stream of questions
    max_pause: float = 0.5

    def _chunker(self, emb):
        run = super()._chunker(emb)

        def chunk(content):
            self._report("chunk", 0.1)
            chunks = run(content)
            self._total, self._done = max(1, len(chunks)), 0
            self._report("embed", 0.12)
            return chunks
        return chunk

    def embedder(self, spec):
        return _CountingEmbedder(super().embedder(spec), self)

    def _count(self, n: int) -> None:
        self._done = getattr(self, "_done", 0) + n
        total = getattr(self, "_total", 0)
        if total:
            self._report("embed", 0.12 + 0.83 * min(1.0, self._done / total))

    def _ocr_progress(self, doc: str, done: int, total: int, progress: bool) -> None:
        self._report("ocr", 0.02 + 0.08 * done / max(1, total))

    def _report(self, stage: str, value: float) -> None:
        if self.on_progress:
            self.on_progress(stage, value)


class _CountingEmbedder:
    """Counts the passages embedded (progress), in small calls that give way to questions: the
    embedder's worker threads are shared with the questions (whose sentences it embeds), and a call's
    batches run in order, so a question waits for at most one indexing call of :attr:`embed_batch_size`
    chunks, not for a whole file; and while questions wait for the CPU the indexer pauses before its next
    call (``max_pause`` at most, so it always advances)."""

    embed_batch_size = 16

    def __init__(self, inner, owner: _ProgressCollection):
        self._inner, self._owner = inner, owner

    def embed_passages(self, texts):
        waiting = self._owner.questions_waiting
        if waiting is not None:  # questions first: pause while they wait for the CPU
            until = time.monotonic() + self._owner.max_pause
            while waiting() and time.monotonic() < until:
                time.sleep(0.02)
        out = self._inner.embed_passages(texts)
        self._owner._count(len(texts))
        return out

    def __getattr__(self, name):
        return getattr(self._inner, name)


class Course:
    def __init__(self, root: Path, cid: str, name: str, created: float, collection: str | None = None, *,
                 reader_pool: int = READER_POOL):
        self.id, self.name, self.created = cid, name, created
        self.dir = root / cid
        #: the course's collection: its own directory, or a ``milvus:`` location
        self.collection_dir: Path | str = collection or self.dir / "collection"
        self.files_dir = self.dir / "files"
        self.pending_dir = self.files_dir / ".pending"
        self.tmp_dir = self.dir / "tmp"
        self.states: dict[str, DocState] = {}
        self.lock = threading.RLock()
        self._readers: list[tuple[float, Collection]] = []
        self.reader_pool = reader_pool
        #: (data stamp, the collection's documents as the API lists them): see CourseManager.documents
        self.ready_docs: tuple[tuple, dict] | None = None
        self.writer: _ProgressCollection | None = None  # used by the indexer thread only

    def to_json(self) -> dict:
        d = {"id": self.id, "name": self.name, "created": self.created}
        if isinstance(self.collection_dir, str):
            d["collection"] = self.collection_dir
        return d

    def file_path(self, doc: str) -> Path:
        """The stored file of an indexed document (``doc`` must be a name this app produced)."""
        from .pdftools import safe_filename

        if safe_filename(doc) != doc:
            raise CourseError(f"no document {doc!r} in course {self.id!r}", 404, "no_document")
        return self.files_dir / doc

    # ------------------------------------------------------------------ readers

    def data_stamp(self) -> tuple:
        """Changes with every commit to the collection: the manifest's and the SQLite files' (the
        write-ahead log included) modification times and sizes. A Milvus collection has no files to
        stat here: its stamp is new on every call (its document list is read every time)."""
        if isinstance(self.collection_dir, str):
            return (object(),)
        out = []
        for name in ("manifest.json", "chunks.sqlite", "chunks.sqlite-wal"):
            try:
                st = (self.collection_dir / name).stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def _manifest_mtime(self) -> float:
        if isinstance(self.collection_dir, str):
            return 0.0  # Milvus: a reader follows the collection's generation itself
        try:
            return (self.collection_dir / "manifest.json").stat().st_mtime_ns
        except OSError:
            return 0.0

    @contextmanager
    def reader(self) -> Iterator[Collection]:
        """A read-only collection for this thread, inside one read transaction (a consistent snapshot:
        every lookup of one question sees the same committed state)."""
        mtime = self._manifest_mtime()
        col = None
        with self.lock:
            while self._readers:
                stamp, c = self._readers.pop()
                if stamp == mtime:
                    col = c
                    break
                c.close()
        if col is None:
            col = Collection.open(self.collection_dir, readonly=True)
        db = getattr(col.store, "db", None)  # SQLite (local); Milvus shows whole documents without one
        ok = True
        try:
            if db is not None:
                db.execute("BEGIN")
            yield col
        except BaseException:
            ok = False
            raise
        finally:
            try:
                if db is not None:
                    db.execute("ROLLBACK")  # read-only: nothing to commit
            except Exception:
                ok = False
            with self.lock:
                if ok and len(self._readers) < self.reader_pool:
                    self._readers.append((mtime, col))
                    col = None
            if col is not None:
                col.close()

    def close(self) -> None:
        with self.lock:
            for _, c in self._readers:
                c.close()
            self._readers.clear()
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class CourseManager:
    """All courses under ``root``, one indexer thread, and the questions' worker threads."""

    def __init__(self, root: str | Path, *, embedder: str | None = None, index_workers: int = 1,
                 store: str | None = None, readers: int = READER_POOL,
                 questions_waiting: Callable[[], bool] | None = None):
        self.root = Path(root)
        self.readers = readers
        #: True while questions wait for the CPU (the server's ask queue): indexing gives way to them
        self.questions_waiting = questions_waiting
        self.root.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder
        #: where new courses' collections go: None = inside the course folder, or a ``milvus:`` location
        #: (each course one Milvus collection beside it)
        self.store = store
        self.courses: dict[str, Course] = {}
        self._lock = threading.RLock()
        self._jobs: deque[tuple[str, str, str, str]] = deque()  # (kind, course id, doc, job id)
        self._wake = threading.Condition(self._lock)
        self._done: dict[str, threading.Event] = {}
        self._stop = False
        self._thread: threading.Thread | None = None
        self.busy: tuple[str, str] | None = None  # (course id, doc) being indexed now
        self._load()

    # ------------------------------------------------------------------ courses

    def _load(self) -> None:
        for d in sorted(self.root.iterdir()):
            meta = d / "course.json"
            if not (d.is_dir() and COURSE_ID.match(d.name) and meta.exists()):
                continue
            try:
                m = json.loads(meta.read_text())
                course = Course(self.root, d.name, str(m["name"]), float(m.get("created", 0)), m.get("collection"),
                                reader_pool=self.readers)
            except (OSError, ValueError, KeyError) as e:
                log.warning("skipping %s: unreadable course.json (%s)", d, e)
                continue
            self.courses[course.id] = course
            if course.pending_dir.exists():  # uploads a previous run did not finish: index them now
                for p in sorted(course.pending_dir.glob("*/*.pdf"), key=lambda q: q.stat().st_mtime):
                    self._enqueue_index(course, p.name, p.stat().st_size, job=p.parent.name)

    def list(self) -> list[Course]:
        with self._lock:
            return sorted(self.courses.values(), key=lambda c: (c.created, c.id))

    def get(self, cid: str) -> Course:
        course = self.courses.get(cid) if COURSE_ID.match(cid or "") else None
        if course is None:
            raise CourseError(f"no course {cid!r}", 404, "no_course")
        return course

    def create(self, name: str) -> Course:
        name = " ".join(unicodedata.normalize("NFKC", name or "").split())
        name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
        if not name:
            raise CourseError("a course needs a name", 422, "bad_name")
        if len(name) > 100:
            raise CourseError("course names are at most 100 characters", 422, "bad_name")
        with self._lock:
            if any(c.name.casefold() == name.casefold() for c in self.courses.values()):
                raise CourseError(f"a course named {name!r} exists already", 409, "course_exists")
            base = course_id_for(name)
            for i in range(1, 10_000):
                cid = base if i == 1 else f"{base}-{i}"
                try:
                    (self.root / cid).mkdir()
                    break
                except FileExistsError:
                    continue
            location = None
            if self.store:
                from ..milvus_store import pool_location

                location = pool_location(self.store, f"course_{cid}")
            course = Course(self.root, cid, name, time.time(), location, reader_pool=self.readers)
            course.files_dir.mkdir()
            Collection.open(course.collection_dir, create=True, embedder=self.embedder).close()
            tmp = course.dir / ".course.json.tmp"
            tmp.write_text(json.dumps(course.to_json(), ensure_ascii=False, indent=2) + "\n")
            os.replace(tmp, course.dir / "course.json")
            self.courses[cid] = course
        return course

    # ------------------------------------------------------------------ documents

    def documents(self, course: Course, *, cached_only: bool = False) -> list[dict] | None:
        """Every document: those in the collection (ready) overlaid with queued/indexing/failed ones.
        The collection's part is read once per state of the collection (:meth:`Course.data_stamp`); with
        ``cached_only``, None when it would have to be read now (the caller reads it elsewhere)."""
        stamp = course.data_stamp()
        ready = course.ready_docs if course.ready_docs is not None and course.ready_docs[0] == stamp else None
        if ready is None:
            if cached_only:
                return None
            docs = {}
            with course.reader() as col:
                for rec in col.documents():
                    docs[rec.doc] = {"doc": rec.doc, "status": "ready", "progress": 1.0, "stage": "",
                                     "pages": rec.pages, "chunks": rec.chunks,
                                     "skipped": [{"page": p, "reason": r} for p, r in rec.skipped],
                                     "error": None, "bytes": rec.bytes}
            ready = course.ready_docs = (stamp, docs)
        out = {k: dict(v) for k, v in ready[1].items()}
        with course.lock:
            for doc, st in course.states.items():
                out[doc] = st.to_json()
        return [out[k] for k in sorted(out, key=str.casefold)]

    def has_document(self, course: Course, doc: str) -> bool:
        with course.lock:
            if doc in course.states:
                return True
        with course.reader() as col:
            return col.store.document(doc) is not None

    def add_upload(self, course: Course, doc: str, tmp: Path, size: int, ocr: str = "auto") -> dict:
        """Queue a checked upload (``tmp``, on the course's disk) for indexing under the name ``doc``;
        a document of the same name in this course is replaced once the new one is indexed. ``ocr``:
        which pages are OCR'd (``auto``, ``always``, ``never``)."""
        job = uuid.uuid4().hex
        (course.pending_dir / job).mkdir(parents=True)
        os.replace(tmp, course.pending_dir / job / doc)
        return self._enqueue_index(course, doc, size, job, ocr)

    def _enqueue_index(self, course: Course, doc: str, size: int, job: str, ocr: str = "auto") -> dict:
        st = DocState(doc=doc, status="queued", bytes=size, job=job, ocr=ocr)
        with self._lock:
            with course.lock:
                course.states[doc] = st
                snapshot = st.to_json()
            self._jobs.append(("index", course.id, doc, job))
            self._ensure_thread()
            self._wake.notify_all()
        return snapshot

    def remove(self, course: Course, doc: str, wait: float = 10.0) -> str:
        """Remove ``doc`` (queued uploads are dropped at once). Returns ``"removed"``, or ``"removing"``
        when the indexer is still busy after ``wait`` seconds (it removes the document next)."""
        if not self.has_document(course, doc):
            raise CourseError(f"no document {doc!r} in course {course.id!r}", 404, "no_document")
        job = uuid.uuid4().hex
        done = threading.Event()
        with self._lock:
            with course.lock:
                prev = course.states.get(doc)
                course.states[doc] = DocState(doc=doc, status="removing", job=job,
                                              pages=prev.pages if prev else 0, chunks=prev.chunks if prev else 0)
            self._done[job] = done
            self._jobs.appendleft(("remove", course.id, doc, job))  # removals go first
            self._ensure_thread()
            self._wake.notify_all()
        return "removed" if done.wait(wait) else "removing"

    # ------------------------------------------------------------------ the indexer thread

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="pdfqa-indexer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._jobs and not self._stop:
                    self._wake.wait()
                if self._stop:
                    return
                kind, cid, doc, job = self._jobs.popleft()
            course = self.courses.get(cid)
            if course is None:
                continue
            try:
                if kind == "index":
                    self._index(course, doc, job)
                else:
                    self._remove(course, doc, job)
            except Exception as e:  # the thread must survive anything one file does
                log.exception("indexer: %s %s/%s failed", kind, cid, doc)
                with course.lock:
                    st = course.states.get(doc)
                    if st is not None and st.job == job:
                        st.status, st.error = "failed", f"{doc}: unexpected {type(e).__name__}: {e}"
            finally:
                self.busy = None
                ev = self._done.pop(job, None)
                if ev is not None:
                    ev.set()

    def _writer(self, course: Course) -> _ProgressCollection:
        if course.writer is None:
            course.writer = _ProgressCollection.open(course.collection_dir, create=True)
            course.writer.questions_waiting = self.questions_waiting
        return course.writer

    def _index(self, course: Course, doc: str, job: str) -> None:
        path = course.pending_dir / job / doc
        with course.lock:
            st = course.states.get(doc)
            if st is None or st.job != job or st.status != "queued":  # superseded before it started
                shutil.rmtree(path.parent, ignore_errors=True)
                return
            st.status, st.stage, st.progress = "indexing", "read", 0.02
        self.busy = (course.id, doc)
        col = self._writer(course)

        def progress(stage: str, value: float) -> None:
            with course.lock:
                st.stage, st.progress = stage, max(st.progress, value)

        col.on_progress = progress
        try:
            report = col.index([path], progress=False, ocr=st.ocr)
        finally:
            col.on_progress = None
        r = report.files[0] if report.files else None
        ok = r is not None and r.status in ("indexed", "unchanged")
        if ok:  # this version is in the collection now: its pages are rendered from files/
            os.replace(path, course.files_dir / doc)
        shutil.rmtree(path.parent, ignore_errors=True)
        with course.lock:
            if course.states.get(doc) is not st:
                return  # a newer upload or a removal of this name comes next
            if ok:
                del course.states[doc]
                return
            st.status, st.progress, st.stage = "failed", 1.0, ""
            st.error = (r.error if r is not None else None) or f"{doc}: could not be indexed"
            if col.store.document(doc) is not None:
                st.error += " (the previously indexed version stays in use)"
            if r is not None:
                st.pages = r.pages
                st.skipped = [{"page": p, "reason": why} for p, why in r.skipped_pages]

    def _remove(self, course: Course, doc: str, job: str) -> None:
        col = self._writer(course)
        try:
            col.remove(doc)
        except ValueError:
            # pdfqa's BM25 rebuild fails on an empty collection after the last document is removed;
            # the removal itself is committed (the index is rebuilt when a document is added again)
            if col.store.document(doc) is not None:
                raise
            log.info("%s: removed the last document (lexical index left for the next indexing)", course.id)
        with course.lock:
            st = course.states.get(doc)
            if st is not None and st.job == job:
                del course.states[doc]
        try:
            (course.files_dir / doc).unlink()
        except FileNotFoundError:
            pass

    def close(self, wait: float = 5.0) -> None:
        """Stop the indexer after its current file (waiting up to ``wait`` seconds) and close the
        collections. Uploads not indexed yet stay in ``.pending`` and are indexed at the next start."""
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        busy = False
        if self._thread is not None:
            self._thread.join(timeout=wait)
            busy = self._thread.is_alive()
        for c in self.courses.values():
            if busy:  # the indexer still holds a writer: leave them to it, close the readers only
                with c.lock:
                    for _, col in c._readers:
                        col.close()
                    c._readers.clear()
            else:
                c.close()


def answer_stream(course: Course, question: str, *, generator, retriever: str | None, k: int,
                  history: list[tuple[str, str]], cancelled: threading.Event) -> Iterator:
    """Text pieces, then the :class:`~pdfqa.qa.Answer`, for ``question`` over the course's last
    committed state; ``history`` holds earlier (standalone question, answer) pairs of the conversation."""
    from ..qa import PDFQA, Conversation

    with course.reader() as col:
        if col.store.count_chunks() == 0:
            raise CourseError("no document of this course is ready yet: upload a PDF and wait until it is "
                              "indexed", 409, "no_documents")
        qa = PDFQA(col, generator=generator, retriever=retriever, k=k)
        conv = Conversation(qa, history=history)
        for item in conv.stream(question):
            if cancelled.is_set():
                return
            yield item
