"""The engine's vectors against the torch model's, on real chunks: each kernel vs sentence-transformers/torch.

The texts: the chunks pdfqa makes of `--pdfs` (default: en_slides, the DOT report and two 10-Qs, the
issue's six PDFs; chunked for the model, as Collection.index does) plus the first `--passages` passages of
squad_expmrc and jsquad_valid; only texts that fit the model's window (sentence-transformers truncates
longer ones, the engine windows them, so they are not the same computation). For each kernel the table
gives the cosine to the torch model's vector (mean, 1st percentile, minimum over the texts) and how many
texts fall below the bar: the engine's own (kernels.QUALITY_BAR), the issue's, >= 0.999 for fp32 and
>= 0.99 for int8 and the other reduced kernels. Deterministic: run it any time.

    .venv/bin/python benchmarks/engine_quality.py [--model minilm | --model st:<path>] [--kernels fp32 int8 bf16]
        [--cpu native|avx2] [--json OUT]

``--cpu avx2`` runs it as on an AVX2-only CPU (benchmarks/ort_avx2.py): there the int8 graph has 7-bit
weights (onnxruntime's u8 x s8 kernel adds pairs of products in int16 and would saturate).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFQA_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import machine  # noqa: E402

SIX_PDFS = [DATA / "pdfs" / "en_slides", DATA / "pdfs" / "en_gov" / "us_DOT2022_performance_report.pdf",
            DATA / "qa" / "sec10q" / "pdfs" / "2023 Q1 AAPL.pdf", DATA / "qa" / "sec10q" / "pdfs" / "2023 Q2 NVDA.pdf"]


def texts_for(emb, pdfs: list[Path], passages: int) -> tuple[list[str], dict]:
    """The texts Collection.index would embed for ``pdfs`` (its default chunking settings and context
    line), then the first ``passages`` of each passage set."""
    from pdfqa.chunking import CHUNKING_VERSION, DEFAULT_MAX_TOKENS, DEFAULT_MIN_TOKENS
    from pdfqa.collection import chunker_for, context_mode_of
    from pdfqa.pdf import read_pdf

    cfg = {"max_tokens": DEFAULT_MAX_TOKENS, "min_tokens": DEFAULT_MIN_TOKENS, "version": CHUNKING_VERSION}
    chunker, context = chunker_for(cfg, emb), context_mode_of(cfg)
    files = [f for p in pdfs for f in (sorted(p.glob("*.pdf")) if p.is_dir() else [p])]
    texts, counts = [], {}
    for f in files:
        chunks = chunker(read_pdf(f))
        texts += [c.embed_text(context) for c in chunks]
        counts[f.name] = len(chunks)
    for qa_set in ("squad_expmrc", "jsquad_valid"):
        with open(DATA / "qa" / qa_set / "corpus.jsonl", encoding="utf-8") as fh:
            got = [json.loads(line)["text"] for _, line in zip(range(passages), fh)]
        texts += got
        counts[qa_set] = len(got)
    return texts, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--kernels", nargs="*", default=None, help="default: the kernels the engine would time on this CPU (kernels.candidates())")
    ap.add_argument("--pdfs", nargs="*", type=Path, default=SIX_PDFS)
    ap.add_argument("--passages", type=int, default=300)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cpu", choices=["native", "avx2"], default="native")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.cpu == "avx2" and not a.worker:
        from ort_avx2 import rerun_as_avx2

        return rerun_as_avx2(__file__, argv)
    import logging

    import numpy as np

    logging.getLogger("pdfqa").setLevel(logging.ERROR)
    from pdfqa.embeddings import kernels
    from pdfqa.embeddings.sentence_transformers import SentenceTransformerEmbedder, minilm_path
    from pdfqa.embeddings.st_onnx import OnnxSTEmbedder

    path = minilm_path() if a.model == "minilm" else a.model.removeprefix("st:")
    if not a.worker:
        print(f"command: {' '.join(shlex.quote(x) for x in [sys.executable, *sys.argv])}")
    print(f"machine: {machine()}")
    print(f"cpu:     {a.cpu}; pdfqa sees {kernels.describe_cpu()}")
    torch_emb = SentenceTransformerEmbedder(path, spec=a.model)
    probe = OnnxSTEmbedder(path, spec=a.model, kernel="fp32", engine="onnx")
    texts, counts = texts_for(probe, a.pdfs, a.passages)
    fit = [t for t in texts if probe.count_tokens(t) <= probe._window]
    print(f"texts:   {len(fit)} of {len(texts)} fit {a.model}'s window ({probe.max_tokens} tokens): "
          + ", ".join(f"{k} {v}" for k, v in counts.items()) + "\n")
    ref = torch_emb.embed_passages(fit)
    kernel_list = a.kernels or kernels.candidates()
    rows = []
    print(f"  {'kernel':<12}{'cos mean':>10}{'cos p1':>10}{'cos min':>10}{'bar':>7}{'below':>7}  ok")
    for k in kernel_list:
        try:
            v = OnnxSTEmbedder(path, spec=a.model, kernel=k, engine="onnx").embed_passages(fit)
        except Exception as e:  # noqa: BLE001 - a kernel this machine cannot run
            print(f"  {k:<12} skipped: {type(e).__name__}: {str(e)[:100]}")
            continue
        c = (v * ref).sum(1)
        bar = kernels.QUALITY_BAR.get(k, 0.99)
        below = int((c < bar).sum())
        rows.append({"kernel": k, "cos_mean": float(c.mean()), "cos_p1": float(np.percentile(c, 1)),
                     "cos_min": float(c.min()), "bar": bar, "below_bar": below})
        print(f"  {k:<12}{c.mean():>10.5f}{np.percentile(c, 1):>10.5f}{c.min():>10.5f}{bar:>7}{below:>7}"
              f"  {'yes' if below == 0 else 'NO'}")
    print(f"\n  cosine of each kernel's vector to sentence-transformers/torch's, over the {len(fit)} texts; p1: the 1st"
          " percentile; below: texts under the bar (kernels.QUALITY_BAR: 0.999 fp32, 0.99 the reduced kernels)")
    if a.json:
        a.json.write_text(json.dumps({"machine": machine(), "model": a.model, "cpu": a.cpu, "cpu_seen": kernels.describe_cpu(),
                                      "texts": len(fit), "counts": counts, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
