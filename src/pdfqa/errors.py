"""Exceptions raised by pdfqa. Every message names the thing at fault and what to do."""
from __future__ import annotations

from pathlib import Path


class PdfqaError(Exception):
    """Base class for every error pdfqa raises on purpose."""


class PdfReadError(PdfqaError):
    """A file could not be read as a PDF. ``str(err)`` is one line: ``<file>: <cause>``."""

    def __init__(self, path: str | Path, cause: str):
        self.path = Path(path)
        self.cause = cause
        super().__init__(f"{self.path.name}: {cause}")


class UnknownComponentError(PdfqaError, ValueError):
    """A spec string names no registered component."""

    def __init__(self, kind: str, spec: str, known: list[str]):
        self.kind, self.spec, self.known = kind, spec, known
        super().__init__(f"unknown {kind} {spec!r}; known: {', '.join(known)}")


class CollectionError(PdfqaError):
    """The collection directory is missing, unreadable, of another format or inconsistent."""


class EmbedderMismatchError(CollectionError):
    """The collection holds no index for the embedder asked for, or one built differently."""
