"""The ``milvus`` backend on a real Milvus engine: Milvus Lite (``milvus:PATH.db``: Milvus's C++ engine, which
milvus-lite starts for this process over a local socket) and the same engine as a gRPC server on a TCP port
(``milvus://127.0.0.1:PORT/NAME``)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from .conftest import EXAMPLES, JA_PAPER, ROOT, SLIDES

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

QUESTIONS = ["What is byte pair encoding and how does it build its vocabulary?",
             "ゼロトラストの考え方はだれが提唱しましたか？", "How does WordPiece differ from BPE?",
             "ゼロトラストにおける認証と認可の考え方"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


@pytest.fixture(scope="module")
def milvus_col(tmp_path_factory):
    from pdfqa import Collection

    loc = f"milvus:{tmp_path_factory.mktemp('milvus') / 'examples.db'}"
    col = Collection.open(loc, create=True)
    report = col.index([EXAMPLES], progress=False)
    assert len(report.indexed) == 2, report.to_json()
    yield col
    col.close()


def n_chunks(built, pdf) -> int:
    """How many chunks the local pipeline makes of ``pdf`` (the session collection over examples/)."""
    return built.store.document(pdf.name).chunks


def top(col, q, retriever, k=3):
    return [(h.chunk.chunk_id, round(h.score, 4)) for h in col.search(q, k, retriever=retriever)]


@pytest.mark.parametrize("retriever", ["hybrid", "bm25", "e5-small", "e5-small+doc-bm25"])
def test_same_top_hits_as_local_on_english_slides_and_a_japanese_paper(built, milvus_col, retriever):
    assert milvus_col.store.count_chunks() == built.store.count_chunks() == n_chunks(built, SLIDES) + n_chunks(built, JA_PAPER)
    for q in QUESTIONS:
        assert top(milvus_col, q, retriever) == top(built, q, retriever), q


def test_chunk_metadata_round_trips(built, milvus_col):
    local = {c.chunk_id: c for _, c, _ in built.store.iter_chunks()}
    remote = {c.chunk_id: c for _, c, _ in milvus_col.store.iter_chunks()}
    assert remote == local
    assert [d.to_json() | {"indexed_at": 0} for d in milvus_col.documents()] == \
           [d.to_json() | {"indexed_at": 0} for d in built.documents()]


def test_mmr_and_info_work_over_milvus(milvus_col, built):
    hits = milvus_col.search(QUESTIONS[0], 3, retriever="hybrid|mmr:0.5")
    assert len(hits) == 3 and all(h.chunk.doc == SLIDES.name for h in hits)
    info = milvus_col.info()
    n = built.store.count_chunks()
    assert info["n_chunks"] == n and info["embedders"]["e5-small"]["vectors"] == n


def test_index_kinds_on_milvus_lite(milvus_col, built, tmp_path):
    """Lite builds FLAT, IVF_FLAT and AUTOINDEX only: hnsw is its AUTOINDEX (same hits here), ivfpq is
    refused before the manifest or the index change; a file name Lite cannot take is refused up front."""
    from pdfqa import Collection
    from pdfqa.errors import CollectionError

    store = milvus_col.store
    field = store.manifest["embedders"]["e5-small"]["milvus_field"]
    with pytest.raises(CollectionError, match="ivfpq on a Milvus server"):
        milvus_col.set_index_kind("ivfpq")
    assert milvus_col.embedders["e5-small"].get("index", "flat") == "flat"
    assert store.client.describe_index(store.name, field)["index_type"] == "FLAT"
    try:
        milvus_col.set_index_kind("hnsw")
        assert store.client.describe_index(store.name, field)["index_type"] == "AUTOINDEX"
        for q in QUESTIONS:
            assert top(milvus_col, q, "e5-small") == top(built, q, "e5-small"), q
    finally:
        milvus_col.set_index_kind("flat")
    with pytest.raises(CollectionError, match="Milvus Lite needs a file name"):
        Collection.open(f"milvus:{tmp_path / 'my course.db'}", create=True)


def test_incremental_changed_and_removed_documents(tmp_path, built):
    from pdfqa import Collection

    ja, en = n_chunks(built, JA_PAPER), n_chunks(built, SLIDES)
    loc = f"milvus:{tmp_path / 'inc.db'}"
    doc = tmp_path / "doc.pdf"
    shutil.copy(JA_PAPER, doc)
    with Collection.open(loc, create=True) as col:
        assert col.index([doc], progress=False).indexed[0].chunks == ja
        assert col.index([doc], progress=False).unchanged  # same bytes: nothing to do
        shutil.copy(SLIDES, doc)
        r = col.index([doc], progress=False)
        assert r.indexed[0].chunks == en and col.store.count_chunks() == en
        assert {c.doc_hash for _, c, _ in col.store.iter_chunks()} == {col.store.document("doc.pdf").doc_hash}
        assert col.remove("doc.pdf") and not col.remove("doc.pdf")
        assert col.store.count_chunks() == 0 and col.search("tokenization", 3) == []


_CRASH = """
import os, sys
from pdfqa import Collection
col = Collection.open(sys.argv[1])
store, point = col.store, sys.argv[3]
def die(real, when):
    def wrapped(name, *a, **kw):
        if when(name, kw):
            os._exit(9)
        return real(name, *a, **kw)
    return wrapped
if point == "commit":   # killed just before the document row (the commit point) is written
    store.client.upsert = die(store.client.upsert, lambda name, kw: name.endswith("__docs"))
else:                   # killed after the commit point, before the old rows are deleted
    store.client.delete = die(store.client.delete, lambda name, kw: name == store.name)
col.index([sys.argv[2]], progress=False)
"""


@pytest.mark.parametrize("point", ["commit", "cleanup"])
def test_a_crash_mid_write_leaves_one_whole_version_visible(tmp_path, point, built):
    from pdfqa import Collection

    ja, en = n_chunks(built, JA_PAPER), n_chunks(built, SLIDES)
    loc = f"milvus:{tmp_path / 'crash.db'}"
    doc = tmp_path / "doc.pdf"
    shutil.copy(JA_PAPER, doc)
    with Collection.open(loc, create=True) as col:
        col.index([doc], progress=False)
        old = sorted(c.chunk_id for _, c, _ in col.store.iter_chunks())
    shutil.copy(SLIDES, doc)
    proc = subprocess.run([sys.executable, "-c", _CRASH, loc, str(doc), point], env=ENV, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    with Collection.open(loc, readonly=True) as col:
        visible = sorted(c.chunk_id for _, c, _ in col.store.iter_chunks())
        # both versions' rows are in Milvus, but only one version is visible, whole
        assert col.store.client.query(col.store.name, filter="", output_fields=["count(*)"])[0]["count(*)"] == ja + en
        if point == "commit":
            assert visible == old and col.store.count_chunks() == ja
            assert col.search("byte pair encoding", 3, retriever="e5-small")[0].chunk.chunk_id in old
        else:
            assert len(visible) == en and not set(visible) & set(old) and col.store.count_chunks() == en
            assert all(h.chunk.chunk_id in visible for h in col.search("byte pair encoding", 5, retriever="hybrid"))
    with Collection.open(loc) as col:  # the next writer finishes (or undoes) the write left in flight
        with col.store.write_lock():
            pass
        raw = col.store.client.query(col.store.name, filter="", output_fields=["count(*)"])[0]["count(*)"]
        assert raw == col.store.count_chunks() == (ja if point == "commit" else en)
        report = col.index([doc], progress=False)
        assert (report.indexed if point == "commit" else report.unchanged)
        assert col.store.count_chunks() == en


def test_foreign_collection_and_other_embedder_are_refused(tmp_path):
    from pymilvus import DataType, MilvusClient

    from pdfqa import Collection
    from pdfqa.errors import CollectionError, EmbedderMismatchError

    path = tmp_path / "foreign.db"
    client = MilvusClient(str(path))
    s = client.create_schema(auto_id=True)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("vec", DataType.FLOAT_VECTOR, dim=8)
    client.create_collection("pdfqa", schema=s)
    client.close()
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(path))
    with pytest.raises(CollectionError, match="did not create|not created by pdfqa"):
        Collection.open(f"milvus:{path}", create=True)
    with pytest.raises(CollectionError, match="not created by pdfqa"):
        Collection.open(f"milvus:{path}")

    loc = f"milvus:{tmp_path / 'e5.db'}"
    with Collection.open(loc, create=True) as col:
        col.index([SLIDES], progress=False)
    with pytest.raises(EmbedderMismatchError, match="no index for embedder 'word2vec:glove-50'"):
        Collection.open(loc, embedder="word2vec:glove-50")
    with Collection.open(loc, embedder="word2vec:glove-50", create=True) as col:
        with pytest.raises(EmbedderMismatchError, match="vector fields are fixed"):
            col.index([SLIDES], progress=False)
        assert list(col.embedders) == ["e5-small"]  # the refusal changed nothing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(data_dir, port):
    """Milvus's C++ engine (the binary milvus-lite ships) serving gRPC on ``port``, in its own process."""
    from milvus_lite.server import BIN_PATH, Server

    data_dir.mkdir(exist_ok=True)
    args = [str(a) for a in Server(str(data_dir / "milvus.db"), address=f"127.0.0.1:{port}").args]
    proc = subprocess.Popen(args, cwd=data_dir, env={**os.environ, "LD_LIBRARY_PATH": BIN_PATH},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from pymilvus import MilvusClient

    deadline = time.time() + 90
    while time.time() < deadline:  # ready when a client can list the collections
        try:
            client = MilvusClient(uri=f"http://127.0.0.1:{port}", timeout=5)
            client.list_collections()
            client.close()
            return proc
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.5)
    proc.kill()
    pytest.fail("the Milvus server did not start")


@pytest.mark.slow
def test_a_server_collection_and_the_server_going_away_mid_batch(tmp_path, built):
    """The CLI against ``milvus://`` (Milvus's C++ engine served over gRPC on a TCP port): same
    hits as the local collection; the server killed after the first file: that file stays committed,
    the others are reported, and everything comes back when the server does."""
    from pdfqa import Collection

    port = _free_port()
    server = _server(tmp_path / "srv", port)
    loc = f"milvus://127.0.0.1:{port}/course"
    try:
        out = subprocess.run([sys.executable, "-m", "pdfqa.cli", "index", str(EXAMPLES), "-c", loc, "--json"],
                             env=ENV, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout)["indexed"] == 2
        res = subprocess.run([sys.executable, "-m", "pdfqa.cli", "search", QUESTIONS[1], "-c", loc, "-k", "3", "--json"],
                             env=ENV, capture_output=True, text=True, timeout=600)
        assert [h["chunk_id"] for h in json.loads(res.stdout)["hits"]] == [c for c, _ in top(built, QUESTIONS[1], "hybrid")]
        with Collection.open(loc, readonly=True) as col:  # a server runs bm25 itself: same hits as bm25s
            assert type(col.lexical("bm25")).__name__ == "MilvusBM25Index"
            for q in QUESTIONS:
                for r in ("bm25", "hybrid"):
                    assert top(col, q, r) == top(built, q, r), (q, r)

        files = []
        for i in range(3):
            f = tmp_path / f"copy{i}.pdf"
            shutil.copy(SLIDES if i != 1 else JA_PAPER, f)
            files.append(f)
        col = Collection.open(loc.replace("/course", "/batch"), create=True)

        def kill_after_first(r):
            if r.status == "indexed" and server.poll() is None:
                server.kill()
                server.wait()

        report = col.index(files, progress=False, on_file=kill_after_first)
        assert [f.status for f in report.files] == ["indexed", "failed", "failed"]
        assert all("Milvus" in f.error and "unreachable" in f.error for f in report.failed), report.to_json()
        col.close()
    finally:
        server.kill()
        server.wait()
    server = _server(tmp_path / "srv", port)
    try:
        with Collection.open(loc.replace("/course", "/batch")) as col:
            assert [d.doc for d in col.documents()] == ["copy0.pdf"] and col.store.count_chunks() == n_chunks(built, SLIDES)
            report = col.index(files, progress=False)
            assert [f.status for f in report.files] == ["unchanged", "indexed", "indexed"]
    finally:
        server.kill()
        server.wait()


def test_unreachable_server_is_one_clear_error(tmp_path):
    port = _free_port()
    out = subprocess.run([sys.executable, "-m", "pdfqa.cli", "search", "x", "-c", f"milvus://127.0.0.1:{port}/c"],
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().startswith(f"error: milvus://127.0.0.1:{port}/c: cannot reach Milvus")
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_course_of_the_web_app_lives_in_milvus(tmp_path):
    """The course assistant with ``store=milvus:…``: upload, background indexing, answers citing the
    slide, removal: the same HTTP API over a Milvus collection."""
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from pdfqa.app import create_app

    from .app_server import running, wait_for

    store = f"milvus:{tmp_path / 'courses.db'}"
    app = create_app(tmp_path / "courses", generator="extractive", generators=["extractive"], store=store)
    with running(app) as url, httpx.Client(base_url=url, timeout=300) as client:
        cid = client.post("/api/courses", json={"name": "NLP on Milvus"}).json()["id"]
        meta = json.loads((tmp_path / "courses" / cid / "course.json").read_text())
        assert meta["collection"] == f"{store}#course_{cid.replace('-', '_')}"
        assert not (tmp_path / "courses" / cid / "collection").exists()
        r = client.post(f"/api/courses/{cid}/documents",
                        files={"file": (SLIDES.name, SLIDES.read_bytes(), "application/pdf")})
        assert r.status_code == 202, r.text
        assert wait_for(client, cid, SLIDES.name)["status"] == "ready"
        r = client.post(f"/api/courses/{cid}/ask", json={"question": "What is byte pair encoding?"})
        assert r.status_code == 200, r.text
        ans = r.json()
        assert ans["citations"] and all(c["doc"] == SLIDES.name for c in ans["citations"]), (ans["contexts"], ans)
        assert not ans["abstained"] and "[1]" in ans["answer"]
        assert client.delete(f"/api/courses/{cid}/documents/{SLIDES.name}").status_code == 200
        assert client.get(f"/api/courses/{cid}/documents").json() == []


@pytest.mark.slow
def test_eval_over_a_milvus_workdir_gives_the_local_figures(tmp_path):
    from .conftest import data

    qa, corpus = data("qa/squad_expmrc/qa.jsonl"), data("qa/squad_expmrc/corpus.jsonl")
    results = {}
    for name, workdir in (("local", str(tmp_path / "eval")), ("milvus", f"milvus:{tmp_path / 'eval.db'}")):
        out = tmp_path / f"{name}.json"
        proc = subprocess.run([sys.executable, "-m", "pdfqa.cli", "eval", "--qa", str(qa), "--corpus", str(corpus),
                               "-r", "bm25", "-r", "e5-small", "-r", "hybrid", "--limit", "60", "--workdir", workdir,
                               "--json", str(out), "--quiet"], env=ENV, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[name] = {r["retriever"]: r["metrics"] for r in json.loads(out.read_text())["results"]}
    assert results["milvus"] == results["local"]
    assert results["milvus"]["hybrid"]["recall@5"] > 0.8
