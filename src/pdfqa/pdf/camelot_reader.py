"""The ``camelot`` reader: the default reader's lines (pdfium) and camelot's tables, which reach the
chunker as :attr:`~pdfqa.documents.Page.tables`. Needs ``pip install 'pdfqa[camelot]'``.

Camelot has two table finders: ``lattice`` (ruled tables, found on a rendering of the page: the DOT
report's KPI grids, the 表 of the Japanese papers) and ``stream`` (columns of aligned text: the
unruled statements of 10-K filings). Every page goes to ``lattice``; pages where it finds nothing go
to ``stream``, whose finds are kept only when two or more rows pair a label with figures (on a page
of prose it reports the paragraphs as a table of one or two columns).

>>> from pdfqa.pdf import read_pdf
>>> page = read_pdf("examples/cio_dp2020_03_zero_trust.pdf", reader="camelot").pages[2]  # doctest: +SKIP
>>> page.tables[0].rows[0]                                                               # doctest: +SKIP
['用語', '意味']
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

from ..chunking import _numeric_flags
from ..documents import TableRegion
from .reader import _pdfium_open, _read_pdfium
from .tables import table_region, take_header_above


def check_ready() -> None:
    """Nothing beyond the package itself (checked by :func:`~pdfqa.pdf.reader.require_reader`)."""


def read(path: Path, max_pages: int, password: str | None):
    """(pages, outline, title) of ``path`` (see :func:`pdfqa.pdf.read_pdf`)."""
    import camelot

    pages, outline, title = _read_pdfium(path, max_pages, password)
    rotated = _rotated_pages(path, password)
    for logger in ("camelot", "pdfminer", "playa"):  # a warning per odd content-stream operator
        logging.getLogger(logger).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No tables found on page-N" for every page without one
        found = _regions(camelot.read_pdf(str(path), pages="all", flavor="lattice", password=password,
                                          suppress_stdout=True), pages)
        rest = [p.number for p in pages if p.number not in found and p.lines and p.number not in rotated]
        if rest:
            stream = _regions(camelot.read_pdf(str(path), pages=",".join(map(str, rest)), flavor="stream",
                                               password=password, suppress_stdout=True), pages)
            for n, regions in stream.items():
                found[n] = [r for r in regions if _figure_rows(r) >= 2]
    for page in pages:
        if page.number in rotated:
            continue  # camelot's boxes are in the unrotated page's space
        page.tables = [take_header_above(r, page.lines) for r in found.get(page.number, [])]
    return pages, outline, title


def _regions(tables, pages) -> dict[int, list[TableRegion]]:
    out: dict[int, list[TableRegion]] = {}
    for t in tables:
        n = int(t.page)
        page = pages[n - 1]
        # cols: (x0, x1) per column; rows: (top, bottom) per row, PDF space (y up from the bottom)
        box = (t.cols[0][0], page.height - t.rows[0][0], t.cols[-1][1], page.height - t.rows[-1][1])
        spans = [(page.height - top, page.height - bottom) for top, bottom in t.rows]
        region = table_region(t.df.values.tolist(), box, spans)
        if region is not None:
            out.setdefault(n, []).append(region)
    return out


def _figure_rows(region: TableRegion) -> int:
    """Rows that pair a label (a cell with letters) with figures."""
    return sum(any(any(ch.isalpha() for ch in c) for c in row) and any(any(_numeric_flags(c)) for c in row if c)
               for row in region.rows)


def _rotated_pages(path: Path, password: str | None) -> set[int]:
    pdf = _pdfium_open(path, password)
    try:
        return {i + 1 for i in range(len(pdf)) if pdf[i].get_rotation() % 360}
    finally:
        pdf.close()
