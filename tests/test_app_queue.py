"""The course assistant under a crowd: a bounded question queue (503 with Retry-After beyond it), the
rest of the API answered while every answering thread is busy, and indexing that gives way to
questions. Real HTTP on a real socket, real PDFs; the generator is a real one that waits for a gate
(a model server that has not answered yet), so the test controls when answers come, not a clock."""
from __future__ import annotations

import concurrent.futures
import shutil
import threading
import time

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from pdfqa.generators.base import Generator  # noqa: E402

from .app_server import running, wait_for  # noqa: E402
from .conftest import JA_PAPER, SLIDES  # noqa: E402

BPE = "What is byte pair encoding?"


class GateGenerator(Generator):
    """Streams a first piece at once, the rest when the gate opens (a slow model server)."""

    spec = "test-gate"

    def __init__(self):
        self.gate = threading.Event()
        self.started = 0
        self._lock = threading.Lock()

    def generate(self, messages, *, max_new_tokens=512, **kwargs):
        return "".join(self.stream(messages))

    def stream(self, messages, *, max_new_tokens=512, **kwargs):
        with self._lock:
            self.started += 1
        yield "Byte pair encoding "
        self.gate.wait(120)
        yield "merges frequent pairs [1]"


@pytest.fixture(scope="module")
def crowd(tmp_path_factory):
    from pdfqa.app import create_app

    gate = GateGenerator()
    app = create_app(tmp_path_factory.mktemp("courses"), generator="extractive", generators=["extractive", gate],
                     ask_workers=2, cpu_slots=1, max_pending_asks=3, answer_timeout=120)
    with running(app) as url, httpx.Client(base_url=url, timeout=180) as client:
        cid = client.post("/api/courses", json={"name": "NLP"}).json()["id"]
        r = client.post(f"/api/courses/{cid}/documents",
                        files={"file": (SLIDES.name, SLIDES.read_bytes(), "application/pdf")})
        assert r.status_code == 202, r.text
        assert wait_for(client, cid, SLIDES.name)["status"] == "ready"
        yield url, client, cid, gate
        gate.gate.set()


def test_full_queue_refuses_with_retry_after_and_the_rest_of_the_api_answers(crowd, tmp_path):
    url, client, cid, gate = crowd
    assert client.get("/api/config").json()["max_pending_asks"] == 3

    def ask(_):
        with httpx.Client(base_url=url, timeout=180) as c:
            return c.post(f"/api/courses/{cid}/ask", json={"question": BPE, "generator": "test-gate"})

    pool = concurrent.futures.ThreadPoolExecutor(8)
    futures = [pool.submit(ask, i) for i in range(8)]
    # three are admitted (two answering, blocked at the gate; one waiting for a thread), five refused at once
    deadline = time.monotonic() + 120
    while sum(f.done() for f in futures) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    refused = [f.result() for f in futures if f.done()]
    assert len(refused) == 5 and all(r.status_code == 503 for r in refused), [r.text for r in refused]
    for r in refused:
        assert r.json()["code"] == "busy" and "try again" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
    health = client.get("/api/health").json()
    assert health["asks"]["pending"] == 3 and health["asks"]["refused"] >= 5
    # everything else is answered while every answering thread waits
    assert client.get("/api/config").status_code == 200
    docs = client.get(f"/api/courses/{cid}/documents").json()
    assert [d["doc"] for d in docs] == [SLIDES.name] and docs[0]["status"] == "ready"
    png = client.get(f"/api/courses/{cid}/pages/{SLIDES.name}/24.png?quote=compression")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    up = client.post(f"/api/courses/{cid}/documents",
                     files={"file": (JA_PAPER.name, JA_PAPER.read_bytes(), "application/pdf")})
    assert up.status_code == 202, up.text
    # the second answering thread reaches the generator once it has had the CPU slot for its retrieval:
    # on a busy machine that may come after the requests above
    deadline = time.monotonic() + 60
    while gate.started < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gate.started == 2  # the third admitted question waits for a thread
    gate.gate.set()
    answers = [f.result(timeout=120) for f in futures]
    ok = [r for r in answers if r.status_code == 200]
    assert len(ok) == 3 and sum(r.status_code == 503 for r in answers) == 5, [r.text for r in answers]
    for r in ok:
        a = r.json()
        assert a["answer"].startswith("Byte pair encoding merges frequent pairs") and a["citations"]
        assert a["citations"][0]["doc"] == SLIDES.name
    # a question leaves the count when its thread returns, just after its answer's last piece went out
    deadline = time.monotonic() + 30
    while client.get("/api/health").json()["asks"]["pending"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/api/health").json()["asks"]["pending"] == 0
    assert wait_for(client, cid, JA_PAPER.name)["status"] == "ready"
    pool.shutdown()


def test_sse_sends_the_first_piece_before_the_generator_finishes(crowd):
    url, client, cid, gate = crowd
    gate.gate.clear()
    got: list[str] = []
    try:
        with httpx.Client(base_url=url, timeout=180) as c, c.stream(
                "POST", f"/api/courses/{cid}/ask", json={"question": BPE, "generator": "test-gate"},
                headers={"Accept": "text/event-stream"}) as s:
            event = None
            for line in s.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event:
                    got.append(event)
                    if event == "token" and not gate.gate.is_set():
                        gate.gate.set()  # opened only once the first piece has reached the client
                    if event in ("answer", "error"):
                        break
    finally:
        gate.gate.set()
    kinds = got
    assert kinds[0] == "token" and kinds[-1] == "answer", kinds


def test_indexing_gives_way_to_questions_and_still_advances(tmp_path):
    """While questions wait for the CPU the indexer pauses before each embedding call, at most
    ``max_pause`` each time: a course's upload is indexed under a constant stream of questions."""
    from pdfqa.app.courses import CourseManager, _ProgressCollection

    asked = []

    def questions_waiting() -> bool:
        asked.append(time.monotonic())
        return True  # questions never stop

    mgr = CourseManager(tmp_path / "courses", questions_waiting=questions_waiting)
    try:
        course = mgr.create("NLP")
        tmp = course.dir / "upload.pdf"
        shutil.copy(SLIDES, tmp)
        _ProgressCollection.max_pause = 0.05
        mgr.add_upload(course, SLIDES.name, tmp, SLIDES.stat().st_size)
        deadline = time.monotonic() + 600
        while mgr.documents(course)[0]["status"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mgr.documents(course)[0]["status"] == "ready"
        assert len(asked) >= 2  # it asked before its embedding calls (16 chunks each)
    finally:
        _ProgressCollection.max_pause = 0.5
        mgr.close()
