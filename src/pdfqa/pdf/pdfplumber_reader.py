"""The ``pdfplumber`` reader: pdfplumber's text lines (font size and weight from their characters)
and its table finder (``page.find_tables``), whose tables reach the chunker as
:attr:`~pdfqa.documents.Page.tables`. Needs ``pip install 'pdfqa[pdfplumber]'``.

Page numbers, labels, outline and title come from pdfium, as for the default reader. Text set
smaller than :data:`~pdfqa.pdf.reader.MIN_VISIBLE_PT` is dropped before lines and tables are built,
as the default reader drops it.

>>> from pdfqa.pdf import read_pdf
>>> page = read_pdf("examples/cio_dp2020_03_zero_trust.pdf", reader="pdfplumber").pages[2]  # doctest: +SKIP
>>> page.tables[0].rows[0], page.tables[0].header_rows                                      # doctest: +SKIP
(['用語', '意味'], 1)
"""
from __future__ import annotations

import logging
import statistics
from pathlib import Path

from ..documents import Line, Page
from ..errors import PdfReadError
from .reader import _ARTIFACT, _BOLD_FONT, MIN_VISIBLE_PT, clean_line, pdfium_skeleton
from .tables import table_region, take_header_above

#: words split where the gap between characters exceeds this share of the font size: pdfplumber's
#: fixed 3-point default glues words of PDFs that set no space characters (the DOT report's tables)
X_TOLERANCE_RATIO = 0.15
#: ``find_tables`` settings. Filings shade every other row of a statement: each shaded band is a
#: ruled box of its own, so vertical rules are joined across the unshaded row between two bands
#: (about one row high) to find the statement as one table instead of one table per shaded row
TABLE_SETTINGS = {"join_y_tolerance": 12, "text_x_tolerance_ratio": X_TOLERANCE_RATIO}


def check_ready() -> None:
    """Nothing beyond the package itself (checked by :func:`~pdfqa.pdf.reader.require_reader`)."""


def read(path: Path, max_pages: int, password: str | None, table_settings: dict | None = None):
    """(pages, outline, title) of ``path`` (see :func:`pdfqa.pdf.read_pdf`); ``table_settings``
    replaces :data:`TABLE_SETTINGS` (``{}`` is pdfplumber's stock table finder)."""
    import pdfplumber

    pages, outline, title = pdfium_skeleton(path, max_pages, password)
    logging.getLogger("pdfminer").setLevel(logging.ERROR)  # a warning per odd content-stream operator
    settings = TABLE_SETTINGS if table_settings is None else table_settings
    try:
        pdf = pdfplumber.open(str(path), password=password or "")
    except Exception as e:  # pdfminer raises its own types for what pdfium opened
        raise PdfReadError(path, f"pdfplumber cannot open it ({type(e).__name__}: {str(e)[:160]})") from e
    with pdf:
        for page, pp in zip(pages, pdf.pages):
            _fill(page, pp, settings)
    return pages, outline, title


def _fill(page: Page, pp, settings: dict) -> None:
    visible = pp.filter(lambda o: o.get("object_type") != "char" or o.get("size", 0) >= MIN_VISIBLE_PT)
    lines = []
    for ln in visible.extract_text_lines(return_chars=True, x_tolerance_ratio=X_TOLERANCE_RATIO):
        text = clean_line(ln["text"])
        if not text or _ARTIFACT.match(text):
            continue
        chars = [c for c in ln["chars"] if not c["text"].isspace()] or ln["chars"]
        bold = sum(bool(_BOLD_FONT.search(c.get("fontname", ""))) for c in chars) * 2 > len(chars)
        lines.append(Line(text=text, size=round(statistics.median(c["size"] for c in chars), 1), bold=bold,
                          x0=ln["x0"], y0=ln["top"], x1=ln["x1"], y1=ln["bottom"]))
    page.lines = lines
    page.width, page.height = float(pp.width), float(pp.height)
    for t in visible.find_tables(settings):
        spans = [(r.bbox[1], r.bbox[3]) for r in t.rows]
        region = table_region(t.extract(x_tolerance_ratio=X_TOLERANCE_RATIO), t.bbox, spans)
        if region is not None:
            page.tables.append(take_header_above(region, lines))
