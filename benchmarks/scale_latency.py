"""Query latency at 100k chunks: a synthetic collection (clustered unit vectors, Zipf-distributed words),
FAISS flat / HNSW / IVF-PQ and BM25, p50/p95 per retriever, excluding the query embedding.

    .venv/bin/python benchmarks/scale_latency.py [--chunks 100000] [--queries 300]

Each query's time covers the index search and loading the k=10 hit chunks from SQLite.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def pct(xs, p):
    return float(np.percentile(np.asarray(xs) * 1000, p))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dim", type=int, default=384)
    args = ap.parse_args()
    from pdfqa import Collection
    from pdfqa.documents import Chunk
    from pdfqa.faiss_index import DenseIndex
    from pdfqa.ingest import content_hash
    from pdfqa.store import DocumentRecord
    from pdfqa.text.tokenize import get_tokenizer

    print("command:", " ".join([sys.executable, *sys.argv]))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.chunks} chunks, {args.dim}-d, {args.queries} queries, k=10\n")
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(50_000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    tmp = Path(tempfile.mkdtemp())
    try:
        col = Collection.open(tmp / "c", create=True)
        col.store.manifest["embedders"]["e5-small"] = {"spec": "e5-small", "dim": args.dim, "normalized": True,
                                                       "max_tokens": 512, "index": "flat",
                                                       "index_file": "indexes/e5-small.faiss"}
        t = time.perf_counter()
        per_doc = 1000
        # clustered like real embeddings (topics), not uniform noise, which no ANN index can exploit
        centers = rng.standard_normal((1000, args.dim)).astype(np.float32)
        all_vecs = centers[rng.integers(0, 1000, args.chunks)] + 0.35 * rng.standard_normal((args.chunks, args.dim)).astype(np.float32)
        all_vecs /= np.linalg.norm(all_vecs, axis=1, keepdims=True)
        for d in range(args.chunks // per_doc):
            chunks, hashes = [], []
            words = rng.choice(len(vocab), size=(per_doc, 80), p=zipf)
            for i in range(per_doc):
                text = " ".join(vocab[j] for j in words[i])
                chunks.append(Chunk(chunk_id=f"d{d}-{i}", doc=f"doc{d}.pdf", doc_hash=f"h{d}", text=text, pages=[i // 4 + 1],
                                    page_label=None, heading_path=[], kinds=["paragraph"], char_start=0, char_end=len(text)))
                hashes.append(content_hash(f"{d}-{i}-{text}"))
            rec = DocumentRecord(doc=f"doc{d}.pdf", doc_hash=f"h{d}", path="", bytes=0, pages=per_doc // 4,
                                 chunks=per_doc, skipped=[], reader="synthetic")
            vecs = all_vecs[d * per_doc:(d + 1) * per_doc]
            col.store.replace_document(rec, chunks, hashes, {"e5-small": dict(zip(hashes, vecs))})
        print(f"built SQLite store: {time.perf_counter() - t:.1f}s")
        ids, vecs = col.store.index_vectors("e5-small", args.dim)
        queries = all_vecs[rng.choice(len(all_vecs), args.queries)] + 0.02 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        flat_top = None
        rows = []
        for kind in ("flat", "hnsw", "ivfpq"):
            t = time.perf_counter()
            idx = DenseIndex.build(ids, vecs, kind=kind)
            build = time.perf_counter() - t
            lat, found = [], []
            for q in queries:
                t = time.perf_counter()
                hit_ids, _ = idx.search(q[None, :], 10)
                col.store.chunks_by_rowid(hit_ids)
                lat.append(time.perf_counter() - t)
                found.append(hit_ids)
            if kind == "flat":
                flat_top = found
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, flat_top)])
            rows.append((f"dense {kind}", pct(lat, 50), pct(lat, 95), build, idx.memory_bytes() / len(ids), recall))
        t = time.perf_counter()
        lex = col.lexical("bm25")
        build = time.perf_counter() - t
        tok = get_tokenizer("default")
        lat = []
        for _ in range(args.queries):
            qtext = " ".join(vocab[j] for j in rng.choice(2000, size=4))
            t = time.perf_counter()
            hit_ids, _ = lex.search(tok(qtext), 10)
            col.store.chunks_by_rowid(hit_ids)
            lat.append(time.perf_counter() - t)
        bm25_bytes = sum(f.stat().st_size for f in (col.path / "lexical" / "bm25").glob("*"))
        rows.append(("bm25", pct(lat, 50), pct(lat, 95), build, bm25_bytes / len(ids), float("nan")))
        print(f"{'retriever':<14}{'p50 ms':>9}{'p95 ms':>9}{'build s':>9}{'bytes/chunk':>13}{'recall@10 vs flat':>19}")
        for name, p50, p95, b, per, rec in rows:
            print(f"{name:<14}{p50:>9.2f}{p95:>9.2f}{b:>9.1f}{per:>13.0f}{rec:>19.3f}")
        col.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
