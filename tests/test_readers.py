"""The readers that find tables (pdfplumber, camelot, unstructured) on real pages, the one-line errors
for unknown or uninstalled readers, and ``--reader`` / ``Collection.index(reader=...)``.

Pages are copied out of the real PDFs (pypdf) so that a slow reader reads two pages, not a filing.
Each reader's tests skip, saying which extra to install, when its extra is missing.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys

import pypdf
import pytest

from pdfqa.chunking import chunk_document
from pdfqa.errors import CollectionError, PdfqaError, UnknownComponentError
from pdfqa.pdf import READERS, read_pdf
from pdfqa.pdf.reader import READER_EXTRAS, require_reader

from .conftest import JA_PAPER, data
from .test_cli import pdfqa

TABLE_READERS = ["pdfplumber", "camelot"]


def needs(reader: str) -> None:
    try:
        require_reader(reader)
    except PdfqaError as e:
        pytest.skip(f"{reader} reader not available: {e}")


def pages_of(src, numbers: list[int], out) -> str:
    w = pypdf.PdfWriter()
    r = pypdf.PdfReader(str(src))
    for n in numbers:
        w.add_page(r.pages[n - 1])
    w.write(out)
    return str(out)


@pytest.fixture(scope="module")
def filing_pages(tmp_path_factory):
    """3M's 2018 10-K, pages 14 (Selected Financial Data) and 58 (the balance sheet)."""
    return pages_of(data("qa/financebench_dev/pdfs/3M_2018_10K.pdf"), [14, 58],
                    tmp_path_factory.mktemp("pdf") / "3M_2018_p14_p58.pdf")


@pytest.fixture(scope="module")
def ja_page(tmp_path_factory):
    """The zero-trust paper's page 3: 表 1-1 用語の定義, a ruled table of wrapped Japanese cells."""
    return pages_of(data("pdfs/ja_gov/cio_dp2020_03_zero_trust.pdf"), [3], tmp_path_factory.mktemp("pdf") / "zt_p3.pdf")


@pytest.mark.parametrize("reader", TABLE_READERS)
def test_a_filing_row_keeps_its_figures_caption_and_year_header(reader, filing_pages):
    needs(reader)
    content = read_pdf(filing_pages, reader=reader)
    assert content.reader == reader and [p.number for p in content.pages] == [1, 2]
    assert content.pages[0].tables, f"{reader} found no table on Selected Financial Data"
    chunks = chunk_document(content)
    holder = [c for c in chunks if any(ln.startswith("Net sales") for ln in c.text.split("\n"))]
    assert holder, [c.text[:80] for c in chunks]
    c = holder[0]
    row = next(ln for ln in c.text.split("\n") if ln.startswith("Net sales"))
    # the row keeps all five years' figures, in order, as cells
    assert re.sub(r"[\s|$]", "", row) == "Netsales32,76531,65730,10930,27431,821", row
    assert c.kinds == ["table"]
    assert "Selected Financial Dat" in c.text  # the caption ("Item 6. Selected Financial Data.")
    assert re.search(r"2018\*?\D+2017\D+2016\D+2015\D+2014", c.text), "the year header is repeated with the rows"
    # the balance sheet: every piece of the table repeats its year header
    sheet = [c for c in chunks if c.page == 2 and c.kinds == ["table"] and "Total" in c.text]
    assert sheet and all("2018" in c.text and "2017" in c.text for c in sheet)


@pytest.mark.parametrize("reader", TABLE_READERS)
def test_a_japanese_table_keeps_its_title_header_and_wrapped_cells(reader, ja_page):
    needs(reader)
    page = read_pdf(ja_page, reader=reader).pages[0]
    assert len(page.tables) == 1
    t = page.tables[0]
    cells = [[c for c in r if c] for r in t.rows]  # spanning cells leave empty ones beside them
    assert cells[0] == ["用語", "意味"] and t.header_rows == 1
    assert [r[0] for r in cells[1:]] == ["境界型セキュリティ", "ゼロトラスト"], cells  # a label wrapped over two lines
    assert cells[1][1].startswith("境界線（ペリメータ）で内側と外側を遮断して、外部からの攻撃"), cells[1][1]  # no spaces
    c = next(c for c in chunk_document(read_pdf(ja_page, reader=reader)) if "ゼロトラスト |" in c.text)
    assert "表 １-1 用語の定義" in c.text and "用語 | 意味" in c.text


def test_unstructured_reads_a_filing_page_and_a_japanese_page(filing_pages, ja_page):
    needs("unstructured")
    content = read_pdf(filing_pages, reader="unstructured")
    text = content.pages[0].text
    assert "Net sales" in text and "32,765" in text
    assert all(not p.tables for p in content.pages), "the fast strategy finds no tables"
    assert "用語の定義" in read_pdf(ja_page, reader="unstructured").pages[0].text


def test_unstructured_without_its_spacy_model_refuses_in_one_line(filing_pages):
    if importlib.util.find_spec("unstructured") is None:
        pytest.skip("unstructured not installed: pip install 'pdfqa[unstructured]'")
    if importlib.util.find_spec("en_core_web_sm") is not None:
        pytest.skip("spaCy's en_core_web_sm is installed here")
    with pytest.raises(PdfqaError) as e:
        read_pdf(filing_pages, reader="unstructured")
    msg = str(e.value)
    assert "en_core_web_sm" in msg and "\n" not in msg


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, filing_pages):
    for reader, (extra, modules) in READER_EXTRAS.items():
        for m in modules:
            monkeypatch.setitem(sys.modules, m, None)  # what Python does for a module that is not installed
        with pytest.raises(PdfqaError) as e:
            read_pdf(filing_pages, reader=reader)
        msg = str(e.value)
        assert f"pip install 'pdfqa[{extra}]'" in msg and "\n" not in msg, msg


def test_unknown_reader_lists_the_known_ones(filing_pages):
    with pytest.raises(UnknownComponentError) as e:
        read_pdf(filing_pages, reader="docling")
    assert str(e.value) == "unknown reader 'docling'; known: " + ", ".join(READERS)


def test_collection_index_takes_a_reader_once(tmp_path, ja_page):
    from pdfqa import Collection

    needs("pdfplumber")
    with Collection.open(tmp_path / "c", create=True) as col:
        assert col.reader == "pdfium"
        rep = col.index([ja_page], progress=False, reader="pdfplumber")  # empty: it takes the reader
        assert rep.ok and col.reader == "pdfplumber"
        assert col.documents()[0].reader == "pdfplumber"
        assert any("用語 | 意味" in c.text for c in col.chunks("zt_p3.pdf"))
        with pytest.raises(CollectionError) as e:
            col.index([JA_PAPER], progress=False, reader="pdfium")
        assert "read with the pdfplumber reader" in str(e.value) and "\n" not in str(e.value)
        assert [d.doc for d in col.documents()] == ["zt_p3.pdf"]  # nothing changed
        assert col.index([JA_PAPER], progress=False).ok  # the collection's own reader
        assert {d.reader for d in col.documents()} == {"pdfplumber"}


def test_cli_index_reader(tmp_path, ja_page):
    needs("pdfplumber")
    col = tmp_path / "c"
    p = pdfqa("index", ja_page, "-c", col, "-q", "--reader", "nope", check=2)
    assert "unknown reader 'nope'; known: pdfium, pypdf" in p.stderr and not col.exists()
    pdfqa("index", ja_page, "-c", col, "-q", "--reader", "pdfplumber", check=0)
    info = json.loads(pdfqa("info", "-c", col, "--json", check=0).stdout)
    assert info["chunking"]["reader"] == "pdfplumber"
    p = pdfqa("index", JA_PAPER, "-c", col, "-q", "--reader", "pdfium", check=2)
    assert "read with the pdfplumber reader" in p.stderr and p.stderr.count("\n") == 1

