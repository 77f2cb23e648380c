import json
import os
import subprocess
import sys

from .conftest import EXAMPLES, JA_PAPER, ROOT, SLIDES


def pdfqa(*args, check=None):
    proc = subprocess.run([sys.executable, "-m", "pdfqa.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONIOENCODING": "utf-8"}, timeout=600)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def test_search_json_contract(built):
    out = json.loads(pdfqa("search", "What is byte pair encoding?", "--collection", built.path, "-k", "3",
                           "--json", check=0).stdout)
    assert out["query"] == "What is byte pair encoding?" and len(out["hits"]) == 3
    for h in out["hits"]:
        assert {"doc", "page", "pages", "page_label", "score", "text", "chunk_id"} <= set(h)
        assert isinstance(h["page"], int) and isinstance(h["pages"], list) and isinstance(h["score"], float)
        assert h["page_label"] is None or isinstance(h["page_label"], str)
    assert out["hits"][0]["doc"] == SLIDES.name


def test_search_human_output_cites_file_and_page(built):
    out = pdfqa("search", "ゼロトラスト", "-c", built.path, "-k", "2", check=0).stdout
    assert f"1. {JA_PAPER.name} page " in out and "score" in out


def test_info_json(built):
    info = json.loads(pdfqa("info", "-c", built.path, "--json", check=0).stdout)
    assert info["n_documents"] == 2 and info["default_embedder"] == "e5-small"
    assert info["embedders"]["e5-small"]["vectors"] == info["n_chunks"]


def test_index_reports_failures_and_exit_codes(tmp_path):
    bad = tmp_path / "bad.pdf"
    bad.write_text("not a pdf")
    col = tmp_path / "c"
    p = pdfqa("index", bad, tmp_path / "nope.pdf", "-c", col, "-q", check=1)
    assert "bad.pdf: not a PDF" in p.stdout + p.stderr and "nope.pdf: file not found" in p.stdout + p.stderr
    p = pdfqa("index", JA_PAPER, bad, "-c", col, "-q", check=0)
    assert "1 indexed (11 pages" in p.stdout and "1 failed" in p.stdout
    rep = json.loads(pdfqa("index", JA_PAPER, "-c", col, "--json", check=0).stdout)
    assert rep["unchanged"] == 1 and rep["files"][0]["status"] == "unchanged"


def test_remove_and_unknown_names(tmp_path, built):
    import shutil

    col = tmp_path / "c"
    shutil.copytree(built.path, col)
    assert "removed" in pdfqa("remove", SLIDES.name, "-c", col, check=0).stdout
    p = pdfqa("remove", SLIDES.name, "-c", col, check=1)
    assert f"no document '{SLIDES.name}'" in p.stderr and JA_PAPER.name in p.stderr
    p = pdfqa("search", "x", "-c", col, "--embedder", "nonesuch", check=2)
    assert "no index for embedder 'nonesuch'" in p.stderr
    p = pdfqa("index", EXAMPLES, "-c", tmp_path / "new", "--embedder", "nonesuch", check=2)
    assert "unknown embedder 'nonesuch'; known: e5-small" in p.stderr
    p = pdfqa("search", "x", "-c", tmp_path / "absent", check=2)
    assert "no pdfqa collection here" in p.stderr


def test_search_takes_any_retriever_spec(built):
    for spec in ("bm25", "e5-small", "hybrid|mmr:0.5"):
        out = json.loads(pdfqa("search", "WordPiece", "-c", built.path, "-r", spec, "-k", "2", "--json", check=0).stdout)
        assert out["hits"][0]["doc"] == SLIDES.name, spec
    p = pdfqa("search", "x", "-c", built.path, "-r", "doc-bm25", check=2)
    assert "document prior" in p.stderr


def test_chunks_command_shows_a_page_verbatim(built):
    p = subprocess.run([sys.executable, "-m", "pdfqa.cli", "chunks", "cio_dp2020_03_zero_trust.pdf", "--collection",
                        str(built.path), "--page", "3", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["doc"] == "cio_dp2020_03_zero_trust.pdf" and out["page"] == 3 and out["chunks"]
    c = out["chunks"][0]
    assert {"chunk_id", "pages", "kinds", "title", "heading_path", "context", "text", "embedded"} <= set(c)
    assert all(3 in ch["pages"] for ch in out["chunks"])
    human = subprocess.run([sys.executable, "-m", "pdfqa.cli", "chunks", "cio_dp2020_03_zero_trust.pdf", "--collection",
                            str(built.path), "--page", "3"], capture_output=True, text=True, timeout=300)
    assert human.returncode == 0 and c["text"].split("\n")[0] in human.stdout and "page 3" in human.stdout
    bad = subprocess.run([sys.executable, "-m", "pdfqa.cli", "chunks", "nope.pdf", "--collection", str(built.path)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "no document 'nope.pdf'" in bad.stderr
