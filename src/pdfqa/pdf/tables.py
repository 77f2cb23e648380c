"""A table finder's cells → a :class:`~pdfqa.documents.TableRegion` the chunker can use.

Shared by the readers that find tables (``pdfplumber``, ``camelot``): cells are cleaned the way
pdfqa cleans lines (wrapped cell text joined, Japanese without spaces), a currency sign alone in
its cell joins the figure after it, empty rows and columns go, and the header rows are the leading
rows without figures (years and dates are header words), decided by the chunker's own rule. Table
finders that draw a table's box from its ruling leave out a column header set above the first rule
("(Millions) 2018 2017 2016" over a filing's shaded rows): :func:`take_header_above` adds it back.

>>> t = table_region([["", "", "2018", "", "2017"], ["Net sales", "$", "32,765", "$", "31,657"]], (0, 0, 9, 9))
>>> t.rows, t.header_rows
([['', '2018', '2017'], ['Net sales', '$ 32,765', '$ 31,657']], 1)
"""
from __future__ import annotations

from ..chunking import _has_years, _is_header_row, _numeric_flags
from ..documents import Line, TableRegion
from ..text import join_lines
from .reader import clean_line

_CURRENCY = {"$", "€", "£", "¥", "￥", "US$"}
#: more leading header rows than this are rows of the table's body
MAX_HEADER_ROWS = 4


def table_region(rows: list[list[str | None]], box: tuple[float, float, float, float],
                 row_spans: list[tuple[float, float]] | None = None) -> TableRegion | None:
    """Clean ``rows`` (cells may be ``None`` or hold line breaks) into a region with box ``box``
    (visual coordinates: x0, top, x1, bottom); ``None`` when what is left is not a table (fewer
    than two rows, or fewer than two columns that hold text).

    With ``row_spans`` (each row's top and bottom), title lines the finder took in above the column
    header ("Item 6. Selected Financial Data.") are left out of the region, so the chunker reads
    them as the heading or caption they are.
    """
    cells = [[clean_line(join_lines((c or "").split("\n"))) for c in row] for row in rows]
    if row_spans is not None:
        texts = [" ".join(c for c in row if c) for row in cells]
        first = next((i for i, t in enumerate(texts[:MAX_HEADER_ROWS + 1]) if _is_header_row(t) and _has_years(t)), 0)
        if first and all(sum(bool(c) for c in row) <= 1 for row in cells[:first]):
            cells = cells[first:]
            box = (box[0], row_spans[first][0], box[2], box[3])
    for row in cells:
        for j, c in enumerate(row):
            nxt = next((k for k in range(j + 1, len(row)) if row[k]), None)
            if c in _CURRENCY and nxt is not None:
                # "$" | "32,765" → "$ 32,765": the sign belongs to the figure (its column then empties)
                row[nxt], row[j] = f"{c} {row[nxt]}", ""
    merged = []
    for row in cells:
        prev = merged[-1] if merged else None
        if (prev is not None and row and row[0][:1].islower() and any(row[1:])
                and prev[0] and not any(prev[1:])):
            # a row label wrapped over two rows ("Long-term debt (excluding ...) and long-term" /
            # "capital lease obligations | 13,486"): one row, so the label keeps its figures
            merged[-1] = [f"{prev[0]} {row[0]}", *row[1:]]
            continue
        merged.append(row)
    width = max((len(r) for r in merged), default=0)
    merged = [r + [""] * (width - len(r)) for r in merged]
    keep = [j for j in range(width) if any(r[j] for r in merged)]
    table = [[r[j] for j in keep] for r in merged if any(r[j] for j in keep)]
    if len(table) < 2 or len(keep) < 2:
        return None
    return TableRegion(*box, rows=table, header_rows=header_row_count(table))


def header_row_count(rows: list[list[str]]) -> int:
    """Leading rows without figures, as the chunker counts them: after a row of years or dates, a
    label row ("Assets", "Cash Flows from Operating Activities") opens the body. A table with no
    figures at all (a glossary, a KPI grid of words) is headed by its first row."""
    texts = [" ".join(c for c in r if c) for r in rows]
    if not any(any(_numeric_flags(t)) and not _is_header_row(t) for t in texts):
        return 1
    n, dated = 0, False
    while (n < min(MAX_HEADER_ROWS, len(rows) - 1) and _is_header_row(texts[n])
           and not (dated and not _has_years(texts[n]))):
        dated = dated or _has_years(texts[n])
        n += 1
    first = [c for c in rows[0] if c]
    if n == 0 and len(first) >= 2 and all(any(ch.isalpha() for ch in c) for c in first):
        return 1  # column names that hold numbers ("Number per 100 Million VMT") still name columns
    return n


def take_header_above(region: TableRegion, lines: list[Line]) -> TableRegion:
    """``region`` grown upwards over the dated header lines right above it ("December 31, 2018",
    "(Millions) 2018 2017 2016"), each a row of one cell; its header rows are counted again."""
    above = sorted((ln for ln in lines if ln.y1 <= region.y0 + 1 and ln.x1 > region.x0 and ln.x0 < region.x1),
                   key=lambda ln: -ln.y1)
    taken: list[Line] = []
    top = region.y0
    for ln in above:
        height = max(ln.y1 - ln.y0, 1.0)
        if top - ln.y1 > 1.6 * height or len(taken) >= MAX_HEADER_ROWS:
            break
        if not (_is_header_row(ln.text) and _has_years(ln.text)):
            break
        taken.insert(0, ln)
        top = ln.y0
    if not taken:
        return region
    rows = [[ln.text] for ln in taken] + region.rows
    return TableRegion(region.x0, min(region.y0, top), region.x1, region.y1, rows=rows,
                       header_rows=header_row_count(rows))
