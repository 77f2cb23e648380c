"""Split a read PDF into semantic blocks, then pack blocks into token-bounded chunks.

Structure comes from the document itself: headings (font size and weight, numbering, the PDF
outline), paragraphs (vertical gaps, indents, size changes), list items, tables (runs of numeric
rows) and, for slide decks, one slide per page. Repeated headers/footers and page numbers are
dropped. Long blocks are split at sentence boundaries (``。！？`` and English), small neighbours
merged, and no chunk exceeds ``max_tokens`` in the embedder's own tokens.

>>> from pdfqa.pdf import read_pdf
>>> from pdfqa.chunking import chunk_document
>>> chunks = chunk_document(read_pdf("examples/cio_dp2020_03_zero_trust.pdf"))   # doctest: +SKIP
>>> chunks[3].heading_path, chunks[3].pages, chunks[3].kinds                      # doctest: +SKIP
(['2 ゼロトラストとは'], [4], ['paragraph'])
"""
from __future__ import annotations

import hashlib
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable

from .documents import DEFAULT_CONTEXT, Block, Chunk, Line, Page, PdfContent, chunk_context
from .text import join_lines, split_sentences

TokenCounter = Callable[[str], int]

#: bumped whenever a change to reading or chunking changes the chunks of a PDF: documents indexed
#: with an older version are re-chunked by the next ``index`` (see Collection.index), never mixed
#: 1: heading paths and numeric rows; 3: tables as blocks with caption and header, document titles,
#: filing sections (PART/Item), bold by font name, hidden text dropped, letter-spaced words rejoined (2-3: development only);
#: 4: words split by the layout healed; 5: period column headers ("Years Ended December 31,", "2020 2019") open the table instead of replacing the statement title
CHUNKING_VERSION = 5

DEFAULT_MAX_TOKENS = 256
DEFAULT_MIN_TOKENS = 48


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate (used only when no embedder is given): CJK chars + words × 1.3."""
    cjk = sum(1 for c in text if "\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef")
    words = len(re.findall(r"[^\s\u3000-\u9fff\uff00-\uffef]+", text))
    return int(cjk + words * 1.3) + 2


# ------------------------------------------------------------------ headers and footers

_PAGE_NUMBER = re.compile(
    r"^(?:page\s*)?[-–—(]?\s*[0-9ivxlc]+\s*[-–—)]?(?:\s*(?:/|of|／)\s*\d+)?$|^\d+\s*ページ$|^[-–—]\s*\d+\s*[-–—]$",
    re.IGNORECASE,
)


#: a table-of-contents entry: a title, dot leaders, a page number ("2.1 Scope ........ 3")
_TOC_ENTRY = re.compile(r"(?:(?:\.\s?){4,}|[…‥・·]{3,})\s*(?:\d{1,4}|[ivxlcIVXLC]{1,6})$")


def _norm(text: str) -> str:
    return re.sub(r"\d+", "#", "".join(text.lower().split()))


def remove_page_furniture(pages: list[Page]) -> list[Page]:
    """Drop running headers/footers, page numbers and table-of-contents entries (in place); returns ``pages``.

    A line is furniture when the same text (digits ignored) sits at the same height on at least
    half of the pages (and 3 or more), or when it is a bare page number at the top or bottom.
    """
    usable = [p for p in pages if not p.skip_reason and p.lines]
    counts: Counter[tuple[str, int]] = Counter()
    for p in usable:
        counts.update({(_norm(ln.text), round(ln.y0 / 8)) for ln in p.lines})
    threshold = max(3, (len(usable) + 1) // 2)
    for p in usable:
        keep = []
        ordered = sorted(p.lines, key=lambda ln: ln.y0)
        edge = {id(ln) for ln in ordered[:2] + ordered[-2:]}
        for ln in p.lines:
            if _TOC_ENTRY.search(ln.text.strip()):
                continue  # contents pages point at the text; indexing them only adds near-duplicates
            key = (_norm(ln.text), round(ln.y0 / 8))
            near = max(counts.get((key[0], key[1] + d), 0) for d in (-1, 0, 1))
            if len(usable) >= 4 and near >= threshold:
                continue
            if id(ln) in edge and _PAGE_NUMBER.match(ln.text.strip()):
                continue
            keep.append(ln)
        p.lines = keep
    return pages


# ------------------------------------------------------------------ blocks

_BULLET = re.compile(r"^(?:[•·∙◦▪▫●○■□◆◇▶▷►➢➤✓✔※★☆＊*\-–—・]\s*|\(?\d{1,2}[.)）]\s+|[（(]\d{1,2}[)）]\s*|[①-⑳]\s*|[a-zA-Z][.)]\s+)")
_NUMBERED_HEADING = re.compile(r"^(?:第[0-9０-９一二三四五六七八九十]+[章節]|(\d+(?:\.\d+)*)\.?)\s*\S")
#: the parts of a filing or report: "PART II" (level 1), "Item 7." / "ITEM 1A." (level 2)
_PART_HEADING = re.compile(r"^PART\s+[IVX]+\b", re.IGNORECASE)
_ITEM_HEADING = re.compile(r"^ITEM\s+\d{1,2}[A-C]?\s*[.:]?(?=\s|$)", re.IGNORECASE)
#: a table or figure title ("表 1-1 用語の定義", "Table 3. Fatalities", "図 ３-1 ...")
_CAPTION = re.compile(r"^(?:[表図]\s*[0-9０-９一二三四五六七八九十]|(?:Table|Exhibit|Figure)\s+[0-9A-Z]+[.:\s])")
_NUMERIC_TOKEN = re.compile(r"^[($€¥£-]*[\d０-９][\d０-９,，.．]*%?\)?[%％]?$|^[-—–]$|^\(?[\d,.]+\)?(?:[億万千]?円|[%％])$")
_SENT_END = re.compile(r"[。．.!?！？:：)）」』]$")
_PROSE_END = re.compile(r"[。．.!?！？]$")
_PERIODISH = re.compile(r"\b(?:ended|months|quarter|fiscal)\b|年度|四半期|[0-9０-９]+年", re.IGNORECASE)
_MONTH = re.compile(r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)\b"
                    r"|[0-9０-９]+月", re.IGNORECASE)
_YEARISH = re.compile(r"^\(?(?:19|20)\d\d\*?\)?$|^(?:Q[1-4]|FY\d{2,4})$")
_TOC_ITEM = re.compile(r"^(?:PART\s+[IVX]+\b|ITEM\s+\d{1,2}[A-C]?\b).*\s\d{1,3}$", re.IGNORECASE)


def _numeric_flags(text: str) -> list[bool]:
    """Per whitespace token: is it a number (``$``/``¥`` signs alone are skipped)."""
    return [bool(_NUMERIC_TOKEN.match(t)) for t in text.split() if t not in ("$", "¥", "€", "£")]


def _is_tabular(text: str) -> bool:
    """A table row: mostly numbers, or a label followed by two or more numbers (``Net sales $ 32,765 $ 31,657``)."""
    flags = _numeric_flags(text)
    if len(flags) < 3:
        return False
    num = sum(flags)
    if num >= 2 and num / len(flags) >= 0.4:
        return True
    return len(flags) >= 4 and flags[-1] and flags[-2] and not _PROSE_END.search(text)


def _is_row(text: str) -> bool:
    """A line of a table: a row of figures, or a row of years alone ("2020 2019"), which is the table's
    column header (the table starts there, under the statement's title)."""
    words = text.split()
    return _is_tabular(text) or (len(words) >= 2 and all(_YEARISH.match(t) for t in words))


def _is_label(text: str, limit: int = 90) -> bool:
    """A short line that names rows or columns rather than saying something ("At December 31:",
    "Cash Flows from Operating Activities", "(Millions) 2018 2017 2016")."""
    return 0 < len(text) <= limit and not (text.endswith((".", "。", "!", "?", "！", "？")) and len(text.split()) > 6)


def _has_years(text: str) -> bool:
    """Years, months or periods: what column headers of reports are made of ("Years ended December 31:")."""
    return any(_YEARISH.match(t) for t in text.split()) or bool(_MONTH.search(text) or _PERIODISH.search(text))


def _is_header_row(text: str) -> bool:
    """A column header row: labels and years, no figures ("(Millions) 2018 2017 2016", "Years ended December 31:")."""
    toks = [t for t in text.split() if t not in ("$", "¥", "€", "£", "|")]
    nums = [t for t in toks if _NUMERIC_TOKEN.match(t) or _YEARISH.match(t)]
    dated = bool(_MONTH.search(text))  # "December 31, 2018": the day is a header word, not a figure
    return all(_YEARISH.match(t) or (dated and re.fullmatch(r"\d{1,2},?", t)) for t in nums) and (
        bool(nums) or (_is_label(text) and not _PROSE_END.search(text)))


#: the words of a period column header ("Years Ended December 31,", "Three Months Ended", "At December 31:")
_PERIOD_WORDS = re.compile(r"(?:years?|months?|weeks?|quarters?|fiscal|ended|ending|as|at|of|for|the|and|three|six|"
                           r"nine|twelve|fifty-two|fifty-three|\d{1,2}|(?:19|20)\d\d)", re.IGNORECASE)


def _is_period_header(text: str) -> bool:
    """A column header that only names periods ("Years Ended December 31,", "December 31,"): the head of
    the table below it, never a section heading (which would replace the statement's title)."""
    words = [w.strip(",.:;()*") for w in text.split()]
    return bool(_MONTH.search(text) or _PERIODISH.search(text)) and all(
        not w or _MONTH.fullmatch(w) or _PERIOD_WORDS.fullmatch(w) for w in words)


def is_slide_deck(pages: list[Page]) -> bool:
    """Landscape pages, short texts: a presentation (one block per slide)."""
    usable = [p for p in pages if p.lines]
    if len(usable) < 2:
        return False
    landscape = sum(1 for p in usable if p.width > p.height * 1.15)
    chars = statistics.median(len(p.text) for p in usable)
    return landscape / len(usable) >= 0.8 and chars < 1500


@dataclass
class _Style:
    body: float
    heading_sizes: list[float]  # distinct heading sizes, largest first


def _document_style(pages: list[Page]) -> _Style:
    weights: Counter[float] = Counter()
    for p in pages:
        for ln in p.lines:
            weights[round(ln.size * 2) / 2] += len(ln.text)
    body = weights.most_common(1)[0][0] if weights else 0.0
    sizes = sorted({round(ln.size * 2) / 2 for p in pages for ln in p.lines
                    if body and ln.size >= body * 1.15 and len(ln.text) <= 150}, reverse=True)
    return _Style(body=body, heading_sizes=sizes[:4])


def _heading_level(line: Line, style: _Style, outline_level: int | None) -> int | None:
    """Heading level (1 = top) or ``None`` for body text."""
    text = line.text.strip()
    if outline_level:
        return outline_level + 2
    if len(text) > 120 or _PAGE_NUMBER.match(text) or not any(c.isalpha() for c in text):
        return None
    big = style.body > 0 and line.size >= style.body * 1.15
    strong = big or (line.bold and style.body > 0 and line.size >= style.body * 0.95)
    # filings: "PART II" and "Item 7." open their parts whether or not the font says so
    if _PART_HEADING.match(text) and (strong or len(text) <= 60):
        return 1
    if _ITEM_HEADING.match(text) and (strong or len(text) <= 100) and not _is_tabular(text):
        return 2
    if _SENT_END.search(text) and not text.endswith(")"):
        # a bold run-in title ends with a period ("Selected Financial Data."); a sentence has more words
        if not (line.bold and text.endswith(".") and len(text.split()) <= 8 and text.count(". ") == 0):
            return None
    if not strong or _is_tabular(text) or _is_period_header(text):
        return None
    # levels 1 and 2 belong to PART and Item: every other heading sits below them
    numbered = _NUMBERED_HEADING.match(text)
    if numbered and numbered.group(1):
        return min(numbered.group(1).count(".") + 1, 6) + 2
    if big:
        size = round(line.size * 2) / 2
        ranks = [s for s in style.heading_sizes if s >= size]
        return max(1, len(ranks)) + 2
    return len(style.heading_sizes) + 3


def _outline_lookup(content: PdfContent) -> dict[tuple[int, str], int]:
    return {(page, _norm(title)): level for level, title, page in content.outline}


def _join_wrapped_labels(lines: list[Line]) -> list[Line]:
    """A table row whose label wraps ("Long-term debt (excluding ...) and long-term" / "capital lease
    obligations 13,486 12,156") becomes one line, so a row label never leaves its numbers."""
    out: list[Line] = []
    for ln in lines:
        if out:
            p = out[-1]
            t = ln.text.strip()
            if (t[:1].islower() and _is_tabular(t) and not _numeric_flags(p.text)[-1:] == [True]
                    and not _SENT_END.search(p.text.strip()) and ln.x0 >= p.x0 - 1 and 0 <= ln.y0 - p.y1 < (p.y1 - p.y0)):
                out[-1] = Line(text=f"{p.text} {t}", size=p.size, bold=p.bold, x0=p.x0, y0=p.y0, x1=max(p.x1, ln.x1), y1=ln.y1)
                continue
        out.append(ln)
    return out


def _join_cells(lines: list[Line], width: float) -> list[Line]:
    """Grid tables whose cells come in column order (pdfium follows the content stream): short
    fragments on the same visual row, left to right, become one row (``Target | Target Met | 50``).
    Long lines (prose, two-column text) are never joined."""
    short = [ln for ln in lines if (ln.x1 - ln.x0) < 0.4 * width]
    if len(short) < 6:
        return lines
    rows: list[list[Line]] = []
    placed: set[int] = set()
    for i, ln in enumerate(lines):
        if i in placed or (ln.x1 - ln.x0) >= 0.4 * width:
            continue
        row = [ln]
        for j in range(i + 1, min(len(lines), i + 40)):
            o = lines[j]
            if j in placed or (o.x1 - o.x0) >= 0.4 * width:
                continue
            overlap = min(ln.y1, o.y1) - max(ln.y0, o.y0)
            if overlap > 0.6 * min(ln.y1 - ln.y0, o.y1 - o.y0) and all(o.x0 >= r.x1 - 1 or o.x1 <= r.x0 + 1 for r in row):
                row.append(o)
                placed.add(j)
        # only rows of values (two or more cells with figures or dates): wrapped text cells stay in
        # the order of their lines, which keeps each cell's words together
        if len(row) >= 2 and sum(any(ch.isdigit() for ch in r.text) for r in row) >= 2:
            placed.add(i)
            rows.append(row)
        else:
            for r in row[1:]:
                placed.discard(lines.index(r))
    if not rows:
        return lines
    joined: dict[int, Line] = {}
    for row in rows:
        row.sort(key=lambda r: r.x0)
        first = min(row, key=lambda r: lines.index(r))
        joined[id(first)] = Line(text=" | ".join(r.text for r in row), size=max(r.size for r in row),
                                 bold=all(r.bold for r in row), x0=row[0].x0, y0=min(r.y0 for r in row),
                                 x1=row[-1].x1, y1=max(r.y1 for r in row))
    members = {id(r) for row in rows for r in row}
    out = []
    for ln in lines:
        if id(ln) in joined:
            out.append(joined[id(ln)])
        elif id(ln) not in members:
            out.append(ln)
    # cells of one row appear where the row's first cell was: keep the page's top-to-bottom order
    # among joined rows and the lines between them
    return out


def _in_region(line: Line, t) -> bool:
    cx, cy = (line.x0 + line.x1) / 2, (line.y0 + line.y1) / 2
    return t.x0 - 1 <= cx <= t.x1 + 1 and t.y0 - 1 <= cy <= t.y1 + 1


_SPLIT_TAIL = re.compile(r"\b([A-Za-z]{2,}) ([a-z])\b")
_SPLIT_APOSTROPHE = re.compile(r"(\w)([’']) s\b")


def heal_split_words(pages: list[Page]) -> list[Page]:
    """Rejoin words a PDF generator's letter spacing split ("Balance Shee t", "Registrant’ s"), in place.

    A trailing single letter is joined when the joined word occurs elsewhere in the document and the
    fragment is not itself a common word there (so "is a" stays, "Shee t" becomes "Sheet").
    """
    counts: Counter[str] = Counter(w.lower() for p in pages for ln in p.lines for w in re.findall(r"[A-Za-z]+", ln.text))

    def join(m: re.Match) -> str:
        whole = (m.group(1) + m.group(2)).lower()
        if counts[whole] >= 2 and counts[whole] * 4 > counts[m.group(1).lower()]:
            return m.group(1) + m.group(2)
        return m.group(0)

    for p in pages:
        for ln in p.lines:
            if " " in ln.text:
                ln.text = _SPLIT_APOSTROPHE.sub(r"\1\2s", _SPLIT_TAIL.sub(join, ln.text))
    return pages


def document_title(content: PdfContent) -> str:
    """The document's title, for context: a filing's cover (registrant, form, period), the PDF's own
    /Title when it is real, the first page's largest text, else the file name.

    >>> from pdfqa.documents import PdfContent, Page, Line
    >>> document_title(PdfContent("x.pdf", "annual_report_2018.pdf", "h", [Page(1, None, 612, 792)]))
    'annual_report_2018'
    """
    first = next((p for p in content.pages if p.lines and not p.skip_reason), None)
    stem = content.doc.rsplit(".", 1)[0]
    if first is not None:
        cover = _filing_cover(first, stem)
        if cover:
            return cover
    if content.metadata_title and not re.fullmatch(r"[\w.\-]+", content.metadata_title):
        return content.metadata_title
    if first is not None and first.lines:
        sizes = [ln.size for ln in first.lines if any(c.isalpha() for c in ln.text)]
        if sizes and max(sizes) > 0:
            top = max(sizes)
            body = statistics.median(sizes)
            if top >= body * 1.2:
                parts = [ln.text.strip() for ln in first.lines if ln.size >= top - 0.5 and any(c.isalpha() for c in ln.text)]
                title = join_lines(parts[:3])
                if 3 <= len(title) <= 200:
                    return title
    return stem


_REGISTRANT = re.compile(r"exact name of registrant", re.IGNORECASE)
_SEC_COVER = re.compile(r"securities and exchange commission", re.IGNORECASE)
_FILE_NO = re.compile(r"commission\s+file|file\s+number|^\(?mark one", re.IGNORECASE)
_FORM = re.compile(r"^FORM\s+(10-K|10-Q|20-F|8-K|40-F|S-1)\b", re.IGNORECASE)
_PERIOD = re.compile(r"for the (fiscal year|quarterly period|year) ended\s*(.*)", re.IGNORECASE)


def _filing_cover(page: Page, stem: str = "") -> str:
    """"<registrant>, Form 10-K, fiscal year ended <date>" from an SEC filing's cover page, or ''.
    The registrant is the line above "(Exact name of registrant ...)", else the one below the
    commission file number; covers whose name is a logo give the form and period only."""
    # form rules ("_____") glue neighbouring fields into one line: split them off
    lines = [part.strip() for ln in page.lines for part in re.split(r"_{4,}", ln.text) if part.strip()]
    if not any(_SEC_COVER.search(t) for t in lines[:8]):
        return ""
    idx = next((i for i, t in enumerate(lines) if _REGISTRANT.search(t)), None)
    name = ""
    if idx is not None and idx > 0 and not _FILE_NO.search(lines[idx - 1]) and any(c.isalpha() for c in lines[idx - 1]):
        name = lines[idx - 1]
    if not name:
        f = next((i for i, t in enumerate(lines[:30]) if _FILE_NO.search(t) and "mark one" not in t.lower()), None)
        nxt = lines[f + 1] if f is not None and f + 1 < len(lines) else ""
        if nxt and not nxt.startswith("(") and any(c.isalpha() for c in nxt) and len(nxt) <= 80:
            name = nxt
    form = next((m.group(1).upper() for t in lines[:15] for m in [_FORM.match(t)] if m), "")
    period = ""
    for i, t in enumerate(lines[:25]):
        m = _PERIOD.search(t)
        if m:
            date = re.sub(r"[\s,]*(commission file.*|or)?$", "", m.group(2), flags=re.IGNORECASE).strip(" ,")
            if not re.search(r"\d{4}", date) and i + 1 < len(lines):
                date = re.sub(r"\s*(number.*)$", "", lines[i + 1]).strip()
            period = f"{m.group(1).lower()} ended {date}".strip()
            break
    parts = [name or stem, f"Form {form}" if form else "", period]
    return ", ".join(p for p in parts if p) if name or form else ""


def build_blocks(content: PdfContent, *, slides: bool | None = None) -> list[Block]:
    """The document's semantic blocks in reading order, furniture removed, with heading paths.

    Tables become one block per page with their ``caption`` (the title above them) and ``header``
    (column header rows); a table continued on the next page carries both again.
    """
    pages = [p for p in content.pages if not p.skip_reason]
    heal_split_words(content.pages)
    remove_page_furniture(pages)
    if slides is None:
        slides = is_slide_deck(content.pages)
    style = _document_style(pages)
    outline = _outline_lookup(content)
    blocks: list[Block] = []
    heading_stack: list[tuple[int, str, int]] = []  # (level, text, page)
    offset = 0  # character offset of the page in the document's extracted text (pages joined by \f)
    page_offsets = {}
    for p in content.pages:
        page_offsets[p.number] = offset
        offset += len(p.text) + 1
    cover_page = pages[0].number if len(pages) >= 3 and not slides else None
    for page in pages:
        if slides:
            block = _slide_block(page, style)
            if block:
                start = page_offsets[page.number]
                block.char_start, block.char_end = start, start + len(page.text)
                blocks.append(block)
            continue
        page_blocks = _page_blocks(page, style, outline, heading_stack, page_offsets[page.number], cover_page, blocks)
        blocks.extend(page_blocks)
    return _join_across_pages(blocks)


def _page_blocks(page: Page, style: _Style, outline: dict, heading_stack: list, base: int,
                 cover_page: int | None, previous: list[Block]) -> list[Block]:
    """Blocks of one page; ``heading_stack`` carries the open sections from page to page."""
    blocks: list[Block] = []
    lines = _join_cells(_join_wrapped_labels(page.lines), page.width)
    regions = {}  # a reader's tables: the first line inside each stands for the whole table
    for t in page.tables:
        inside = [ln for ln in lines if _in_region(ln, t)]
        if inside:
            regions[id(inside[0])] = t
            skip = {id(ln) for ln in inside[1:]}
            lines = [ln for ln in lines if id(ln) not in skip]
    cursor = 0
    cur: dict | None = None
    prev: Line | None = None
    prev_heading = False
    gaps = [b.y0 - a.y1 for a, b in zip(lines, lines[1:]) if b.y0 > a.y1]
    usual_gap = statistics.median(gaps) if gaps else 4.0
    left = min((ln.x0 for ln in lines), default=0.0)
    path = lambda: [t for _, t, _ in heading_stack]  # noqa: E731

    def make(kind: str, texts: list[str], start: int, end: int, **extra) -> Block:
        text = join_lines(texts) if kind != "table" else "\n".join(texts)
        return Block(kind=kind, text=text, pages=[page.number], heading_path=path(),
                     char_start=base + start, char_end=base + end, **extra)

    carried: dict | None = None  # column headers with no figures under them yet (see flush)

    def emit_carried():
        nonlocal carried
        if carried:  # no table came under the header: it stays as text
            blocks.append(make("paragraph", carried["header"], carried["start"], carried["start"]))
        carried = None

    def flush():
        nonlocal cur, carried
        if cur and cur["lines"]:
            if cur["kind"] == "table" and not any(_is_tabular(r) and not _is_header_row(r) for r in cur["lines"]):
                # a header alone ("April 30, January 29," / "2023 2023"), a gap, then the rows: it heads
                # the next table instead of standing as a table of its own
                emit_carried()
                carried = {"caption": cur["caption"], "header": list(cur["header"]) + cur["lines"], "start": cur["start"]}
                cur = None
                return
            if cur["kind"] != "table":
                emit_carried()
            if cur["kind"] == "table":
                # label lines after the last row belong to what follows, not to the table
                rows = cur["lines"]
                last = max((i for i, r in enumerate(rows) if _is_row(r)), default=len(rows) - 1)
                tail = rows[last + 1:]
                rows = rows[:last + 1]
                header = list(cur["header"])
                dated = any(_has_years(h) for h in header)
                # column headers: the label and year rows above the first figures; after a row of
                # years, a label row ("Cash Flows from Operating Activities") is the body's first row
                while len(rows) > 1 and len(header) < 5 and _is_header_row(rows[0]) and not (dated and not _has_years(rows[0])):
                    dated = dated or _has_years(rows[0])
                    header.append(rows.pop(0))
                blocks.append(make("table", rows, cur["start"], cursor, caption=cur["caption"], header=header))
                if tail:
                    blocks.append(make("paragraph", tail, cursor, cursor))
            else:
                blocks.append(make(cur["kind"], cur["lines"], cur["start"], cursor))
        cur = None

    def table_context() -> tuple[str, list[str]]:
        """(caption, header) for a table starting now: header rows are the label lines just above
        the first row (taken out of the paragraph being built); the caption is the heading or
        "表 1" / "Table 1" title right above them."""
        header: list[str] = []
        if cur and cur["kind"] == "paragraph":
            taken = 0
            while cur["lines"] and taken < 8 and _is_label(cur["lines"][-1], 320) and not _PROSE_END.search(cur["lines"][-1]):
                header.insert(0, cur["lines"].pop())
                taken += 1
            if cur["lines"] and _CAPTION.match(cur["lines"][-1]):
                header.insert(0, cur["lines"].pop())
        caption = ""
        if header and _CAPTION.match(header[0]):
            caption = header.pop(0)
        elif blocks and blocks[-1].kind == "heading":
            caption = blocks[-1].text
        elif not blocks and heading_stack and heading_stack[-1][2] == page.number:
            caption = heading_stack[-1][1]
        nonlocal carried
        if carried:
            caption, header = carried["caption"] or caption, carried["header"] + header
            carried = None
        return caption, header

    for line in lines:
        text = line.text.strip()
        if id(line) in regions:
            t = regions[id(line)]
            caption, header = table_context()
            flush()
            rows = [" | ".join(c for c in row if c) for row in t.rows]
            header += [r for r in rows[:t.header_rows] if r]
            body = [r for r in rows[t.header_rows:] if r] or header[-1:]
            pos = page.text.find(line.text, cursor)
            start = pos if pos >= 0 else cursor
            blocks.append(make("table", body, start, start + len(line.text), caption=caption, header=header))
            cursor = start + len(line.text)
            prev, prev_heading = line, False
            continue
        if _TOC_ITEM.match(text):
            continue  # a filing's table of contents ("Item 7. Management's Discussion ... 24")
        pos = page.text.find(line.text, cursor)
        start = pos if pos >= 0 else cursor
        level = _heading_level(line, style, outline.get((page.number, _norm(text))))
        if level is not None and cur is not None and cur["kind"] == "table" and not _ITEM_HEADING.match(text) \
                and not _PART_HEADING.match(text) and line.size < style.body * 1.15 and len(text) < 60:
            level = None  # a bold subtotal label inside a table is a row, not a section
        if level is not None:
            flush()
            emit_carried()
            last = blocks[-1] if blocks else None
            # a heading wrapped over two lines (same style, no gap) extends the previous one
            if (last is not None and last.kind == "heading" and prev is not None and prev_heading
                    and abs(prev.size - line.size) < 0.6
                    and line.y0 - prev.y1 < max(usual_gap * 1.6, (line.y1 - line.y0) * 0.8)
                    and not _ITEM_HEADING.match(text) and not _PART_HEADING.match(text)):
                last.text = join_lines([last.text, text])
                last.char_end = base + start + len(text)
                heading_stack[-1] = (heading_stack[-1][0], last.text, page.number)
            else:
                if cover_page is not None and page.number != cover_page:
                    # the cover's big type names the document (see document_title), not a section
                    heading_stack[:] = [h for h in heading_stack if h[2] != cover_page]
                while heading_stack and heading_stack[-1][0] >= level:
                    heading_stack.pop()
                blocks.append(Block(kind="heading", text=text, pages=[page.number], heading_path=path(),
                                    level=level, char_start=base + start, char_end=base + start + len(text)))
                heading_stack.append((level, text, page.number))
            cursor = start + len(line.text)
            prev, prev_heading = line, True
            continue
        prev_heading = False
        tabular = _is_row(text)
        kind = "list" if _BULLET.match(text) and not tabular else "table" if tabular else "paragraph"
        new_block = cur is None
        if cur is not None and prev is not None:
            gap = line.y0 - prev.y1
            size_change = prev.size and line.size and abs(line.size - prev.size) > 0.15 * max(prev.size, line.size)
            indented = line.x0 > left + 6 and line.x0 > prev.x0 + 6 and kind == "paragraph"
            if cur["kind"] == "table":
                # row labels and sub-headers ("At December 31:") stay inside the table
                if kind == "table" or (_is_label(text) and not _SENT_END.search(text.rstrip(":："))):
                    new_block = gap > max(usual_gap * 2.5, (line.y1 - line.y0) * 1.5)
                    kind = "table" if tabular or not new_block else kind
                else:
                    new_block = True
            elif kind == "list" or kind != cur["kind"] and not (cur["kind"] == "list" and line.x0 > prev.x0 - 2 and kind == "paragraph"):
                new_block = True
            elif gap > max(usual_gap * 1.8, line.y1 - line.y0) or size_change:
                new_block = True
            elif indented and cur["kind"] == "paragraph" and _SENT_END.search(prev.text.strip()):
                new_block = True
        if new_block:
            if kind == "table":
                caption, header = table_context()
                if not caption and not header and cur is None and previous and previous[-1].kind == "table" \
                        and previous[-1].heading_path == path() and previous[-1].pages[-1] == page.number - 1 \
                        and not _is_header_row(text):
                    # a table continued from the previous page repeats its title and header (one that
                    # opens with its own column header is a new table)
                    caption, header = previous[-1].caption, list(previous[-1].header)
                flush()
                cur = {"kind": "table", "lines": [], "start": start, "caption": caption, "header": header}
            else:
                flush()
                cur = {"kind": kind, "lines": [], "start": start}
        cur["lines"].append(text)
        cursor = start + len(line.text)
        prev = line
    flush()
    emit_carried()
    return blocks


def _join_across_pages(blocks: list[Block]) -> list[Block]:
    """Merge a paragraph that runs over a page break into one block spanning both pages."""
    out: list[Block] = []
    for b in blocks:
        if (out and b.kind == "paragraph" and out[-1].kind == "paragraph"
                and out[-1].pages[-1] == b.pages[0] - 1 and len(out[-1].pages) == 1
                and out[-1].heading_path == b.heading_path
                and not _SENT_END.search(out[-1].text) and b.text[:1].islower() or
                (out and b.kind == "paragraph" and out[-1].kind == "paragraph"
                 and out[-1].pages[-1] == b.pages[0] - 1 and len(out[-1].pages) == 1
                 and out[-1].heading_path == b.heading_path
                 and out[-1].text[-1:] not in "。．！？" and _is_cjk_start(b.text) and _is_cjk_start(out[-1].text[-1:]))):
            prev = out[-1]
            out[-1] = Block(kind="paragraph", text=join_lines([prev.text, b.text]), pages=prev.pages + b.pages,
                            heading_path=prev.heading_path, char_start=prev.char_start, char_end=b.char_end)
        else:
            out.append(b)
    return out


def _is_cjk_start(text: str) -> bool:
    return bool(text) and ("\u3040" <= text[0] <= "\u9fff" or "\uff00" <= text[0] <= "\uffef")


def _slide_block(page: Page, style: _Style) -> Block | None:
    lines = sorted(page.lines, key=lambda ln: (round(ln.y0 / 4), ln.x0))
    if not lines:
        return None
    top = [ln for ln in lines[:3] if any(c.isalpha() for c in ln.text)]
    title = max(top, key=lambda ln: ln.size) if top else None
    if title is not None and title.size < statistics.median(ln.size for ln in lines) * 1.05 and not title.bold:
        title = None
    body = [ln for ln in lines if ln is not title]
    parts: list[str] = []
    for ln in body:
        t = ln.text.strip()
        if parts and not _BULLET.match(t) and not _SENT_END.search(parts[-1]) and t[:1].islower():
            parts[-1] = join_lines([parts[-1], t])
        else:
            parts.append(t)
    text = "\n".join(parts)
    if not text and title is None:
        return None
    return Block(kind="slide", text=text or title.text, pages=[page.number],
                 heading_path=[title.text.strip()] if title is not None else [])


# ------------------------------------------------------------------ chunks


def memoized(count: TokenCounter) -> TokenCounter:
    """``count`` with a per-call-site cache: a real tokenizer is the chunker's main cost.

    >>> calls = []
    >>> c = memoized(lambda t: calls.append(t) or len(t))
    >>> c("abc") + c("abc"), calls
    (6, ['abc'])
    """
    cache: dict[str, int] = {}

    def counted(text: str) -> int:
        n = cache.get(text)
        if n is None:
            n = cache[text] = count(text)
        return n
    return counted


def _split_to_fit(text: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """Split ``text`` at sentence (then line, then character) boundaries into pieces that fit."""
    if count(text) <= max_tokens:
        return [text]
    units = split_sentences(text)
    if len(units) <= 1:
        units = [u for u in text.split("\n") if u.strip()]
    if len(units) <= 1:
        return _hard_split(text, max_tokens, count)
    pieces: list[str] = []
    cur = ""
    for u in units:
        cand = _join(cur, u)
        if cur and count(cand) > max_tokens:
            pieces.append(cur)
            cur = u
        else:
            cur = cand
        if count(cur) > max_tokens:
            pieces.extend(_hard_split(cur, max_tokens, count)[:-1])
            cur = _hard_split(cur, max_tokens, count)[-1]
    if cur:
        pieces.append(cur)
    return pieces


def _hard_split(text: str, max_tokens: int, count: TokenCounter) -> list[str]:
    """Last resort for a single over-long sentence: the longest prefix that fits, at a space if any."""
    out = []
    while text and count(text) > max_tokens:
        lo, hi = 1, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        cut = text.rfind(" ", 0, lo)
        cut = cut if cut > lo // 2 else lo
        out.append(text[:cut].strip())
        text = text[cut:].strip()
    if text:
        out.append(text)
    return out


def doc_key(doc: str, doc_hash: str) -> str:
    """12 hex chars naming one document version (file name + content): the prefix of its chunk ids."""
    return hashlib.sha1(f"{doc}\0{doc_hash}".encode()).hexdigest()[:12]


def _join(a: str, b: str) -> str:
    return b if not a else a + "\n" + b


def chunk_blocks(blocks: list[Block], *, doc: str, doc_hash: str, page_labels: dict[int, str | None],
                 count_tokens: TokenCounter = approx_tokens, max_tokens: int = DEFAULT_MAX_TOKENS,
                 min_tokens: int = DEFAULT_MIN_TOKENS, context: str | bool = True, title: str = "") -> list[Chunk]:
    """Pack blocks into chunks of at most ``max_tokens`` (context line included when it is embedded).

    Consecutive blocks of one section are merged up to the budget; a section smaller than
    ``min_tokens`` merges into the next (its heading kept inline); slides stay one per page; a chunk
    spans at most two pages. A table is chunked on its own, split between rows, and every piece
    starts with the table's caption and header rows. ``title`` (the document's) is kept on every
    chunk; ``context`` (see :meth:`~pdfqa.documents.Chunk.embed_text`) says what of it is embedded and
    so counts in the budget. Chunk ids are ``<doc_key>-<n>`` (see :func:`doc_key`).
    """
    mode = DEFAULT_CONTEXT if context is True else "none" if context is False else context
    chunks: list[Chunk] = []
    cur: dict | None = None
    count_tokens = memoized(count_tokens)  # packing asks for the same strings' counts many times

    def head_cost(path: list[str]) -> int:
        line = "" if mode == "none" else chunk_context(title if mode == "title+headings" else "", path)
        return count_tokens(line) + 1 if line else 0

    def emit():
        nonlocal cur
        if cur and cur["texts"]:
            pages = sorted(set(cur["pages"]))
            chunks.append(Chunk(
                chunk_id=f"{doc_key(doc, doc_hash)}-{len(chunks):05d}", doc=doc, doc_hash=doc_hash,
                text="\n".join(cur["texts"]), pages=pages, page_label=page_labels.get(pages[0]),
                heading_path=cur["path"], kinds=sorted(set(cur["kinds"]), key=cur["kinds"].index),
                char_start=cur["start"], char_end=cur["end"], title=title))
        cur = None

    pending_heading: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            if cur and cur["kind"] not in ("slide", "table") and (cur["tokens"] < min_tokens or (
                    cur["tokens"] < max_tokens // 2 and b.pages[0] == cur["pages"][-1]
                    and _common_prefix(cur["path"], b.heading_path))):
                # a short section shares its chunk with the next one; the heading stays inline and
                # the chunk's path becomes the two sections' common parent
                pending_heading.append(b.text)
            else:
                emit()
            continue
        budget = max(16, max_tokens - head_cost(b.heading_path))
        if b.kind == "table":
            emit()
            inline = "\n".join(h for h in pending_heading if h != b.caption)
            pending_heading = []
            for piece in _table_pieces(b, budget, count_tokens, inline):
                cur = {"texts": [piece], "pages": list(b.pages), "kinds": ["table"], "path": list(b.heading_path),
                       "tokens": count_tokens(piece), "start": b.char_start, "end": b.char_end, "kind": "table"}
                emit()
            continue
        for piece in _split_to_fit(b.text, budget, count_tokens):
            t = count_tokens(piece)
            inline = "\n".join(pending_heading)
            text = _join(inline, piece) if cur else piece
            fits = (cur is not None and cur["kind"] not in ("slide", "table") and b.kind != "slide"
                    and cur["tokens"] + t + (count_tokens(inline) if inline else 0) <= max_tokens - head_cost(cur["path"])
                    and len(set(cur["pages"]) | set(b.pages)) <= 2
                    and (cur["path"] == b.heading_path or bool(pending_heading) or cur["tokens"] < min_tokens))
            if fits and cur["path"] != b.heading_path:
                cur["path"] = _common_prefix(cur["path"], b.heading_path)
            if not fits:
                emit()
                text = _join(inline, piece) if inline and b.kind != "slide" else piece
                cur = {"texts": [], "pages": [], "kinds": [], "path": list(b.heading_path), "tokens": 0,
                       "start": b.char_start, "end": b.char_end, "kind": b.kind}
            pending_heading = []
            cur["texts"].append(text)
            cur["pages"].extend(b.pages)
            cur["kinds"].append(b.kind)
            cur["tokens"] += count_tokens(text)
            cur["end"] = b.char_end
    emit()
    return _enforce_limit(chunks, max_tokens, count_tokens, mode)


def _common_prefix(a: list[str], b: list[str]) -> list[str]:
    out = []
    for x, y in zip(a, b):
        if x != y:
            break
        out.append(x)
    return out


def _table_pieces(block: Block, budget: int, count: TokenCounter, inline: str = "",
                  header_tokens: int = 40) -> list[str]:
    """A table's text in pieces that fit ``budget``, split between rows; each piece repeats the
    caption and the header rows nearest the data (at most ``header_tokens`` of them: multi-line
    column headers are cut from the top). A row longer than the budget is split like prose."""
    header = list(block.header)
    while header and count("\n".join(header)) > header_tokens:
        header.pop(0)
    prefix = "\n".join(x for x in (inline, block.caption, *header) if x)
    if prefix and count(prefix) > budget // 2:
        prefix = "\n".join(x for x in (inline, block.caption) if x)
        prefix = prefix if count(prefix) <= budget // 2 else ""
    whole = _join(prefix, block.text)
    if count(whole) <= budget:
        return [whole]
    room = max(16, budget - (count(prefix) + 1 if prefix else 0))
    pieces, cur = [], ""
    for row in block.text.split("\n"):
        for part in _split_to_fit(row, room, count) if count(row) > room else [row]:
            cand = _join(cur, part)
            if cur and count(_join(prefix, cand)) > budget:  # exact: counts are not additive
                pieces.append(cur)
                cur = part
            else:
                cur = cand
    if cur:
        pieces.append(cur)
    return [_join(prefix, p) for p in pieces]


def _enforce_limit(chunks: list[Chunk], max_tokens: int, count: TokenCounter, context: str) -> list[Chunk]:
    """Token counts are not exactly additive: re-split any chunk whose exact count is over."""
    out: list[Chunk] = []
    for c in chunks:
        line = c.embed_text(context)[:-len(c.text)] if c.text else ""
        limit = max_tokens - (count(line) if line else 0)
        if count(c.text) <= max(16, limit):
            out.append(c)
            continue
        for piece in _split_to_fit(c.text, max(16, limit - 4), count):
            out.append(Chunk(**{**_fields(c), "text": piece}))
    for i, c in enumerate(out):
        c.chunk_id = f"{doc_key(c.doc, c.doc_hash)}-{i:05d}"
    return out


def _fields(c: Chunk) -> dict:
    return {f: getattr(c, f) for f in c.__slots__}


def chunk_document(content: PdfContent, *, count_tokens: TokenCounter = approx_tokens,
                   max_tokens: int = DEFAULT_MAX_TOKENS, min_tokens: int = DEFAULT_MIN_TOKENS,
                   slides: bool | None = None, context: str | bool = True) -> list[Chunk]:
    """Blocks → chunks for one document (see :func:`build_blocks` and :func:`chunk_blocks`); each chunk
    carries the document's title (:func:`document_title`)."""
    blocks = build_blocks(content, slides=slides)
    labels = {p.number: p.label for p in content.pages}
    chunks = chunk_blocks(blocks, doc=content.doc, doc_hash=content.doc_hash, page_labels=labels,
                          count_tokens=count_tokens, max_tokens=max_tokens, min_tokens=min_tokens,
                          context=context, title=document_title(content))
    ocr_conf = {p.number: p.ocr_confidence for p in content.pages if p.ocr}
    for c in chunks:  # OCR'd text is marked, with its weakest page's confidence
        confs = [ocr_conf[n] for n in c.pages if n in ocr_conf]
        if confs:
            c.ocr, c.ocr_confidence = True, min(confs)
    return chunks
