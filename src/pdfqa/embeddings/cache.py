"""Passage vectors memoised per embedder, process-wide, in a bounded LRU.

The extractive answerer embeds every sentence of the retrieved chunks, on every question: ~90% of an
extractive answer's CPU time (measured in the course assistant: ~0.25 s of 0.26 s per question on two
cores, see benchmarks/README.md). The same chunks come back question after question (a course has a few
thousand sentences), and a sentence's vector depends on nothing but its text and the model, so a
process that answers many questions (the web app, an evaluation) embeds each sentence once.

>>> from pdfqa.embeddings import get_embedder
>>> e = get_embedder("e5-small")
>>> v = cached_passages(e, ["BPE merges frequent pairs.", "WordPiece maximises likelihood."])  # doctest: +SKIP
>>> v.shape                                                                                     # doctest: +SKIP
(2, 384)

Vectors are exactly what ``embedder.embed_passages`` returns for the texts (computed by it, in one
batch per call for the texts not cached yet). Entries are keyed by the embedder object (one per spec
and process, see :func:`pdfqa.embeddings.get_embedder`) and the text.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

#: sentences kept per embedder: 32,768 x 384-d float32 = 48 MB for e5-small, a few courses' worth
MAX_ENTRIES = 32_768


class PassageCache:
    """A thread-safe LRU of text → vector for one embedder."""

    def __init__(self, max_entries: int = MAX_ENTRIES):
        self.max_entries = max_entries
        self._d: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._d)

    def lookup(self, texts: list[str]) -> list[np.ndarray | None]:
        with self._lock:
            out = []
            for t in texts:
                v = self._d.get(t)
                if v is not None:
                    self._d.move_to_end(t)
                out.append(v)
            found = sum(v is not None for v in out)
            self.hits += found
            self.misses += len(out) - found
            return out

    def store(self, texts: list[str], vectors: np.ndarray) -> None:
        with self._lock:
            for t, v in zip(texts, vectors):
                self._d[t] = v
                self._d.move_to_end(t)
            while len(self._d) > self.max_entries:
                self._d.popitem(last=False)


_caches: "weakref.WeakKeyDictionary[object, PassageCache]" = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def passage_cache(embedder) -> PassageCache:
    """The cache of ``embedder``'s passage vectors (created on first use)."""
    with _caches_lock:
        cache = _caches.get(embedder)
        if cache is None:
            cache = _caches[embedder] = PassageCache()
        return cache


def cached_passages(embedder, texts: list[str]) -> np.ndarray:
    """``embedder.embed_passages(texts)``, each text embedded once per process (while it stays among
    the :data:`MAX_ENTRIES` most recently used)."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    cache = passage_cache(embedder)
    got = cache.lookup(texts)
    missing = list(dict.fromkeys(t for t, v in zip(texts, got) if v is None))
    if missing:
        vecs = np.asarray(embedder.embed_passages(missing), dtype=np.float32)
        cache.store(missing, vecs)
        new = dict(zip(missing, vecs))
        got = [v if v is not None else new[t] for t, v in zip(texts, got)]
    return np.stack(got).astype(np.float32, copy=False)


__all__ = ["MAX_ENTRIES", "PassageCache", "cached_passages", "passage_cache"]
