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

from .documents import Block, Chunk, Line, Page, PdfContent
from .text import join_lines, split_sentences

TokenCounter = Callable[[str], int]

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
_NUMERIC_TOKEN = re.compile(r"^[($€¥£-]*[\d,.]+%?\)?$|^[-—–]$")
_SENT_END = re.compile(r"[。．.!?！？:：)）」』]$")


def _is_tabular(text: str) -> bool:
    toks = text.split()
    if len(toks) < 3:
        return False
    num = sum(1 for t in toks if _NUMERIC_TOKEN.match(t))
    return num >= 2 and num / len(toks) >= 0.4


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
        return outline_level
    if len(text) > 120 or _SENT_END.search(text) and not text.endswith(")") or _PAGE_NUMBER.match(text):
        return None
    if not any(c.isalpha() for c in text):
        return None
    numbered = _NUMBERED_HEADING.match(text)
    big = style.body > 0 and line.size >= style.body * 1.15
    if not (big or (line.bold and style.body > 0 and line.size >= style.body * 0.95)):
        return None
    if numbered and numbered.group(1):
        return min(numbered.group(1).count(".") + 1, 6)
    if big:
        size = round(line.size * 2) / 2
        ranks = [s for s in style.heading_sizes if s >= size]
        return max(1, len(ranks))
    return len(style.heading_sizes) + 1


def _outline_lookup(content: PdfContent) -> dict[tuple[int, str], int]:
    return {(page, _norm(title)): level for level, title, page in content.outline}


def build_blocks(content: PdfContent, *, slides: bool | None = None) -> list[Block]:
    """The document's semantic blocks in reading order, furniture removed, with heading paths."""
    pages = [p for p in content.pages if not p.skip_reason]
    remove_page_furniture(pages)
    if slides is None:
        slides = is_slide_deck(content.pages)
    style = _document_style(pages)
    outline = _outline_lookup(content)
    blocks: list[Block] = []
    heading_stack: list[tuple[int, str]] = []
    offset = 0  # character offset of the page in the document's extracted text (pages joined by \f)
    page_offsets = {}
    for p in content.pages:
        page_offsets[p.number] = offset
        offset += len(p.text) + 1
    for page in pages:
        if slides:
            block = _slide_block(page, style)
            if block:
                start = page_offsets[page.number]
                block.char_start, block.char_end = start, start + len(page.text)
                blocks.append(block)
            continue
        base = page_offsets[page.number]
        cursor = 0
        cur: dict | None = None
        prev: Line | None = None
        prev_heading = False
        gaps = [b.y0 - a.y1 for a, b in zip(page.lines, page.lines[1:]) if b.y0 > a.y1]
        usual_gap = statistics.median(gaps) if gaps else 4.0
        left = min((ln.x0 for ln in page.lines), default=0.0)

        def flush():
            nonlocal cur
            if cur and cur["lines"]:
                text = join_lines(cur["lines"]) if cur["kind"] != "table" else "\n".join(cur["lines"])
                blocks.append(Block(kind=cur["kind"], text=text, pages=[page.number],
                                    heading_path=[t for _, t in heading_stack],
                                    char_start=base + cur["start"], char_end=base + cursor))
            cur = None

        for line in page.lines:
            text = line.text.strip()
            pos = page.text.find(line.text, cursor)
            start = pos if pos >= 0 else cursor
            level = _heading_level(line, style, outline.get((page.number, _norm(text))))
            if level is not None:
                flush()
                last = blocks[-1] if blocks else None
                # a heading wrapped over two lines (same style, no gap) extends the previous one
                if (last is not None and last.kind == "heading" and prev is not None and prev_heading
                        and abs(prev.size - line.size) < 0.6
                        and line.y0 - prev.y1 < max(usual_gap * 1.6, (line.y1 - line.y0) * 0.8)):
                    last.text = join_lines([last.text, text])
                    last.char_end = base + start + len(text)
                    heading_stack[-1] = (heading_stack[-1][0], last.text)
                else:
                    while heading_stack and heading_stack[-1][0] >= level:
                        heading_stack.pop()
                    blocks.append(Block(kind="heading", text=text, pages=[page.number],
                                        heading_path=[t for _, t in heading_stack], level=level,
                                        char_start=base + start, char_end=base + start + len(text)))
                    heading_stack.append((level, text))
                cursor = start + len(line.text)
                prev, prev_heading = line, True
                continue
            prev_heading = False
            kind = "list" if _BULLET.match(text) else "table" if _is_tabular(text) else "paragraph"
            new_block = cur is None
            if cur is not None and prev is not None:
                gap = line.y0 - prev.y1
                size_change = prev.size and line.size and abs(line.size - prev.size) > 0.15 * max(prev.size, line.size)
                indented = line.x0 > left + 6 and line.x0 > prev.x0 + 6 and kind == "paragraph"
                if kind == "list" or kind != cur["kind"] and not (cur["kind"] == "list" and line.x0 > prev.x0 - 2 and kind == "paragraph"):
                    new_block = True
                elif cur["kind"] == "table" and kind == "table":
                    new_block = gap > usual_gap * 2.5
                elif gap > max(usual_gap * 1.8, line.y1 - line.y0) or size_change:
                    new_block = True
                elif indented and cur["kind"] == "paragraph" and _SENT_END.search(prev.text.strip()):
                    new_block = True
            if new_block:
                flush()
                cur = {"kind": kind, "lines": [], "start": start}
            cur["lines"].append(text)
            cursor = start + len(line.text)
            prev = line
        flush()
        # a paragraph cut by the page break continues on the next page: remember to join
    return _join_across_pages([b for b in blocks])


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
                 min_tokens: int = DEFAULT_MIN_TOKENS, heading_in_budget: bool = True) -> list[Chunk]:
    """Pack blocks into chunks of at most ``max_tokens`` (heading path included when it is embedded).

    Consecutive blocks of one section are merged up to the budget; a section smaller than
    ``min_tokens`` merges into the next (its heading kept inline); slides stay one per page; a chunk
    spans at most two pages. Chunk ids are ``<doc_key>-<n>`` (see :func:`doc_key`).
    """
    chunks: list[Chunk] = []
    cur: dict | None = None
    count_tokens = memoized(count_tokens)  # packing asks for the same strings' counts many times

    def head_cost(path: list[str]) -> int:
        return count_tokens(" > ".join(path)) if heading_in_budget and path else 0

    def emit():
        nonlocal cur
        if cur and cur["texts"]:
            pages = sorted(set(cur["pages"]))
            chunks.append(Chunk(
                chunk_id=f"{doc_key(doc, doc_hash)}-{len(chunks):05d}", doc=doc, doc_hash=doc_hash,
                text="\n".join(cur["texts"]), pages=pages, page_label=page_labels.get(pages[0]),
                heading_path=cur["path"], kinds=sorted(set(cur["kinds"]), key=cur["kinds"].index),
                char_start=cur["start"], char_end=cur["end"]))
        cur = None

    pending_heading: list[str] = []
    for b in blocks:
        if b.kind == "heading":
            if cur and cur["tokens"] < min_tokens and cur["kind"] != "slide":
                pending_heading.append(b.text)  # small section: keep going, heading stays inline
            else:
                emit()
            continue
        budget = max(16, max_tokens - head_cost(b.heading_path))
        for piece in _split_to_fit(b.text, budget, count_tokens):
            t = count_tokens(piece)
            inline = "\n".join(pending_heading)
            text = _join(inline, piece) if cur else piece
            fits = (cur is not None and cur["kind"] != "slide" and b.kind != "slide"
                    and cur["tokens"] + t + (count_tokens(inline) if inline else 0) <= max_tokens - head_cost(cur["path"])
                    and len(set(cur["pages"]) | set(b.pages)) <= 2
                    and (cur["path"] == b.heading_path or cur["tokens"] < min_tokens))
            if not fits:
                emit()
                text = piece
                cur = {"texts": [], "pages": [], "kinds": [], "path": list(b.heading_path), "tokens": 0,
                       "start": b.char_start, "end": b.char_end, "kind": b.kind}
            pending_heading = []
            cur["texts"].append(text)
            cur["pages"].extend(b.pages)
            cur["kinds"].append(b.kind)
            cur["tokens"] += count_tokens(text)
            cur["end"] = b.char_end
    emit()
    return _enforce_limit(chunks, max_tokens, count_tokens)


def _enforce_limit(chunks: list[Chunk], max_tokens: int, count: TokenCounter) -> list[Chunk]:
    """Token counts are not exactly additive: re-split any chunk whose exact count is over."""
    out: list[Chunk] = []
    for c in chunks:
        limit = max_tokens - (count(" > ".join(c.heading_path)) if c.heading_path else 0)
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
                   slides: bool | None = None, heading_in_budget: bool = True) -> list[Chunk]:
    """Blocks → chunks for one document (see :func:`build_blocks` and :func:`chunk_blocks`)."""
    blocks = build_blocks(content, slides=slides)
    labels = {p.number: p.label for p in content.pages}
    chunks = chunk_blocks(blocks, doc=content.doc, doc_hash=content.doc_hash, page_labels=labels,
                          count_tokens=count_tokens, max_tokens=max_tokens, min_tokens=min_tokens,
                          heading_in_budget=heading_in_budget)
    ocr_conf = {p.number: p.ocr_confidence for p in content.pages if p.ocr}
    for c in chunks:  # OCR'd text is marked, with its weakest page's confidence
        confs = [ocr_conf[n] for n in c.pages if n in ocr_conf]
        if confs:
            c.ocr, c.ocr_confidence = True, min(confs)
    return chunks
