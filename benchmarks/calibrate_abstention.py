"""Where to abstain: cosine similarity (e5-small) of a question to the best chunk retrieved for it,
for questions the pool answers and for questions it cannot (asked of the other language's pool).

    .venv/bin/python benchmarks/calibrate_abstention.py --workdir benchmarks/out/evalw
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))


def top_scores(col, questions):
    col.prime_queries(questions)
    idx = col._index(col.embedder_spec)
    q = np.stack([col.query_vector(x) for x in questions]).astype(np.float32)
    scores, _ = idx.index.search(q, 1)
    return scores[:, 0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="benchmarks/out/evalw")
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    from pdfqa.evaluation import load_qa, open_pool

    print("command:", " ".join([sys.executable, *sys.argv]))
    ja = open_pool(args.workdir, corpus=DATA / "qa/jsquad_valid/corpus.jsonl", progress=False)
    en = open_pool(args.workdir, corpus=DATA / "qa/squad_expmrc/corpus.jsonl", progress=False)
    ja_q = [it.question for it in load_qa(DATA / "qa/jsquad_valid/qa.jsonl")[: args.n]]
    en_q = [it.question for it in load_qa(DATA / "qa/squad_expmrc/qa.jsonl")[: args.n]]
    sets = {"ja → ja pool (answerable)": top_scores(ja, ja_q), "en → en pool (answerable)": top_scores(en, en_q),
            "en → ja pool (off-topic)": top_scores(ja, en_q), "ja → en pool (off-topic)": top_scores(en, ja_q)}
    print(f"{'questions':<28}{'p5':>7}{'p25':>7}{'p50':>7}{'p95':>7}")
    for name, s in sets.items():
        print(f"{name:<28}" + "".join(f"{np.percentile(s, p):>7.3f}" for p in (5, 25, 50, 95)))
    for t in (0.78, 0.80, 0.82, 0.84):
        keep = np.mean(np.concatenate([sets["ja → ja pool (answerable)"], sets["en → en pool (answerable)"]]) >= t)
        stop = np.mean(np.concatenate([sets["en → ja pool (off-topic)"], sets["ja → en pool (off-topic)"]]) < t)
        print(f"threshold {t:.2f}: answers {keep:.1%} of answerable questions, abstains on {stop:.1%} of off-topic ones")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
