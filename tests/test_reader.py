import shutil

import pypdf
import pytest

from pdfqa.errors import PdfReadError
from pdfqa.pdf import read_pdf
from pdfqa.pdf.quality import assess_page_text

from .conftest import JA_PAPER, SLIDES, data


def test_pages_are_numbered_from_one_with_text_and_layout():
    content = read_pdf(SLIDES)
    assert [p.number for p in content.pages] == list(range(1, 32))
    assert content.doc == "elte_nlp_3-tokenization.pdf" and len(content.doc_hash) == 64
    title = content.pages[23].lines  # page 24 is the BPE slide
    assert any("Byte Pair Encoding" in ln.text for ln in title)
    assert all(ln.size > 0 for ln in title), "pdfium lines carry font sizes"


@pytest.mark.parametrize("reader", ["pdfium", "pypdf"])
def test_page_labels_from_the_pdf(tmp_path, reader):
    # the slides have no /PageLabels: add roman front matter + arabic body, as LaTeX books do
    w = pypdf.PdfWriter(clone_from=str(SLIDES))
    w.set_page_label(0, 2, style="/r")
    w.set_page_label(3, 30, style="/D", start=1)
    out = tmp_path / "labelled.pdf"
    w.write(out)
    pages = read_pdf(out, reader=reader).pages
    assert [p.label for p in pages[:5]] == ["i", "ii", "iii", "1", "2"]
    assert read_pdf(SLIDES, reader=reader).pages[0].label is None


def test_page_labels_of_a_latex_book():
    pages = read_pdf(data("pdfs/layout/pypdf_GeoTopo-komprimiert_de_lecture_notes.pdf")).pages
    assert [p.label for p in pages[:4]] == ["i", "ii", "iii", "1"]


def test_outline_is_read():
    outline = read_pdf(JA_PAPER).outline
    assert outline and all(level >= 1 and page >= 1 for level, _, page in outline)


def test_pdfium_reads_the_filing_pypdf_rejects():
    path = data("qa/sec10q/pdfs/2023 Q1 MSFT.pdf")
    content = read_pdf(path)
    assert len(content.pages) > 50
    assert "MICROSOFT CORPORATION" in content.pages[0].text
    with pytest.raises(PdfReadError) as e:
        read_pdf(path, reader="pypdf")
    assert str(e.value).startswith("2023 Q1 MSFT.pdf: ") and "\n" not in str(e.value)


def test_encrypted_with_empty_password_opens():
    content = read_pdf(data("pdfs/en_gov/ntsb_20080102X00002.pdf"))
    assert "National Transportation Safety Board" in content.pages[0].text


def _error(path, **kw) -> str:
    with pytest.raises(PdfReadError) as e:
        read_pdf(path, **kw)
    msg = str(e.value)
    assert msg.startswith(path.name + ": ") and "\n" not in msg
    return msg


def test_password_protected(tmp_path):
    w = pypdf.PdfWriter(clone_from=str(JA_PAPER))
    w.encrypt(user_password="secret", owner_password="owner")
    p = tmp_path / "locked.pdf"
    w.write(p)
    assert "password-protected" in _error(p)
    assert "password-protected" in _error(p, reader="pypdf")
    assert len(read_pdf(p, password="secret").pages) == 11


def test_truncated(tmp_path):
    p = tmp_path / "cut.pdf"
    raw = SLIDES.read_bytes()
    p.write_bytes(raw[: len(raw) // 2])
    assert "truncated" in _error(p)


def test_corrupt(tmp_path):
    p = tmp_path / "corrupt.pdf"
    p.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    assert "corrupt" in _error(p)


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.pdf"
    p.write_bytes(b"")
    assert "empty file" in _error(p)


def test_not_a_pdf(tmp_path):
    p = tmp_path / "notes.pdf"
    p.write_text("just some text, renamed to .pdf\n")
    assert "not a PDF" in _error(p) and "text file" in _error(p)
    png = tmp_path / "image.pdf"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert "PNG image" in _error(png)


def test_too_many_pages():
    assert "too many pages" in _error(SLIDES, max_pages=10)


def test_image_only_pages_are_flagged():
    """Without OCR (tests/test_ocr.py reads them with it)."""
    content = read_pdf(data("pdfs/scanned/ocrmypdf_linn.pdf"), ocr="never")
    assert content.skipped_pages == [(1, "no text layer (image-only page)")]


def test_garbled_text_layer_is_flagged_per_page():
    path = data("pdfs/ja_slides_garbled/matsuura_20210508_sounddesign4.pdf")
    # pypdf decodes these fonts into mojibake; the quality check must catch every such page
    bad = read_pdf(path, reader="pypdf", ocr="never")  # the check itself, not what OCR makes of those pages
    garbled = [n for n, r in bad.skipped_pages if r.startswith("garbled")]
    assert len(garbled) >= len(bad.pages) // 2
    # pdfium decodes them properly: Japanese text, not flagged
    good = read_pdf(path, ocr="never")
    assert "サウンド・デザイン" in good.pages[0].text
    assert not [n for n, r in good.skipped_pages if r.startswith("garbled")]


def test_quality_check_accepts_clean_text():
    for p in read_pdf(JA_PAPER).pages:
        assert assess_page_text(p.text) is None, p.number
    assert assess_page_text("Plain English text about tokenization and regular expressions.") is None
