"""Where an extractive answer's time goes: the course assistant's questions asked in one process, one
after another, against a baseline source tree (each tree in its own process, one after the other).

    .venv/bin/python benchmarks/ask_profile.py [--baseline-src ../main/src] [--passes 2] [--limit 60]

The courses are the ones ``benchmarks/app_load.py`` builds (``benchmarks/out/app_load/courses``: ``nlp``,
three en_slides decks; ``gov``, four ja_gov papers), the questions its pool (hand-written ones plus one
per section heading). Each pass asks every question once through ``PDFQA(col, generator="extractive")``,
as a web-app worker does; the first pass is a process that has answered nothing yet, the next ones a
process that has (the web app after a while). Per ask: the process's CPU seconds (the embedder's
worker threads included) and wall seconds, the wall time split into retrieval (``timings["retrieve"]``),
embedding the retrieved blocks' sentences (time inside the embedder's ``embed_passages`` during the
answer) and the rest of the extractive answer. Also reported: whether each tree gives the same answer
text to a question in every pass (an answer must not depend on what was asked before), and how many
answers the two trees share.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def worker(courses: Path, questions: dict[str, list[str]], passes: int) -> dict:
    """Runs inside the tree's own process (PYTHONPATH set to it)."""
    import threading

    from pdfqa import Collection
    from pdfqa.qa import PDFQA

    spent = threading.local()
    out: dict = {"passes": [], "answers": []}
    cols = {cid: Collection.open(courses / cid / "collection", readonly=True) for cid in questions}
    # count the time inside embed_passages (the sentences of the answer); one embedder serves both courses
    for emb in {id(e): e for e in (c.embedder(c.embedder_spec) for c in cols.values())}.values():
        inner = emb.embed_passages

        def timed(texts, _inner=inner):
            t = time.perf_counter()
            try:
                return _inner(texts)
            finally:
                spent.embed = getattr(spent, "embed", 0.0) + time.perf_counter() - t

        emb.embed_passages = timed
    qas = {cid: PDFQA(col, generator="extractive") for cid, col in cols.items()}
    for p in range(passes):
        rows, answers = [], {}
        for cid, qs in questions.items():
            for q in qs:
                spent.embed = 0.0
                t, w = time.process_time(), time.perf_counter()
                ans = qas[cid].ask(q)
                cpu, wall = time.process_time() - t, time.perf_counter() - w
                rows.append({"cpu": cpu, "wall": wall, "retrieve": ans.timings["retrieve"], "embed": spent.embed,
                             "generate": ans.timings.get("generate", 0.0)})
                answers[f"{cid}\t{q}"] = ans.answer
        out["passes"].append(rows)
        out["answers"].append(answers)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-src", type=Path)
    ap.add_argument("--courses", type=Path, default=ROOT / "benchmarks" / "out" / "app_load" / "courses")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--limit", type=int, default=60, help="questions per course (the pool's first ones)")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        job = json.loads(args.worker.read_text())
        args.worker.write_text(json.dumps(worker(Path(job["courses"]), job["questions"], job["passes"])))
        return 0
    if not (args.courses / "nlp" / "course.json").exists():
        raise SystemExit(f"no courses in {args.courses}: run benchmarks/app_load.py once (it builds them)")
    sys.path.insert(0, str(ROOT / "src"))
    from app_load import question_pool

    questions = {cid: qs[:args.limit] for cid, qs in question_pool(args.courses).items()}
    trees = [("this tree", ROOT / "src")] + ([("baseline", args.baseline_src.resolve())] if args.baseline_src else [])
    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", machine())
    print("questions:", {k: len(v) for k, v in questions.items()}, f"x {args.passes} passes\n")
    out_dir = ROOT / "benchmarks" / "out" / "ask_profile"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, src in trees:  # one process per tree
        job = out_dir / f"{name.replace(' ', '_')}.json"
        job.write_text(json.dumps({"courses": str(args.courses), "questions": questions, "passes": args.passes}))
        subprocess.run([sys.executable, __file__, "--worker", str(job)], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(src)})
        results[name] = json.loads(job.read_text())
    print("| tree | pass | asks | CPU per ask mean / p50 (ms) | wall per ask mean (ms) | retrieval (ms) | sentence embedding (ms) | "
          "rest of the answer (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, _ in trees:
        for i, rows in enumerate(results[name]["passes"], 1):
            mean = lambda k: 1000 * statistics.fmean(r[k] for r in rows)  # noqa: E731
            rest = 1000 * statistics.fmean(r["generate"] - r["embed"] for r in rows)
            print(f"| {name} | {i} | {len(rows)} | {mean('cpu'):.0f} / {1000 * statistics.median(r['cpu'] for r in rows):.0f} | "
                  f"{mean('wall'):.0f} | {mean('retrieve'):.0f} | {mean('embed'):.0f} | {rest:.0f} |")
    print()
    for name, _ in trees:
        first, *later = results[name]["answers"]
        same = min((sum(first[k] == a.get(k) for k in first) for a in later), default=len(first))
        print(f"{name}: the same answer text in every pass for {same} of {len(first)} questions")
    if len(trees) > 1:
        a, b = results["this tree"]["answers"][0], results["baseline"]["answers"][0]
        same = sum(a[k] == b.get(k) for k in a)
        print(f"the same answer text in both trees: {same} of {len(a)} (a tree that embeds each sentence alone "
              "and one that embeds a question's sentences in one batch differ on near-ties)")
    print("\nafter:", machine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
