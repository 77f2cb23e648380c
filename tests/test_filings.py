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
    # the statement's own title, after the company's name or opening the line; not the notes and
    # sentences that mention a statement, nor the comprehensive-income statement
    assert page_statements(["ACTIVISION BLIZZARD, INC. AND SUBSIDIARIES CONSOLIDATED BALANCE SHEETS"]) == ["balance"]
    assert page_statements(["Consolidated Statements of Cash Flows Corning Incorporated and Subsidiary Companies"]) \
        == ["cash_flow"]
    assert page_statements(["Consolidated Statements of Income and Comprehensive Income"]) == ["income"]
    for mention in ("NOTE 7. Supplemental Balance Sheet Information", "Analysis of Consolidated Statements of Income",
                    "items in our consolidated balance sheets (in millions):", "Consolidated Balance Sheet:",
                    "Amounts recognized in the Consolidated Balance Sheet as of December 31, (Millions)",
                    "3M Company and Subsidiaries Consolidated Statement of Comprehensive Income",
                    "PARENT COMPANY – CONDENSED STATEMENTS OF INCOME AND COMPREHENSIVE INCOME"):
        assert page_statements([mention]) == [], mention


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
    # the three primary statements and nothing else: not the contents pages that list them, not the
    # notes that discuss them ("NOTE 7. Supplemental Balance Sheet Information")
    flagged = {pg: st for pg, st in zip(idx.pages, idx.statements) if st}
    assert flagged == {(MMM, 56): ["income"], (MMM, 58): ["balance"], (MMM, 60): ["cash_flow"],
                       (LMT, 66): ["income"], (LMT, 68): ["balance"], (LMT, 69): ["cash_flow"]}, flagged
    text_58 = " ".join(c.text for c in mmm_col.chunks(MMM, 58))
    assert "Balance Sheet" in text_58 and "Shee t" not in text_58  # the letter-spaced title rejoined


@pytest.mark.slow
def test_hybrid_finds_the_statement_page_a_metric_question_needs(mmm_col):
    """"FY2018 capital expenditure" is read from the cash-flow statement and "net PPNE" from the balance
    sheet: pages of figures none of whose chunks matches the question well. Chunk BM25, e5-small and
    their fusion miss both pages of 3M's 10-K; the statement and page priors bring them into hybrid's top
    5 (measured). Lockheed Martin's balance sheet, whose title was lost before chunking v5, is now found
    by every retriever for "net working capital"."""
    from pdfqa.retrieval import DensePagePrior, StatementPrior

    def pages(q, spec):
        return {(h.chunk.doc, p) for h in mmm_col.search(q, k=5, retriever=spec) for p in h.chunk.pages}

    assert StatementPrior(mmm_col).active and DensePagePrior(mmm_col).active
    capex = next(q for q in _gold(MMM) if "capital expenditure" in q)
    ppne = next(q for q in _gold(MMM) if "PPNE" in q)
    assert _gold(MMM)[capex] == {(MMM, 60)} and _gold(MMM)[ppne] == {(MMM, 58)}
    assert (MMM, 60) in StatementPrior(mmm_col).ranks(capex)  # the cash flows, of the filing it names
    assert (MMM, 58) in StatementPrior(mmm_col).ranks(ppne)
    for q in (capex, ppne):
        for spec in ("bm25", "e5-small", "bm25+dense"):
            assert not pages(q, spec) & _gold(MMM)[q], (spec, q)
        assert pages(q, "hybrid") & _gold(MMM)[q], q
    wc = next(q for q in _gold(LMT) if "net working capital" in q)
    assert _gold(LMT)[wc] == {(LMT, 68)}
    for spec in ("bm25", "e5-small", "hybrid"):
        assert (LMT, 68) in pages(wc, spec), spec


@pytest.mark.slow
def test_a_statement_keeps_its_title_above_its_period_header(mmm_col):
    """Lockheed Martin prints "Consolidated Balance Sheets / (in millions...) / December 31, / 2021 2020"
    above its balance sheet. "December 31," is the table's column header, not a section: as a heading it
    replaced the statement's title, and the page could not be told a balance sheet (chunking v5)."""
    chunks = mmm_col.chunks(LMT, 68)
    assert chunks and all("Consolidated Balance Sheets" in c.heading_path[-1] for c in chunks), \
        [c.heading_path for c in chunks]
    assert chunks[0].text.startswith("Lockheed Martin Corporation Consolidated Balance Sheets")
    assert "December 31," in chunks[0].text.split("\n")[1]  # the period header stays with the table
    assert all("December 31," != h for c in chunks for h in c.heading_path)


@pytest.mark.slow
def test_documents_are_told_by_their_titles(mmm_col):
    """The document prior ranks documents by their titles: the filing's company and fiscal year
    ("3M COMPANY, Form 10-K, fiscal year ended December 31, 2018")."""
    from pdfqa.retrieval import DOC_PRIOR_SOURCE, DocumentPrior

    assert DOC_PRIOR_SOURCE == "both"  # titles and whole text, fused
    titles = {d.doc: d.title for d in mmm_col.documents()}
    assert "2018" in titles[MMM] and "LOCKHEED MARTIN" in titles[LMT].upper()
    by_title = DocumentPrior(mmm_col, source="title")
    assert list(by_title.ranks("What was Lockheed Martin's FY2021 net working capital?")) == [LMT]
    assert list(by_title.ranks("What is the FY2018 capital expenditure amount (in USD millions) for 3M?")) == [MMM]
    assert by_title.ranks("Who audits the statements?") == {}  # no title word: titles rank nothing
    both = DocumentPrior(mmm_col)
    assert next(iter(both.ranks("What was Lockheed Martin's FY2021 net working capital?"))) == LMT
    assert next(iter(both.ranks("What is the FY2018 capital expenditure amount (in USD millions) for 3M?"))) == MMM


@pytest.mark.slow
def test_hybrid_spreads_its_hits_over_pages(mmm_col):
    """Each page's best chunk ranks before any page's second one: the top hits are that many pieces of
    evidence, while the page a fusion ranks first stays first."""
    from pdfqa.retrieval import HYBRID_PER_PAGE, get_retriever

    assert HYBRID_PER_PAGE == 1
    q = "What is the FY2018 capital expenditure amount (in USD millions) for 3M?"
    hits = mmm_col.search(q, k=8, retriever="hybrid")
    pages = [(h.chunk.doc, h.chunk.pages[0]) for h in hits]
    assert len(set(pages)) == len(pages), pages
    plain = get_retriever(mmm_col, "hybrid")
    plain.per_page = 0
    unspread = plain.search(q, 30)
    assert pages[0] == (unspread[0].chunk.doc, unspread[0].chunk.pages[0])
    assert len({(h.chunk.doc, h.chunk.pages[0]) for h in unspread[:8]}) < 8  # the fusion alone repeats pages
