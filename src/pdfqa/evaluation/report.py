"""Write an evaluation run as ``report.md``, ``results.csv``, ``per_question.csv`` and two PNG plots."""
from __future__ import annotations

import csv
from pathlib import Path

MAIN_METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "doc_hit@5", "page_hit@5")


def metric_columns(run: dict) -> list[str]:
    k = run["k"]
    have = set().union(*(r["metrics"] for r in run["results"])) if run["results"] else set()
    cols = [m for m in ("recall@1", "recall@5", f"recall@{k}", f"mrr@{k}", f"ndcg@{k}", "doc_hit@5", "page_hit@5")
            if m in have]
    return list(dict.fromkeys(cols))


def table_rows(run: dict) -> tuple[list[str], list[list[str]]]:
    cols = metric_columns(run)
    header = ["retriever", *cols, "index s", "query ms"]
    rows = [[r["retriever"], *(f"{r['metrics'][c]:.3f}" for c in cols), f"{r['seconds']['index']:.1f}",
             f"{1000 * r['seconds']['query_mean']:.1f}"] for r in run["results"]]
    return header, rows


def write_report(run: dict, out: str | Path, *, command: str = "") -> list[Path]:
    """Write the report files into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(run)
    files = []
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    files.append(out / "results.csv")
    with open(out / "per_question.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "question", *[r["retriever"] for r in run["results"]]])
        by_ret = [{q["id"]: q["rank"] for q in r.get("questions", [])} for r in run["results"]]
        for q in (run["results"][0].get("questions", []) if run["results"] else []):
            w.writerow([q["id"], q["question"], *[("" if m.get(q["id"]) is None else m[q["id"]]) for m in by_ret]])
    files.append(out / "per_question.csv")
    files += _plots(run, out)
    md = [f"# Retrieval evaluation: {Path(run['qa']).parent.name or run['qa']}", "",
          f"- QA set: `{run['qa']}` ({run['n_questions']} questions)", f"- pool: `{run['pool']}`", f"- k = {run['k']}"]
    if command:
        md.append(f"- command: `{command}`")
    md += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", "![metrics per retriever](metrics.png)", "", "![recall@k](recall_at_k.png)", "",
           "`per_question.csv` gives, per question, the rank of the first relevant document for each retriever "
           "(empty = not retrieved within the candidates), so misses can be inspected.", ""]
    for r in run["results"]:
        misses = [q for q in r.get("questions", []) if q["rank"] is None or q["rank"] > 5]
        if misses:
            md.append(f"**{r['retriever']}** misses in the top 5: {len(misses)} — e.g. "
                      + "; ".join(f"`{q['id']}` {q['question'][:60]}" for q in misses[:3]))
            md.append("")
    md += _answer_section(run, out, files)
    (out / "report.md").write_text("\n".join(md))
    files.insert(0, out / "report.md")
    return files


def worst_answers(records: list[dict], n: int = 10) -> list[dict]:
    """The ``n`` worst answered questions: abstentions and answers without the gold first, then by F1."""
    return sorted(records, key=lambda r: (r["contains_gold"], r["f1"], not r["abstained"]))[:n]


def _answer_section(run: dict, out: Path, files: list[Path]) -> list[str]:
    """``answers.csv`` (one row per question and retriever) and the answer table with the worst answers."""
    runs = [r for r in run["results"] if "answer" in r]
    if not runs:
        return []
    with open(out / "answers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["retriever", "id", "question", "gold", "answer", "short_answer", "citations", "abstained",
                    "contains_gold", "f1", "em"])
        for r in runs:
            for q in r["answer"]["questions"]:
                w.writerow([r["retriever"], q["id"], q["question"], " | ".join(q["gold"]), q["answer"],
                            q["short_answer"] or "", "; ".join(f"{c['doc']} p.{c['page']}" for c in q["citations"]),
                            int(q["abstained"]), q["contains_gold"], q["f1"], q["em"]])
    files.append(out / "answers.csv")
    md = ["## Answers", "", "| retriever | contains gold | F1 | EM | citation precision | abstained | s/answer |",
          "|---|---|---|---|---|---|---|"]
    for r in runs:
        a = r["answer"]
        md.append(f"| {r['retriever']} | {a['contains_gold']:.3f} | {a['f1']:.3f} | {a['em']:.3f} | "
                  f"{a['citation_precision']:.3f} | {a['abstention_rate']:.1%} | {a['seconds_mean']:.2f} |")
    md += ["", "`answers.csv` has every question's answer, citations, abstained flag, contains-gold and F1.", ""]
    for r in runs:
        md += [f"**Worst answers, {r['retriever']}**", "", "| id | question | gold | answer | F1 |", "|---|---|---|---|---|"]
        for q in worst_answers(r["answer"]["questions"]):
            cell = lambda t: " ".join(str(t).split()).replace("|", "\\|")[:120]  # noqa: E731
            shown = "(abstained)" if q["abstained"] else q["answer"]
            md.append(f"| `{q['id']}` | {cell(q['question'])} | {cell(' / '.join(q['gold']))} | {cell(shown)} | {q['f1']:.2f} |")
        md.append("")
    return md


def _colors(n: int) -> list:
    """``n`` distinct colours (tab10 up to 10 retrievers, tab20 up to 20, then an even spread)."""
    import matplotlib

    name = "tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"
    cmap = matplotlib.colormaps[name]
    return [cmap(i) for i in range(n)] if n <= 20 else [cmap(i / max(1, n - 1)) for i in range(n)]


def _plots(run: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = metric_columns(run)
    names = [r["retriever"] for r in run["results"]]
    colors = _colors(len(names))
    markers = "osD^vP*Xhp<>"
    # the legend sits to the right of the axes, so it never hides a bar or a curve
    legend = dict(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cols) + 2) + 2.2, 4.2))
    width = 0.8 / max(1, len(names))
    for i, r in enumerate(run["results"]):
        xs = [j + i * width for j in range(len(cols))]
        ax.bar(xs, [r["metrics"][c] for c in cols], width, label=r["retriever"], color=colors[i])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))], cols)
    low = min((r["metrics"][c] for r in run["results"] for c in cols), default=0.0)
    ax.set_ylim(max(0.0, int((low - 0.05) * 10) / 10), 1)  # zoom in where the retrievers differ
    ax.set_ylabel("score")
    ax.set_title(f"{Path(run['qa']).parent.name or 'QA'}: {run['n_questions']} questions")
    ax.legend(**legend)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(8.2, 4.2))
    ks = list(range(1, run["k"] + 1))
    for i, r in enumerate(run["results"]):
        ax.plot(ks, [r["metrics"].get(f"recall@{j}", float("nan")) for j in ks], marker=markers[i % len(markers)],
                markersize=4, color=colors[i], label=r["retriever"])
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(**legend)
    ax.set_title(f"recall@k: {Path(run['qa']).parent.name or 'QA'}")
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=110)
    plt.close(fig)
    return [out / "metrics.png", out / "recall_at_k.png"]
