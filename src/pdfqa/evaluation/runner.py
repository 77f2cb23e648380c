"""Run retrievers over a QA set on one pool of chunks and compute the metrics.

>>> from pdfqa.evaluation import evaluate, load_qa, open_pool        # doctest: +SKIP
>>> col = open_pool("work", corpus="../shared/data/qa/jsquad_valid/corpus.jsonl")   # doctest: +SKIP
>>> res = evaluate(col, load_qa(".../qa.jsonl"), ["bm25", "e5-small", "hybrid"], k=10, limit=200)  # doctest: +SKIP
>>> res["results"][2]["metrics"]["recall@5"]                        # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from ..collection import Collection
from ..errors import PdfqaError
from ..quiet import bar_disable
from .metrics import dedupe, first_rank, hit_at, mrr_at, ndcg_at, recall_at
from .qa import QAItem, load_corpus


def open_pool(workdir: str | Path, *, pdfs: str | Path | None = None, corpus: str | Path | None = None,
              embedder: str | None = None, progress: bool = True, base_url: str | None = None,
              context: str | None = None) -> Collection:
    """The collection for a pool (a PDF folder or a passage corpus), parsed and chunked once and cached
    in ``workdir`` (keyed by the pool's absolute path and, when not the default, the chunk ``context``);
    later runs reuse it."""
    if (pdfs is None) == (corpus is None):
        raise PdfqaError("give exactly one pool: a folder of PDFs or a passage corpus")
    src = Path(pdfs or corpus).resolve()
    if not src.exists():
        raise PdfqaError(f"{src}: pool not found")
    from ..documents import DEFAULT_CONTEXT

    context = context or DEFAULT_CONTEXT
    key = hashlib.sha1(str(src).encode()).hexdigest()[:10]
    suffix = "" if context == DEFAULT_CONTEXT else f"-{context.replace('+', '_')}"
    name = f"{src.stem if src.is_file() else src.name}-{key}{suffix}"
    from ..milvus_store import is_milvus, pool_location

    path = pool_location(str(workdir), name) if is_milvus(workdir) else Path(workdir) / name
    col = Collection.open(path, create=True, embedder=embedder, base_url=base_url, context=context)
    if pdfs is not None:
        report = col.index([src], progress=progress)
        if not report.ok:
            raise PdfqaError(f"{src}: no PDF could be indexed: " + "; ".join(f.error or "" for f in report.failed[:5]))
        for f in report.failed:  # the run goes on without it, and says so: its questions score as misses
            print(f"pdfqa eval: {f.doc} was not indexed ({f.error}); questions on it count as misses",
                  file=sys.stderr)
    else:
        col.add_passages(load_corpus(src), progress=progress)
    return col


def answer_metrics(col: Collection, items: list[QAItem], retriever: str, generator: str, per_q: list[dict],
                   progress: bool = True) -> dict:
    """Answer every question with ``generator`` over ``retriever``.

    Returns the means — ``contains_gold`` (a gold answer occurs in the answer), ``f1`` and ``em`` (of the
    short answer), ``citation_precision``, ``abstention_rate``, ``seconds_mean`` — and under ``"questions"``
    one record per question: ``id``, ``question``, ``gold`` (the gold answers), ``answer``, ``short_answer``,
    ``citations`` (``[{"doc", "page"}]``), ``abstained``, ``contains_gold``, ``f1``, ``em``, ``seconds``."""
    from tqdm.auto import tqdm

    from ..qa import PDFQA
    from .answers import citation_precision, contains_gold, exact_match, token_f1

    qa = PDFQA(col, generator=generator, retriever=retriever)
    em, f1, cg, cp, abst, secs, records = [], [], [], [], [], [], []
    for it, q in tqdm(list(zip(items, per_q)), desc=f"{retriever} → {generator}", disable=bar_disable(progress), leave=False):
        t = time.perf_counter()
        ans = qa.ask(it.question)
        secs.append(time.perf_counter() - t)
        abst.append(1.0 if ans.abstained else 0.0)
        shown = "" if ans.abstained else ans.answer
        short = "" if ans.abstained else (ans.short or ans.answer)
        rec = {"id": it.id, "question": it.question, "gold": it.answers, "answer": ans.answer,
               "short_answer": ans.short, "citations": [{"doc": c.doc, "page": c.page} for c in ans.citations],
               "abstained": ans.abstained, "contains_gold": contains_gold(shown, it.answers),
               "f1": round(token_f1(short, it.answers), 4), "em": exact_match(short, it.answers),
               "seconds": round(secs[-1], 3)}
        records.append(rec)
        cg.append(rec["contains_gold"])
        em.append(rec["em"])
        f1.append(rec["f1"])
        c = citation_precision([(c.doc, c.pages) for c in ans.citations], set(it.doc_ids), set(it.pages))
        if c is not None:
            cp.append(c)
        q["answer"] = ans.answer
    mean = lambda xs: round(statistics.fmean(xs), 4) if xs else 0.0  # noqa: E731
    return {"contains_gold": mean(cg), "em": mean(em), "f1": mean(f1), "citation_precision": mean(cp),
            "abstention_rate": mean(abst), "seconds_mean": mean(secs), "questions": records}


def ensure_retriever(col: Collection, spec: str, progress: bool = True) -> float:
    """Build whatever ``spec`` needs (embedder indexes, lexical indexes); returns the seconds it took
    to build them (recorded the first time, so a cached pool still reports its cost)."""
    from ..retrieval import parse_spec, part_kind

    parts, _ = parse_spec(spec)
    total = 0.0
    for p in parts:
        kind = part_kind(p)
        if kind == "lexical":
            t = time.perf_counter()
            col.lexical(p.split(":")[0], tokenizer=p.partition(":")[2] or None)
            total += time.perf_counter() - t
        elif kind == "prior":
            t = time.perf_counter()
            col.document_index()
            total += time.perf_counter() - t
        else:
            name = col.embedder_spec if p == "dense" else p
            total += col.add_embedder(name, progress=progress)
    return total


def evaluate(col: Collection, items: list[QAItem], retrievers: list[str], *, k: int = 10, limit: int | None = None,
             progress: bool = True, qa_name: str = "", pool_name: str = "", generator: str | None = None,
             on_result: Callable[[dict], None] | None = None) -> dict:
    """Metrics per retriever in the ``pdfqa eval --json`` shape (plus per-question ranks under ``"questions"``)."""
    from tqdm.auto import tqdm

    from ..retrieval import get_retriever

    items = items[:limit] if limit else items
    is_pdf_pool = any(d.reader != "text" for d in col.documents())
    has_pages = is_pdf_pool and any(it.pages for it in items)
    out = {"qa": qa_name, "pool": pool_name, "n_questions": len(items), "k": k, "results": []}
    # seconds per query to embed it, per embedder: measured once (in batches, after the model has loaded)
    # and charged to every retriever that uses that embedder, whichever of them runs first
    embed_cost: dict[str, float] = {}
    for spec in retrievers:
        build_s = ensure_retriever(col, spec, progress)
        retr = get_retriever(col, spec)
        # query embeddings in batches (much faster than one by one); their cost is added back per query
        from ..retrieval import parse_spec, part_kind

        embed_s = 0.0
        for part in parse_spec(spec)[0]:
            if part_kind(part) == "dense":
                name = col.embedder_spec if part == "dense" else part
                if name not in embed_cost:
                    col.embedder(name).embed_queries(["warm-up"])  # loading the model is not query time
                    embed_cost[name] = col.prime_queries([it.question for it in items], name) / max(1, len(items))
                embed_s += embed_cost[name]
        if items:  # one untimed query first: index files, SQLite pages and tokenizers load on first use
            retr.search(items[0].question, max(3 * k, 30))
        sums: dict[str, float] = {}
        per_q, times = [], []
        for it in tqdm(items, desc=spec, unit="q", disable=bar_disable(progress), leave=False):
            t = time.perf_counter()
            hits = retr.search(it.question, max(3 * k, 30))
            times.append(time.perf_counter() - t)
            ranked = dedupe([h.chunk.doc for h in hits])
            rel = set(it.doc_ids)
            m = {f"recall@{j}": recall_at(ranked, rel, j) for j in range(1, k + 1)}
            m[f"mrr@{k}"] = mrr_at(ranked, rel, k)
            m[f"ndcg@{k}"] = ndcg_at(ranked, rel, k)
            if is_pdf_pool:
                m["doc_hit@5"] = hit_at(ranked, rel, 5)
            if has_pages:
                gold = set(it.pages)
                m["page_hit@5"] = float(any((h.chunk.doc, p) in gold for h in hits[:5] for p in h.chunk.pages))
            for name, v in m.items():
                sums[name] = sums.get(name, 0.0) + v
            per_q.append({"id": it.id, "question": it.question, "rank": first_rank(ranked, rel),
                          "top": ranked[:k]})
        n = max(1, len(items))
        res = {"retriever": spec, "metrics": {name: round(v / n, 4) for name, v in sums.items()},
               "seconds": {"index": round(build_s, 3), "query_mean": round(statistics.fmean(times) + embed_s, 4)
                                                            if times else 0.0},
               "questions": per_q}
        if generator:
            res["answer"] = answer_metrics(col, items, spec, generator, per_q, progress)
        out["results"].append(res)
        if on_result:
            on_result(res)
    return out
