"""Which answer unit the extractive answerer should quote: the unit-choice study behind
``UnitScores.combined`` (issue 14).

For every set the same seeded questions as ``answer_quality.py`` are retrieved once with the collection's
default retriever (k = 5); on the *answerable* ones (gold passage/page among the 5) every answer unit of
the 5 contexts is scored by :meth:`ExtractiveGenerator.score_units` (dense similarity on every unit, not
only the lexical top 8, so variants can be compared) and its best span by :func:`best_span`. A unit is
*right* when a gold answer string occurs in it (as shown: a row with its header). The cached features
(``--features``) are then scored offline for each weighting of the features: **unit@1**, the share of
questions whose chosen unit is right (what bounds "answer contains gold"), per set, and the weighting
chosen on all sets and leave-one-set-out.

    PYTHONPATH=src .venv/bin/python benchmarks/answer_units.py --workdir benchmarks/out/evalw13 --limit 200 \\
        --features benchmarks/out/units/features.jsonl
    PYTHONPATH=src .venv/bin/python benchmarks/answer_units.py --features benchmarks/out/units/features.jsonl --grid
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT_SETS = ["jsquad_valid", "jaquad_dev", "squad_expmrc", "en_slides", "ja_gov", "financebench_dev"]


def collect(args) -> None:
    from answer_quality import SETS, is_gold, pool, questions
    from machine import machine

    from pdfqa import PDFQA
    from pdfqa.evaluation.answers import contains_gold
    from pdfqa.generators.extractive import ExtractiveGenerator
    from pdfqa.generators.spans import best_span

    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", machine(), flush=True)
    out = Path(args.features)
    out.parent.mkdir(parents=True, exist_ok=True)
    gen = ExtractiveGenerator(max_embedded=10_000)
    with open(out, "w", encoding="utf-8") as sink:
        for name in args.set or DEFAULT_SETS:
            col = pool(Path(args.workdir), name)
            qa = PDFQA(col)
            items = questions(Path(args.workdir), name, col, args.limit, 80)
            n = kept = 0
            t0 = time.perf_counter()
            for it in items:
                hits = qa.retrieve(it.question, 5)
                if not any(is_gold(h, it) for h in hits):
                    continue
                n += 1
                us = gen.score_units(it.question, [h.chunk.text for h in hits], qa.sentence_similarity,
                                     headings=[" ".join(h.chunk.heading_path) for h in hits])
                if us is None:
                    continue
                right = [contains_gold(u.display(), it.answers) > 0 for _, u in us.units]
                if not any(right):
                    continue  # no unit holds the gold string (it spans units): no choice can be right
                kept += 1
                spans = []
                for _, u in us.units:
                    sp = best_span(us.question, u.text, us.idf) if u.kind != "row" else None
                    spans.append(None if sp is None else [sp.score, sp.typed])
                rec = {"set": name, "id": it.id, "question": it.question, "answers": it.answers,
                       "atype": us.question.atype, "lang": us.question.lang,
                       "ctx": [ci for ci, _ in us.units], "kind": [u.kind for _, u in us.units],
                       "text": [u.display() for _, u in us.units], "ntok": [len(t) for t in us.tokens],
                       "lex": us.lexical, "support": us.supports, "sim": us.similarities, "typed": us.typed,
                       "span": spans, "right": right,
                       "gold_ctx": [i + 1 for i, h in enumerate(hits) if is_gold(h, it)]}
                sink.write(json.dumps(rec, ensure_ascii=False) + "\n")
            print(f"{name}: {len(items)} questions, {n} answerable, {kept} with a right unit "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


# --------------------------------------------------------------------------- offline scoring


def scores(r: dict, w: dict) -> list[float]:
    """A weighting of one question's unit features (``w``: lex, sem, typed, span, rank, top)."""
    lex, sims = r["lex"], r["sim"]
    top = max(lex) or 1.0
    cand = sorted(range(len(lex)), key=lambda i: -lex[i])[: w["top"]]
    known = [sims[i] for i in cand]
    lo, hi = min(known), max(known)
    out = []
    for i in range(len(lex)):
        sem = (sims[i] - lo) / (hi - lo) if i in cand and hi > lo else 0.0
        base = (1 - w["sem"]) * lex[i] / top + w["sem"] * sem
        sp = r["span"][i]
        span = max(0.0, min(1.5, sp[0])) if sp else 0.0
        out.append(base + w["typed"] * r["typed"][i] + w["span"] * span + w["rank"] / r["ctx"][i])
    return out


def unit_at_1(rows: list[dict], w: dict) -> float:
    hit = 0
    for r in rows:
        s = scores(r, w)
        best = max(range(len(s)), key=lambda i: s[i])
        hit += r["right"][best]
    return hit / len(rows) if rows else float("nan")


#: sets with fewer questions (with a right unit) are reported, not chosen on
MIN_SET = 30
CURRENT = {"sem": 0.7, "typed": 0.15, "span": 0.0, "rank": 0.02, "top": 8}
GRID = {"sem": [0.0, 0.1, 0.2, 0.3, 0.5, 0.7], "typed": [0.0, 0.1, 0.15], "span": [0.0, 0.3, 0.5, 0.75, 1.0, 1.5],
        "rank": [0.02, 0.05, 0.1, 0.2, 0.3], "top": [8, 16, 32, 10_000]}


def grid(args) -> None:
    rows = [json.loads(line) for line in open(args.features, encoding="utf-8")]
    sets = list(dict.fromkeys(r["set"] for r in rows))
    by = {s: [r for r in rows if r["set"] == s] for s in sets}
    print(f"{len(rows)} answerable questions with a right unit: " + ", ".join(f"{s} {len(by[s])}" for s in sets))
    variants = [dict(zip(GRID, v)) for v in itertools.product(*GRID.values())]
    table = []
    for w in variants:
        per = {s: unit_at_1(by[s], w) for s in sets}
        table.append((w, per))
    cur = {s: unit_at_1(by[s], CURRENT) for s in sets}

    chosen_on = [s for s in sets if len(by[s]) >= MIN_SET]

    def best(exclude: str | None) -> tuple[dict, dict]:
        # the mean over sets, each set counted once whatever its size (sets of fewer than MIN_SET
        # questions are scored, not chosen on: one question there would outweigh ten elsewhere)
        return max(table, key=lambda t: statistics.fmean(v for s, v in t[1].items() if s != exclude and s in chosen_on))

    w_all, per_all = best(None)
    print("\n| weighting | " + " | ".join(sets) + " | mean |")
    print("|---|" + "---|" * (len(sets) + 1))
    for label, per in (("current " + _fmt(CURRENT), cur), ("chosen on all sets " + _fmt(w_all), per_all)):
        print(f"| {label} | " + " | ".join(f"{per[s]:.3f}" for s in sets) + f" | {statistics.fmean(per.values()):.3f} |")
    print("\nleave-one-set-out: the weighting chosen on the other sets, scored on the one left out")
    print("| held out | chosen on the others | unit@1 | current |")
    print("|---|---|---|---|")
    for s in sets:
        w, per = best(s)
        print(f"| {s} | {_fmt(w)} | {per[s]:.3f} | {cur[s]:.3f} |")


def _fmt(w: dict) -> str:
    return "(" + ", ".join(f"{k} {v}" for k, v in w.items()) + ")"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="benchmarks/out/evalw13")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--limit", type=int, default=200, help="questions per set (a seeded sample)")
    ap.add_argument("--features", default="benchmarks/out/units/features.jsonl")
    ap.add_argument("--grid", action="store_true", help="score the cached features offline")
    args = ap.parse_args()
    if args.grid:
        grid(args)
    else:
        collect(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
