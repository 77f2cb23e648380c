"""`hybrid`'s fusion weights, RRF k and document prior, measured on the public sets together.

Ranks every question once with BM25 and with e5-small over chunks (depth 50) and ranks the documents
with BM25 over whole documents (`doc-bm25`), then scores fusion variants offline with the library's
own fusion functions (`rrf_scores`, `add_document_prior`), documents ranked by their best chunk.
Sets: jsquad_valid and squad_expmrc (passage pools: one chunk per document, so the document prior is
off there, as in `hybrid`) and sec10q (20 PDFs, ~170 chunks each; doc-hit@5 and MRR@10 at document
level). Uses the pools `pdfqa eval` cached in --workdir (built on first use).

    .venv/bin/python benchmarks/fusion_grid.py --workdir benchmarks/out/evalw
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
SETS = {"jsquad_valid": "corpus", "squad_expmrc": "corpus", "sec10q": "pdfs"}


def rankings(col, items, depth=50):
    """Per question: BM25 chunk ids, dense chunk ids, document ranks; and chunk id → document."""
    from pdfqa.retrieval import DocumentPrior
    from pdfqa.text.tokenize import get_tokenizer

    tok = get_tokenizer("default")
    lex = col.lexical("bm25")
    prior = DocumentPrior(col)  # the library's own rule for where the prior takes part
    bm = [lex.search(tok(it.question), depth)[0] for it in items]
    doc_ranks = [prior.ranks(it.question) for it in items]
    emb = col.embedder(col.embedder_spec)
    qv = np.concatenate([emb.embed_queries([it.question for it in items[i:i + 64]]) for i in range(0, len(items), 64)])
    _, dense = col._index(col.embedder_spec).index.search(qv.astype(np.float32), depth)
    doc_of = {rid: c.doc for rid, c, _ in col.store.iter_chunks()}
    return bm, [[int(i) for i in r if i >= 0] for r in dense], doc_ranks, doc_of


def ranked_docs(b, d, doc_ranks, doc_of, w_dense, k, w_doc, k_doc):
    from pdfqa.retrieval import add_document_prior, rrf_scores

    s = rrf_scores([b, d], [1.0, w_dense], k)
    if w_doc and doc_ranks:
        add_document_prior(s, doc_of, doc_ranks, w_doc, k_doc)
    return list(dict.fromkeys(doc_of[c] for c, _ in sorted(s.items(), key=lambda kv: -kv[1])))


def metrics(data, **fusion):
    from pdfqa.evaluation.metrics import hit_at, mrr_at

    items, bm, de, dr, doc_of = data
    ranked = [ranked_docs(b, d, r, doc_of, **fusion) for b, d, r in zip(bm, de, dr)]
    h5 = np.mean([hit_at(r, set(it.doc_ids), 5) for r, it in zip(ranked, items)])
    mrr = np.mean([mrr_at(r, set(it.doc_ids), 10) for r, it in zip(ranked, items)])
    return h5, mrr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="benchmarks/out/evalw")
    args = ap.parse_args()
    from pdfqa.evaluation import load_qa, open_pool
    from pdfqa.evaluation.metrics import hit_at, mrr_at
    from pdfqa.retrieval import DOC_RRF_K, HYBRID_WEIGHTS, RRF_K

    print("command:", " ".join([sys.executable, *sys.argv]))
    sets = {}
    for name, kind in SETS.items():
        t = time.perf_counter()
        pool = {"corpus": DATA / "qa" / name / "corpus.jsonl"} if kind == "corpus" else {"pdfs": DATA / "qa" / name / "pdfs"}
        col = open_pool(args.workdir, progress=False, **pool)
        items = load_qa(DATA / "qa" / name / "qa.jsonl")
        sets[name] = (items, *rankings(col, items))
        print(f"{name}: ranked {len(items)} questions in {time.perf_counter() - t:.0f}s "
              f"(document prior {'on' if any(sets[name][3]) else 'off'})")
    for name, (items, bm, de, dr, doc_of) in sets.items():
        for label, lists in (("bm25", bm), ("dense", de)):
            r = [list(dict.fromkeys(doc_of[c] for c in lst)) for lst in lists]
            print(f"  {name} {label} alone: hit@5 {np.mean([hit_at(x, set(it.doc_ids), 5) for x, it in zip(r, items)]):.3f}"
                  f" MRR@10 {np.mean([mrr_at(x, set(it.doc_ids), 10) for x, it in zip(r, items)]):.3f}")
    print(f"\n{'w_dense':>8}{'k':>4}{'w_doc':>6}{'k_doc':>6} | " + " | ".join(f"{n:^15}" for n in sets))
    print(f"{'':>24} | " + " | ".join(f"{'hit@5':>6}{'MRR@10':>8} " for _ in sets))
    chosen = dict(w_dense=HYBRID_WEIGHTS[1], k=RRF_K, w_doc=HYBRID_WEIGHTS[2], k_doc=DOC_RRF_K)
    grid = [dict(w_dense=wd, k=k, w_doc=wdoc, k_doc=kd) for wd, k, wdoc, kd in
            itertools.product((0.5, 0.7, 1.0), (20, 60), (0.0, 0.25, 0.5, 1.0), (1, 5, 20))
            if wdoc or kd == 5]
    for fusion in grid + [chosen]:
        res = [metrics(data, **fusion) for data in sets.values()]
        mark = "  <- hybrid" if fusion == chosen else ""
        print(f"{fusion['w_dense']:>8}{fusion['k']:>4}{fusion['w_doc']:>6}{fusion['k_doc']:>6} | "
              + " | ".join(f"{h:>6.3f}{m:>8.3f} " for h, m in res) + mark)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
