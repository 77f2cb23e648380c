"""Kill an indexing process mid-way and prove the collection is still whole and readable."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from pdfqa import Collection

from .conftest import EXAMPLES, ROOT, data


def _batch():
    return [EXAMPLES / "cio_dp2020_03_zero_trust.pdf", data("pdfs/ja_gov/cio_dp2021_10_data_portability.pdf"),
            data("pdfs/en_slides/elte_nlp_8-neural_embeddings.pdf"), data("pdfs/ja_gov/cio_dp2020_01_AI_data.pdf"),
            EXAMPLES / "elte_nlp_3-tokenization.pdf"]


def _committed_docs(col_dir) -> int:
    db = col_dir / "chunks.sqlite"
    if not (col_dir / "manifest.json").exists() or not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        return con.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    except sqlite3.Error:
        return 0


def _assert_consistent(col_dir):
    col = Collection.open(col_dir)
    docs = col.documents()
    for d in docs:
        assert d.chunks == len(list(col.store.iter_chunks(d.doc))), d.doc
    assert len(col._index("e5-small")) == col.store.count_chunks()
    if docs:
        assert col.search("ゼロトラスト", k=3)
    col.close()
    return [d.doc for d in docs]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_mid_index_leaves_a_readable_collection(tmp_path, sig):
    col_dir = tmp_path / "col"
    batch = _batch()
    # SIGINT back to its default in the child: a run started in the background of a non-interactive shell
    # (nohup ... &) ignores SIGINT, which every child inherits, and the interrupt would never arrive
    proc = subprocess.Popen([sys.executable, "-m", "pdfqa.cli", "index", *map(str, batch), "-c", str(col_dir), "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while _committed_docs(col_dir) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # land somewhere inside the next file's embedding
    assert proc.poll() is None, "indexing finished before it could be interrupted"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    done = _assert_consistent(col_dir)
    assert 1 <= len(done) < len(batch)
    # finishing the job later: committed files are unchanged, the rest get indexed
    col = Collection.open(col_dir)
    report = col.index(batch, progress=False)
    assert {f.doc for f in report.unchanged} == set(done)
    assert len(report.indexed) == len(batch) - len(done)
    col.close()
    assert len(_assert_consistent(col_dir)) == len(batch)
