"""The first answer a user sees: ``pdfqa ask`` end to end in a fresh process (start-up included) on a
warm collection, against a baseline source tree, interleaved in the same run.

    .venv/bin/python benchmarks/first_answer.py [--baseline-src ../main/src] [--generator extractive]
        [--generator default] [--repeat 3]

Each run starts ``python -m pdfqa.cli ask QUESTION --collection C -g GEN`` as a new process (the
collection, the model caches and the OS page cache warm: what a user's second question costs) and
records, per run: the seconds until the answer's first line reaches stdout, the total wall time, the
process's CPU seconds and peak RSS (``wait4``), and which heavy libraries it imported (its
``-X importtime`` log). The baseline tree runs the same command with ``PYTHONPATH`` pointing at it.
The collection is built from ``examples/`` (what ``make demo`` builds) by this tree's pdfqa.
"""
from __future__ import annotations

import argparse
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [  # the two questions of `make demo`, and two more like a student's
    "What was byte pair encoding originally used for?",
    "ゼロトラストの概念はいつ、だれが提唱しましたか？",
    "What does WordPiece do differently from BPE?",
    "ゼロトラストではどのようにアクセスを許可しますか？",
]
#: libraries whose import the answer path should not pay for (reported when a run imports them)
HEAVY = ("torch", "transformers", "onnxruntime", "langchain_core", "langsmith", "numba", "tokenizers", "spacy",
         "sentence_transformers", "gensim", "ray", "pymilvus")


def run_once(src: Path, question: str, collection: Path, generator: str, env: dict) -> dict:
    cmd = [sys.executable, "-X", "importtime", "-m", "pdfqa.cli", "ask", question, "--collection", str(collection),
           "-g", generator]
    env = {**env, "PYTHONPATH": str(src), "PYTHONIOENCODING": "utf-8"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    first = None
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    while sel.get_map():
        for key, _ in sel.select():
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                continue
            key.data.extend(chunk)
            if key.data is out and first is None and b"\n" in out:
                first = time.perf_counter() - t0
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    log = err.decode("utf-8", "replace")
    imported = set()
    for line in log.splitlines():
        if line.startswith("import time:"):
            _, cumulative, name = line[len("import time:"):].split("|")
            if cumulative.strip().isdigit() and int(cumulative) > 1000:  # (a refused import logs a few us)
                imported.add(name.strip().split(".")[0])
    noise = [line for line in log.splitlines() if not line.startswith("import time:") and line.strip()]
    text = out.decode("utf-8", "replace")
    tail = [line for line in text.splitlines() if line.strip().startswith(("default", "extractive", "smollm"))
            or "·" in line]
    return {"first": first if first is not None else wall, "wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mb": usage.ru_maxrss / 1024, "ok": os.waitstatus_to_exitcode(status) == 0,
            "heavy": sorted(m for m in imported if m in HEAVY), "stderr_lines": len(noise),
            "answered_by": tail[-1].strip().split(" · ")[0] if tail else "?"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline-src", type=Path, help="another pdfqa source tree (its src/) to compare with")
    ap.add_argument("--generator", "-g", action="append", help="generator specs (default: extractive, default)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per question, tree and generator")
    ap.add_argument("--questions", type=int, default=len(QUESTIONS))
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "first_answer")
    args = ap.parse_args()
    gens = args.generator or ["extractive", "default"]
    questions = QUESTIONS[:args.questions]
    src = ROOT / "src"
    trees = [("this tree", src)] + ([("baseline", args.baseline_src.resolve())] if args.baseline_src else [])
    col = args.workdir / "collection"
    if not (col / "manifest.json").exists():
        shutil.rmtree(col, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pdfqa.cli", "index", str(ROOT / "examples"), "--collection", str(col),
                        "-q"], check=True, env={**os.environ, "PYTHONPATH": str(src)}, cwd=ROOT, capture_output=True)
    env = dict(os.environ)
    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", machine())
    print(f"collection: {col} (examples/), {len(questions)} questions x {args.repeat} runs per tree and generator, "
          "interleaved\n")
    # one untimed run per tree and generator: model caches (de-quantised weights, converted graphs) in place
    for _, tree in trees:
        for g in gens:
            run_once(tree, questions[0], col, g, env)
    results: dict[tuple[str, str], list[dict]] = {}
    for rep in range(args.repeat):
        for q in questions:
            for g in gens:
                for name, tree in trees:
                    r = run_once(tree, q, col, g, env)
                    results.setdefault((name, g), []).append(r)
    print("| tree | generator | first answer p50 / max (s) | wall p50 (s) | CPU p50 (s) | peak RSS p50 (MB) | "
          "answered by | heavy imports | stderr lines |")
    print("|---|---|---|---|---|---|---|---|---|")
    for g in gens:
        for name, _ in trees:
            rs = results[(name, g)]
            med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
            heavy = sorted({m for r in rs for m in r["heavy"]})
            by = sorted({r["answered_by"] for r in rs})
            bad = sum(not r["ok"] for r in rs)
            print(f"| {name} | `{g}` | {med('first'):.2f} / {max(r['first'] for r in rs):.2f} | {med('wall'):.2f} | "
                  f"{med('cpu'):.2f} | {med('rss_mb'):.0f} | {', '.join(by)} | {', '.join(heavy) or 'none'} | "
                  f"{max(r['stderr_lines'] for r in rs)}{f' ({bad} failed)' if bad else ''} |")
    if len(trees) > 1:
        print()
        for g in gens:
            a = statistics.median(r["first"] for r in results[("this tree", g)])
            b = statistics.median(r["first"] for r in results[("baseline", g)])
            print(f"`{g}`: first answer {b / a:.1f}x sooner than the baseline (p50 {b:.2f} s -> {a:.2f} s)")
    print("\nafter:", machine())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
