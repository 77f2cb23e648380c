"""Answer quality and abstention measured both ways, per generator and set, through ``PDFQA.ask``.

For every set the first ``--limit`` questions (a seeded sample) are retrieved once with the collection's
default retriever (k = 5) and then answered by each generator from the same contexts:

- **answerable**: questions whose gold passage/page is among the 5 contexts;
- **unanswerable, gold removed**: the same question against its pool with the gold passages (or gold
  pages) removed: the best 5 of the top 30 that are not gold, kept only when none of them contains a
  gold answer string (else the pool still answers it);
- **unanswerable, off topic**: the question asked of another set's pool in the same language (same filter).

Measured: answer contains gold (the answer as shown, normalised), token F1 and EM of the short answer
(the fact; the whole answer where a generator gives none), abstention on each kind, citation precision
(answerable), and the answer step's latency (p50/p95; retrieval not included, measured apart in the same
run). The slide/paper sets are written by ``pdfqa qa-generate`` over the PDFs first (cached).
``-g scripted`` runs the prompted path (the prompt, the evidence gate, parsing the short answer, mapping
``[n]`` to pages) against the local OpenAI-wire test server answering as a model that follows the prompt.
Each question's record goes to ``--out`` (JSONL) with the evidence features the abstention rule uses,
so ``calibrate_abstention.py`` can choose the rule without re-answering.

    PYTHONPATH=src .venv/bin/python benchmarks/answer_quality.py -g extractive -g default --limit 200 \\
        --llm-limit 20 --workdir benchmarks/out/ans/pools --out benchmarks/out/ans/run.jsonl
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETS = {
    "jsquad_valid": {"qa": DATA / "qa/jsquad_valid/qa.jsonl", "corpus": DATA / "qa/jsquad_valid/corpus.jsonl"},
    "jaquad_dev": {"qa": DATA / "qa/jaquad_dev/qa.jsonl", "corpus": DATA / "qa/jaquad_dev/corpus.jsonl"},
    "squad_expmrc": {"qa": DATA / "qa/squad_expmrc/qa.jsonl", "corpus": DATA / "qa/squad_expmrc/corpus.jsonl"},
    "financebench_dev": {"qa": DATA / "qa/financebench_dev/qa.jsonl", "pdfs": DATA / "qa/financebench_dev/pdfs"},
    "en_slides": {"qa": None, "pdfs": DATA / "pdfs/en_slides"},
    "ja_gov": {"qa": None, "pdfs": DATA / "pdfs/ja_gov"},
}
#: the pool each set's questions are asked of as off-topic questions (same language, another subject)
OFF_TOPIC = {"jsquad_valid": "ja_gov", "jaquad_dev": "ja_gov", "ja_gov": "jsquad_valid",
             "squad_expmrc": "en_slides", "financebench_dev": "squad_expmrc", "en_slides": "squad_expmrc"}


def pool(workdir: Path, name: str):
    from pdfqa.evaluation import ensure_retriever, open_pool

    s = SETS[name]
    col = open_pool(workdir, pdfs=s.get("pdfs"), corpus=s.get("corpus"), progress=False)
    ensure_retriever(col, col.default_retriever, progress=False)
    return col


def questions(workdir: Path, name: str, col, n: int, generated: int) -> list:
    """The set's questions; slide/paper sets are written once by ``pdfqa qa-generate`` (cached)."""
    from pdfqa.evaluation import load_qa

    path = SETS[name]["qa"]
    if path is None:
        path = workdir / f"qa-{name}.jsonl"
        if not path.exists():
            cmd = [sys.executable, "-m", "pdfqa.cli", "qa-generate", "--collection", str(col.path), "-n",
                   str(generated), "-o", str(path)]
            print("  $", " ".join(cmd[1:]), flush=True)
            subprocess.run(cmd, check=True)
    items = load_qa(path)
    rng = random.Random(0)
    rng.shuffle(items)
    return items[:n]


def is_gold(hit, item) -> bool:
    c = hit.chunk
    if item.pages:
        return any((c.doc, p) in set(item.pages) for p in c.pages)
    return c.doc in set(item.doc_ids)


def holds_gold(hits, item) -> bool:
    from pdfqa.evaluation.answers import contains_gold

    return any(contains_gold(h.chunk.text, item.answers) for h in hits)


def answer(qa, question: str, hits) -> tuple:
    qa.retrieve = lambda *_a, **_k: list(hits)  # the contexts are fixed per question, shared by generators
    t = time.perf_counter()
    ans = qa.ask(question)
    return ans, time.perf_counter() - t


def scripted_server(gold: dict[str, list[str]]):
    """The local OpenAI-wire test server (tests/openai_server.py) answering like a model that follows the
    prompt: the gold answer and its source number when a fenced source holds it, then the sentence
    that does, cited; else the prompt's "not found" line. It checks pdfqa's side: the prompt, the
    evidence gate, parsing the short answer and mapping [n] to pages."""
    import re

    sys.path.insert(0, str(ROOT))
    from pdfqa.evaluation.answers import contains_gold
    from pdfqa.prompts import NOT_FOUND
    from pdfqa.text import detect_language, split_sentences
    from tests.openai_server import serve

    def responder(messages):
        user = messages[-1]["content"]
        question = user.rsplit("\n", 1)[-1].split("：", 1)[-1].split(": ", 1)[-1].strip()
        answers = gold.get(question, [])
        for m in re.finditer(r"<<<SOURCE (\d+) \([^\n]*\)\n(.*?)\n>>>", user, re.S):
            n, text = m.group(1), m.group(2)
            for a in answers:
                if contains_gold(text, [a]):
                    sent = next((x for x in split_sentences(text.replace("\n", " ")) if contains_gold(x, [a])), a)
                    return f"{a} [{n}]\n{sent} [{n}]"
        return NOT_FOUND.get(detect_language(question), NOT_FOUND["en"])

    srv = serve()
    handle = srv.__enter__()
    handle.responder = responder
    return srv, handle


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * (len(xs) - 1) + 0.5))] if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-g", "--generator", action="append", default=[], help="generator spec (repeatable)")
    ap.add_argument("--set", action="append", default=[], help="sets (default: all)")
    ap.add_argument("--limit", type=int, default=200, help="questions per set")
    ap.add_argument("--llm-limit", type=int, default=20, help="questions per set and kind for slow generators")
    ap.add_argument("--slow", action="append", default=["smollm2"],
                    help="generators that take seconds per question: answered on --llm-limit per set and kind")
    ap.add_argument("--generate", type=int, default=80, help="questions qa-generate writes per PDF set")
    ap.add_argument("--workdir", default="benchmarks/out/ans/pools")
    ap.add_argument("--out", default="benchmarks/out/ans/run.jsonl")
    ap.add_argument("--only-named-pools", action="store_true",
                    help="ask off-topic questions only of pools among --set (others may still be building)")
    ap.add_argument("--no-abstain", action="store_true",
                    help="answer everything (thresholds 0) and record the features, for calibrate_abstention.py")
    args = ap.parse_args()
    from machine import machine

    from pdfqa import PDFQA
    from pdfqa.evaluation.answers import citation_precision, contains_gold, exact_match, token_f1
    from pdfqa.generators import get_generator

    gens = args.generator or ["extractive"]
    names = args.set or list(SETS)
    workdir = Path(args.workdir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    print("command:", " ".join([sys.executable, *sys.argv]))
    print("machine:", machine(), flush=True)
    cols = {}

    def col_of(name):
        if name not in cols:
            cols[name] = pool(workdir, name)
        return cols[name]

    servers = []
    if "scripted" in gens:  # the prompted path against the local OpenAI-wire server, scripted answers
        from pdfqa.evaluation import load_qa

        gold = {}
        for name in names:
            path = SETS[name]["qa"] or workdir / f"qa-{name}.jsonl"
            if Path(path).exists():
                gold.update({it.question: it.answers for it in load_qa(path)})
        servers.append(scripted_server(gold))
    rows, retrieval_s = [], []
    sink = open(out, "w", encoding="utf-8")
    for name in names:
        col = col_of(name)
        items = questions(workdir, name, col, args.limit, args.generate)
        other = col_of(OFF_TOPIC[name]) if OFF_TOPIC[name] in names or not args.only_named_pools else None
        base = PDFQA(col)
        cases = []  # (kind, item, hits, collection)
        for it in items:
            t = time.perf_counter()
            top = base.retrieve(it.question, 30)
            retrieval_s.append(time.perf_counter() - t)
            if any(is_gold(h, it) for h in top[:5]):
                cases.append(("answerable", it, top[:5], col))
            rest = [h for h in top if not is_gold(h, it)][:5]
            if rest and not holds_gold(rest, it):
                cases.append(("gold_removed", it, rest, col))
            if other is not None:
                off = PDFQA(other).retrieve(it.question, 5)
                if off and not holds_gold(off, it):
                    cases.append(("off_topic", it, off, other))
        print(f"{name}: {len(items)} questions, " + ", ".join(
            f"{k} {sum(1 for c in cases if c[0] == k)}" for k in ("answerable", "gold_removed", "off_topic")), flush=True)
        for spec in gens:
            counts: dict[str, int] = {}
            qas = {}
            for kind, it, hits, c in cases:
                if spec in args.slow and counts.get(kind, 0) >= args.llm_limit:
                    continue
                counts[kind] = counts.get(kind, 0) + 1
                key = id(c)
                if key not in qas:
                    gen = get_generator(f"openai-compatible:{servers[0][1].base_url}#scripted"
                                        if spec == "scripted" else spec)
                    if args.no_abstain and hasattr(gen, "min_support"):
                        gen = type(gen)(min_support=0.0)
                    qas[key] = PDFQA(c, generator=gen, min_evidence=0.0 if args.no_abstain else None)
                ans, secs = answer(qas[key], it.question, hits)
                short = getattr(ans, "short", None) or ans.answer
                shown = "" if ans.abstained else ans.answer
                rows.append({
                    "set": name, "kind": kind, "generator": spec, "id": it.id, "question": it.question,
                    "answers": it.answers, "answer": ans.answer, "short": short, "abstained": ans.abstained,
                    "contains_gold": contains_gold(shown, it.answers),
                    "short_contains_gold": contains_gold("" if ans.abstained else short, it.answers),
                    "f1": token_f1("" if ans.abstained else short, it.answers),
                    "em": exact_match("" if ans.abstained else short, it.answers),
                    "citation_precision": citation_precision([(x.doc, x.pages) for x in ans.citations],
                                                             set(it.doc_ids), set(it.pages)),
                    "citations": [[x.doc, x.page] for x in ans.citations], "seconds": secs,
                    "evidence": ans.evidence, "support": getattr(ans, "support", None),
                    "language": ans.language, "generator_used": ans.generator})
                sink.write(json.dumps(rows[-1], ensure_ascii=False) + "\n")
                sink.flush()
            print(f"  {spec}: answered {sum(counts.values())} cases", flush=True)
    sink.close()
    for srv, _ in servers:
        srv.__exit__(None, None, None)
    print(f"wrote {len(rows)} records to {out}")
    print(f"retrieval (k=30, for reference): p50 {1000 * pct(retrieval_s, 50):.0f} ms, "
          f"p95 {1000 * pct(retrieval_s, 95):.0f} ms")
    print_table(rows, gens, names)
    return 0


def print_table(rows: list[dict], gens: list[str], names: list[str]) -> None:
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    print("\n| set | generator | n ans | contains gold | F1 | EM | abstain (answerable) | n unans | "
          "abstain (gold removed) | abstain (off topic) | citation precision | answer s p50 / p95 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in gens:
        for name in [*names, "all"]:
            rs = [r for r in rows if r["generator"] == spec and (name == "all" or r["set"] == name)]
            a = [r for r in rs if r["kind"] == "answerable"]
            g = [r for r in rs if r["kind"] == "gold_removed"]
            o = [r for r in rs if r["kind"] == "off_topic"]
            if not rs:
                continue
            cp = [r["citation_precision"] for r in a if r["citation_precision"] is not None]
            secs = [r["seconds"] for r in rs]
            print(f"| {name} | `{spec}` | {len(a)} | {mean([r['contains_gold'] for r in a]):.3f} | "
                  f"{mean([r['f1'] for r in a]):.3f} | {mean([r['em'] for r in a]):.3f} | "
                  f"{mean([r['abstained'] for r in a]):.1%} | {len(g) + len(o)} | "
                  f"{mean([r['abstained'] for r in g]):.1%} | {mean([r['abstained'] for r in o]):.1%} | "
                  f"{mean(cp):.3f} | {pct(secs, 50):.2f} / {pct(secs, 95):.2f} |")


if __name__ == "__main__":
    raise SystemExit(main())
