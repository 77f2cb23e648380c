"""The data types that flow through pdfqa, and the metadata keys they carry (defined here only).

PDF → :class:`Page` (lines with layout) → :class:`Block` (a heading, paragraph, list item, table
or slide) → :class:`Chunk` (what is embedded and cited) → :class:`Hit` (a chunk with a score).

>>> c = Chunk(chunk_id="ab12-00003", doc="a.pdf", doc_hash="ab12", text="Hello.", pages=[3, 4],
...           page_label="iii", heading_path=["1 Intro"], kinds=["paragraph"], char_start=0, char_end=6)
>>> c.page, c.to_metadata()["pages"]
(3, [3, 4])
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: What is embedded (and indexed by BM25) with a chunk's text: see :meth:`Chunk.embed_text`.
CONTEXT_MODES = ("title+headings", "headings", "none")
DEFAULT_CONTEXT = "title+headings"

#: Block kinds produced by :mod:`pdfqa.chunking`.
BLOCK_KINDS = ("heading", "paragraph", "list", "table", "slide")

#: Metadata keys every chunk carries (LangChain ``Document.metadata`` and the JSON outputs).
#: ``title`` is the document's title (PDF metadata, a filing's cover, the first page's title, else the
#: file name); ``heading_path`` the section headings above the chunk, outermost first.
CHUNK_METADATA_KEYS = (
    "chunk_id", "doc", "doc_hash", "page", "pages", "page_label",
    "title", "heading_path", "kinds", "char_start", "char_end", "ocr", "ocr_confidence",
)


@dataclass(slots=True)
class Line:
    """One visual line of a page, with the layout facts structure detection needs.

    ``size`` is the effective font size in points (0 when the reader has no layout);
    ``x0, y0, x1, y1`` are in visual coordinates (y grows downwards, page rotation applied).
    """

    text: str
    size: float = 0.0
    bold: bool = False
    x0: float = 0.0
    y0: float = 0.0
    x1: float = 0.0
    y1: float = 0.0


@dataclass(slots=True)
class TableRegion:
    """A table a reader found on a page (readers with a table finder, e.g. ``pdfplumber``): its box in
    visual coordinates and its rows of cells, header rows first (``header_rows`` of them)."""

    x0: float
    y0: float
    x1: float
    y1: float
    rows: list[list[str]]
    header_rows: int = 1


@dataclass(slots=True)
class Page:
    """One page: 1-based physical ``number``, printed ``label`` (``None`` without /PageLabels)."""

    number: int
    label: str | None
    width: float
    height: float
    lines: list[Line] = field(default_factory=list)
    #: why the page is not indexed ("no text layer", "garbled text ..."), ``None`` when it is usable
    skip_reason: str | None = None
    #: tables found by the reader; their lines are replaced by one table block each (see pdfqa.chunking)
    tables: list[TableRegion] = field(default_factory=list)
    #: the lines come from OCR (:mod:`pdfqa.pdf.ocr`): its confidence (0..1), the turn that made the page
    #: upright (degrees counter-clockwise), and the words ``[text, conf, x0, y0, x1, y1]`` (points, as rendered)
    ocr: bool = False
    ocr_confidence: float | None = None
    ocr_rotation: int = 0
    ocr_words: list[list] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(slots=True)
class PdfContent:
    """What a reader returns for one file."""

    path: str
    doc: str  # file name, the document's id inside a collection
    doc_hash: str  # sha256 of the file bytes
    pages: list[Page]
    outline: list[tuple[int, str, int]] = field(default_factory=list)  # (level, title, 1-based page)
    reader: str = ""
    metadata_title: str | None = None  # the PDF's /Title when it is a real title (not "Microsoft Word - x.docx")

    @property
    def skipped_pages(self) -> list[tuple[int, str]]:
        return [(p.number, p.skip_reason) for p in self.pages if p.skip_reason]


@dataclass(slots=True)
class Block:
    """A semantic unit of a document: ``kind`` is one of :data:`BLOCK_KINDS`."""

    kind: str
    text: str
    pages: list[int]
    heading_path: list[str]
    char_start: int = 0
    char_end: int = 0
    level: int = 0  # heading level (1 = top) for headings
    #: tables: the title above the table ("Consolidated Statement of Cash Flows", "表 1-1 用語の定義")
    caption: str = ""
    #: tables: the column header rows ("(Millions) 2018 2017 2016"), repeated in every chunk of the table
    header: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Chunk:
    """The unit that is embedded, retrieved and cited. Keys: :data:`CHUNK_METADATA_KEYS`."""

    chunk_id: str
    doc: str
    doc_hash: str
    text: str
    pages: list[int]
    page_label: str | None
    heading_path: list[str]
    kinds: list[str]
    char_start: int
    char_end: int
    title: str = ""
    #: its text was read by OCR from page images; ``ocr_confidence``: the lowest of its pages' (0..1)
    ocr: bool = False
    ocr_confidence: float | None = None

    @property
    def page(self) -> int:
        return self.pages[0]

    @property
    def context(self) -> str:
        """Where the chunk sits: the document title and the two innermost section headings, each cut
        to 12 words (``"3M COMPANY, Form 10-K, ... > Item 8. Financial Statements ... > ..."``)."""
        return chunk_context(self.title, self.heading_path)

    def embed_text(self, context: str | bool = True) -> str:
        """The text given to the embedder and to BM25: a context line, then the text.

        ``context`` is one of :data:`CONTEXT_MODES`: ``"title+headings"`` (the document title and the
        innermost headings), ``"headings"``, ``"none"``; ``True`` means the default
        (:data:`DEFAULT_CONTEXT`), ``False`` ``"none"``.
        """
        mode = DEFAULT_CONTEXT if context is True else "none" if context is False else context
        if mode not in CONTEXT_MODES:
            raise ValueError(f"unknown chunk context {mode!r}; known: {', '.join(CONTEXT_MODES)}")
        if mode == "none":
            return self.text
        line = chunk_context(self.title if mode == "title+headings" else "", self.heading_path)
        return line + "\n" + self.text if line else self.text

    def to_metadata(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("text")
        d["page"] = self.page
        return d


def chunk_context(title: str, heading_path: list[str], *, depth: int = 2, words: int = 12) -> str:
    """The context line embedded with a chunk (see :attr:`Chunk.context`): bounded, because it is
    repeated in every chunk of a section.

    >>> chunk_context("Annual Report 2018", ["PART II", "Item 8. Financial Statements", "Balance Sheet"])
    'Annual Report 2018 > Item 8. Financial Statements > Balance Sheet'
    """
    def cut(text: str) -> str:
        parts = text.split()
        if len(parts) > 1:
            return " ".join(parts[:words]) + (" …" if len(parts) > words else "")
        return text[:40]  # CJK headings have no spaces: 40 characters
    parts = [cut(h) for h in heading_path[-depth:]]
    return " > ".join([cut(title), *parts] if title else parts)


@dataclass(slots=True)
class Hit:
    """A retrieved chunk and its score (higher is better; cosine similarity for dense search)."""

    chunk: Chunk
    score: float
    retriever: str = ""

    def to_json(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "doc": c.doc, "page": c.page, "pages": list(c.pages), "page_label": c.page_label,
            "score": round(float(self.score), 6), "text": c.text, "chunk_id": c.chunk_id,
            "title": c.title, "heading_path": list(c.heading_path), "kinds": list(c.kinds),
            "ocr": c.ocr, "ocr_confidence": c.ocr_confidence,
        }

    def to_document(self):
        """As a LangChain ``Document`` (metadata: :data:`CHUNK_METADATA_KEYS` plus ``score``)."""
        from langchain_core.documents import Document

        return Document(page_content=self.chunk.text, metadata={**self.chunk.to_metadata(), "score": self.score})
