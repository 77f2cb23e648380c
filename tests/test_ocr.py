"""OCR on real pages: the scanned pages of ../shared/data and text pages rasterized into image-only PDFs
(Japanese and English), read by Tesseract in pdfqa's helper processes, indexed and searched; the bad
inputs of issue 16 (blank, rotated and upside-down pages, a 600-dpi scan, a page the engine crashes or
times out on, OCR packages missing) and the OCR cache."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pdfqa import Collection
from pdfqa.pdf import read_pdf
from pdfqa.pdf.ocr import (MAX_PIXELS, OcrSettings, OcrUnavailableError, ocr_unavailable, render_gray, scan_dpi,
                           workers)

from .conftest import EXAMPLES, JA_PAPER, SLIDES, data

pytestmark = pytest.mark.skipif(ocr_unavailable() is not None, reason=f"OCR not installed: {ocr_unavailable()}")
ROOT = Path(__file__).resolve().parents[1]
LINN = "pdfs/scanned/ocrmypdf_linn.pdf"
HUCK = "pdfs/scanned/ocrmypdf_c02-22_huckfinn_p22.pdf"
MULTICOLUMN = "pdfs/layout/pypdf_multicolumn.pdf"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test OCRs for real: its own OCR cache."""
    monkeypatch.setenv("PDFQA_CACHE", str(tmp_path / "cache"))


def cer(hyp: str, ref: str) -> float:
    from rapidfuzz.distance import Levenshtein

    h, r = "".join(hyp.split()), "".join(ref.split())
    return Levenshtein.distance(h, r) / max(1, len(r))


def image_pdf(dst: Path, src: Path, pages: list[int], *, dpi: int = 150, turn: int = 0, blank_after: int | None = None) -> Path:
    """Pages of ``src`` (0-based) as an image-only PDF (grey, ``dpi``), each image turned ``turn``°
    counter-clockwise (a scan fed in sideways or upside down); a white page after index ``blank_after``."""
    import pypdfium2 as pdfium
    from PIL import Image

    pdf = pdfium.PdfDocument(str(src))
    imgs = []
    for k, i in enumerate(pages):
        gray, _ = render_gray(pdf[i], dpi)
        imgs.append(Image.fromarray(gray).rotate(turn, expand=True))
        if blank_after == k:
            imgs.append(Image.new("L", imgs[-1].size, 255))
    imgs[0].save(dst, save_all=True, append_images=imgs[1:], resolution=float(dpi))
    return dst


def text_of(src: Path, index: int) -> str:
    import pypdfium2 as pdfium

    return pdfium.PdfDocument(str(src))[index].get_textpage().get_text_range()


def test_scanned_pages_are_indexed_marked_and_found(tmp_path):
    with Collection.open(tmp_path / "col", create=True) as col:
        report = col.index([data(LINN), data(HUCK)], progress=False)
        assert [f.status for f in report.files] == ["indexed", "indexed"], report.to_json()
        assert all(f.ocr_pages == 1 and f.ocr_confidence > 0.8 for f in report.files)
        hits = col.search("LinnSequencer 32 track MIDI sequence recorder", k=3)
        assert hits[0].chunk.doc == "ocrmypdf_linn.pdf" and hits[0].chunk.page == 1
        assert hits[0].chunk.ocr and 0.8 < hits[0].chunk.ocr_confidence <= 1.0
        js = hits[0].to_json()
        assert js["ocr"] is True and js["ocr_confidence"] == hits[0].chunk.ocr_confidence
        assert hits[0].to_document().metadata["ocr"] is True
        hits = col.search("Jim was setting in the kitchen door", k=3)
        assert hits[0].chunk.doc == "ocrmypdf_c02-22_huckfinn_p22.pdf"
        # the word boxes are kept for highlighting the passage on the page image
        words = col.store.ocr_page("ocrmypdf_linn.pdf", 1)["words"]
        assert any(w[0] == "LinnSequencer" for w in words)
        w, h = 612, 792  # the page in points
        assert all(0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h for _, _, x0, y0, x1, y1 in words)
    # against the ground truth shipped with the scan
    truth = data("pdfs/scanned/ocrmypdf_linn.groundtruth.txt").read_text()
    assert cer(read_pdf(data(LINN)).pages[0].text, truth) < 0.15


def test_rasterized_japanese_and_english_pages(tmp_path):
    ja = image_pdf(tmp_path / "zero_trust_scan.pdf", JA_PAPER, [0, 6])  # page 7 names who proposed zero trust
    en = image_pdf(tmp_path / "tokenization_scan.pdf", SLIDES, [1, 23])
    for src, copy, idx in ((JA_PAPER, ja, [0, 6]), (SLIDES, en, [1, 23])):
        content = read_pdf(copy)
        for page, i in zip(content.pages, idx):
            assert page.ocr and page.skip_reason is None
            assert cer(page.text, text_of(src, i)) < 0.12, (copy.name, i, page.text[:200])
    with Collection.open(tmp_path / "col", create=True) as col:
        report = col.index([ja, en], progress=False)
        assert [f.ocr_pages for f in report.files] == [2, 2], report.to_json()
        hits = col.search("ゼロトラストの概念はだれが提唱しましたか", k=3)
        assert (hits[0].chunk.doc, hits[0].chunk.page) == ("zero_trust_scan.pdf", 2) and hits[0].chunk.ocr
        assert "Kindervag" in hits[0].chunk.text
        hits = col.search("byte pair encoding merges the most frequent pair", k=3)
        assert hits[0].chunk.doc == "tokenization_scan.pdf" and hits[0].chunk.ocr


def test_multicolumn_scan_reads_in_column_order(tmp_path):
    src = data(MULTICOLUMN)
    copy = image_pdf(tmp_path / "multicolumn_scan.pdf", src, [0])
    page = read_pdf(copy).pages[0]
    truth = text_of(src, 0)
    assert page.ocr and cer(page.text, truth) < 0.08, page.text[:300]


@pytest.mark.xfail(reason="measured at integration (Debian tesseract 5, tesserocr 2.13): the contents page reads at "
                          "CER 0.10 against the 0.05 bar (CIO read as CTO, a page number on its own line); "
                          "open in issue 16", strict=False)
def test_contents_page_and_ruled_table_read_line_by_line(tmp_path):
    """A contents page (leader dots to the page numbers) and a ruled table, rasterized at 150 dpi: the
    leader dots are not read as text (Tesseract made them ``ーー``/``eeSeSe`` and dropped whole lines), and
    the table's cells are not run together across its columns."""
    contents = image_pdf(tmp_path / "contents.pdf", JA_PAPER, [1])
    page = read_pdf(contents).pages[0]
    truth = text_of(JA_PAPER, 1)
    assert page.ocr and cer(re.sub(r"[.…]{3,}", "", page.text), re.sub(r"[.…]{3,}", "", truth)) < 0.05, page.text
    assert not re.search(r"ーー|ee|…", page.text), page.text
    # every contents line is there, with its page number at its end
    assert "4.4 セキュリティ対策のクラウド化 9" in page.text and "5 参考情報へのリンク 10" in page.text
    table_pdf = data("pdfs/ja_gov/cio_dp2021_06_att_data_skill_framework.pdf")
    table = read_pdf(image_pdf(tmp_path / "table.pdf", table_pdf, [10])).pages[0]
    lines = [ln.text for ln in table.lines]
    for cell in ("チームのモチベーションを高め最高の成果を出していく。オー", "Knowledge management KNOW", "プログラム評価"):
        assert any(cer(ln, cell) < 0.1 for ln in lines), (cell, lines)


def test_blank_page_indexes_nothing_and_text_pages_go_on(tmp_path):
    copy = image_pdf(tmp_path / "with_blank.pdf", SLIDES, [1], blank_after=0)
    content = read_pdf(copy)
    assert content.pages[0].ocr
    assert content.pages[1].skip_reason == "blank page" and not content.pages[1].lines
    with Collection.open(tmp_path / "col", create=True) as col:
        r = col.index([copy], progress=False).files[0]
        assert r.status == "indexed" and r.skipped_pages == [(2, "blank page")]
        assert all(c.pages == [1] for _, c, _ in col.store.iter_chunks())


@pytest.mark.parametrize("turn", [90, 180])
def test_rotated_and_upside_down_scans_are_turned_upright(tmp_path, turn):
    copy = image_pdf(tmp_path / f"turned{turn}.pdf", SLIDES, [1], turn=turn)
    page = read_pdf(copy).pages[0]
    assert page.ocr and page.ocr_rotation in (90, 180, 270) and page.ocr_rotation != 0
    assert cer(page.text, text_of(SLIDES, 1)) < 0.15, page.text[:200]


IPAEX = Path("/usr/share/fonts/opentype/ipaexfont-gothic/ipaexg.ttf")


@pytest.mark.skipif(not IPAEX.exists(), reason="needs fonts-ipaexfont-gothic (scripts/install_ocr_deps.sh)")
def test_vertical_japanese_page(tmp_path):
    """Real text of a ja_gov page typeset in vertical columns (right to left) as a 150-dpi image."""
    from PIL import Image, ImageDraw, ImageFont

    text = "".join(ch for ch in "".join(text_of(JA_PAPER, 6).split()) if ord(ch) > 0x2E80)[:400]
    font = ImageFont.truetype(str(IPAEX), 28)
    img = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(img)
    cols = [text[i:i + 45] for i in range(0, len(text), 45)]
    for k, col in enumerate(cols):
        for j, ch in enumerate(col):
            draw.text((1120 - 44 * k, 120 + 32 * j), ch, font=font, fill=0)
    img.save(tmp_path / "vertical.pdf", resolution=150.0)
    page = read_pdf(tmp_path / "vertical.pdf").pages[0]
    assert page.ocr and cer(page.text, "".join(cols)) < 0.1, page.text[:100]


def test_garbage_ocr_output_is_not_indexed(tmp_path):
    """OCR that reads garbage goes through the quality check like a text layer: a Japanese scan read
    with the English model only (Latin gibberish, low confidence) and a page of speckle noise (a
    halftone photo stands in) are reported, not indexed; the same scan read with the default languages is."""
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    scan = image_pdf(tmp_path / "zero_trust_p7.pdf", JA_PAPER, [6])
    page = read_pdf(scan, ocr=OcrSettings(languages="eng")).pages[0]
    assert not page.ocr and not page.lines and page.skip_reason.startswith("OCR text unusable"), page.skip_reason
    assert read_pdf(scan).pages[0].ocr
    field = ndimage.gaussian_filter(np.random.default_rng(0).random((1754, 1240)), 3)
    Image.fromarray(np.where(field > np.quantile(field, 0.85), 0, 255).astype(np.uint8)).save(
        tmp_path / "speckle.pdf", resolution=150.0)
    with Collection.open(tmp_path / "col", create=True) as col:
        rep = col.index([tmp_path / "speckle.pdf", scan], progress=False, ocr=OcrSettings(languages="eng"))
    assert [f.status for f in rep.files] == ["failed", "failed"], rep.to_json()
    assert "OCR found no text" in rep.files[0].error and "OCR text unusable" in rep.files[1].error


def test_600_dpi_scan_and_huge_pages_stay_bounded(tmp_path):
    import pypdfium2 as pdfium

    copy = image_pdf(tmp_path / "scan600.pdf", SLIDES, [1], dpi=600)
    assert scan_dpi(pdfium.PdfDocument(str(copy))[0]) == pytest.approx(600, rel=0.01)
    page = read_pdf(copy).pages[0]  # rendered at the OCR resolution, not at the scan's
    assert page.ocr and cer(page.text, text_of(SLIDES, 1)) < 0.12
    import pypdf

    w = pypdf.PdfWriter()
    w.add_blank_page(width=72 * 200, height=72 * 200)  # a 200-inch poster
    big = tmp_path / "poster.pdf"
    with open(big, "wb") as f:
        w.write(f)
    gray, pt_per_px = render_gray(pdfium.PdfDocument(str(big))[0], 150)
    assert gray.size <= MAX_PIXELS and pt_per_px > 72 / 150
    assert read_pdf(big).pages[0].skip_reason == "blank page"


def test_time_limit_reports_the_page_and_the_file_goes_on(tmp_path):
    import pypdf

    scan = image_pdf(tmp_path / "scan.pdf", SLIDES, [2])
    mixed = tmp_path / "mixed.pdf"
    w = pypdf.PdfWriter()
    w.append(str(SLIDES), pages=[1])
    w.append(str(scan))
    with open(mixed, "wb") as f:
        w.write(f)
    with Collection.open(tmp_path / "col", create=True) as col:
        r = col.index([mixed], progress=False, ocr=OcrSettings(timeout_s=0.001, cache=False)).files[0]
    assert r.status == "indexed" and r.chunks >= 1
    assert len(r.skipped_pages) == 1 and r.skipped_pages[0][0] == 2
    assert "OCR failed" in r.skipped_pages[0][1] and ("timed out" in r.skipped_pages[0][1] or "longer" in r.skipped_pages[0][1])


def test_engine_crash_reports_that_page_and_the_others_are_read(tmp_path):
    copy = image_pdf(tmp_path / "three.pdf", SLIDES, [1, 2, 3], dpi=200)
    pool = workers(1)
    killed: list[int] = []

    def kill_first_busy_helper():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for h in list(pool.helpers):
                task = h.task
                if task is not None:
                    time.sleep(0.2)  # in the middle of the page
                    h.proc.kill()
                    killed.append(task[0])
                    return
            time.sleep(0.01)

    t = threading.Thread(target=kill_first_busy_helper)
    t.start()
    try:
        content = read_pdf(copy, ocr=OcrSettings(workers=1, cache=False))
    finally:
        t.join()
        workers(0)  # back to one helper per core for the other tests
    assert killed
    bad = [p for p in content.pages if p.skip_reason]
    assert [p.number for p in bad] == killed and "crashed" in bad[0].skip_reason
    assert sum(p.ocr for p in content.pages) == 2


def test_ocr_cache_makes_reindexing_free(tmp_path):
    copy = image_pdf(tmp_path / "scan.pdf", JA_PAPER, [6])
    first = read_pdf(copy)
    before = workers().pages_run
    t = time.perf_counter()
    again = read_pdf(copy)
    assert workers().pages_run == before  # no page went to Tesseract
    assert again.pages[0].text == first.pages[0].text and again.pages[0].ocr_words == first.pages[0].ocr_words
    assert time.perf_counter() - t < 5


def test_ocr_never_always_and_missing_language_data(tmp_path):
    with Collection.open(tmp_path / "col", create=True) as col:
        r = col.index([data(LINN)], progress=False, ocr="never").files[0]
        assert r.status == "failed" and "no text layer" in r.error
        # language data that is not installed: one note naming the packages, the text pages still indexed
        rep = col.index([SLIDES, data(LINN)], progress=False, ocr=OcrSettings(languages="fra"))
        assert [f.status for f in rep.files] == ["indexed", "failed"]
        assert len(rep.notes) == 1 and "tesseract-ocr-jpn" in rep.notes[0] and "fra" in rep.notes[0]
        with pytest.raises(OcrUnavailableError, match="pdfqa\\[ocr\\]"):
            col.index([data(LINN)], progress=False, ocr=OcrSettings(mode="always", languages="fra"))
    with pytest.raises(Exception, match="unknown OCR mode"):
        OcrSettings(mode="sometimes")


def test_cli_without_the_ocr_packages_says_so_once_and_indexes_text_pages(tmp_path):
    """The binding missing (as on a `make demo` install): blocked for this process only."""
    code = ("import sys; sys.modules['tesserocr'] = None\n"
            "from pdfqa.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    p = subprocess.run([sys.executable, "-c", code, "index", str(SLIDES), str(data(LINN)), "--collection",
                        str(tmp_path / "col"), "--quiet"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "1 indexed" in p.stdout and "1 failed" in p.stdout
    assert p.stderr.count("pip install 'pdfqa[ocr]'") == 1 and "tesseract-ocr-jpn" in p.stderr, p.stderr
    p = subprocess.run([sys.executable, "-c", code, "index", str(data(LINN)), "--collection", str(tmp_path / "col2"),
                        "--ocr", "always"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 2 and "tesserocr is not installed" in p.stderr


def test_cli_index_json_and_search_json_carry_ocr(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    col = str(tmp_path / "col")
    p = subprocess.run([sys.executable, "-m", "pdfqa.cli", "index", str(data(LINN)), "--collection", col, "--json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    f = json.loads(p.stdout)["files"][0]
    assert f["ocr_pages"] == 1 and f["ocr_confidence"] > 0.8
    p = subprocess.run([sys.executable, "-m", "pdfqa.cli", "search", "disk drive stores songs", "--collection", col,
                        "--json"], capture_output=True, text=True, env=env, timeout=600)
    hit = json.loads(p.stdout)["hits"][0]
    assert hit["ocr"] is True and 0 < hit["ocr_confidence"] <= 1


def test_collections_from_before_ocr_still_open(built, tmp_path):
    """A collection written before the OCR columns existed: readable as it is, upgraded when written."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(built.path, old)
    db = sqlite3.connect(old / "chunks.sqlite")
    db.execute("ALTER TABLE chunks DROP COLUMN ocr_confidence")
    db.execute("ALTER TABLE chunks DROP COLUMN ocr")
    db.execute("DROP TABLE ocr_pages")
    db.commit()
    db.close()
    with Collection.open(old, readonly=True) as col:
        hit = col.search("What is byte pair encoding?", k=1)[0]
        assert hit.chunk.ocr is False and hit.chunk.ocr_confidence is None
        assert col.store.ocr_page(hit.chunk.doc, hit.chunk.page) is None
    with Collection.open(old) as col:
        report = col.index([data(LINN)], progress=False)
        assert report.files[0].status == "indexed"
        assert col.search("LinnSequencer", k=1)[0].chunk.ocr
