"""The encoder engine: a BERT-family embedder on onnxruntime, its kernel and parallelism measured per CPU.

:class:`EncoderEmbedder` is the part every engine-run embedder shares (``e5-small``:
:class:`pdfqa.embeddings.e5_fast.E5FastEmbedder`; ``minilm`` and ``st:``:
:class:`pdfqa.embeddings.st_onnx.OnnxSTEmbedder`). A subclass supplies the model: its weights
(:class:`pdfqa.embeddings.encoder_graph.EncoderWeights`), tokenizer, special tokens and embedding
lookup. This module does the rest:

- **Windows and batches.** A text is tokenized once; one longer than the model's window is embedded
  as several windows (their token-weighted mean; a warning says so, nothing is truncated silently).
  Windows are sorted by length and cut into batches of at most ``max_batch`` sequences and
  ``batch_tokens`` padded tokens, at least one per worker; ``workers`` batches run side by side (one
  session, onnxruntime releases the GIL), each on ``threads`` intra-op threads.
- **The kernel, measured** (:mod:`pdfqa.embeddings.kernels`). At the first use of a model on a CPU:
  each candidate kernel's linear layer is timed at the model's shapes (milliseconds), those within
  reach of the fastest run the whole encoder over a calibration sample (built-in Japanese and English
  text, ~4k tokens) beside the float32 graph, and the fastest whose vectors keep cosine >= 0.99 to
  float32's wins. Then, on that kernel, each split of the cores into workers x threads and two batch
  sizes are timed. The choice and every timing are kept in
  ``<model cache>/choice-<cpu key>.json``; ``PDFQA_KERNEL`` (or ``kernel=``) skips the measurement.
- **The graph cache.** Each kernel's graph is an ONNX file (protobuf, no pickle) in
  ``<model cache>/<kernel>-v<version>-w<weight levels>/encoder.onnx`` beside a ``meta.json`` holding the
  model's weights hash and the file's own SHA-256 and size. Both are written aside and renamed (meta
  last) under a lock file, so concurrent builders never tear a file and the second one finds the
  first one's work; a graph whose meta is missing, stale (other weights) or does not match the file
  (truncated, damaged) is never loaded: it is built again, and a warning says so.

>>> from pdfqa.embeddings.engine import layouts
>>> layouts(2)
[(2, 1), (1, 2)]
>>> layouts(16)
[(8, 2), (4, 4), (2, 8), (1, 16)]
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import sys
import time
from abc import abstractmethod
from pathlib import Path

import numpy as np

from ..errors import PdfqaError
from . import kernels
from .base import Embedder

log = logging.getLogger(__name__)

#: bump when the graphs built change: cache entries of other versions are then ignored
GRAPH_VERSION = 4
#: bump when the measurement changes: choices of other versions are measured again
CHOICE_VERSION = 3  # 2: the int8 graphs keep outlier channels at every linear's input (GRAPH_VERSION 4);
#                     3: the int8 graphs keep the value projection in float32
#: linears the int8 graphs keep in float32. Measured on MiniLM against torch: with 7-bit weights (AVX2
#: without VNNI) the minimum cosine goes from 0.9899 to 0.9913 and jsquad R@5 from +0.0072 to -0.0018; with
#: 8-bit weights (VNNI) squad R@5 from -0.0080 to -0.0020, at 4.6% of MiniLM's speed and none of e5-small's
INT8_FLOAT_LINEARS = ("v",)
DEFAULT_BATCH_TOKENS = 4096
BATCH_TOKEN_CHOICES = (1024, 4096)
MAX_BATCH = 128
#: a candidate whose linear layers run slower than this fraction of the fastest one's is not timed whole
PROBE_KEEP = 0.7

#: calibration text (written for the purpose): prose, lists, figures and headings, Japanese and English,
#: like the chunks pdfqa embeds
CALIBRATION_TEXTS = (
    "梅雨は、東アジアの広い範囲で見られる雨の多い時期である。日本では多くの地域で6月上旬から7月中旬に"
    "かけて続き、農業や水資源にとって重要な役割を果たしている。",
    "第3章 ゼロトラストの考え方\n従来の境界型防御では、社内ネットワークを信頼できる領域とみなしていた。"
    "ゼロトラストでは、すべてのアクセスを検証し、最小権限の原則に基づいて許可する。",
    "本資料は、2023年度の予算（総額1,234億円）の内訳と、前年度比で12.5%増となった主な要因を説明する。",
    "・講義の目的：形態素解析の基礎を理解する\n・到達目標：MeCabとSudachiの違いを説明できる\n・評価：レポート40%、試験60%",
    "The committee reviewed the quarterly results. Net revenue increased 8% to $4.2 billion, driven by "
    "higher volumes in the services segment, partly offset by unfavorable currency movements.",
    "Tokenization splits raw text into units such as words, subwords or characters. Byte-pair encoding "
    "merges the most frequent pairs of symbols until the vocabulary reaches the desired size.",
    "Item 1A. Risk Factors\nOur business could be adversely affected by changes in interest rates, "
    "cybersecurity incidents, supply chain disruptions and the loss of key personnel.",
    "query: 梅雨がないのはどこですか",
    "Figure 2: Accuracy (%) by model size. 125M: 61.2, 350M: 67.8, 1.3B: 72.4 (see Table 4 for details).",
    "研究の背景 > 先行研究\nThese results suggest that multilingual encoders transfer well to Japanese "
    "retrieval tasks, although performance varies with the domain of the passages.",
)


def calibration_sample() -> list[str]:
    """The texts timed at calibration: each calibration text alone, in twos and in fours (lengths like
    real chunks, ~30-300 tokens)."""
    t, n = CALIBRATION_TEXTS, len(CALIBRATION_TEXTS)
    return (list(t) + [t[i] + "\n" + t[(i + 1) % n] for i in range(n)]
            + ["\n".join(t[(i + j) % n] for j in range(4)) for i in range(n)])


def cache_base() -> Path:
    """``$PDFQA_CACHE/models`` (default ``~/.cache/pdfqa/models``)."""
    return Path(os.environ.get("PDFQA_CACHE", Path.home() / ".cache" / "pdfqa")) / "models"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def files_sha256(files: list[Path]) -> str:
    """SHA-256 over ``files`` (a model's weights), memoised in ``$PDFQA_CACHE/models/weights-sha256.json``
    by (path, size, mtime) so that a process start does not re-read hundreds of MB."""
    memo_path = cache_base() / "weights-sha256.json"
    memo_key = "\n".join(f"{f.resolve()}|{f.stat().st_size}|{f.stat().st_mtime_ns}" for f in files)
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if memo_key in memo:
        return memo[memo_key]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    digest = h.hexdigest()
    try:
        with file_lock(memo_path.with_suffix(".lock")):
            try:
                memo = json.loads(memo_path.read_text())
            except (OSError, ValueError):
                memo = {}
            memo[memo_key] = digest
            write_atomic(memo_path, json.dumps(memo, indent=0).encode())
    except OSError:  # a read-only cache: hash again next time
        pass
    return digest


def write_atomic(path: Path, data: bytes) -> None:
    """Write aside, then rename into place: a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock on ``path`` (created) across processes, where the OS has ``fcntl``; the writes
    it guards are atomic anyway, the lock only spares a second process the same work."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: atomic renames alone
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _valid_entry(path: Path, meta_path: Path, source_sha256: str) -> dict | None:
    """The meta of a complete, current cache entry, else None (and why, in ``meta['_why']`` of a dict)."""
    if not meta_path.exists():
        return {"_why": "unfinished (no meta.json)"} if path.exists() else None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return {"_why": "unreadable meta.json"}
    if meta.get("source_sha256") != source_sha256:
        return {"_why": "stale (built from other weights)"}
    try:
        if meta.get("bytes") != path.stat().st_size or meta.get("sha256") != file_sha256(path):
            return {"_why": "damaged (size or SHA-256 differs from its meta.json)"}
    except OSError:
        return {"_why": "graph file missing"}
    return meta


def cached_graph(folder: Path, source_sha256: str, build, *, what: str = "encoder") -> tuple[Path, dict]:
    """``folder/encoder.onnx`` and its meta: from the cache if complete and current, else built now by
    ``build() -> (onnx bytes, extra meta)`` (under ``folder``'s lock; written aside and renamed, the
    meta last). An entry that is unfinished, stale or damaged is never loaded: it is built again."""
    path, meta_path = folder / "encoder.onnx", folder / "meta.json"
    meta = _valid_entry(path, meta_path, source_sha256)
    if meta is not None and "_why" not in meta:
        return path, meta
    with file_lock(folder.with_name(folder.name + ".lock")):
        meta = _valid_entry(path, meta_path, source_sha256)  # another process may have built it meanwhile
        if meta is not None and "_why" not in meta:
            return path, meta
        if meta is not None:
            log.warning("%s: cached graph %s is %s; building it again", what, folder, meta["_why"])
        folder.mkdir(parents=True, exist_ok=True)
        meta_path.unlink(missing_ok=True)  # from here until the new meta lands, the entry reads as unfinished
        data, extra = build()
        write_atomic(path, data)
        meta = {"source_sha256": source_sha256, "graph_version": GRAPH_VERSION, "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(), **extra}
        write_atomic(meta_path, json.dumps(meta, indent=1).encode())
        log.info("%s: built %s", what, folder)
        return path, meta


def layouts(n_cores: int, kernel: str = "int8") -> list[tuple[int, int]]:
    """(workers, threads) splits of ``n_cores`` to time, most workers first (at most 8 workers: each holds
    a batch's activations). The torch-run ``bf16`` kernel: one worker on torch's threads."""
    if kernel == "bf16":
        return [(1, n_cores)]
    out = [(w, n_cores // w) for w in sorted({1, 2, 4, 8, n_cores}, reverse=True)
           if w <= min(n_cores, 8) and n_cores % w == 0]
    return out or [(1, 1)]


class OrtRunner:
    """One onnxruntime session over a graph file; ``forward(embeddings, mask) -> pooled``."""

    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.inter_op_num_threads = 1
        so.intra_op_num_threads = threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # (threads > 1) don't burn
        # onnxruntime would fuse Add + LayerNormalization into SkipLayerNormalization, whose CPU kernel is
        # 4x slower than the two ops (measured: 1.9 vs 0.43 us per 384-wide row)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=["SkipLayerNormFusion"])

    def forward(self, emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["pooled"], {"embeddings": emb, "mask": mask})[0]


class EncoderEmbedder(Embedder):
    """Base of the engine-run embedders (see the module's docstring). Subclasses implement
    :meth:`_load_model`, :meth:`_content_ids`, :meth:`_lookup`, :meth:`_model_cache` and
    :meth:`_source_sha256`, and set ``_weights``, ``_bos``, ``_eos``, ``_pad`` and ``_window`` when loading.

    ``kernel``: None (``PDFQA_KERNEL``, else measured) or one of :data:`kernels.KERNELS`; ``workers``,
    ``threads``, ``batch_tokens``: None (measured with the kernel; fixed kernels get one worker per core,
    one thread each, 4,096 tokens) or fixed.
    """

    embed_batch_size = 256  # split here into length-sorted batches, at least one per worker
    what = "encoder"  # the name in log messages
    calibration_prefix = ""  # put before the calibration texts (not starting with "query: ") when finding outliers
    _has_q4 = False

    def __init__(self, *, kernel: str | None = None, workers: int | None = None, threads: int | None = None,
                 batch_tokens: int | None = None, max_batch: int = MAX_BATCH, cache_dir: str | Path | None = None):
        if kernel is not None:
            kernels.check_kernel(kernel, has_q4=self._has_q4)
        if batch_tokens is not None and batch_tokens < 512:
            raise ValueError("batch_tokens must be >= 512")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if (threads is not None and threads < 1) or (workers is not None and workers < 1):
            raise ValueError("threads and workers must be >= 1")
        self._kernel_arg, self._workers_arg, self._threads_arg = kernel, workers, threads
        self._batch_tokens_arg, self.max_batch = batch_tokens, max_batch
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self.kernel: str | None = None
        self.workers = workers or min(kernels.cores(), 8)
        self.threads = threads or 1
        self.batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS
        self.choice: dict = {}
        self.conversion: dict = {}
        self._runner = None
        self._pools: dict[int, object] = {}
        self._lock = threading.RLock()
        self._outliers_memo: dict[str, dict[int, list[int]]] | None = None

    # -- what a subclass provides

    @abstractmethod
    def _load_model(self) -> None:
        """Load weights and tokenizer (idempotent); set ``_weights``, ``_bos``, ``_eos``, ``_pad``, ``_window``."""

    @abstractmethod
    def _content_ids(self, texts: list[str], prefix: str) -> list[list[int]]:
        """Token ids of ``prefix + text`` without special tokens."""

    @abstractmethod
    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        """(batch, length) ids → (batch, length, hidden) float32 embeddings (word + position + type)."""

    @abstractmethod
    def _model_cache(self) -> Path:
        """This model's folder under the cache."""

    @abstractmethod
    def _source_sha256(self) -> str:
        """SHA-256 of the model's weights (keys its cache entries)."""

    def _q4(self, layer: int, name: str):
        raise NotImplementedError

    def _check_fp32(self, path: Path, meta: dict) -> dict:
        """Validate a freshly built float32 graph (e.g. against the torch model); extra meta to record.
        Raise :class:`PdfqaError` if it is wrong."""
        return {}

    # -- the graphs

    def _levels(self, kernel: str) -> int:
        return kernels.int8_weight_levels() if kernel.startswith("int8") else 0

    def graph(self, kernel: str) -> tuple[Path, dict]:
        """The cached graph of ``kernel`` (built now if missing or not valid)."""
        from .encoder_graph import build_encoder

        self._load_model()
        levels = self._levels(kernel)
        float_linears = INT8_FLOAT_LINEARS if levels else ()
        folder = self._model_cache() / (f"{kernel}-v{GRAPH_VERSION}" + (f"-w{levels}" if levels else "")
                                        + "".join(f"-{n}32" for n in float_linears))

        def build():
            extra: dict = {"kernel": kernel, "int8_weight_levels": levels or None, "float_linears": list(float_linears)}
            outliers = self._outliers() if kernel in ("int8", "int8-s8s8") else {}
            if kernel in ("int8", "int8-s8s8"):
                extra["outlier_channels"] = {site: {str(k): v for k, v in by_layer.items()}
                                             for site, by_layer in outliers.items()}
            model = build_encoder(self._weights, "int8" if kernel == "int8" else kernel, outliers=outliers,
                                  weight_levels=levels or 127, float_linears=float_linears,
                                  q4=self._q4 if kernel == "q4" else None)
            return model.SerializeToString(), extra

        path, meta = cached_graph(folder, self._source_sha256(), build, what=self.what)
        if kernel == "fp32" and "validated" not in meta:
            extra = self._check_fp32(path, meta)
            if extra:
                meta = {**meta, "validated": extra}
                write_atomic(path.with_name("meta.json"), json.dumps(meta, indent=1).encode())
        return path, meta

    def _outliers(self) -> dict[str, dict[int, list[int]]]:
        """Input channels kept in float32 by the int8 kernels, per site and layer (found on the calibration texts)."""
        from .encoder_graph import find_outliers

        if self._outliers_memo is None:
            batches = []
            texts = [t if t.startswith("query: ") else self.calibration_prefix + t for t in CALIBRATION_TEXTS]
            for ids in self._content_ids(texts, ""):
                arr, mask = self._batch_arrays([ids[:self._window]])
                batches.append((self._lookup(arr), mask))
            self._outliers_memo = find_outliers(self._weights, batches)
        return self._outliers_memo

    def make_runner(self, kernel: str, threads: int = 1):
        """A runner of ``kernel`` (``forward(embeddings, mask) -> pooled``)."""
        if kernel == "bf16":
            from .encoder_graph import TorchEncoder

            self._load_model()
            return TorchEncoder(self._weights, "bfloat16")
        path, meta = self.graph(kernel)
        try:
            return OrtRunner(path, threads)
        except Exception as e:  # noqa: BLE001 - a graph onnxruntime refuses although its hash matched
            log.warning("%s: cached graph %s failed to load (%s); building it again", self.what, path, e)
            path.with_name("meta.json").unlink(missing_ok=True)
            path, meta = self.graph(kernel)
            return OrtRunner(path, threads)

    # -- loading

    def warm_up(self) -> None:
        self._load_model()
        if self._runner is not None:
            return
        with self._lock:
            if self._runner is not None:
                return
            reason = kernels.engine_unavailable_reason()
            if reason and (self._kernel_arg or kernels.kernel_override()) != "bf16":
                raise PdfqaError(f"{self.what}: the onnxruntime engine cannot run here: {reason}")
            fixed = self._kernel_arg or kernels.kernel_override()
            if fixed:
                kernels.check_kernel(fixed, has_q4=self._has_q4)
                w, t = layouts(kernels.cores(), fixed)[0]
                choice = {"kernel": fixed, "workers": w, "threads": t, "batch_tokens": DEFAULT_BATCH_TOKENS,
                          "measured": False}
            else:
                choice = self._choice()
            self.kernel = choice["kernel"]
            self.workers = self._workers_arg or choice["workers"]
            self.threads = self._threads_arg or choice["threads"]
            self.batch_tokens = self._batch_tokens_arg or choice["batch_tokens"]
            self.choice = choice
            runner = self.make_runner(self.kernel, self.threads)
            if self.kernel != "bf16":
                self.conversion = self.graph(self.kernel)[1]
            self._runner = runner

    def describe(self) -> dict:
        return {**super().describe(), "engine": "onnxruntime"}

    # -- the measured choice

    def _choice_path(self) -> Path:
        return self._model_cache() / f"choice-{kernels.cpu_key()}.json"

    def _choice(self) -> dict:
        path = self._choice_path()
        src = self._source_sha256()
        try:
            c = json.loads(path.read_text())
            if c.get("version") == CHOICE_VERSION and c.get("source_sha256") == src and c.get("kernel") in kernels.KERNELS:
                return c
        except (OSError, ValueError):
            pass
        with file_lock(path.with_suffix(".lock")):
            try:  # measured by another process meanwhile
                c = json.loads(path.read_text())
                if c.get("version") == CHOICE_VERSION and c.get("source_sha256") == src:
                    return c
            except (OSError, ValueError):
                pass
            # a wait of several seconds, said on a terminal; scripts and captured stderr stay clean (-v shows it)
            (log.warning if sys.stderr.isatty() else log.info)(
                "%s: measuring kernels on this CPU (once; kept in %s)", self.what, path)
            c = self.measure()
            c.update(version=CHOICE_VERSION, source_sha256=src, cpu=kernels.describe_cpu())
            write_atomic(path, json.dumps(c, indent=1).encode())
            return c

    def measure(self) -> dict:
        """Time the kernels, then the worker x thread splits and batch sizes, on the calibration sample.
        Returns the choice with every figure measured.

        Candidates are timed in interleaved rounds and each keeps its best round, so a burst of load from
        other processes hits all alike. Kernels and batch sizes are compared by CPU seconds per token
        (the work they cost, robust to a busy machine); worker x thread splits by wall time (what they
        exist to change)."""
        self._load_model()
        cfg = self._weights.config
        cands = kernels.candidates(has_q4=self._has_q4)
        shapes = [(cfg.hidden, cfg.hidden, 4), (cfg.hidden, cfg.ffn, 1), (cfg.ffn, cfg.hidden, 1)]
        probe = {}
        for k in cands:  # seconds per token of one layer's linear products, measured at the model's shapes
            try:
                probe[k] = sum(n * 2 * i * o / (kernels.gemm_rate(k, i, o, rows=512) * 1e9) for i, o, n in shapes)
            except Exception as e:  # noqa: BLE001 - a kernel this build of onnxruntime/torch lacks
                log.info("%s: kernel %s does not run here (%s)", self.what, k, e)
        fastest = min(probe.values())
        timed = ["fp32"] + [k for k in cands if k in probe and k != "fp32" and fastest / probe[k] >= PROBE_KEEP]
        windows = [ids[:self._window] for ids in self._content_ids(calibration_sample(), "")]
        n_tokens = sum(len(w) + len(self._bos) + len(self._eos) for w in windows)
        runners, first = {}, {}
        for k in timed:
            first[k] = layouts(kernels.cores(), k)[0]
            try:
                runners[k] = self.make_runner(k, first[k][1])
            except Exception as e:  # noqa: BLE001
                if k == "fp32":
                    raise
                log.info("%s: kernel %s failed to build (%s)", self.what, k, e)
        timing = self._rounds({k: (r, first[k][0], DEFAULT_BATCH_TOKENS) for k, r in runners.items()}, windows)
        ref = timing["fp32"]["vectors"]
        results: dict[str, dict] = {}
        for k, r in timing.items():
            cos = float((_unit(r["vectors"]) * _unit(ref)).sum(1).min())
            results[k] = {"tokens_per_cpu_s": round(n_tokens / r["cpu"]), "tokens_per_s": round(n_tokens / r["wall"]),
                          "min_cosine_to_fp32": round(cos, 5), "ok": cos >= kernels.QUALITY_BAR.get(k, 0.99)}
        ok = {k: r for k, r in results.items() if r["ok"]}
        kernel = max(ok, key=lambda k: ok[k]["tokens_per_cpu_s"])
        options = {f"{w}x{t}": (runners[kernel] if (w, t) == first[kernel] else self.make_runner(kernel, t), w,
                                DEFAULT_BATCH_TOKENS) for w, t in layouts(kernels.cores(), kernel)}
        lay = {name: round(n_tokens / r["wall"]) for name, r in self._rounds(options, windows).items()}
        best = max(lay, key=lay.get)
        workers, threads = map(int, best.split("x"))
        runner = options[best][0]
        # one worker, the sample in batches of at most b tokens
        bt = {name: round(n_tokens / r["cpu"]) for name, r in
              self._rounds({str(b): (runner, 1, b) for b in BATCH_TOKEN_CHOICES}, windows).items()}
        top = max(bt.values())
        batch_tokens = min(int(b) for b, v in bt.items() if v >= 0.97 * top)  # the smaller, unless slower
        return {"kernel": kernel, "workers": workers, "threads": threads, "batch_tokens": batch_tokens,
                "measured": True, "sample_tokens": n_tokens, "kernels": results,
                "probe_gop_s": {k: round(cfg.linear_flops() / cfg.layers / v / 1e9, 1) for k, v in probe.items()},
                "layouts_tokens_per_s": lay, "batch_tokens_per_cpu_s": bt,
                "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}

    def _rounds(self, options: dict[str, tuple], windows: list[list[int]], rounds: int = 2) -> dict[str, dict]:
        """Each option (runner, workers, batch tokens) runs ``windows`` once per round, options interleaved,
        after a warm-up batch each; per option the best wall and CPU seconds and the vectors."""
        out = {name: {"wall": float("inf"), "cpu": float("inf"), "vectors": None} for name in options}
        for runner, _, budget in options.values():
            self._run(windows[:2], runner=runner, workers=1, budget=budget)
        for _ in range(rounds):
            for name, (runner, workers, budget) in options.items():
                t, c = time.perf_counter(), time.process_time()
                vecs = self._run(windows, runner=runner, workers=workers, budget=budget)
                r = out[name]
                r["wall"] = min(r["wall"], time.perf_counter() - t)
                r["cpu"] = min(r["cpu"], time.process_time() - c)
                r["vectors"] = vecs
        return out

    # -- embedding

    def _batch_arrays(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``bos + seq + eos``, right-padded: (ids, mask) int64 arrays."""
        extra = len(self._bos) + len(self._eos)
        L = max(len(s) for s in seqs) + extra
        ids = np.full((len(seqs), L), self._pad, dtype=np.int64)
        mask = np.zeros((len(seqs), L), dtype=np.int64)
        for r, s in enumerate(seqs):
            row = [*self._bos, *s, *self._eos]
            ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
        return ids, mask

    def _pool(self, workers: int):
        if workers not in self._pools:
            from concurrent.futures import ThreadPoolExecutor

            self._pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix=f"{self.what}-engine")
        return self._pools[workers]

    def _run(self, windows: list[list[int]], *, runner=None, workers: int | None = None,
             budget: int | None = None) -> np.ndarray:
        """Pooled vectors (len(windows), hidden) of token windows, in length-sorted batches over workers."""
        runner = runner or self._runner
        workers = workers or self.workers
        budget = budget or self.batch_tokens
        extra = len(self._bos) + len(self._eos)
        order = sorted(range(len(windows)), key=lambda w: len(windows[w]))
        if workers > 1:  # at least one batch per worker
            total = sum(len(windows[w]) + extra for w in order)
            budget = max(512, min(budget, -(-total // workers)))
        batches, start = [], 0
        while start < len(order):  # length-sorted batches under a token budget: little padding
            end = start + 1
            while (end < len(order) and end - start < self.max_batch
                   and (end - start + 1) * (len(windows[order[end]]) + extra) <= budget):
                end += 1
            batches.append(order[start:end])
            start = end

        def run(sel):
            ids, mask = self._batch_arrays([windows[w] for w in sel])
            return runner.forward(self._lookup(ids), mask)

        results = self._pool(workers).map(run, batches) if workers > 1 and len(batches) > 1 else map(run, batches)
        out = np.zeros((len(windows), self._weights.config.hidden), dtype=np.float32)
        for sel, pooled in zip(batches, results):
            out[sel] = pooled
        return out

    def _encode(self, texts: list[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.warm_up()
        width = self._window
        windows: list[list[int]] = []
        owner: list[int] = []
        long: list[int] = []
        for i, ids in enumerate(self._content_ids(texts, prefix)):
            if len(ids) > width:
                long.append(len(ids) + len(self._bos) + len(self._eos))
            for a in range(0, max(len(ids), 1), width):
                windows.append(ids[a:a + width])
                owner.append(i)
        if long:  # one message per call, not one per text
            log.warning("%s: %d text(s) longer than the model's %d tokens (up to %d) embedded as windows of %d "
                        "tokens (their token-weighted mean)", self.what, len(long), self.max_tokens, max(long), width)
        pooled = self._run(windows)
        acc = np.zeros((len(texts), pooled.shape[1]), dtype=np.float64)
        weight = np.zeros(len(texts), dtype=np.float64)
        for w, (i, ids) in enumerate(zip(owner, windows)):
            wt = max(len(ids), 1)
            acc[i] += wt * pooled[w]
            weight[i] += wt
        out = (acc / weight[:, None]).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


__all__ = ["CALIBRATION_TEXTS", "EncoderEmbedder", "OrtRunner", "cache_base", "cached_graph", "calibration_sample",
           "file_lock", "file_sha256", "files_sha256", "layouts", "write_atomic"]
