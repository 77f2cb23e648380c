"""The page stage on real filings (3M's 2018 and Lockheed Martin's 2021 10-Ks of financebench_dev): statement pages told by their
titles, the statement a question needs told by the line items it names, the dense page prior, and
what ``hybrid`` makes of them; plus the text repairs and tokenization they rely on."""
from __future__ import annotations

import doctest
import json

import pytest

from pdfqa import Collection
from pdfqa import statements as statements_module
from pdfqa.chunking import heal_split_words
from pdfqa.documents import Line, Page
from pdfqa.statements import page_statements, question_statements
from pdfqa.text.tokenize import english_tokens

from .conftest import data

MMM = "3M_2018_10K.pdf"
LMT = "LOCKHEEDMARTIN_2021_10K.pdf"


def _gold(doc: str) -> dict[str, set[tuple[str, int]]]:
    rows = [json.loads(ln) for ln in data("qa/financebench_dev/qa.jsonl").read_text().splitlines() if ln.strip()]
    return {r["question"]: {(p["doc"], p["page"]) for p in r["pages"]} for r in rows if r["doc_ids"] == [doc]}


def test_statement_kinds_of_questions_and_page_titles():
    assert doctest.testmod(statements_module).failed == 0
    assert question_statements("What is the FY2018 capital expenditure amount (in USD millions) for 3M?") == ["cash_flow"]
    assert question_statements("what is the year end FY2018 net PPNE for 3M?") == ["balance"]
    assert question_statements("Who is the chief executive officer?") == []
    assert page_statements(["Consolidated Statement of Income", "Years ended December 31"]) == ["income"]
    assert page_statements(["CONSOLIDATED STATEMENTS OF FINANCIAL POSITION"]) == ["balance"]
    # an index of the financial statements lists all three and is none of them
    assert page_statements(["Consolidated Statement of Income 56", "Consolidated Balance Sheet 58",
                            "Consolidated Statement of Cash Flows 60"]) == []


def test_fiscal_periods_are_split_from_their_year():
    assert english_tokens("FY2018 capex") == ["fy", "2018", "capex"]
    assert english_tokens("Q3 2021 and Q32021") == ["q3", "2021", "q3", "2021"]
    assert "fy2018" not in english_tokens("fiscal year FY2018")


def test_letter_spaced_words_are_rejoined_only_where_the_document_knows_the_word():
    def page(*texts):
        return Page(number=1, label=None, width=600, height=800, lines=[Line(text=t, size=10) for t in texts])

    pages = [page("Consolidated Balance Shee t", "Balance Sheet data", "Sheet totals", "is a table", "the Registrant’ s")]
    heal_split_words(pages)
    assert [ln.text for ln in pages[0].lines] == ["Consolidated Balance Sheet", "Balance Sheet data", "Sheet totals",
                                                  "is a table", "the Registrant’s"]


@pytest.fixture(scope="module")
def mmm_col(tmp_path_factory):
    """Two 10-Ks (1,750 chunks; about 100 s to index on 2 cores)."""
    col = Collection.open(tmp_path_factory.mktemp("mmm") / "c", create=True)
    report = col.index([data("qa/financebench_dev/pdfs/" + d) for d in (MMM, LMT)], progress=False)
    assert len(report.indexed) == 2
    yield col
    col.close()


@pytest.mark.slow
def test_statement_pages_of_a_real_10k(mmm_col):
    idx = mmm_col.page_index()
    assert idx.has_statements
    assert (MMM, 58) in idx.statement_pages(["balance"])       # Consolidated Balance Sheet
    assert (MMM, 60) in idx.statement_pages(["cash_flow"])     # Consolidated Statement of Cash Flows
    assert (MMM, 56) in idx.statement_pages(["income"])        # Consolidated Statement of Income
    # few of the 160 pages are flagged: the statements, their continuations and (measured: pages 2-3) the
    # table of contents where it lists them on separate pages; not the notes that discuss them
    flagged = [pg for pg, st in zip(idx.pages, idx.statements) if st and pg[0] == MMM]
    assert len(flagged) <= 16, flagged
    text_58 = " ".join(c.text for c in mmm_col.chunks(MMM, 58))
    assert "Balance Sheet" in text_58 and "Shee t" not in text_58  # the letter-spaced title rejoined


@pytest.mark.slow
def test_hybrid_finds_the_statement_page_a_metric_question_needs(mmm_col):
    """"Net working capital" (current assets minus current liabilities) is read from the balance sheet,
    a page of figures no chunk of which matches the question well: chunk BM25, e5-small and their
    fusion miss page 68 of Lockheed Martin's 10-K; the statement and page priors bring it into
    hybrid's top 5 (measured)."""
    from pdfqa.retrieval import DensePagePrior, StatementPrior

    q = next(q for q in _gold(LMT) if "net working capital" in q)
    gold = _gold(LMT)[q]
    assert gold == {(LMT, 68)}

    def pages(spec):
        return {(h.chunk.doc, p) for h in mmm_col.search(q, k=5, retriever=spec) for p in h.chunk.pages}

    assert StatementPrior(mmm_col).active and DensePagePrior(mmm_col).active
    assert (LMT, 68) in StatementPrior(mmm_col).ranks(q)  # the balance sheet, of the filing it names
    for spec in ("bm25", "e5-small", "bm25+dense"):
        assert not pages(spec) & gold, spec
    assert pages("hybrid") & gold
    # the capex question needs the cash-flow statement: the statement prior offers 3M's (hybrid still
    # misses it on these two filings: a limit recorded in benchmarks/README.md)
    capex = next(q for q in _gold(MMM) if "capital expenditure" in q)
    assert (MMM, 60) in StatementPrior(mmm_col).ranks(capex)
