"""Milvus and Ray, measured: ingestion (local pipeline vs Ray-local, same PDFs, same run) and query
latency at N chunks (Milvus Lite vs the local FAISS collection, same vectors and tokens), with the
Milvus data directory's size and the memory the engine holds.

    .venv/bin/python benchmarks/scale_milvus_ray.py ingest --pdfs DIR [--pdfs DIR ...] [--reps 1]
    .venv/bin/python benchmarks/scale_milvus_ray.py query [--chunks 100000] [--queries 100]

Ingestion: each pipeline runs in its own process (`pdfqa index ... [--ray local]`, into a fresh local
collection); the Ray time includes starting the local cluster. Query: one question at a time, query
vectors precomputed (the embedding is the same on both sides), k=10, each query's time covers every
index search and loading the hit chunks.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402


def ingest(args) -> None:
    tmp = Path(tempfile.mkdtemp())
    rows = []
    try:
        for rep in range(args.reps):
            for mode in ("local", "ray"):
                col = tmp / f"{mode}-{rep}"
                cmd = [sys.executable, "-m", "pdfqa.cli", "index", *args.pdfs, "-c", str(col), "--json"]
                if mode == "ray":
                    cmd += ["--ray", "local"]
                t = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True)
                secs = time.perf_counter() - t
                rep_json = json.loads(out.stdout)
                pages = sum(f["pages"] for f in rep_json["files"] if f["status"] == "indexed")
                chunks = sum(f["chunks"] for f in rep_json["files"] if f["status"] == "indexed")
                rows.append((mode, rep, secs, pages, chunks, rep_json["indexed"], os.getloadavg()[0]))
                print(f"{mode:5} rep {rep}: {secs:6.1f} s wall, {pages} pages ({pages / secs:.2f}/s), {chunks} chunks "
                      f"({chunks / secs:.2f}/s), {rep_json['indexed']} files, load {rows[-1][-1]:.2f}", flush=True)
        loc = [r[2] for r in rows if r[0] == "local"]
        ray = [r[2] for r in rows if r[0] == "ray"]
        print(f"\nRay-local / local wall time: {np.median(ray) / np.median(loc):.2f}x (median of {args.reps})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _synthetic(n: int, dim: int, rng):
    vocab = np.array([f"w{i}" for i in range(50_000)])
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    centers = rng.standard_normal((1000, dim)).astype(np.float32)
    vecs = centers[rng.integers(0, 1000, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    words = rng.choice(len(vocab), size=(n, 60), p=zipf)
    return vecs, [vocab[w].tolist() for w in words], centers


def _fill(col, vecs, tokens, per_doc=200):
    from pdfqa.documents import Chunk
    from pdfqa.ingest import content_hash
    from pdfqa.store import DocumentRecord
    from pdfqa.text.tokenize import cache_key

    spec = "e5-small"
    col.store.manifest["embedders"][spec] = {"spec": spec, "dim": vecs.shape[1], "normalized": True, "max_tokens": 512,
                                             "index": "flat", **col.store.embedder_entry(spec, vecs.shape[1])}
    col.store.save_manifest()
    for d in range(len(vecs) // per_doc):
        sl = range(d * per_doc, (d + 1) * per_doc)
        texts = [" ".join(tokens[i]) for i in sl]
        hashes = [content_hash(f"{i}:{t}") for i, t in zip(sl, texts)]
        chunks = [Chunk(chunk_id=f"d{d}-{j:05d}", doc=f"d{d}.pdf", doc_hash=f"h{d}", text=t, pages=[1 + j // 4],
                        page_label=None, heading_path=[], kinds=["paragraph"], char_start=0, char_end=len(t))
                  for j, t in enumerate(texts)]
        col.store.put_tokens(cache_key("default"), {h: tokens[i] for h, i in zip(hashes, sl)})
        rec = DocumentRecord(doc=f"d{d}.pdf", doc_hash=f"h{d}", path="", bytes=0, pages=per_doc // 4,
                             chunks=per_doc, skipped=[], reader="text")
        col.store.replace_document(rec, chunks, hashes, {spec: {h: vecs[i] for h, i in zip(hashes, sl)}})


def _fill_milvus(col, vecs, tokens, per_doc=200):
    """The rows ``_fill`` writes, in bulk: 25 documents at a time, in inserts of ``BATCH`` rows as
    replace_document makes them (the layout is the same as replace_document's, one token per document)."""
    import uuid

    from pdfqa.ingest import content_hash
    from pdfqa.milvus_store import BATCH, term_word
    from pdfqa.text.tokenize import cache_key

    store, spec = col.store, "e5-small"
    store.manifest["embedders"][spec] = {"spec": spec, "dim": vecs.shape[1], "normalized": True, "max_tokens": 512,
                                         "index": "flat", **store.embedder_entry(spec, vecs.shape[1])}
    store.save_manifest()
    store._create_chunks()
    field = store.manifest["embedders"][spec]["milvus_field"]
    n_docs = len(vecs) // per_doc
    for d0 in range(0, n_docs, 25):
        rows, docs, toks = [], [], {}
        for d in range(d0, min(n_docs, d0 + 25)):
            token = uuid.uuid4().hex
            for j in range(per_doc):
                i = d * per_doc + j
                text = " ".join(tokens[i])
                h = content_hash(f"{i}:{text}")
                toks[h] = tokens[i]
                rows.append({"chunk_id": f"d{d}-{j:05d}", "doc": f"d{d}.pdf", "token": token, "ord": j, "content_hash": h,
                             "text": text, "lex": " ".join(term_word(t) for t in tokens[i]), "meta": {"pages": [1 + j // 4], "page_label": None, "heading_path": [],
                                                    "kinds": ["paragraph"], "char_start": 0, "char_end": len(text)},
                             field: vecs[i].tolist()})
            docs.append({"doc": f"d{d}.pdf", "token": token, "_v": [0.0, 0.0],
                         "record": {"doc_hash": f"h{d}", "path": "", "bytes": 0, "pages": per_doc // 4,
                                    "chunks": per_doc, "skipped": [], "reader": "text", "indexed_at": 0.0}})
        for start in range(0, len(rows), BATCH):  # Milvus Lite's insert time grows faster than its size
            store.client.insert(store.name, rows[start:start + BATCH])
        store.client.upsert(store.docs_name, docs)
        store.put_tokens(cache_key("default"), toks)
    store._bump()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _du_mb(p: Path) -> float:
    """Size of a file, or of a directory's files."""
    files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def query(args) -> None:
    from pdfqa import Collection

    rng = np.random.default_rng(0)
    vecs, tokens, centers = _synthetic(args.chunks, 384, rng)
    qv = centers[rng.integers(0, 1000, args.queries)] + 0.35 * rng.standard_normal((args.queries, 384)).astype(np.float32)
    qv /= np.linalg.norm(qv, axis=1, keepdims=True)
    qtext = [" ".join(tokens[i][:6]) for i in rng.integers(0, args.chunks, args.queries)]
    tmp = Path(tempfile.mkdtemp(dir=args.tmp))
    try:
        cols = {}
        for name, loc in (("local FAISS", str(tmp / "local")), ("Milvus Lite", f"milvus:{tmp / 'lite.db'}")):
            rss0 = _rss_mb()
            t = time.perf_counter()
            col = Collection.open(loc, create=True)
            with col.store.write_lock():
                (_fill_milvus if loc.startswith("milvus:") else _fill)(col, vecs, tokens)
            col._save_indexes()
            if hasattr(col.store, "flush"):
                col.store.flush()
            print(f"{name}: filled {args.chunks} chunks in {time.perf_counter() - t:.0f} s; RSS +{_rss_mb() - rss0:.0f} MB",
                  flush=True)
            for i, q in enumerate(qtext):
                col._query_cache[("e5-small", q)] = qv[i]
            col._query_cache_size = 10 ** 6
            cols[name] = col
        lite_dir = tmp / "lite.db"
        print(f"disk: local {_du_mb(tmp / 'local'):.0f} MB, Milvus Lite {_du_mb(lite_dir):.0f} MB "
              f"({_du_mb(lite_dir) / args.chunks * 1e6 / 1e3:.1f} GB per million chunks)", flush=True)
        kinds = ["flat"] + (["hnsw"] if args.hnsw else [])
        for kind in kinds:
            if kind != "flat":
                for col in cols.values():
                    col.set_index_kind(kind)
            for r in ("e5-small", "hybrid"):
                res = {}
                for name, col in cols.items():
                    col.search(qtext[0], 10, retriever=r)  # warm: loads/derives the indexes
                times = {name: [] for name in cols}
                agree = []
                for q in qtext:  # interleaved, one question at a time
                    hits = {}
                    for name, col in cols.items():
                        t = time.perf_counter()
                        hits[name] = [h.chunk.chunk_id for h in col.search(q, 10, retriever=r)]
                        times[name].append(time.perf_counter() - t)
                    agree.append(len(set(hits["local FAISS"][:3]) & set(hits["Milvus Lite"][:3])) / 3)
                for name, ts in times.items():
                    ms = np.asarray(ts) * 1000
                    res[name] = (np.percentile(ms, 50), np.percentile(ms, 95))
                print(f"{kind:5} {r:9}: " + "; ".join(f"{n} p50 {a:.1f} ms p95 {b:.1f} ms" for n, (a, b) in res.items())
                      + f"; top-3 overlap {np.mean(agree):.3f}; load {os.getloadavg()[0]:.2f}", flush=True)
        print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    finally:
        for col in cols.values():
            col.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ingest")
    a.add_argument("--pdfs", action="append", required=True)
    a.add_argument("--reps", type=int, default=1)
    b = sub.add_parser("query")
    b.add_argument("--chunks", type=int, default=100_000)
    b.add_argument("--queries", type=int, default=100)
    b.add_argument("--hnsw", action="store_true", help="also switch both to HNSW and measure again")
    b.add_argument("--tmp", default=None)
    args = ap.parse_args()
    print("command:", " ".join([sys.executable, *sys.argv]))
    print(machine())
    ingest(args) if args.cmd == "ingest" else query(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
