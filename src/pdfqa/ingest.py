"""The ingestion pipeline: find files → read → blocks → chunks → embed (cached) → commit per file.

Reading and chunking the next file runs in a background thread while the current one is embedded
(one file ahead, so memory stays bounded). Each file commits atomically; a file that fails is
reported with its cause and the batch goes on.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from .chunking import chunk_document
from .documents import Chunk, PdfContent
from .errors import PdfqaError, PdfReadError
from .pdf import OcrSettings, read_pdf


@dataclass
class FileResult:
    """What happened to one file. ``status``: indexed, unchanged or failed."""

    path: str
    doc: str
    status: str
    pages: int = 0
    chunks: int = 0
    embedded: int = 0  # chunks that needed new embeddings (the rest came from the cache)
    skipped_pages: list[tuple[int, str]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    ocr_pages: int = 0  # pages read by OCR
    ocr_confidence: float | None = None  # the lowest of those pages' OCR confidences

    def to_json(self) -> dict:
        d = asdict(self)
        d["skipped_pages"] = [{"page": p, "reason": r} for p, r in self.skipped_pages]
        return d


@dataclass
class IndexReport:
    files: list[FileResult]
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: messages for the whole run, said once (e.g. OCR is not installed and pages needed it)
    notes: list[str] = field(default_factory=list)

    @property
    def indexed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "indexed"]

    @property
    def unchanged(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "unchanged"]

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        """True when at least one file is in the collection after this run (indexed or unchanged)."""
        return bool(self.indexed or self.unchanged)

    def to_json(self) -> dict:
        return {"files": [f.to_json() for f in self.files], "seconds": round(self.seconds, 3),
                "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
                "indexed": len(self.indexed), "unchanged": len(self.unchanged), "failed": len(self.failed),
                "notes": list(self.notes)}


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[FileResult]]:
    """Files to index: given files as they are (content decides), folders searched for ``*.pdf``.

    Returns (files, failures) where failures are paths that do not exist.
    """
    files: list[Path] = []
    missing: list[FileResult] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() == ".pdf"))
        elif p.exists():
            files.append(p)
        else:
            missing.append(FileResult(path=str(p), doc=p.name, status="failed", error=f"{p.name}: file not found"))
    seen: dict[str, Path] = {}
    unique = []
    for f in files:
        key = str(f.resolve())
        if key not in seen:
            seen[key] = f
            unique.append(f)
    return unique, missing


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass
class Prepared:
    path: Path
    content: PdfContent | None = None
    chunks: list[Chunk] | None = None
    error: str | None = None
    unchanged: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    #: embedder spec → {content hash → vector}, when the pipeline embedded the chunks already (Ray)
    vectors: dict | None = None


def prepare(path: Path, *, known_hash: Callable[[str], str | None], chunker: Callable[[PdfContent], list[Chunk]],
            reader: str, ocr: OcrSettings | str = "auto") -> Prepared:
    """Read and chunk one file (runs in the background thread); never raises for a bad file."""
    out = Prepared(path=path)
    try:
        t = time.perf_counter()
        from .pdf.reader import file_sha256

        if path.exists() and path.stat().st_size > 0 and known_hash(path.name) == file_sha256(path):
            out.unchanged = True
            return out
        out.content = read_pdf(path, reader=reader, ocr=ocr)
        out.seconds["read"] = time.perf_counter() - t
        t = time.perf_counter()
        out.chunks = chunker(out.content)
        out.seconds["chunk"] = time.perf_counter() - t
        if not out.chunks:
            skipped = out.content.skipped_pages
            reasons = sorted({r.split(" (")[0] for _, r in skipped})
            why = (f"{len(skipped)} of {len(out.content.pages)} pages unusable: {'; '.join(reasons)}"
                   if skipped else "no text found")
            out.error = f"{path.name}: nothing to index ({why})"
    except PdfReadError as e:
        out.error = str(e)
    except PdfqaError as e:
        out.error = f"{path.name}: {e}"
    except Exception as e:  # a parser bug on one file must not stop the batch
        out.error = f"{path.name}: unexpected {type(e).__name__}: {e}"
    return out


def prefetch(paths: list[Path], work: Callable[[Path], Prepared]) -> Iterable[Prepared]:
    """Yield ``work(path)`` for each path, computing the next one in a background thread."""
    if not paths:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pdfqa-read") as pool:
        nxt: Future = pool.submit(work, paths[0])
        for i in range(len(paths)):
            cur = nxt.result()
            if i + 1 < len(paths):
                nxt = pool.submit(work, paths[i + 1])
            yield cur
