"""Financial statements in filings and reports: which pages hold a primary statement, which statement a
question needs.

A 10-K answers "what was FY2018 capital expenditure?" on its cash-flow statement, a page of figures
whose words ("Purchases of property, plant and equipment") share almost nothing with the question;
neither BM25 nor a small embedder finds it. The statement's *title* is a fact of the page's structure
(its caption or heading), and the statement a question needs follows from the metric it names —
accounting vocabulary, not a tuned weight. ``hybrid``'s statement prior (:mod:`pdfqa.retrieval`) uses
both; it takes part only in collections that hold statement pages.

>>> question_statements("What is the FY2018 capital expenditure amount for 3M?")
['cash_flow']
>>> sorted(question_statements("FY2019 revenue / average PP&E (fixed asset turnover)"))
['balance', 'income']
>>> page_statements(["Item 8.", "3M Company and Subsidiaries Consolidated Statement of Cash Flows"])
['cash_flow']
>>> page_statements(["NOTE 7. Supplemental Balance Sheet Information", "Consolidated Balance Sheets 58"])
[]
"""
from __future__ import annotations

import re

#: the primary statements
KINDS = ("balance", "income", "cash_flow")
#: bumped when the rules below change which pages are statement pages: page indexes saved under another
#: version are rebuilt (1: any title mention; 2: the statement's own title at the head of the page)
RULES_VERSION = 2

_OF = r"statements?\s+of\s+(?:consolidated\s+)?"
#: the primary statements' titles as filings print them at the head of the statement's page: "Consolidated"
#: opens the line or follows the company's name ("3M Company and Subsidiaries Consolidated Statement of
#: Income", "CONSOLIDATED BALANCE SHEETS", "Consolidated Statements of Cash Flows Corning Incorporated and
#: Subsidiary Companies"); comprehensive income is its own statement, not the income statement
_LEAD = (r"(?:^|\b(?:subsidiaries|compan(?:y|ies)|inc\.?|incorporated|corporation|corp\.?|co\.|"
         r"plc|ltd\.?|limited|llc|n\.v\.|s\.a\.|ag)\s*[,:–—-]?\s+)(?:condensed\s+)?consolidated\s+")
_TITLES = {
    "balance": re.compile(_LEAD + r"(?:balance\s+sheets?|" + _OF + r"(?:financial\s+(?:position|condition)|condition))\b",
                          re.I),
    "income": re.compile(_LEAD + r"(?:" + _OF + r"(?:operations|income|earnings)|income\s+statements?)\b",
                         re.I),
    "cash_flow": re.compile(_LEAD + r"(?:" + _OF + r"cash\s+flows?|cash\s+flows?\s+statements?)\b", re.I),
}
#: not a statement's own title: a contents entry ("Consolidated Balance Sheets 58"), a sentence's tail or a
#: label ("... consolidated balance sheet (in millions):")
_NOT_TITLE = re.compile(r"\s\d{1,3}$|:$")


#: what a question names: the statement itself, or a line item / metric read from it
_ASKS = {
    "balance": re.compile(
        r"balance\s+sheets?|financial\s+position|total\s+assets|\bassets\b|liabilit|shareholders?['’]?\s+equity|"
        r"stockholders?['’]?\s+equity|\bpp&?e\b|\bppne\b|property,?\s+plant|fixed\s+assets?|inventor|receivable|"
        r"payable|working\s+capital|current\s+ratio|quick\s+ratio|book\s+value|\bdebt\b|cash\s+and\s+cash\s+equivalents|"
        r"capital[-\s]intensive|return\s+on\s+assets|\broa\b",
        re.I),
    "income": re.compile(
        r"income\s+statements?|statements?\s+of\s+(?:income|operations|earnings)|\bp&l\b|revenue|net\s+sales|"
        r"net\s+income|net\s+earnings|operating\s+income|operating\s+(?:profit|margin)|gross\s+(?:margin|profit)|"
        r"\bcogs\b|cost\s+of\s+(?:goods\s+sold|sales|revenue)|\bebitda?\b|\beps\b|earnings\s+per\s+share|"
        r"interest\s+expense|sg&a|selling,?\s+general", re.I),
    "cash_flow": re.compile(
        r"cash\s+flows?\s+statements?|statements?\s+of\s+cash\s+flows?|cash\s+flows?|capex|capital\s+expenditure|"
        r"purchases?\s+of\s+property|dividends?\s+paid|paid\s+out\s+in\s+(?:cash\s+)?dividends|cash\s+dividends|"
        r"depreciation\s+and\s+amortization|\bd&a\b|repurchases?|buybacks?|capital[-\s]intensive|dividends", re.I),
}


def question_statements(question: str) -> list[str]:
    """The primary statements ``question`` needs (by the statement or the line items it names)."""
    return [k for k in KINDS if _ASKS[k].search(question)]


def page_statements(titles: list[str]) -> list[str]:
    """The primary statements a page holds, from the title lines at the head of its chunks (headings and
    table captions). The notes that mention a statement ("NOTE 7. Supplemental Balance Sheet
    Information", "amounts recognized in the consolidated balance sheets:") hold none, nor does an index
    page listing every statement ("Consolidated Balance Sheets 58 / Statements of Income 59 / ...")."""
    lines = [t.strip() for t in titles if not _NOT_TITLE.search(t.strip())]
    found = [k for k in KINDS if any(_TITLES[k].search(t) for t in lines)]
    return [] if len(found) == len(KINDS) else found


__all__ = ["KINDS", "RULES_VERSION", "page_statements", "question_statements"]
