"""What each chunk's context line costs at ingestion: the tokens the embedder sees per context mode.

Reads and chunks the PDFs once (as ``Collection.index`` does, for e5-small), then counts the embedder's
tokens of every chunk's embedded text under each mode (``title+headings``, ``headings``, ``none``; see
``pdfqa.documents.Chunk.embed_text``). Embedding time grows with tokens (the encoder's work is linear
in them at these lengths), so the ratios are the ingestion cost of the context; deterministic.

    .venv/bin/python benchmarks/context_tokens.py [--pdfs ../shared/data/qa/sec10q/pdfs] [--limit N]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdfs", default=str(DATA / "qa" / "sec10q" / "pdfs"))
    ap.add_argument("--limit", type=int, default=0, help="first N files only")
    args = ap.parse_args()
    from machine import machine

    from pdfqa.chunking import CHUNKING_VERSION, chunk_document
    from pdfqa.documents import CONTEXT_MODES
    from pdfqa.embeddings import get_embedder
    from pdfqa.pdf import read_pdf

    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", machine())
    emb = get_embedder("e5-small")
    files = sorted(Path(args.pdfs).glob("*.pdf"))[: args.limit or None]
    tokens = {m: 0 for m in CONTEXT_MODES}
    n_chunks, t = 0, time.perf_counter()
    for f in files:
        chunks = chunk_document(read_pdf(f), count_tokens=emb.count_tokens, max_tokens=256)
        n_chunks += len(chunks)
        for m in CONTEXT_MODES:
            tokens[m] += sum(emb.count_tokens(c.embed_text(m)) for c in chunks)
    print(f"{len(files)} files, {n_chunks} chunks (chunking v{CHUNKING_VERSION}), read and counted in "
          f"{time.perf_counter() - t:.0f}s\n")
    print("| context | tokens embedded | per chunk | vs none |")
    print("|---|---|---|---|")
    for m in CONTEXT_MODES:
        print(f"| `{m}` | {tokens[m]:,} | {tokens[m] / max(1, n_chunks):.1f} | {tokens[m] / max(1, tokens['none']):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
