"""The course-material assistant: a FastAPI app over :mod:`pdfqa` (courses, uploads, questions).

>>> from pdfqa.app import serve
>>> serve("courses/")                       # doctest: +SKIP  (http://127.0.0.1:8000)

The HTTP API (its OpenAPI schema is at ``/openapi.json``, browsable at ``/docs``):

- ``GET /api/config``: the generators and retrievers offered, the limits, whether writes need a token
- ``GET /api/courses``: ``[{"id", "name", "created", "documents"}]``
- ``POST /api/courses`` ``{"name"}`` → 201 ``{"id", "name", "created"}`` (write)
- ``GET /api/courses/{id}/documents``:
  ``[{"doc", "status", "progress", "stage", "pages", "chunks", "skipped", "error", "bytes"}]``,
  status ``queued`` | ``indexing`` | ``ready`` | ``failed`` | ``removing``
- ``POST /api/courses/{id}/documents`` (multipart field ``file``, optional ``ocr``: auto|always|never) → 202 ``{"doc", "status", "pages", "bytes",
  "renamed"}`` (write)
- ``DELETE /api/courses/{id}/documents/{doc}`` → ``{"doc", "status": "removed"}`` (202 ``"removing"`` while
  the indexer is busy) (write)
- ``POST /api/courses/{id}/ask`` ``{"question", "generator"?, "retriever"?, "history"?, "k"?}`` → the fields of
  ``pdfqa ask --json``; server-sent events (``token`` …, then ``answer`` or ``error``) when the request
  accepts ``text/event-stream``
- ``GET /api/courses/{id}/pages/{doc}/{page}.png``: the page rendered, ``?quote=`` highlighted, ``?scale=``
- ``GET /api/courses/{id}/pages/{doc}/{page}.json``: its page label, size and the highlight boxes

Every error is JSON: ``{"detail": "<what went wrong and what to do>", "code": "<machine-readable>"}``.
Writes need ``Authorization: Bearer <token>`` (or ``X-Admin-Token``) when an admin token is set,
and one must be set to serve on anything but a loopback address; asking and reading stay open.
"""

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Optional, Sequence, Union

from ..pdf.ocr import OCR_MODES
from .asks import AskQueue, Busy
from .courses import CourseError, CourseManager, answer_stream
from .pdftools import PdfJobError, PdfWorkers, job_check_pdf, job_render_page, safe_filename, write_upload

log = logging.getLogger("pdfqa.app")
STATIC = Path(__file__).parent / "static"
DEFAULT_GENERATORS = ("default", "extractive")
DEFAULT_RETRIEVERS = ("hybrid", "dense", "bm25", "hybrid|mmr")
#: multipart framing allowed on top of the file itself
UPLOAD_OVERHEAD = 64 * 1024


@dataclass
class AppSettings:
    """Everything the app can be configured with (``create_app`` / ``serve`` keyword arguments)."""

    root: Path
    admin_token: str | None = None
    exposed: bool = False
    generator: str = "default"
    generators: Sequence[Any] = DEFAULT_GENERATORS
    retriever: str | None = None
    retrievers: Sequence[str] = DEFAULT_RETRIEVERS
    max_upload_bytes: int = 50 * 2**20
    max_pages: int = 500
    answer_timeout: float = 120.0
    ask_workers: int = 16
    cpu_slots: int = 2
    max_pending_asks: int = 64
    k: int = 5
    embedder: str | None = None
    #: where new courses' collections live: None (their folder) or a milvus: location
    store: str | None = None
    pdf_workers: int = 2
    pdf_timeout: float = 60.0
    warm_up: bool = False
    generator_objects: dict = field(default_factory=dict)


#: defaults of the question queue (see :mod:`pdfqa.app.asks` and benchmarks/README.md, "course assistant
#: under load"): 16 threads answer at once (most of them waiting for a streaming generator), of which
#: one per core does CPU work; 64 questions at most are admitted, the next is refused with Retry-After
DEFAULT_ASK_WORKERS = 16
DEFAULT_MAX_PENDING_ASKS = 64


def default_cpu_slots() -> int:
    """One question doing CPU work per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def is_loopback(host: str) -> bool:
    host = (host or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiError(Exception):
    def __init__(self, status: int, detail: str, code: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.code, self.headers = status, detail, code, headers


def _json_response(status: int, detail: str, code: str, headers: dict | None = None):
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail, "code": code}, status_code=status, headers=headers)


# ---------------------------------------------------------------------- ASGI guard


class Guard:
    """Outermost ASGI layer: Host check on loopback (DNS rebinding), same-origin check for writes
    (a web page elsewhere cannot post to a local server), upload body limit before any parsing,
    and security headers on every response."""

    UPLOAD = re.compile(r"^/api/courses/[^/]+/documents/?$")

    def __init__(self, app, settings: AppSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        method = scope["method"]

        async def reply(status: int, detail: str, code: str):
            body = json.dumps({"detail": detail, "code": code}).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})

        if not self.settings.exposed:
            hostname = urllib.parse.urlsplit(f"//{host}").hostname or ""
            if not is_loopback(hostname):
                return await reply(403, f"this server answers on localhost only (Host: {host[:100]!r}); start it with "
                                        "--host and --admin-token to expose it", "bad_host")
        if method not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin and origin != "null" and urllib.parse.urlsplit(origin).netloc != host:
                return await reply(403, f"cross-site request refused (Origin {origin[:100]!r})", "cross_origin")
        limit = None
        if method == "POST" and self.UPLOAD.match(scope["path"]):
            limit = self.settings.max_upload_bytes + UPLOAD_OVERHEAD
            try:
                declared = int(headers.get("content-length", "0") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                return await reply(413, _too_large(self.settings.max_upload_bytes, declared), "too_large")
        received = 0
        started = False
        replied = False  # this layer answered 413 itself: whatever the app does next is dropped

        async def guarded_receive():
            nonlocal received, replied
            if replied:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    replied = True
                    if not started:
                        await reply(413, _too_large(self.settings.max_upload_bytes, received), "too_large")
                    return {"type": "http.disconnect"}
            return msg

        async def send_with_headers(msg):
            nonlocal started
            if replied:
                return
            if msg["type"] == "http.response.start":
                started = True
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY")]
                msg = {**msg, "headers": list(msg.get("headers", [])) + extra}
            await send(msg)

        try:
            await self.app(scope, guarded_receive if limit is not None else receive, send_with_headers)
        except Exception:
            if not replied:
                raise


def _too_large(limit: int, size: int | None = None) -> str:
    got = f" ({size / 2**20:.1f} MB)" if size else ""
    return f"file too large{got}: the limit is {limit / 2**20:.1f} MB per PDF"


# ---------------------------------------------------------------------- the app


def create_app(root: str | Path, *, admin_token: str | None = None, exposed: bool = False,
               generator: str = "default", generators: Sequence[Any] | None = None,
               retriever: str | None = None, retrievers: Sequence[str] | None = None,
               max_upload_mb: float = 50, max_pages: int = 500, answer_timeout: float = 120.0,
               ask_workers: int = DEFAULT_ASK_WORKERS, cpu_slots: int | None = None,
               max_pending_asks: int = DEFAULT_MAX_PENDING_ASKS, k: int = 5, embedder: str | None = None,
               pdf_workers: int = 2, warm_up: bool = False, store: str | None = None):
    """The course assistant as a FastAPI app over the courses under ``root`` (created if missing).

    ``generators`` are the generator specs (or :class:`~pdfqa.generators.Generator` objects, by their
    ``spec``) offered in the picker, ``generator`` the preselected one; likewise ``retrievers`` /
    ``retriever``. ``exposed`` says the server listens beyond loopback: it then refuses to start without
    ``admin_token``. Uploads are limited to ``max_upload_mb`` and ``max_pages``; an answer that takes
    longer than ``answer_timeout`` seconds is abandoned with a 504 and a message. Questions: at most
    ``max_pending_asks`` admitted (beyond, 503 with ``Retry-After``), answered by ``ask_workers`` threads
    of which ``cpu_slots`` (default: one per core) do CPU work at a time (see :mod:`pdfqa.app.asks`). ``store`` (a
    ``milvus:`` location) keeps new courses' collections in Milvus.
    """
    from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ..errors import EmbedderMismatchError, PdfqaError, UnknownComponentError
    from ..generators import get_generator
    from ..qa import Answer

    if exposed and not admin_token:
        raise ValueError("refusing to serve on a non-loopback address without an admin token: anyone who can "
                         "reach it could create courses and upload files. Pass --admin-token (or set "
                         "PDFQA_ADMIN_TOKEN), or bind 127.0.0.1")
    offered: dict[str, Any] = {}
    for g in (generator, *(generators if generators is not None else DEFAULT_GENERATORS)):
        if isinstance(g, str):
            get_generator(g)  # unknown specs fail now, with the list of known ones
            offered.setdefault(g, g)
        else:
            offered.setdefault(g.spec, g)
    default_generator = generator.spec if not isinstance(generator, str) else generator
    retr = list(dict.fromkeys([*( [retriever] if retriever else []), *(retrievers or DEFAULT_RETRIEVERS)]))
    settings = AppSettings(root=Path(root), admin_token=admin_token, exposed=exposed, generator=default_generator,
                           generators=list(offered), retriever=retr[0], retrievers=retr,
                           max_upload_bytes=int(max_upload_mb * 2**20), max_pages=max_pages,
                           answer_timeout=answer_timeout, ask_workers=ask_workers,
                           cpu_slots=cpu_slots or default_cpu_slots(), max_pending_asks=max_pending_asks, k=k,
                           embedder=embedder, pdf_workers=pdf_workers, warm_up=warm_up, generator_objects=offered,
                           store=store)
    asks = AskQueue(workers=settings.ask_workers, cpu_slots=settings.cpu_slots, max_pending=max_pending_asks)
    # every answering thread keeps an open reader (its loaded indexes) per course
    manager = CourseManager(settings.root, embedder=embedder, store=store, readers=settings.ask_workers,
                            questions_waiting=asks.cpu_wanted)
    pdf = PdfWorkers(pdf_workers, settings.pdf_timeout)
    renders: OrderedDict[tuple, dict] = OrderedDict()
    renders_lock = threading.Lock()

    def warm() -> None:
        from ..embeddings import DEFAULT_EMBEDDER, get_embedder

        pdf.warm_up()
        loaded = []
        try:
            t = time.perf_counter()
            emb = get_embedder(embedder or DEFAULT_EMBEDDER)
            emb.load_all()
            loaded.append(f"{emb.spec} {time.perf_counter() - t:.1f}s")
            t = time.perf_counter()
            gen = offered[default_generator]
            (get_generator(gen) if isinstance(gen, str) else gen).warm_up()
            loaded.append(f"{default_generator} {time.perf_counter() - t:.1f}s")
        except Exception as e:  # a model that cannot load now fails with its message when asked
            log.warning("warm-up: %s", e)
        if loaded:  # said once: the models stay loaded for every question
            log.info("models loaded once for this server: %s", ", ".join(loaded))

    @asynccontextmanager
    async def lifespan(app):
        if warm_up:
            threading.Thread(target=warm, name="pdfqa-warm-up", daemon=True).start()
        yield
        asks.shutdown()
        await asyncio.get_running_loop().run_in_executor(None, manager.close)  # waits for the indexer a little
        pdf.close()

    app = FastAPI(title="pdfqa course assistant", version=_version(), lifespan=lifespan,
                  description="Teachers load lecture PDFs into courses; students ask questions and get answers "
                              "that cite the page. Built on the pdfqa library.")
    app.state.settings = settings
    app.state.manager = manager
    app.state.pdf = pdf
    app.add_middleware(Guard, settings=settings)

    # ------------------------------------------------------------------ errors as {"detail", "code"}

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _json_response(exc.status, exc.detail, exc.code, exc.headers)

    @app.exception_handler(CourseError)
    async def _course_error(request, exc: CourseError):
        return _json_response(exc.status, str(exc), exc.code or "error")

    @app.exception_handler(PdfqaError)
    async def _pdfqa_error(request, exc: PdfqaError):
        return _json_response(400, str(exc), "pdfqa_error")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        parts = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return _json_response(422, "; ".join(parts) or "invalid request", "invalid")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, exc: StarletteHTTPException):
        return _json_response(exc.status_code, str(exc.detail), "http_" + str(exc.status_code),
                              getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _json_response(500, f"internal error: {type(exc).__name__}: {exc}", "internal")

    # ------------------------------------------------------------------ auth

    def admin(request: Request) -> None:
        if not admin_token:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-admin-token")
        if not given:
            raise ApiError(401, "this change needs the admin token: send 'Authorization: Bearer <token>' (in the page, "
                                "enter it in the token field)", "token_required", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise ApiError(403, "wrong admin token", "token_wrong")

    # ------------------------------------------------------------------ models

    class CourseIn(BaseModel):
        name: str = Field(..., description="The course's name (any language, up to 100 characters).")

    class HistoryItem(BaseModel):
        question: str = Field(..., max_length=4000)
        answer: str = Field("", max_length=20000)
        standalone_question: Optional[str] = Field(None, max_length=4000)

    class AskIn(BaseModel):
        question: str = Field(..., min_length=1, max_length=2000)
        generator: Optional[str] = Field(None, description="One of GET /api/config's generators.")
        retriever: Optional[str] = Field(None, description="One of GET /api/config's retrievers.")
        history: list[Union[HistoryItem, tuple[str, str]]] = Field(
            default_factory=list, max_length=50,
            description="Earlier turns: {question, answer, standalone_question?} or [question, answer].")
        k: Optional[int] = Field(None, ge=1, le=20)

    # ------------------------------------------------------------------ pages

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                                       "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
                                       "base-uri 'none'; form-action 'self'",
            "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------------ API

    # (async: answered on the event loop itself, never queued behind questions or a thread pool)
    @app.get("/api/health")
    async def health() -> dict:
        return {"ok": True, "courses": len(manager.courses), "indexing": manager.busy is not None,
                "asks": asks.stats()}

    @app.get("/api/config")
    async def config() -> dict:
        return {"generators": list(offered), "generator": default_generator, "retrievers": retr,
                "retriever": retr[0], "max_upload_bytes": settings.max_upload_bytes, "max_pages": max_pages,
                "answer_timeout_s": answer_timeout, "auth_required": bool(admin_token), "exposed": exposed,
                "max_pending_asks": settings.max_pending_asks, "version": _version()}

    @app.get("/api/courses")
    def list_courses() -> list[dict]:
        out = []
        for c in manager.list():
            with c.reader() as col:
                n = len(col.documents())
            out.append({**c.to_json(), "documents": n})
        return out

    @app.post("/api/courses", status_code=201, dependencies=[Depends(admin)])
    def create_course(body: CourseIn) -> dict:
        return manager.create(body.name).to_json()

    @app.get("/api/courses/{cid}")
    async def get_course(cid: str) -> dict:
        c = manager.get(cid)
        return {**c.to_json(), "documents": await documents(c)}

    @app.get("/api/courses/{cid}/documents")
    async def list_documents(cid: str) -> list[dict]:
        return await documents(manager.get(cid))

    async def documents(course) -> list[dict]:
        """From memory on the loop while the collection is unchanged; read from SQLite (in a worker thread)
        when it has changed."""
        fast = manager.documents(course, cached_only=True)
        return fast if fast is not None else await run_in_threadpool(manager.documents, course)

    @app.post("/api/courses/{cid}/documents", status_code=202, dependencies=[Depends(admin)])
    def upload(cid: str, file: UploadFile = File(..., description="A PDF (checked by content)."),
               ocr: str = Form("auto", description="OCR pages: auto (those without a usable text layer), always, "
                               "never.")) -> dict:
        course = manager.get(cid)
        if ocr not in OCR_MODES:
            raise ApiError(422, f"ocr must be one of {', '.join(OCR_MODES)}, not {ocr[:40]!r}", "bad_ocr")
        original = file.filename or ""
        shown = original[-120:] or "the upload"
        doc = safe_filename(original)
        course.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = course.tmp_dir / f"{uuid.uuid4().hex}.upload"
        try:
            size = write_upload(file.file, tmp, settings.max_upload_bytes)
            if size < 0:
                raise ApiError(413, f"{shown}: {_too_large(settings.max_upload_bytes)}", "too_large")
            if size == 0:
                raise ApiError(422, f"{shown}: empty file (0 bytes)", "empty")
            try:
                info = pdf.call(job_check_pdf, str(tmp), max_pages)
            except PdfJobError as e:
                code = {415: "not_pdf"}.get(e.status, "too_many_pages" if "too many pages" in str(e) else "unreadable")
                raise ApiError(e.status, f"{shown}: {e}", code) from None
            st = manager.add_upload(course, doc, tmp, size, ocr)
        finally:
            tmp.unlink(missing_ok=True)
        return {"doc": doc, "status": st["status"], "pages": info["pages"], "bytes": size, "renamed": doc != original}

    @app.delete("/api/courses/{cid}/documents/{doc}", dependencies=[Depends(admin)])
    def delete_document(cid: str, doc: str, response: Response) -> dict:
        course = manager.get(cid)
        status = manager.remove(course, doc)
        if status != "removed":
            response.status_code = 202
        return {"doc": doc, "status": status}

    # ------------------------------------------------------------------ asking

    def start(course, body: AskIn):
        """Admit the question (or refuse it: 503 with Retry-After) and return its handle."""
        spec = body.generator or default_generator
        if spec not in offered:
            raise ApiError(400, f"generator {spec!r} is not offered here; choose one of: {', '.join(offered)}",
                           "bad_generator")
        rspec = body.retriever or retr[0]
        if rspec not in retr:
            raise ApiError(400, f"retriever {rspec!r} is not offered here; choose one of: {', '.join(retr)}",
                           "bad_retriever")
        gen = offered[spec]
        history = []
        for h in body.history[-10:]:
            q, a = (h.standalone_question or h.question, h.answer) if isinstance(h, HistoryItem) else h
            history.append((q, a))

        def produce(handle) -> Iterator:
            g = get_generator(gen) if isinstance(gen, str) else gen
            return answer_stream(course, body.question, generator=g, retriever=rspec, k=body.k or k,
                                 history=history, cancelled=handle.cancelled)

        try:
            handle = asks.submit(produce, asyncio.get_running_loop())
        except Busy as e:
            raise ApiError(503, f"{e}: too many questions at once here", "busy",
                           {"Retry-After": str(e.retry_after)}) from None
        return handle, spec

    def as_event(item: tuple, spec: str) -> tuple:
        """A worker's item as ("token", text) | ("answer", Answer) | ("error", status, detail, code) | ("end",)."""
        if item[0] == "item":
            return ("answer", item[1]) if isinstance(item[1], Answer) else ("token", item[1])
        if item[0] == "error":
            e = item[1]
            if isinstance(e, CourseError):
                return ("error", e.status, str(e), e.code or "error")
            if isinstance(e, (UnknownComponentError, EmbedderMismatchError)):
                return ("error", 400, str(e), "bad_request")
            # a failing generator (or model) must not take the server down
            log.warning("answering with %s failed: %s: %s", spec, type(e).__name__, e)
            return ("error", 502, f"the generator {spec!r} failed: {type(e).__name__}: {e}", "generator_failed")
        return item

    async def events(handle, spec: str, poll: float | None = None) -> AsyncIterator[tuple]:
        """The question's events until its answer, an error or the deadline (then a 504 error event);
        ("idle",) every ``poll`` seconds without one."""
        deadline = time.monotonic() + answer_timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    yield ("error", 504, f"no answer within {answer_timeout:g}s (generator {spec!r}); the server "
                                         "stopped waiting. Try again, or choose another generator", "timeout")
                    return
                try:
                    item = await handle.get(min(left, poll) if poll else left)
                except asyncio.TimeoutError:
                    if poll and deadline - time.monotonic() > 0:
                        yield ("idle",)
                    continue
                ev = as_event(item, spec)
                yield ev
                if ev[0] in ("answer", "error", "end"):
                    return
        finally:
            handle.cancel()

    @app.post("/api/courses/{cid}/ask", responses={200: {"content": {"text/event-stream": {}}},
                                                   503: {"description": "too many questions: try again after "
                                                                        "the Retry-After header's seconds"}})
    async def ask(cid: str, body: AskIn, request: Request):
        course = manager.get(cid)
        handle, spec = start(course, body)
        if "text/event-stream" in request.headers.get("accept", ""):
            async def stream() -> AsyncIterator[str]:
                yield ": answering\n\n"
                async for ev in events(handle, spec, poll=10.0):
                    kind = ev[0]
                    if kind == "idle":
                        yield ": still working\n\n"
                    elif kind == "token":
                        yield _sse("token", {"text": ev[1]})
                    elif kind == "answer":
                        yield _sse("answer", ev[1].to_json())
                    elif kind == "error":
                        yield _sse("error", {"detail": ev[2], "code": ev[3], "status": ev[1]})
                    else:  # "end" without an answer
                        yield _sse("error", {"detail": "no answer was produced", "code": "no_answer", "status": 502})
            return StreamingResponse(stream(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        async for ev in events(handle, spec):
            if ev[0] == "answer":
                return JSONResponse(ev[1].to_json())
            if ev[0] == "error":
                raise ApiError(ev[1], ev[2], ev[3])
            if ev[0] == "end":
                raise ApiError(502, "no answer was produced", "no_answer")
        raise ApiError(502, "no answer was produced", "no_answer")

    # ------------------------------------------------------------------ page images

    def render_key(cid: str, doc: str, page: int, quote: str | None, scale: float) -> tuple:
        course = manager.get(cid)
        path = course.file_path(doc)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            raise CourseError(f"no indexed document {doc!r} in course {cid!r}", 404, "no_document") from None
        return (str(path), mtime, page, round(scale, 2), quote or "")

    def cached_render(key: tuple) -> dict | None:
        with renders_lock:
            if key in renders:
                renders.move_to_end(key)
                return renders[key]
        return None

    async def render(cid: str, doc: str, page: int, quote: str | None, scale: float) -> dict:
        """A page rendered once (by a helper process, in a worker thread), then from memory on the loop."""
        key = render_key(cid, doc, page, quote, scale)
        return cached_render(key) or await run_in_threadpool(render_now, key, cid, doc, page, quote, scale)

    def render_now(key: tuple, cid: str, doc: str, page: int, quote: str | None, scale: float) -> dict:
        path = key[0]
        words = None
        if quote:  # an OCR'd page has no text layer to find the quote in: its OCR word boxes do
            with manager.get(cid).reader() as col:
                found = col.store.ocr_page(doc, page) if hasattr(col.store, "ocr_page") else None
            words = found["words"] if found else None
        try:
            out = pdf.call(job_render_page, path, page, scale, quote or None, words)
        except PdfJobError as e:
            raise ApiError(e.status, f"{doc}: {e}", "no_page" if e.status == 404 else "render_failed") from None
        with renders_lock:
            renders[key] = out
            while len(renders) > 48:
                renders.popitem(last=False)
        return out

    PageQuery = Query(None, max_length=4000, description="Text to highlight on the page (a citation's quote).")
    ScaleQuery = Query(1.5, ge=0.25, le=4.0, description="Zoom: 1.0 = 72 dpi.")

    @app.get("/api/courses/{cid}/pages/{doc}/{page}.png", response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    async def page_png(cid: str, doc: str, page: int, quote: Optional[str] = PageQuery, scale: float = ScaleQuery):
        if page < 1:
            raise ApiError(404, f"{doc}: pages are numbered from 1", "no_page")
        r = await render(cid, doc, page, quote, scale)
        return Response(r["png"], media_type="image/png", headers={
            "Cache-Control": "private, max-age=300", "X-Page-Label": urllib.parse.quote(r["page_label"] or ""),
            "X-Highlight-Boxes": str(len(r["boxes"])), "X-Highlight-Drawn": "1" if r["drawn"] else "0"})

    @app.get("/api/courses/{cid}/pages/{doc}/{page}.json")
    async def page_info(cid: str, doc: str, page: int, quote: Optional[str] = PageQuery,
                        scale: float = ScaleQuery) -> dict:
        if page < 1:
            raise ApiError(404, f"{doc}: pages are numbered from 1", "no_page")
        r = await render(cid, doc, page, quote, scale)
        return {"doc": doc, **{k: v for k, v in r.items() if k != "png"}}

    return app


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _version() -> str:
    from .. import __version__

    return __version__


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8000, admin_token: str | None = None, *,
          log_level: str = "info", **options) -> None:
    """Run the course assistant with uvicorn until interrupted (``options`` go to :func:`create_app`).

    Binding anything but a loopback address exposes the app; it then needs ``admin_token`` for writes
    and refuses to start without one.
    """
    import uvicorn

    options.setdefault("warm_up", True)
    # the event loop answers everything but the questions: let it have the interpreter lock every 1 ms
    # (not 5) while answering threads compute (measured: probes' p95 about halved at 50 clients)
    sys.setswitchinterval(0.001)
    if not logging.getLogger("pdfqa.app").level:  # the operator's log: what loaded, what failed
        logging.getLogger("pdfqa.app").setLevel(logging.INFO)
    app = create_app(root, admin_token=admin_token, exposed=not is_loopback(host), **options)
    shown = f"[{host}]" if ":" in host else host
    print(f"pdfqa course assistant: http://{shown}:{port}/  (courses in {Path(root).resolve()})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
