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
"""
from __future__ import annotations

import re

#: the primary statements
KINDS = ("balance", "income", "cash_flow")

_OF = r"statements?\s+of\s+(?:consolidated\s+)?"
#: statement titles as filings print them (captions and headings of the statement pages)
_TITLES = {
    "balance": re.compile(r"balance\s+sheets?|" + _OF + r"(?:financial\s+(?:position|condition)|condition)\b", re.I),
    "income": re.compile(_OF + r"(?:operations|income|earnings|comprehensive\s+(?:income|loss))|income\s+statements?|"
                         r"profit\s+and\s+loss", re.I),
    "cash_flow": re.compile(_OF + r"cash\s+flows?|cash\s+flows?\s+statements?", re.I),
}

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
    """The statements a page holds, from its headings and table captions. An index page listing
    every statement ("Consolidated Balance Sheets 58 / Statements of Income 59 / ...") holds none."""
    found = [k for k in KINDS if any(_TITLES[k].search(t) for t in titles)]
    return [] if len(found) == len(KINDS) else found


__all__ = ["KINDS", "page_statements", "question_statements"]
