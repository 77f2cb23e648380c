"""The course assistant's HTTP API over a real socket, with real PDFs, a real collection and the
extractive generator (the default one loads an LLM): courses, uploads and indexing, answers (JSON
and server-sent events) that match the library's, page images with the quote highlighted, hostile
inputs, the admin token, questions while a document is being indexed, slow and failing generators."""
from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
try:  # python-multipart (module python_multipart since 0.0.13, multipart before)
    import python_multipart  # noqa: F401
except ImportError:
    pytest.importorskip("multipart")
httpx = pytest.importorskip("httpx")

from pdfqa.generators.base import Generator  # noqa: E402

from .app_server import free_port, running, wait_for  # noqa: E402
from .conftest import JA_PAPER, SLIDES, data  # noqa: E402

MULTICOLUMN = "pdfs/layout/pypdf_multicolumn.pdf"      # 3 pages, 9 chunks: quick to index
LONG_NOTES = "pdfs/layout/pypdf_GeoTopo-komprimiert_de_lecture_notes.pdf"  # 117 pages, 1.8 MB
SCANNED = "pdfs/scanned/ocrmypdf_linn.pdf"             # one image-only page
BPE = "What is byte pair encoding?"
LIMIT_MB = 2
MAX_PAGES = 40
TIMEOUT_S = 15


class SlowGenerator(Generator):
    """Answers only when released (a model server that hangs)."""

    spec = "test-slow"

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def generate(self, messages, *, max_new_tokens=512, **kwargs):
        self.calls += 1
        self.release.wait(120)
        return "A late answer [1]"


class BrokenGenerator(Generator):
    """Fails the way an unreachable model server does."""

    spec = "test-broken"

    def generate(self, messages, *, max_new_tokens=512, **kwargs):
        raise ConnectionError("model server unreachable at http://127.0.0.1:9/v1")


class Srv:
    def __init__(self, url: str, root: Path, slow: SlowGenerator):
        self.url, self.root, self.slow = url, root, slow
        self.client = httpx.Client(base_url=url, timeout=180)

    def upload(self, course: str, path: Path | None = None, *, name: str | None = None, content: bytes | None = None,
               headers: dict | None = None, ocr: str | None = None):
        body = content if content is not None else Path(path).read_bytes()
        return self.client.post(f"/api/courses/{course}/documents", headers=headers, data={"ocr": ocr} if ocr else None,
                                files={"file": (name or Path(path).name, body, "application/pdf")})

    def ask(self, course: str, question: str, **fields):
        return self.client.post(f"/api/courses/{course}/ask", json={"question": question, **fields})


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from pdfqa.app import create_app

    root = tmp_path_factory.mktemp("courses")
    slow = SlowGenerator()
    app = create_app(root, generator="extractive", generators=["extractive", slow, BrokenGenerator()],
                     max_upload_mb=LIMIT_MB, max_pages=MAX_PAGES, answer_timeout=TIMEOUT_S)
    with running(app) as url:
        s = Srv(url, root, slow)
        yield s
        slow.release.set()
        s.client.close()


@pytest.fixture(scope="module")
def nlp(srv):
    """A course with the tokenization slides indexed (31 pages)."""
    r = srv.client.post("/api/courses", json={"name": "NLP 101"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = srv.upload(cid, SLIDES)
    assert r.status_code == 202, r.text
    assert r.json() == {"doc": SLIDES.name, "status": "queued", "pages": 31, "bytes": SLIDES.stat().st_size,
                        "renamed": False}
    seen: list = []
    doc = wait_for(srv.client, cid, SLIDES.name, seen=seen)
    assert doc["status"] == "ready", doc
    return {"id": cid, "progress": seen}


@pytest.fixture(scope="module")
def hostile(srv):
    r = srv.client.post("/api/courses", json={"name": "Hostile uploads"})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def files_of(srv, cid: str) -> list[str]:
    d = srv.root / cid
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and "collection" not in p.parts)


# ---------------------------------------------------------------------- config, courses


def test_config_offers_what_is_configured(srv):
    c = srv.client.get("/api/config").json()
    assert c["generators"] == ["extractive", "test-slow", "test-broken"]
    assert c["generator"] == "extractive"
    assert c["retrievers"][0] == c["retriever"] == "hybrid" and "bm25" in c["retrievers"]
    assert c["max_upload_bytes"] == LIMIT_MB * 2**20 and c["max_pages"] == MAX_PAGES
    assert c["auth_required"] is False and c["exposed"] is False
    schema = srv.client.get("/openapi.json").json()
    assert {"/api/courses", "/api/courses/{cid}/documents", "/api/courses/{cid}/ask",
            "/api/courses/{cid}/documents/{doc}", "/api/courses/{cid}/pages/{doc}/{page}.png"} <= set(schema["paths"])


def test_courses_create_list_and_errors(srv):
    r = srv.client.post("/api/courses", json={"name": "  Deep   Learning 入門 "})
    assert r.status_code == 201, r.text
    course = r.json()
    assert course["id"] == "deep-learning" and course["name"] == "Deep Learning 入門"
    assert (srv.root / "deep-learning" / "collection" / "manifest.json").exists()
    r = srv.client.post("/api/courses", json={"name": "deep learning 入門"})
    assert r.status_code == 409 and r.json()["code"] == "course_exists" and "exists" in r.json()["detail"]
    r = srv.client.post("/api/courses", json={"name": "   "})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = srv.client.post("/api/courses", json={"title": "no name"})
    assert r.status_code == 422 and "name" in r.json()["detail"]
    r = srv.client.post("/api/courses", json={"name": "日本語の授業"})
    assert r.status_code == 201 and r.json()["id"] == "course"  # no ASCII to build an id from
    ids = [c["id"] for c in srv.client.get("/api/courses").json()]
    assert {"deep-learning", "course"} <= set(ids)
    r = srv.client.get("/api/courses/no-such-course/documents")
    assert r.status_code == 404 and r.json()["code"] == "no_course"
    r = srv.client.get("/api/courses/..%2F..%2Fetc/documents")
    assert r.status_code == 404


# ---------------------------------------------------------------------- indexing and asking


def test_upload_is_indexed_in_the_background_with_progress(srv, nlp):
    doc = next(d for d in srv.client.get(f"/api/courses/{nlp['id']}/documents").json() if d["doc"] == SLIDES.name)
    assert doc["status"] == "ready" and doc["pages"] == 31 and doc["chunks"] >= 20
    assert doc["progress"] == 1.0 and doc["error"] is None and doc["skipped"] == []
    statuses = [s["status"] for s in nlp["progress"]]
    assert "indexing" in statuses and statuses[-1] == "ready"
    progress = [s["progress"] for s in nlp["progress"] if s["status"] == "indexing"]
    assert progress == sorted(progress) and all(0 < p <= 1 for p in progress)
    assert files_of(srv, nlp["id"]) == ["course.json", f"files/{SLIDES.name}"]
    assert (srv.root / nlp["id"] / "files" / SLIDES.name).read_bytes() == SLIDES.read_bytes()


def test_ask_returns_the_library_answer(srv, nlp):
    from pdfqa import PDFQA, Collection

    r = srv.ask(nlp["id"], BPE)
    assert r.status_code == 200, r.text
    got = r.json()
    with Collection.open(srv.root / nlp["id"] / "collection", readonly=True) as col:
        want = PDFQA(col, generator="extractive").ask(BPE).to_json()
    assert set(got) == set(want)
    assert got["answer"] == want["answer"] and got["citations"] == want["citations"]
    assert [c["chunk_id"] for c in got["contexts"]] == [c["chunk_id"] for c in want["contexts"]]
    assert got["generator"] == "extractive" and got["retriever"] == "hybrid" and not got["abstained"]
    assert got["citations"] and all(c["doc"] == SLIDES.name and 1 <= c["page"] <= 31 for c in got["citations"])
    assert "[1]" in got["answer"]


def test_ask_streams_server_sent_events(srv, nlp):
    events = []
    with srv.client.stream("POST", f"/api/courses/{nlp['id']}/ask", json={"question": "What is WordPiece?"},
                           headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line[5:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and kinds.count("answer") == 1 and "token" in kinds, kinds
    answer = events[-1][1]
    assert "".join(d["text"] for k, d in events if k == "token").strip() == answer["answer"]
    assert answer["citations"] and answer["question"] == "What is WordPiece?"


def test_follow_up_questions_keep_the_conversation(srv, nlp):
    first = srv.ask(nlp["id"], BPE).json()
    alone = srv.ask(nlp["id"], "How does it build its vocabulary?").json()
    assert alone["standalone_question"] is None
    history = [{"question": first["question"], "answer": first["answer"],
                "standalone_question": first["standalone_question"]}]
    follow = srv.ask(nlp["id"], "How does it build its vocabulary?", history=history)
    assert follow.status_code == 200, follow.text
    assert BPE in follow.json()["standalone_question"]
    pairs = srv.ask(nlp["id"], "How does it build its vocabulary?", history=[[first["question"], first["answer"]]])
    assert pairs.json()["standalone_question"] == follow.json()["standalone_question"]


def test_page_image_highlights_the_quote(srv, nlp):
    from PIL import Image, ImageChops

    cite = srv.ask(nlp["id"], BPE).json()["citations"][0]
    base = f"/api/courses/{nlp['id']}/pages/{cite['doc']}/{cite['page']}"
    plain = srv.client.get(base + ".png", params={"scale": 1.0})
    marked = srv.client.get(base + ".png", params={"scale": 1.0, "quote": cite["quote"]})
    for r in (plain, marked):
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert plain.headers["x-highlight-boxes"] == "0" and int(marked.headers["x-highlight-boxes"]) > 0
    info = srv.client.get(base + ".json", params={"scale": 1.0, "quote": cite["quote"]}).json()
    assert info["page"] == cite["page"] and info["pages"] == 31 and info["page_label"] == cite["page_label"]
    assert info["matched"] > 0.9 and info["drawn"] is True
    a = Image.open(io.BytesIO(plain.content)).convert("RGB")
    b = Image.open(io.BytesIO(marked.content)).convert("RGB")
    assert a.size == b.size == (info["width"], info["height"])
    diff = ImageChops.difference(a, b)
    x0, y0, x1, y1 = info["boxes"][0]
    assert 0 <= x0 < x1 <= a.width and 0 <= y0 < y1 <= a.height
    assert diff.crop((x0, y0, x1, y1)).getbbox() is not None  # drawn inside the box
    mask = Image.new("L", a.size, 255)
    for bx in info["boxes"]:
        mask.paste(0, tuple(bx))
    outside = Image.composite(diff, Image.new("RGB", a.size), mask)
    assert outside.getbbox() is None  # and nowhere else


def test_page_errors(srv, nlp):
    base = f"/api/courses/{nlp['id']}/pages"
    r = srv.client.get(f"{base}/{SLIDES.name}/99.png")
    assert r.status_code == 404 and r.json()["code"] == "no_page" and "31 pages" in r.json()["detail"]
    r = srv.client.get(f"{base}/{SLIDES.name}/0.png")
    assert r.status_code == 404
    for doc in ("missing.pdf", "course.json", "..%2Fcourse.json", "..%2F..%2F" + SLIDES.name):
        r = srv.client.get(f"{base}/{doc}/1.png")
        assert r.status_code == 404 and r.headers["content-type"] == "application/json", (doc, r.text)


# ---------------------------------------------------------------------- hostile inputs


def test_oversized_upload_is_refused(srv, hostile):
    big = b"%PDF-1.7\n" + b"0" * (LIMIT_MB * 2**20 + 100_000) + b"\n%%EOF\n"
    r = srv.upload(hostile, name="big.pdf", content=big)
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert f"{LIMIT_MB:.1f} MB" in r.json()["detail"]

    def chunked():  # no Content-Length: the limit holds while the body streams in
        yield b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.pdf\"\r\n" \
              b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n"
        for _ in range(LIMIT_MB * 4):
            yield b"0" * (2**20 // 2)
        yield b"\r\n--XyZ--\r\n"

    r = srv.client.post(f"/api/courses/{hostile}/documents", content=chunked(),
                        headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert files_of(srv, hostile) == ["course.json"]


def test_renamed_non_pdfs_and_broken_pdfs_are_refused(srv, hostile):
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
    r = srv.upload(hostile, name="lecture.pdf", content=png)
    assert r.status_code == 415 and r.json()["code"] == "not_pdf"
    assert "not a PDF" in r.json()["detail"] and "PNG" in r.json()["detail"]
    r = srv.upload(hostile, name="notes.pdf", content=b"just some text, renamed\n")
    assert r.status_code == 415 and "text file" in r.json()["detail"]
    r = srv.upload(hostile, name="broken.pdf", content=b"%PDF-1.7\n1 0 obj garbage\n")
    assert r.status_code == 422 and r.json()["code"] == "unreadable"
    r = srv.upload(hostile, name="empty.pdf", content=b"")
    assert r.status_code == 422 and r.json()["code"] == "empty"
    r = srv.upload(hostile, data(LONG_NOTES))
    assert r.status_code == 422 and r.json()["code"] == "too_many_pages"
    assert f"117 > limit {MAX_PAGES}" in r.json()["detail"]
    r = srv.client.post(f"/api/courses/{hostile}/documents", data={"note": "no file"})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    assert srv.client.get(f"/api/courses/{hostile}/documents").json() == []
    assert files_of(srv, hostile) == ["course.json"]


def test_traversal_names_are_sanitised(srv, hostile):
    src = data(MULTICOLUMN)
    r = srv.upload(hostile, src, name="../../evil.pdf")
    assert r.status_code == 202, r.text
    assert r.json()["doc"] == "evil.pdf" and r.json()["renamed"] is True
    r = srv.upload(hostile, src, name="..\\..\\<script>alert(1)<\\script>.exe")
    assert r.status_code == 202
    odd = r.json()["doc"]
    assert odd.endswith(".pdf") and not set("<>/\\") & set(odd)
    assert wait_for(srv.client, hostile, "evil.pdf")["status"] == "ready"
    assert wait_for(srv.client, hostile, odd)["status"] == "ready"
    assert sorted(files_of(srv, hostile)) == sorted(["course.json", "files/evil.pdf", f"files/{odd}"])
    assert not (srv.root / "evil.pdf").exists() and not (srv.root.parent / "evil.pdf").exists()
    r = srv.client.delete(f"/api/courses/{hostile}/documents/{odd}")
    assert r.status_code == 200 and r.json() == {"doc": odd, "status": "removed"}


def test_same_name_in_two_courses_stays_apart(srv, hostile, nlp):
    theirs = data(MULTICOLUMN).read_bytes() + b"\n% a different file with the same name\n"
    r = srv.upload(nlp["id"], name="evil.pdf", content=theirs)
    assert r.status_code == 202, r.text
    assert wait_for(srv.client, nlp["id"], "evil.pdf")["status"] == "ready"
    assert (srv.root / nlp["id"] / "files" / "evil.pdf").read_bytes() == theirs
    assert (srv.root / hostile / "files" / "evil.pdf").read_bytes() == data(MULTICOLUMN).read_bytes()
    assert srv.client.delete(f"/api/courses/{nlp['id']}/documents/evil.pdf").status_code == 200
    assert not (srv.root / nlp["id"] / "files" / "evil.pdf").exists()
    assert (srv.root / hostile / "files" / "evil.pdf").exists()


def test_same_name_in_a_course_replaces_the_document(srv, hostile):
    from pdfqa import Collection

    new = data(MULTICOLUMN).read_bytes() + b"\n% second version\n"
    r = srv.upload(hostile, name="evil.pdf", content=new)
    assert r.status_code == 202
    assert wait_for(srv.client, hostile, "evil.pdf")["status"] == "ready"
    docs = srv.client.get(f"/api/courses/{hostile}/documents").json()
    assert [d["doc"] for d in docs] == ["evil.pdf"]
    with Collection.open(srv.root / hostile / "collection", readonly=True) as col:
        assert col.store.document("evil.pdf").doc_hash == hashlib.sha256(new).hexdigest()
    assert (srv.root / hostile / "files" / "evil.pdf").read_bytes() == new
    assert files_of(srv, hostile) == ["course.json", "files/evil.pdf"]


def test_unindexable_pdf_is_listed_as_failed_with_its_cause(srv, hostile):
    r = srv.upload(hostile, data(SCANNED), ocr="never")  # an image-only page, OCR turned off
    assert r.status_code == 202
    doc = wait_for(srv.client, hostile, SCANNED.rsplit("/", 1)[1])
    assert doc["status"] == "failed" and "nothing to index" in doc["error"], doc
    assert doc["pages"] == 1 and doc["skipped"] and doc["skipped"][0]["page"] == 1
    r = srv.client.delete(f"/api/courses/{hostile}/documents/{doc['doc']}")
    assert r.status_code == 200
    assert [d["doc"] for d in srv.client.get(f"/api/courses/{hostile}/documents").json()] == ["evil.pdf"]


def test_scanned_upload_is_ocrd_and_its_citation_highlighted(srv):
    """A scan without a text layer: OCR'd on upload (progress stage ``ocr``), cited with ``ocr: true``,
    and the cited passage is highlighted on the page image from the OCR word boxes."""
    from pdfqa.pdf.ocr import ocr_unavailable

    if ocr_unavailable():
        pytest.skip(f"OCR not installed: {ocr_unavailable()}")
    cid = srv.client.post("/api/courses", json={"name": "Scans"}).json()["id"]
    r = srv.upload(cid, data(SCANNED), ocr="sometimes")
    assert r.status_code == 422 and r.json()["code"] == "bad_ocr"
    assert srv.upload(cid, data(SCANNED)).status_code == 202
    doc = wait_for(srv.client, cid, SCANNED.rsplit("/", 1)[1])
    assert doc["status"] == "ready", doc
    ans = srv.ask(cid, "How many notes does a disk hold?", generator="extractive").json()
    cite = ans["citations"][0]
    assert cite["doc"] == "ocrmypdf_linn.pdf" and cite["page"] == 1
    assert ans["contexts"][0]["ocr"] is True and ans["contexts"][0]["ocr_confidence"] > 0.8
    info = srv.client.get(f"/api/courses/{cid}/pages/{cite['doc']}/1.json", params={"scale": 2.0, "quote": cite["quote"]}).json()
    assert info["matched"] > 0.9 and info["boxes"], info
    assert all(0 <= x0 < x1 <= info["width"] and 0 <= y0 < y1 <= info["height"] for x0, y0, x1, y1 in info["boxes"])
    # the boxes sit on the quoted words: the page image (as the app serves it) cut at the boxes reads as the quote
    import io

    import tesserocr
    from PIL import Image
    from rapidfuzz.distance import Levenshtein

    from pdfqa.pdf.ocr import tessdata_dir

    png = srv.client.get(f"/api/courses/{cid}/pages/{cite['doc']}/1.png", params={"scale": 2.0})
    page = Image.open(io.BytesIO(png.content)).convert("L")
    assert page.size == (info["width"], info["height"])
    with tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang="eng", psm=tesserocr.PSM.SINGLE_LINE) as api:
        read = []
        for box in info["boxes"]:
            api.SetImage(page.crop(tuple(box)))
            read.append(api.GetUTF8Text())
    got, want = "".join("".join(read).split()), "".join(cite["quote"].split())
    assert Levenshtein.distance(got, want) / len(want) < 0.1, (read, cite["quote"])


def test_remove_document(srv, hostile):
    data(MULTICOLUMN)  # evil.pdf was uploaded from it by the traversal test: skip with it when the data is absent
    r = srv.client.delete(f"/api/courses/{hostile}/documents/evil.pdf")
    assert r.status_code == 200 and r.json() == {"doc": "evil.pdf", "status": "removed"}
    assert srv.client.get(f"/api/courses/{hostile}/documents").json() == []
    assert not (srv.root / hostile / "files" / "evil.pdf").exists()
    r = srv.client.delete(f"/api/courses/{hostile}/documents/evil.pdf")
    assert r.status_code == 404 and r.json()["code"] == "no_document"
    r = srv.ask(hostile, BPE)
    assert r.status_code == 409 and r.json()["code"] == "no_documents"


def test_requests_from_elsewhere_are_refused(srv):
    r = srv.client.post("/api/courses", json={"name": "CSRF"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and r.json()["code"] == "cross_origin"
    r = srv.client.get("/api/courses", headers={"Host": "evil.example"})  # DNS rebinding
    assert r.status_code == 403 and r.json()["code"] == "bad_host"
    r = srv.client.post("/api/courses", json={"name": "Same origin"}, headers={"Origin": srv.url})
    assert r.status_code == 201
    page = srv.client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


# ---------------------------------------------------------------------- generators


def test_unknown_components_and_bad_questions_are_refused(srv, nlp):
    r = srv.ask(nlp["id"], BPE, generator="hf:someone/huge-model")
    assert r.status_code == 400 and r.json()["code"] == "bad_generator" and "extractive" in r.json()["detail"]
    r = srv.ask(nlp["id"], BPE, retriever="bm25+st:/etc")
    assert r.status_code == 400 and r.json()["code"] == "bad_retriever"
    r = srv.ask(nlp["id"], "")
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)
    r = srv.ask(nlp["id"], "x" * 2001)
    assert r.status_code == 422 and "question" in r.json()["detail"]


def test_slow_generator_times_out_and_the_server_stays_up(srv, nlp):
    t = time.monotonic()
    r = srv.ask(nlp["id"], BPE, generator="test-slow")
    took = time.monotonic() - t
    assert r.status_code == 504 and r.json()["code"] == "timeout", r.text
    assert f"{TIMEOUT_S}s" in r.json()["detail"] and "test-slow" in r.json()["detail"]
    assert TIMEOUT_S - 1 <= took < TIMEOUT_S + 20
    assert srv.slow.calls == 1  # the generator was really asked (and hung)
    assert srv.client.get("/api/health").json()["ok"] is True
    r = srv.ask(nlp["id"], BPE)
    assert r.status_code == 200 and r.json()["citations"]


def test_failing_generator_is_reported_and_the_server_stays_up(srv, nlp):
    r = srv.ask(nlp["id"], BPE, generator="test-broken")
    assert r.status_code == 502 and r.json()["code"] == "generator_failed"
    assert "model server unreachable" in r.json()["detail"]
    with srv.client.stream("POST", f"/api/courses/{nlp['id']}/ask", json={"question": BPE, "generator": "test-broken"},
                           headers={"Accept": "text/event-stream"}) as s:
        lines = [ln for ln in s.iter_lines() if ln]
    assert lines[-2] == "event: error" and "model server unreachable" in lines[-1]
    assert srv.ask(nlp["id"], BPE).status_code == 200


# ---------------------------------------------------------------------- concurrency


def test_questions_while_indexing_answer_from_the_last_complete_state(srv, nlp):
    """A writer holds the collection (here: this test, as a second `pdfqa index` would); the new
    upload waits in 'indexing' while questions keep being answered from what is indexed."""
    question = "ゼロトラストの考え方はだれが提唱しましたか？"
    lock = open(srv.root / nlp["id"] / "collection" / ".lock", "a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        assert srv.upload(nlp["id"], JA_PAPER).status_code == 202
        doc = wait_for(srv.client, nlp["id"], JA_PAPER.name, statuses=("indexing",), timeout=60)
        assert doc["progress"] < 1
        t = time.monotonic()
        r = srv.ask(nlp["id"], question)
        assert r.status_code == 200, r.text
        assert time.monotonic() - t < TIMEOUT_S
        assert {c["doc"] for c in r.json()["contexts"]} == {SLIDES.name}
        listed = {d["doc"]: d["status"] for d in srv.client.get(f"/api/courses/{nlp['id']}/documents").json()}
        assert listed == {SLIDES.name: "ready", JA_PAPER.name: "indexing"}
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    assert wait_for(srv.client, nlp["id"], JA_PAPER.name)["status"] == "ready"
    after = srv.ask(nlp["id"], question).json()
    assert JA_PAPER.name in {c["doc"] for c in after["contexts"]}
    assert any(c["doc"] == JA_PAPER.name for c in after["citations"]), after


def test_a_restarted_server_finds_its_courses(srv, nlp, tmp_path):
    from pdfqa.app import create_app

    with running(create_app(srv.root, generator="extractive", generators=["extractive"])) as url:
        with httpx.Client(base_url=url, timeout=120) as c:
            assert nlp["id"] in [x["id"] for x in c.get("/api/courses").json()]
            docs = {d["doc"]: d["status"] for d in c.get(f"/api/courses/{nlp['id']}/documents").json()}
            assert docs[SLIDES.name] == "ready"
            assert c.post(f"/api/courses/{nlp['id']}/ask", json={"question": BPE}).status_code == 200


# ---------------------------------------------------------------------- exposed: the admin token


def test_exposed_server_needs_a_token_for_writes(tmp_path):
    from pdfqa.app import create_app, serve

    with pytest.raises(ValueError, match="admin token"):
        create_app(tmp_path / "a", exposed=True)
    with pytest.raises(ValueError, match="admin token"):
        serve(tmp_path / "a", host="0.0.0.0", port=1)  # refuses before binding anything
    token = "s3cret-token"
    app = create_app(tmp_path / "b", exposed=True, admin_token=token, generator="extractive", generators=["extractive"])
    with running(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/api/config").json()["auth_required"] is True
        r = c.post("/api/courses", json={"name": "Open"})
        assert r.status_code == 401 and r.json()["code"] == "token_required"
        assert r.headers["www-authenticate"] == "Bearer"
        r = c.post("/api/courses", json={"name": "Open"}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 403 and r.json()["code"] == "token_wrong"
        r = c.post("/api/courses", json={"name": "Open"}, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201
        cid = r.json()["id"]
        assert c.post("/api/courses", json={"name": "Other"}, headers={"X-Admin-Token": token}).status_code == 201
        r = c.post(f"/api/courses/{cid}/documents", files={"file": ("a.pdf", SLIDES.read_bytes(), "application/pdf")})
        assert r.status_code == 401
        assert c.delete(f"/api/courses/{cid}/documents/a.pdf").status_code == 401
        assert not any((tmp_path / "b" / cid).rglob("*.pdf"))
        # reading and asking stay open (409: nothing indexed yet, not 401)
        assert c.get("/api/courses").status_code == 200
        assert c.get(f"/api/courses/{cid}/documents").json() == []
        assert c.post(f"/api/courses/{cid}/ask", json={"question": BPE}).status_code == 409
        assert c.get("/api/courses", headers={"Host": "assistant.example.org"}).status_code == 200


# ---------------------------------------------------------------------- `pdfqa serve`


def _cli_has_serve() -> bool:
    from pdfqa import cli

    return any((c.name or c.callback.__name__) == "serve" for c in cli.app.registered_commands)


def test_cli_serve(tmp_path):
    if not _cli_has_serve():
        pytest.skip("`pdfqa serve` is not in pdfqa.cli")
    env = {k: v for k, v in os.environ.items() if k != "PDFQA_ADMIN_TOKEN"}
    cmd = [sys.executable, "-m", "pdfqa.cli", "serve", "--collection", str(tmp_path / "courses")]
    proc = subprocess.run([*cmd, "--host", "0.0.0.0", "--port", str(free_port())], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "admin token" in proc.stderr, proc.stderr
    port = free_port()
    server = subprocess.Popen([*cmd, "--port", str(port), "--generator", "extractive", "--generators", "extractive",
                               "--retrievers", "bm25,hybrid", "--max-pages", "7"],
                              env={**env, "PDFQA_ADMIN_TOKEN": "from-the-env"}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                config = httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "pdfqa serve did not come up"
                time.sleep(0.5)
        assert config["generators"] == ["extractive"] and config["retrievers"] == ["bm25", "hybrid"]
        assert config["max_pages"] == 7 and config["auth_required"] is True and config["exposed"] is False
        r = httpx.post(f"http://127.0.0.1:{port}/api/courses", json={"name": "CLI"})
        assert r.status_code == 401
        r = httpx.post(f"http://127.0.0.1:{port}/api/courses", json={"name": "CLI"},
                       headers={"Authorization": "Bearer from-the-env"})
        assert r.status_code == 201 and (tmp_path / "courses" / "cli" / "course.json").exists()
    finally:
        server.terminate()
        server.wait(timeout=60)
