"""Milvus's built-in BM25 against pdfqa's: does Milvus's own full-text search give the same ranking?

    .venv/bin/python benchmarks/milvus_analyzers.py [--set jsquad_valid --set squad_expmrc] [--limit 500]

For each passage set, BM25 recall@5 and MRR@10 (a question's gold passage) and the top-5 overlap with
pdfqa's own BM25 (bm25s over pdfqa's tokens: MeCab content words for Japanese, stems for English), for:

- ``pdfqa``: pdfqa's BM25 (what the ``local`` and ``milvus`` backends use);
- ``milvus standard``: Milvus's BM25 function over the raw text with the ``standard`` analyzer;
- ``milvus pdfqa-tokens``: Milvus's BM25 function over pdfqa's tokens (each written as one letters-only
  word, so the analyzer passes it through): Milvus's scoring on the same terms.

The Milvus rows use Milvus Lite (the engine of ``pip install milvus-lite``), k1=1.5, b=0.75 like bm25s; the
``pdfqa-tokens`` row is also run after sealing the data in several segments (Milvus Lite keeps BM25
statistics per segment).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402

DATA = Path(os.environ.get("PDFQA_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def word(token: str) -> str:
    from pdfqa.milvus_store import term_word  # what the milvus backend writes

    return term_word(token)


def milvus_bm25(client, name: str, texts: list[str], queries: list[str], analyzer: dict, k: int,
                segments: int = 1) -> list[list[int]]:
    from pymilvus import DataType, Function, FunctionType

    s = client.create_schema(auto_id=False)
    s.add_field("id", DataType.INT64, is_primary=True)
    s.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True, analyzer_params=analyzer)
    s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    s.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["text"],
                            output_field_names=["sparse"]))
    ip = client.prepare_index_params()
    ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25", params={"bm25_k1": 1.5, "bm25_b": 0.75})
    client.create_collection(name, schema=s, index_params=ip)
    per = -(-len(texts) // segments)
    for start in range(0, len(texts), per):
        client.insert(name, [{"id": i, "text": texts[i]} for i in range(start, min(len(texts), start + per))])
        client.flush(name)
    out = []
    for q in queries:
        res = client.search(name, data=[q], anns_field="sparse", limit=k, search_params={"metric_type": "BM25"})
        out.append([int(h["id"]) for h in res[0]])
    return out


def metrics(ranked: list[list[int]], gold: list[set[int]], ref: list[list[int]]) -> tuple[float, float, float]:
    r5 = np.mean([bool(set(r[:5]) & g) for r, g in zip(ranked, gold)])
    mrr = np.mean([next((1 / i for i, d in enumerate(r[:10], 1) if d in g), 0.0) for r, g in zip(ranked, gold)])
    overlap = np.mean([len(set(r[:5]) & set(f[:5])) / max(1, min(5, len(f))) for r, f in zip(ranked, ref)])
    return float(r5), float(mrr), float(overlap)


def latency(client, n: int, queries: int = 30) -> None:
    """Milvus Lite's own BM25 at ``n`` chunks of 60 Zipf-distributed words, 6-word queries, k=50."""
    import time

    rng = np.random.default_rng(0)
    vocab = [word(f"w{i}") for i in range(50_000)]
    p = 1.0 / np.arange(1, len(vocab) + 1)
    p /= p.sum()
    texts = [" ".join(vocab[j] for j in row) for row in rng.choice(len(vocab), size=(n, 60), p=p)]
    qs = [" ".join(vocab[j] for j in rng.choice(len(vocab), size=6, p=p)) for _ in range(queries)]
    t = time.perf_counter()
    milvus_bm25(client, "latency", texts, qs[:1], {"tokenizer": "standard"}, 50)
    print(f"\nMilvus Lite BM25 at {n} chunks: built in {time.perf_counter() - t:.0f} s", flush=True)
    ts = []
    for q in qs:
        t = time.perf_counter()
        client.search("latency", data=[q], anns_field="sparse", limit=50, search_params={"metric_type": "BM25"})
        ts.append(time.perf_counter() - t)
    ms = np.asarray(ts) * 1000
    print(f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms ({queries} queries)")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", default=None)
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--latency", type=int, default=0, help="only time Milvus Lite's BM25 at this many chunks")
    args = ap.parse_args()
    from pymilvus import MilvusClient

    from pdfqa.evaluation.qa import load_corpus, load_qa
    from pdfqa.lexical import BM25Index
    from pdfqa.text.tokenize import get_tokenizer

    print("command:", " ".join([sys.executable, *sys.argv]))
    print(machine())
    tok = get_tokenizer("default")
    tmp = Path(tempfile.mkdtemp())
    client = MilvusClient(str(tmp / "analyzers.db"))
    if args.latency:
        latency(client, args.latency)
        client.close()
        return 0
    print("\n| set | BM25 | recall@5 | MRR@10 | top-5 overlap with pdfqa |\n|---|---|---|---|---|")
    for name in args.set or ["jsquad_valid", "squad_expmrc"]:
        root = Path(args.data) / "qa" / name
        corpus = load_corpus(root / "corpus.jsonl")
        items = load_qa(root / "qa.jsonl")[: args.limit]
        pos = {p["doc_id"]: i for i, p in enumerate(corpus)}
        texts = [f"{p.get('title') or ''}\n{p['text']}" for p in corpus]
        gold = [{pos[d] for d in it.doc_ids if d in pos} for it in items]
        toks = [tok(t) for t in texts]
        qtoks = [tok(it.question) for it in items]
        idx = BM25Index.build(np.arange(len(texts)), toks)
        ref = [idx.search(q, 10)[0] for q in qtoks]
        rows = {"pdfqa": ref}
        rows["milvus standard"] = milvus_bm25(client, f"{name}_std", texts, [it.question for it in items],
                                              {"tokenizer": "standard"}, 10)
        hashed = [" ".join(word(t) for t in ts) for ts in toks]
        hq = [" ".join(word(t) for t in dict.fromkeys(q)) for q in qtoks]
        rows["milvus pdfqa-tokens, 1 segment"] = milvus_bm25(client, f"{name}_tok", hashed, hq, {"tokenizer": "standard"}, 10)
        rows["milvus pdfqa-tokens, 4 segments"] = milvus_bm25(client, f"{name}_tok4", hashed, hq,
                                                              {"tokenizer": "standard"}, 10, segments=4)
        for label, ranked in rows.items():
            r5, mrr, ov = metrics(ranked, gold, ref)
            print(f"| {name} | {label} | {r5:.3f} | {mrr:.3f} | {ov:.3f} |", flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
