"""Passage vectors memoised per embedder, process-wide, in a bounded LRU.

The extractive answerer embeds every sentence of the retrieved chunks, on every question: most of an
extractive answer's time (see benchmarks/README.md, "Where an extractive answer's time goes"). The same
chunks come back question after question (a course has a few thousand sentences), so a process that
answers many questions (the web app, an evaluation) embeds each sentence once.

>>> from pdfqa.embeddings import get_embedder
>>> e = get_embedder("e5-small")
>>> v = cached_passages(e, ["BPE merges frequent pairs.", "WordPiece maximises likelihood."])  # doctest: +SKIP
>>> v.shape                                                                                     # doctest: +SKIP
(2, 384)

Each text is embedded on its own (``embedder.embed_passages([text])``): e5-small's int8 engine
quantises activations per batch, so a text's vector moves slightly with the texts batched beside it
(cosine 0.997-0.999 against the text embedded alone, measured). Embedded alone, a sentence always gets
the same vector, and an answer does not depend on which questions the process answered before. Entries
are keyed by the embedder object (one per spec and process, see :func:`pdfqa.embeddings.get_embedder`)
and the text.
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
    """The vectors of ``texts``, each ``embedder.embed_passages([text])[0]``, embedded once per process
    (while it stays among the :data:`MAX_ENTRIES` most recently used)."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    cache = passage_cache(embedder)
    got = cache.lookup(texts)
    missing = list(dict.fromkeys(t for t, v in zip(texts, got) if v is None))
    if missing:
        # one text per call: its vector then depends on nothing but the text (see the module docstring)
        vecs = np.stack([np.asarray(embedder.embed_passages([t]), dtype=np.float32)[0] for t in missing])
        cache.store(missing, vecs)
        new = dict(zip(missing, vecs))
        got = [v if v is not None else new[t] for t, v in zip(texts, got)]
    return np.stack(got).astype(np.float32, copy=False)


__all__ = ["MAX_ENTRIES", "PassageCache", "cached_passages", "passage_cache"]
