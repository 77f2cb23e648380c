"""Second-stage ranking: a cross-encoder reranker (``rerank:<path or hub id>``) and MMR diversification.

:class:`CrossEncoderReranker` scores each (query, chunk) pair jointly with a sentence-transformers
``CrossEncoder`` and keeps the ``top_k`` best; the returned :class:`~pdfqa.documents.Hit`\\ s carry
the cross-encoder's own score (for one-logit models, the sigmoid of the logit, as sentence-transformers
returns it) and the retriever name with ``|rerank`` appended. :func:`mmr` is maximal marginal
relevance over L2-normalised vectors, a pure numpy function.

Hub ids for users online (hub downloads do not work on the machines this was built on; give a local
folder written by ``CrossEncoder.save_pretrained`` there):

- English: ``rerank:cross-encoder/ms-marco-MiniLM-L-6-v2`` (:data:`ENGLISH_HUB_ID`), a 6-layer MiniLM
  trained on MS MARCO passage ranking; its card reports NDCG@10 74.30 on TREC DL 2019 and MRR@10 39.01
  on MS MARCO dev, about as good as the 12-layer model at twice its speed. English only.
- Japanese: ``rerank:hotchpotch/japanese-reranker-cross-encoder-xsmall-v1`` (:data:`JAPANESE_HUB_ID`),
  MIT, 6 layers with a hidden size of 384, 512 tokens, trained on Japanese retrieval data (JQaRA, JSQuAD,
  MIRACL, mMARCO, Mr.TyDi, ...) and distilled from the larger models of its family. Its card reports
  nDCG@10 0.9376 on JaCWIR and 0.9602 on JSQuAD, level with ``BAAI/bge-reranker-v2-m3`` (0.9343 / 0.9599),
  though below it on JQaRA (0.6136 vs 0.673) and MIRACL-ja (0.7411 vs 0.8374). It is the Japanese default
  because it is small enough to rerank on a CPU at interactive speed; choose bge-reranker-v2-m3 (or the
  family's ``-base-v1`` / ``-large-v1``) when quality matters more than latency.
- Mixed Japanese/English collections: ``rerank:BAAI/bge-reranker-v2-m3`` (:data:`MULTILINGUAL_HUB_ID`),
  apache-2.0, XLM-RoBERTa based (from bge-m3), 568M parameters: multilingual and cross-lingual, so it
  also ranks English passages for Japanese questions and the reverse; slow on a CPU, best on a GPU.

>>> r = from_spec("rerank:cross-encoder/ms-marco-MiniLM-L-6-v2")
>>> r.model_name
'cross-encoder/ms-marco-MiniLM-L-6-v2'
"""
from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .documents import Hit
from .errors import PdfqaError

ENGLISH_HUB_ID = "cross-encoder/ms-marco-MiniLM-L-6-v2"
JAPANESE_HUB_ID = "hotchpotch/japanese-reranker-cross-encoder-xsmall-v1"
MULTILINGUAL_HUB_ID = "BAAI/bge-reranker-v2-m3"
RERANKERS = ("rerank:<cross-encoder path or hub id>",)


class CrossEncoderReranker:
    """``rerank:<path or hub id>``: a sentence-transformers ``CrossEncoder``, loaded on first use.

    ``with_headings`` scores the chunk's heading path with its text (``Chunk.embed_text``), as the
    embedders see it; ``max_length`` caps the pair's tokens (default: the model's own limit, at most 512).
    """

    def __init__(self, model: str, *, spec: str | None = None, device: str = "cpu", batch_size: int = 32,
                 max_length: int | None = None, with_headings: bool = True):
        if not model:
            raise PdfqaError("reranker: no model; use rerank:<cross-encoder path or hub id>")
        if batch_size < 1:
            raise PdfqaError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = model
        self.spec = spec or f"rerank:{model}"
        self.device, self.batch_size = device, batch_size
        self.max_length = max_length
        self.with_headings = with_headings
        self._model = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the cross-encoder now (otherwise it loads on the first :meth:`rerank`)."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            try:
                from sentence_transformers import CrossEncoder
            except ImportError as e:
                raise PdfqaError(f"reranker {self.spec!r} needs sentence-transformers: pip install 'pdfqa[st]'") from e
            local = os.path.exists(self.model_name)
            if not local and self.model_name.startswith(("/", "./", "../", "~")):
                raise PdfqaError(f"reranker {self.spec!r}: no model folder at {self.model_name!r}")
            try:
                model = CrossEncoder(self.model_name, device=self.device, local_files_only=local,
                                     max_length=self.max_length)
            except Exception as e:
                raise PdfqaError(f"reranker {self.spec!r}: cannot load model {self.model_name!r} "
                                 f"({type(e).__name__}: {str(e)[:200]}); give a local folder, or allow the "
                                 f"download from the hub (e.g. {ENGLISH_HUB_ID}, {JAPANESE_HUB_ID})") from e
            if self.max_length is None:  # the model's own limit, at most 512
                attr = "max_seq_length" if hasattr(type(model), "max_seq_length") else "max_length"
                ml = getattr(model, attr, None)
                if not isinstance(ml, int) or ml <= 0 or ml > 512:
                    setattr(model, attr, 512)
            self._model = model

    def score(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """The cross-encoder's score of each (query, text) pair, in order, as float64."""
        self.warm_up()
        if not texts:
            return np.zeros(0, dtype=np.float64)
        scores = self._model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                                     show_progress_bar=False, convert_to_numpy=True)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim == 2:  # a model with several labels: use the last ("relevant") one
            scores = scores[:, -1]
        return scores

    def rerank(self, query: str, hits: list[Hit], top_k: int) -> list[Hit]:
        """The ``top_k`` hits by cross-encoder score, best first, as new :class:`Hit` objects.

        Each carries the same chunk, ``score`` = the cross-encoder's score and ``retriever`` =
        the original retriever name + ``"|rerank"``. Ties keep the incoming order.
        """
        if top_k <= 0 or not hits:
            return []
        texts = [h.chunk.embed_text(self.with_headings) for h in hits]
        scores = self.score(query, texts)
        order = sorted(range(len(hits)), key=lambda i: -scores[i])[:top_k]
        return [Hit(chunk=hits[i].chunk, score=float(scores[i]), retriever=f"{hits[i].retriever}|rerank")
                for i in order]


def mmr(query_vec, hits: Sequence[Hit], hit_vecs, k: int, lambda_: float = 0.5) -> list[Hit]:
    """Maximal marginal relevance: ``k`` hits that are relevant to the query and unlike each other.

    Greedily picks ``argmax  lambda_ * cos(q, d) - (1 - lambda_) * max_{s picked} cos(d, s)``;
    ``lambda_ = 1`` is plain relevance order, lower values favour diversity. Vectors are
    L2-normalised here, so any scale works. Returns the chosen hits themselves, in the order
    picked; ties go to the earlier hit.

    >>> from pdfqa.documents import Chunk
    >>> hs = [Hit(Chunk(str(i), "d", "h", "t", [1], None, [], [], 0, 1), 1.0) for i in range(3)]
    >>> v = [[1, 0], [0.99, 0.14], [0.6, 0.8]]
    >>> [h.chunk.chunk_id for h in mmr([1, 0], hs, v, k=2, lambda_=0.3)]
    ['0', '2']
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be within [0, 1], got {lambda_}")
    n = len(hits)
    if k <= 0 or n == 0:
        return []
    docs = np.asarray(hit_vecs, dtype=np.float64).reshape(n, -1)
    q = np.asarray(query_vec, dtype=np.float64).reshape(-1)
    if q.shape[0] != docs.shape[1]:
        raise ValueError(f"query vector has {q.shape[0]} dimensions, hit vectors {docs.shape[1]}")
    docs = docs / np.maximum(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    relevance = docs @ q
    sims = docs @ docs.T
    chosen: list[int] = []
    redundancy = np.full(n, -np.inf)  # max similarity to anything chosen so far
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        score = lambda_ * relevance - (1.0 - lambda_) * penalty
        score[~available] = -np.inf
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, sims[best])
    return [hits[i] for i in chosen]


def from_spec(spec: str) -> CrossEncoderReranker:
    """``rerank:<cross-encoder path or hub id>`` → a :class:`CrossEncoderReranker` (nothing loaded yet)."""
    if not spec.startswith("rerank:") or not spec[len("rerank:"):].strip():
        raise PdfqaError(f"not a reranker spec: {spec!r}; expected rerank:<cross-encoder path or hub id>, "
                         f"e.g. rerank:{ENGLISH_HUB_ID}")
    return CrossEncoderReranker(spec[len("rerank:"):].strip(), spec=spec)


@lru_cache(maxsize=4)
def get_reranker(spec: str) -> CrossEncoderReranker:
    """One shared reranker per spec (``rerank:<model>`` or just ``<model>``): the model loads once per process."""
    return from_spec(spec if spec.startswith("rerank:") else f"rerank:{spec}")


__all__ = ["CrossEncoderReranker", "ENGLISH_HUB_ID", "JAPANESE_HUB_ID", "MULTILINGUAL_HUB_ID", "RERANKERS",
           "from_spec", "get_reranker", "mmr"]
