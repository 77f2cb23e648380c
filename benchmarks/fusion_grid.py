"""Fusion weights and RRF k for `hybrid`, measured on the public passage sets (jsquad_valid, squad_expmrc).

Ranks every question once with BM25 and with e5-small (depth 50), then scores reciprocal-rank fusion
for a grid of (BM25 weight, dense weight, k) offline. Uses the pools `pdfqa eval` cached in --workdir.

    .venv/bin/python benchmarks/fusion_grid.py --workdir benchmarks/out/evalw
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))


def rankings(col, items, depth=50):
    from pdfqa.text.tokenize import get_tokenizer

    tok = get_tokenizer("default")
    lex = col.lexical("bm25")
    bm = []
    for it in items:
        ids, _ = lex.search(tok(it.question), depth)
        bm.append(ids)
    emb = col.embedder(col.embedder_spec)
    qv = np.concatenate([emb.embed_queries([it.question for it in items[i:i + 64]]) for i in range(0, len(items), 64)])
    _, dense = col._index(col.embedder_spec).index.search(qv.astype(np.float32), depth)
    doc_of = {rid: c.doc for rid, c, _ in col.store.iter_chunks()}
    return ([[doc_of[i] for i in r] for r in bm], [[doc_of[int(i)] for i in r if i >= 0] for r in dense])


def fuse(a, b, wa, wb, k):
    s = {}
    for rank, d in enumerate(dict.fromkeys(a), 1):
        s[d] = s.get(d, 0) + wa / (k + rank)
    for rank, d in enumerate(dict.fromkeys(b), 1):
        s[d] = s.get(d, 0) + wb / (k + rank)
    return [d for d, _ in sorted(s.items(), key=lambda kv: -kv[1])]


def metrics(ranked_lists, items):
    from pdfqa.evaluation.metrics import mrr_at, recall_at

    r5 = np.mean([recall_at(r, set(it.doc_ids), 5) for r, it in zip(ranked_lists, items)])
    mrr = np.mean([mrr_at(r, set(it.doc_ids), 10) for r, it in zip(ranked_lists, items)])
    return r5, mrr


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="benchmarks/out/evalw")
    args = ap.parse_args()
    from pdfqa.evaluation import load_qa, open_pool

    print("command:", " ".join([sys.executable, *sys.argv]))
    sets = {}
    for name in ("jsquad_valid", "squad_expmrc"):
        t = time.perf_counter()
        col = open_pool(args.workdir, corpus=DATA / "qa" / name / "corpus.jsonl", progress=False)
        items = load_qa(DATA / "qa" / name / "qa.jsonl")
        sets[name] = (items, *rankings(col, items))
        print(f"{name}: ranked {len(items)} questions in {time.perf_counter() - t:.0f}s")
    print(f"\n{'w_bm25':>7}{'w_dense':>8}{'k':>5} | " + " | ".join(f"{n:^17}" for n in sets))
    print(f"{'':>20} | " + " | ".join(f"{'R@5':>8}{'MRR@10':>9}" for _ in sets))
    for n, (items, bm, de) in sets.items():
        pass
    rows = []
    for wa in (1.0,):
        for wb in (0.5, 0.7, 0.85, 1.0, 1.2):
            for k in (10, 20, 40, 60):
                res = [metrics([fuse(a, b, wa, wb, k) for a, b in zip(bm, de)], items) for items, bm, de in sets.values()]
                rows.append((wa, wb, k, res))
                print(f"{wa:>7}{wb:>8}{k:>5} | " + " | ".join(f"{r5:>8.3f}{mrr:>9.3f}" for r5, mrr in res))
    for n, (items, bm, de) in sets.items():
        print(f"{n}: bm25 alone R@5/MRR {metrics(bm, items)}, dense alone {metrics(de, items)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
