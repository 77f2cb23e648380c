"""Ingestion on Ray Data (a real local Ray cluster): same collection as the local pipeline, per-file
failures as today, a worker killed mid-file retried once then reported, and the missing-extra message."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from .conftest import EXAMPLES, JA_PAPER, ROOT, SLIDES

pytest.importorskip("ray")
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
QUESTIONS = ["What is byte pair encoding and how does it build its vocabulary?", "ゼロトラストの考え方はだれが提唱しましたか？"]


@pytest.mark.slow
def test_ray_local_into_milvus_equals_the_local_pipeline(built, tmp_path, monkeypatch):
    """Ray into Milvus Lite, a read worker killed once mid-file (retried, indexed), a broken file
    reported as in the local pipeline: the same chunks and top hits as the local collection."""
    pytest.importorskip("pymilvus")
    from pdfqa import Collection

    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    monkeypatch.setenv("PDFQA_TEST_KILL_WORKER", f"{SLIDES.name}:{tmp_path / 'kills'}:1")
    with Collection.open(f"milvus:{tmp_path / 'ray.db'}", create=True) as col:
        report = col.index([EXAMPLES, bad], progress=False, executor="ray")
        local = Collection.open(tmp_path / "local", create=True)
        expected = local.index([EXAMPLES, bad], progress=False)
        assert len((tmp_path / "kills").read_text().splitlines()) == 1  # the worker did die once
        by_doc = {f.doc: f for f in report.files}
        for f in expected.files:
            got = by_doc[f.doc]
            assert (got.status, got.pages, got.chunks, got.error) == (f.status, f.pages, f.chunks, f.error)
        assert col.store.count_chunks() == built.store.count_chunks()
        for q in QUESTIONS:
            for r in ("hybrid", "e5-small"):
                assert [h.chunk.chunk_id for h in col.search(q, 3, retriever=r)] == \
                       [h.chunk.chunk_id for h in built.search(q, 3, retriever=r)]
        assert col.index([EXAMPLES], progress=False, executor="ray").unchanged  # incremental as today
        local.close()


@pytest.mark.slow
def test_cli_ray_worker_killed_twice_reports_that_file_and_writes_nothing_of_it(tmp_path, built):
    files = tmp_path / "pdfs"
    files.mkdir()
    shutil.copy(SLIDES, files / SLIDES.name)
    shutil.copy(JA_PAPER, files / JA_PAPER.name)
    env = {**ENV, "PDFQA_TEST_KILL_WORKER": f"{JA_PAPER.name}:{tmp_path / 'kills'}:2"}
    col = tmp_path / "col"
    out = subprocess.run([sys.executable, "-m", "pdfqa.cli", "index", str(files), "-c", str(col), "--ray", "local",
                          "--json"], env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    status = {f["doc"]: (f["status"], f["error"]) for f in report["files"]}
    assert status[SLIDES.name] == ("indexed", None)
    assert status[JA_PAPER.name] == ("failed", f"{JA_PAPER.name}: the Ray worker handling it died twice "
                                               f"(retried once); not indexed")
    assert len((tmp_path / "kills").read_text().splitlines()) == 2
    info = json.loads(subprocess.run([sys.executable, "-m", "pdfqa.cli", "info", "-c", str(col), "--json"], env=ENV,
                                     capture_output=True, text=True, timeout=300).stdout)
    assert [d["doc"] for d in info["documents"]] == [SLIDES.name] and info["n_chunks"] == built.store.document(SLIDES.name).chunks


def test_ray_missing_is_one_message_naming_the_extra(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from pdfqa.cli import main; "
            f"sys.argv = ['pdfqa', 'index', {str(SLIDES)!r}, '-c', {str(tmp_path / 'c')!r}, '--ray', 'local']; main()")
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: --ray needs Ray Data: pip install 'pdfqa[ray]'"
    assert not (tmp_path / "c").exists()  # refused before anything was created


def test_a_file_travels_between_workers_as_json_and_float32_bytes():
    """What a Ray worker hands on (read_chunk → Embed → the driver) holds no pickle: JSON plus the vectors'
    bytes, and reads back as the same chunks, pages facts and vectors."""
    from pdfqa.collection import chunker_for
    from pdfqa.embeddings import get_embedder
    from pdfqa.ingest import content_hash, prepare
    from pdfqa.ray_ingest import from_row, to_row

    emb = get_embedder("e5-small")
    prep = prepare(JA_PAPER, known_hash=lambda _: None, reader="pdfium",
                   chunker=chunker_for({"max_tokens": 256, "min_tokens": 48}, emb))
    texts = [c.text for c in prep.chunks[:3]]
    prep.vectors = {"e5-small": dict(zip(map(content_hash, texts), emb.embed_passages(texts)))}
    row = to_row(7, prep)
    assert set(row) == {"i", "meta", "vectors"} and isinstance(row["meta"], str) and isinstance(row["vectors"], bytes)
    back = from_row(row)
    assert back.chunks == prep.chunks and back.path == prep.path and back.error is None
    assert back.content.doc == prep.content.doc and back.content.skipped_pages == prep.content.skipped_pages
    assert len(back.content.pages) == len(prep.content.pages)
    for h, v in prep.vectors["e5-small"].items():
        assert np.array_equal(back.vectors["e5-small"][h], v)
