"""Long reports: tables as blocks with caption and header, document titles, filing sections, hidden text.

Real filings from ../shared/data (financebench_dev, sec10q) and the US DOT report.
"""
from __future__ import annotations

import re

import pytest

from pdfqa.chunking import build_blocks, chunk_document, document_title
from pdfqa.embeddings import get_embedder
from pdfqa.pdf import read_pdf
from pdfqa.pdf.reader import metadata_title

from .conftest import JA_PAPER, SLIDES, data

FB = "qa/financebench_dev/pdfs/"


@pytest.fixture(scope="module")
def e5():
    return get_embedder("e5-small")


@pytest.fixture(scope="module")
def mmm():
    """3M's 2018 10-K (160 pages), read once."""
    return read_pdf(data(FB + "3M_2018_10K.pdf"))


@pytest.fixture(scope="module")
def mmm_chunks(mmm, e5):
    return chunk_document(mmm, count_tokens=e5.count_tokens, max_tokens=256)


def test_selected_financial_data_is_one_table_with_its_title_and_header(mmm):
    """Issue 13's example (page 14): title, year header and rows used to be three unrelated chunks."""
    tables = [b for b in build_blocks(mmm) if b.kind == "table" and b.pages == [14]]
    assert len(tables) == 1
    t = tables[0]
    assert t.caption.startswith("Item 6. Selected Financial")
    assert any("2018* 2017 2016 2015 2014" in h for h in t.header)
    rows = t.text.split("\n")
    assert rows[0].startswith("Net sales $ 32,765 $ 31,657")
    assert any(r.startswith("Total assets $ 36,500") for r in rows)
    # a wrapped row label stays with its numbers
    assert any(r.startswith("Long-term debt (excluding portion due within one year) and long-term capital lease "
                            "obligations 13,486") for r in rows)


def test_a_table_chunk_carries_title_header_and_document_context(mmm_chunks):
    page14 = [c for c in mmm_chunks if 14 in c.pages and "table" in c.kinds]
    assert len(page14) == 1
    c = page14[0]
    lines = c.text.split("\n")
    assert lines[0].startswith("Item 6. Selected Financial") and "2018* 2017" in lines[1]
    assert c.title == "3M COMPANY, Form 10-K, fiscal year ended December 31, 2018"
    assert c.heading_path[-1].startswith("Item 6.") and c.heading_path[0] == "PART II"
    embedded = c.embed_text("title+headings")
    assert embedded.startswith("3M COMPANY, Form 10-K") and "\n" + c.text in embedded
    assert c.embed_text("none") == c.text
    assert "3M COMPANY" not in c.embed_text("headings").split("\n")[0]


def test_long_tables_are_split_between_rows_and_every_piece_repeats_the_header(mmm, e5):
    """A small budget forces the cash-flow statement (page 60, ~45 rows) into several pieces."""
    chunks = chunk_document(mmm, count_tokens=e5.count_tokens, max_tokens=128, context="headings")
    pieces = [c for c in chunks if c.pages == [60] and c.kinds == ["table"]]
    assert len(pieces) >= 3
    block = next(b for b in build_blocks(mmm) if b.kind == "table" and b.pages == [60])
    rows = set(block.text.split("\n"))
    first = pieces[0].text.split("\n")
    prefix = first[:first.index(next(r for r in first if r in rows))]
    assert any("(Millions) 2018 2017 2016" in h for h in prefix)  # the column header row
    for p in pieces:
        lines = p.text.split("\n")
        assert lines[:len(prefix)] == prefix  # caption and header repeated
        assert all(line in rows for line in lines[len(prefix):])  # whole rows only
        assert e5.count_tokens(p.embed_text("headings")) <= 128 + 2
    covered = [line for p in pieces for line in p.text.split("\n")[len(prefix):]]
    assert "Purchases of property, plant and equipment (PP&E) (1,577) (1,373) (1,420)" in covered
    assert len(covered) == len(block.text.split("\n"))  # every row once


def test_heading_paths_follow_the_filing_sections_not_the_cover(mmm_chunks):
    """Every chunk used to sit under the cover's "3M COMPANY"; now under PART / Item / statement."""
    assert not any(c.heading_path[:1] == ["3M COMPANY"] for c in mmm_chunks if c.page > 1)
    on60 = [c for c in mmm_chunks if 60 in c.pages]
    assert on60 and all(any(h.startswith("Item 8.") for h in c.heading_path) for c in on60)
    assert any("Cash Flows" in " ".join(c.heading_path) or "Cash Flows" in c.text.split("\n")[0] for c in on60)
    # the filing's table of contents ("Item 7. ... 24") is not indexed as headings
    assert sum(1 for c in mmm_chunks if re.search(r"Item 7\. Management.{0,80}\s\d{1,3}\n", c.text)) == 0


def test_document_titles_are_real_titles():
    assert metadata_title("Microsoft Word - dp2021_06_att") is None
    assert metadata_title("0000104169-18-000028") is None and metadata_title("Document") is None
    assert metadata_title("Geometrie und Topologie") == "Geometrie und Topologie"
    # a junk /Title ("Microsoft Word - ...") falls back to the first page's title
    portability = read_pdf(data("pdfs/ja_gov/cio_dp2021_10_data_portability.pdf"))
    assert portability.metadata_title is None
    assert document_title(portability).startswith("政府情報システムの移行のためのデータポータビリティ")
    assert document_title(read_pdf(JA_PAPER)) == "政府情報システムにおけるゼロトラスト適用に向けた考え方"
    # filings: registrant, form and period from the cover; a logo-only cover keeps the file name
    assert document_title(read_pdf(data("qa/sec10q/pdfs/2023 Q2 NVDA.pdf"))) == \
        "NVIDIA CORPORATION, Form 10-Q, quarterly period ended July 30, 2023"
    assert document_title(read_pdf(data(FB + "WALMART_2018_10K.pdf"))) == \
        "WALMART INC., Form 10-K, fiscal year ended January 31, 2018"
    assert document_title(read_pdf(data(FB + "COCACOLA_2017_10K.pdf"))) == \
        "COCACOLA_2017_10K, Form 10-K, fiscal year ended December 31, 2017"
    # slides whose first page has no title type: the file name
    assert document_title(read_pdf(SLIDES)) == SLIDES.stem


def test_hidden_placeholder_text_is_not_indexed(e5):
    """The DOT report carries ~700 strings in 0.7-pt type (PLACEHOLDER_53, UUIDs) nobody can read."""
    content = read_pdf(data("pdfs/en_gov/us_DOT2022_performance_report.pdf"))
    text = "\n".join(p.text for p in content.pages)
    assert "PLACEHOLDER_" not in text
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-", text)
    assert "Motor Vehicle Fatalities" in text  # visible text stays


def test_kpi_rows_keep_target_and_actual_with_their_values():
    """DOT KPI tables: pdfium gives the cells column by column; rows of values are rebuilt left to right."""
    content = read_pdf(data("pdfs/en_gov/us_DOT2022_performance_report.pdf"))
    blocks = [b for b in build_blocks(content) if b.pages == [26]]
    text = "\n".join(b.text for b in blocks) + "\n".join("\n".join(b.header) for b in blocks)
    assert re.search(r"Target \| Target Met 2039-12-31 \| 50", text)
    kpi = [b for b in blocks if b.kind == "table" and "Highway Backlog Reduction" in b.caption]
    assert kpi, [(b.kind, b.caption) for b in blocks]


def test_japanese_table_titles_open_their_table(e5):
    """ja_gov: "表 １-1 用語の定義" starts the table it names (full-width digits), in one chunk with its rows."""
    chunks = chunk_document(read_pdf(JA_PAPER), count_tokens=e5.count_tokens, max_tokens=256)
    holder = [c for c in chunks if "表 １-1 用語の定義" in c.text]
    assert len(holder) == 1 and holder[0].page == 3
    assert "境界型セキュリティ" in holder[0].text.split("表 １-1 用語の定義", 1)[1]


def test_pages_without_tables_and_slides_get_no_table_blocks():
    """A lecture deck (rotated landscape pages) stays one block per slide; nothing is read as a table."""
    blocks = build_blocks(read_pdf(SLIDES))
    assert {b.kind for b in blocks} == {"slide"}
    assert len(blocks) == len(read_pdf(SLIDES).pages) - 0 or len(blocks) > 25


@pytest.mark.slow
def test_a_table_continued_on_the_next_page_repeats_its_header():
    """Walmart's store counts by state (10-K 2018, Item 2) run from page 27 onto page 28, which opens
    with "Washington 52 10 6 — 68" and no header: its rows keep the column header and the section."""
    chunks = chunk_document(read_pdf(data(FB + "WALMART_2018_10K.pdf")))
    cont = [c for c in chunks if c.pages == [28] and "Washington 52 10 6" in c.text]
    assert len(cont) == 1, [c.text[:80] for c in chunks if 28 in c.pages]
    lines = cont[0].text.split("\n")
    assert lines[0].startswith("State or Territory Supercenters")  # the header of page 27's table
    assert lines.index("Washington 52 10 6 — 68") > 0 and "U.S. total 3,561 400 800 597 5,358" in lines
    assert cont[0].heading_path[-1] == "ITEM 2. PROPERTIES"


def test_a_period_header_alone_heads_the_next_table_not_a_table_of_its_own():
    """NVIDIA's 10-Q (Note 10) prints "April 30, January 29," / "2023 2023" above each table with a gap
    before its rows: the header goes with the rows; a table opening with its own header on a new page is
    not taken for the previous page's table continued."""
    blocks = [b for b in build_blocks(read_pdf(data("qa/sec10q/pdfs/2023 Q1 NVDA.pdf"))) if b.pages == [16]]
    tables = [b for b in blocks if b.kind == "table"]
    assert tables and all(b.text.split("\n")[0][0].isalpha() for b in tables)  # every table has rows
    assert all(b.header[:2] == ["April 30, January 29,", "2023 2023"] for b in tables), [b.header for b in tables]
    assert not any(b.text.strip() == "2023 2023" for b in blocks)
    assert "Inventories: (In millions)" not in tables[0].header  # page 15's table, not continued here
