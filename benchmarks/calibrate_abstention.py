"""Choose the abstention rule across all sets, and report it leave-one-set-out.

Input: the records ``answer_quality.py --no-abstain`` writes (every question answered, with the two
features the rule reads): ``evidence``, the cosine of the question to the best retrieved chunk (e5-small),
and ``support``, the idf-weighted share of the question's words found in (and around) the unit the
extractive answerer chose. The rule: abstain when ``evidence < E`` or ``support < S``.

The pair (E, S) is chosen to abstain on as many unanswerable questions (gold removed, off topic) as
possible, averaged over the sets, while abstaining on at most ``--max-answerable`` of the answerable ones
(gold in the top 5), averaged over the sets; when no pair keeps that bound, the pair with the best mean
balanced accuracy.
Each set's row is then scored with the pair chosen on the *other* sets (leave-one-set-out).

    PYTHONPATH=src .venv/bin/python benchmarks/answer_quality.py -g extractive --no-abstain \\
        --out benchmarks/out/ans/features.jsonl
    PYTHONPATH=src .venv/bin/python benchmarks/calibrate_abstention.py benchmarks/out/ans/features.jsonl
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

E_GRID = [round(0.70 + 0.01 * i, 2) for i in range(17)]
S_GRID = [round(0.025 * i, 3) for i in range(33)]


def rates(rows: list[dict], e: float, s: float) -> tuple[float, float]:
    """(abstention on answerable, abstention on unanswerable) under the rule (E, S)."""
    def abstains(r):
        return (r["evidence"] or 0.0) < e or (r["support"] or 0.0) < s

    ans = [abstains(r) for r in rows if r["kind"] == "answerable"]
    una = [abstains(r) for r in rows if r["kind"] != "answerable"]
    return (statistics.fmean(ans) if ans else 0.0, statistics.fmean(una) if una else float("nan"))


def choose(rows: list[dict], sets: list[str], max_ans: float) -> tuple[float, float]:
    best, best_key = None, None
    for e in E_GRID:
        for s in S_GRID:
            per = [rates([r for r in rows if r["set"] == name], e, s) for name in sets]
            feasible = statistics.fmean(a for a, _ in per) <= max_ans
            una = statistics.fmean([u for _, u in per if u == u] or [0.0])
            bal = statistics.fmean(((1 - a) + (u if u == u else 1 - a)) / 2 for a, u in per)
            key = (feasible, una if feasible else bal, -e, -s)
            if best_key is None or key > best_key:
                best, best_key = (e, s), key
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("records", help="JSONL written by answer_quality.py --no-abstain")
    ap.add_argument("--generator", default="extractive")
    ap.add_argument("--max-answerable", type=float, default=0.05, help="abstention allowed on answerable questions")
    ap.add_argument("--rule", help="E,S: report this rule (e.g. the shipped one) instead of the chosen one")
    args = ap.parse_args()
    print("command:", " ".join([sys.executable, *sys.argv]))
    rows = [json.loads(line) for line in open(args.records, encoding="utf-8")]
    rows = [r for r in rows if r["generator"] == args.generator and r.get("support") is not None]
    sets = list(dict.fromkeys(r["set"] for r in rows))
    e, s = choose(rows, sets, args.max_answerable)
    print(f"chosen on all sets: abstain when evidence < {e:.2f} or support < {s:.3f}\n")
    if args.rule:
        e, s = (float(x) for x in args.rule.split(","))
        print(f"reported below with the given rule: evidence < {e:.2f} or support < {s:.3f}\n")
    print("| held-out set | rule chosen on the other sets (E, S) | abstain (answerable) | abstain (unanswerable) "
          "| with the all-sets rule: answerable | unanswerable |")
    print("|---|---|---|---|---|---|")
    for name in sets:
        others = [x for x in sets if x != name]
        le, ls = choose([r for r in rows if r["set"] != name], others, args.max_answerable)
        held = [r for r in rows if r["set"] == name]
        a, u = rates(held, le, ls)
        aa, uu = rates(held, e, s)
        print(f"| {name} | {le:.2f}, {ls:.3f} | {a:.1%} | {u:.1%} | {aa:.1%} | {uu:.1%} |")
    a, u = rates(rows, e, s)
    print(f"| all | {e:.2f}, {s:.3f} | | | {a:.1%} | {u:.1%} |")
    print(f"\nWith the rule (E {e:.2f}, S {s:.3f}) applied (an abstention scores 0):\n")
    print("| set | answerable (gold in top 5) | contains gold | F1 | EM | abstain (answerable) | unanswerable "
          "| abstain (gold removed) | abstain (off topic) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in [*sets, "all"]:
        rs = [r for r in rows if name in ("all", r["set"])]
        cut = lambda r: (r["evidence"] or 0.0) < e or (r["support"] or 0.0) < s  # noqa: E731
        ans = [r for r in rs if r["kind"] == "answerable"]
        mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
        g = [cut(r) for r in rs if r["kind"] == "gold_removed"]
        o = [cut(r) for r in rs if r["kind"] == "off_topic"]
        print(f"| {name} | {len(ans)} | {mean([0 if cut(r) else r['contains_gold'] for r in ans]):.3f} | "
              f"{mean([0 if cut(r) else r['f1'] for r in ans]):.3f} | {mean([0 if cut(r) else r['em'] for r in ans]):.3f} | "
              f"{mean([cut(r) for r in ans]):.1%} | {len(g) + len(o)} | {mean(g):.1%} | {mean(o):.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
