from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
SLIDES = EXAMPLES / "elte_nlp_3-tokenization.pdf"
JA_PAPER = EXAMPLES / "cio_dp2020_03_zero_trust.pdf"


def data(rel: str) -> Path:
    """A file of the shared evaluation data; tests needing it skip (with the reason) when it is absent."""
    p = DATA / rel
    if not p.exists():
        pytest.skip(f"evaluation data not found: {p} (set PDFQA_DATA)")
    return p


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """A collection over examples/ built once per session (read-only use in tests)."""
    from pdfqa import Collection

    path = tmp_path_factory.mktemp("col") / "examples"
    col = Collection.open(path, create=True)
    report = col.index([EXAMPLES], progress=False)
    assert len(report.indexed) == 2, report.to_json()
    yield col
    col.close()


@pytest.fixture
def fresh_copy(built, tmp_path):
    """A writable copy of the session collection."""
    from pdfqa import Collection

    dst = tmp_path / "copy"
    shutil.copytree(built.path, dst)
    col = Collection.open(dst)
    yield col
    col.close()
