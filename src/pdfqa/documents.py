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

#: Block kinds produced by :mod:`pdfqa.chunking`.
BLOCK_KINDS = ("heading", "paragraph", "list", "table", "slide")

#: Metadata keys every chunk carries (LangChain ``Document.metadata`` and the JSON outputs).
CHUNK_METADATA_KEYS = (
    "chunk_id", "doc", "doc_hash", "page", "pages", "page_label",
    "heading_path", "kinds", "char_start", "char_end", "ocr", "ocr_confidence",
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
class Page:
    """One page: 1-based physical ``number``, printed ``label`` (``None`` without /PageLabels)."""

    number: int
    label: str | None
    width: float
    height: float
    lines: list[Line] = field(default_factory=list)
    #: why the page is not indexed ("no text layer", "garbled text ..."), ``None`` when it is usable
    skip_reason: str | None = None
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
    #: its text was read by OCR from page images; ``ocr_confidence``: the lowest of its pages' (0..1)
    ocr: bool = False
    ocr_confidence: float | None = None

    @property
    def page(self) -> int:
        return self.pages[0]

    def embed_text(self, with_headings: bool = True) -> str:
        """The text given to the embedder: the heading path on a first line, then the text."""
        if with_headings and self.heading_path:
            return " > ".join(self.heading_path) + "\n" + self.text
        return self.text

    def to_metadata(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("text")
        d["page"] = self.page
        return d


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
            "heading_path": list(c.heading_path), "ocr": c.ocr, "ocr_confidence": c.ocr_confidence,
        }

    def to_document(self):
        """As a LangChain ``Document`` (metadata: :data:`CHUNK_METADATA_KEYS` plus ``score``)."""
        from langchain_core.documents import Document

        return Document(page_content=self.chunk.text, metadata={**self.chunk.to_metadata(), "score": self.score})
