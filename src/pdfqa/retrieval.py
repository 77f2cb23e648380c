"""Retrievers by spec string, all over one collection's chunks; each also a LangChain ``BaseRetriever``.

Spec grammar (the same in the CLI, Python, evaluation reports):

- an embedder spec (``e5-small``, ``minilm``, ``st:…``, ``bert:…``, ``word2vec:…``, ``openai:…``) or
  ``dense`` (the collection's default embedder): dense search in that embedder's FAISS index;
- ``bm25`` / ``tfidf`` (optionally ``bm25:sudachi`` etc. for another tokenizer): lexical search;
- ``hybrid`` (= ``bm25+dense``) or any ``A+B[+C]``: reciprocal-rank fusion of the parts;
- stages after ``|``: ``rerank:<cross-encoder>`` re-scores the top candidates, ``mmr[:λ]`` picks
  diverse ones; ``rerank:<model>`` alone means ``hybrid|rerank:<model>``.

>>> parse_spec("hybrid|mmr:0.7")
(['bm25', 'dense'], [('mmr', '0.7')])
"""
from __future__ import annotations

from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from .documents import Hit
from .errors import UnknownComponentError

#: names accepted besides embedder specs
RETRIEVERS = ("dense", "bm25", "tfidf", "hybrid", "A+B (fusion)", "…|rerank:<model>", "…|mmr[:lambda]")
DEFAULT_RETRIEVER = "hybrid"
#: reciprocal-rank fusion constant and `hybrid`'s weights (BM25, dense): chosen on the public sets
#: jsquad_valid and squad_expmrc with benchmarks/fusion_grid.py (see benchmarks/README.md)
RRF_K = 20
HYBRID_WEIGHTS = (1.0, 0.5)


def parse_spec(spec: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(fused parts, post-stages) of a retriever spec."""
    spec = spec.strip()
    if spec.startswith("rerank:"):
        spec = f"{DEFAULT_RETRIEVER}|{spec}"
    head, *stages = [s.strip() for s in spec.split("|")]
    if head == "hybrid":
        parts = ["bm25", "dense"]
    elif head.startswith("hybrid:"):
        parts = ["bm25", head[len("hybrid:"):]]
    else:
        parts = [p.strip() for p in head.split("+")] if "+" in head and not head.startswith(("st:", "bert:", "word2vec:")) else [head]
    post = []
    for st in stages:
        name, _, arg = st.partition(":")
        if name not in ("rerank", "mmr"):
            raise UnknownComponentError("retriever stage", st, ["rerank:<model>", "mmr[:lambda]"])
        post.append((name, arg))
    return parts, post


class Retriever:
    """``search(query, k) -> list[Hit]`` over a collection; ``name`` is the spec it was built from."""

    name = ""

    def search(self, query: str, k: int = 5) -> list[Hit]:
        raise NotImplementedError


class DenseRetriever(Retriever):
    def __init__(self, collection, embedder: str | None = None):
        self.collection = collection
        self.embedder = embedder or collection.embedder_spec
        self.name = self.embedder

    def search(self, query: str, k: int = 5) -> list[Hit]:
        return self.collection.dense_search(query, k, embedder=self.embedder)


class LexicalRetriever(Retriever):
    def __init__(self, collection, kind: str, tokenizer: str | None = None):
        from .text.tokenize import get_tokenizer

        self.collection, self.kind, self.tokenizer = collection, kind, tokenizer
        self.index = collection.lexical(kind, tokenizer=tokenizer)  # fail early on unknown kinds
        self._tok = get_tokenizer(tokenizer or collection.store.manifest.get("lexical", {}).get(kind, {})
                                  .get("tokenizer", "default"))
        self.name = kind if tokenizer is None else f"{kind}:{tokenizer}"

    def search(self, query: str, k: int = 5) -> list[Hit]:
        idx = self.collection.lexical(self.kind, tokenizer=self.tokenizer)
        ids, scores = idx.search(self._tok(query), k)
        rows = self.collection.store.chunks_by_rowid(ids)
        return [Hit(chunk=rows[i], score=s, retriever=self.name) for i, s in zip(ids, scores) if i in rows]


class FusionRetriever(Retriever):
    """Reciprocal-rank fusion: score = Σ wᵢ / (k_rrf + rankᵢ); each part contributes its top ``depth``."""

    def __init__(self, parts: list[Retriever], weights: list[float] | None = None, k_rrf: int = RRF_K,
                 depth: int = 50, name: str = ""):
        self.parts = parts
        self.weights = weights or [1.0] * len(parts)
        if len(self.weights) != len(parts):
            raise ValueError(f"{len(self.weights)} fusion weights for {len(parts)} retrievers")
        self.k_rrf, self.depth = k_rrf, depth
        self.name = name or "+".join(p.name for p in parts)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        fused: dict[str, float] = {}
        chunks = {}
        for part, w in zip(self.parts, self.weights):
            for rank, h in enumerate(part.search(query, max(self.depth, k)), 1):
                fused[h.chunk.chunk_id] = fused.get(h.chunk.chunk_id, 0.0) + w / (self.k_rrf + rank)
                chunks[h.chunk.chunk_id] = h.chunk
        best = sorted(fused.items(), key=lambda kv: -kv[1])[:k]
        return [Hit(chunk=chunks[cid], score=round(s, 6), retriever=self.name) for cid, s in best]


class RerankRetriever(Retriever):
    def __init__(self, base: Retriever, model: str, depth: int = 30):
        from .rerank import get_reranker

        self.base, self.depth = base, depth
        self.reranker = get_reranker(f"rerank:{model}")
        self.name = f"{base.name}|rerank:{model}"

    def search(self, query: str, k: int = 5) -> list[Hit]:
        hits = self.reranker.rerank(query, self.base.search(query, max(self.depth, k)), top_k=k)
        for h in hits:
            h.retriever = self.name
        return hits


class MMRRetriever(Retriever):
    """Maximal marginal relevance over the base's top candidates, with the default embedder's vectors."""

    def __init__(self, base: Retriever, collection, lambda_: float = 0.5, depth: int = 20):
        self.base, self.collection, self.lambda_, self.depth = base, collection, lambda_, depth
        self.name = f"{base.name}|mmr:{lambda_:g}"

    def search(self, query: str, k: int = 5) -> list[Hit]:
        from .rerank import mmr

        hits = self.base.search(query, max(self.depth, k))
        if not hits:
            return hits
        qvec, vecs = self.collection.vectors_for(query, hits)
        out = mmr(qvec, hits, vecs, k, lambda_=self.lambda_)
        for h in out:
            h.retriever = self.name
        return out


def get_retriever(collection, spec: str | None = None, *, weights: list[float] | None = None,
                  k_rrf: int = RRF_K) -> Retriever:
    """Build the retriever for ``spec`` over ``collection`` (default: :data:`DEFAULT_RETRIEVER`)."""
    spec = spec or collection.default_retriever
    parts, post = parse_spec(spec)
    built: list[Retriever] = []
    for p in parts:
        kind, _, tok = p.partition(":")
        if kind in ("bm25", "tfidf"):
            built.append(LexicalRetriever(collection, kind, tok or None))
        elif p == "dense":
            built.append(DenseRetriever(collection))
        else:
            collection.check_embedder(p)  # explains what the collection has
            built.append(DenseRetriever(collection, p))
    head = spec.split("|")[0].strip()
    if weights is None and (head == "hybrid" or head.startswith("hybrid:")):
        weights = list(HYBRID_WEIGHTS)
    r: Retriever = built[0] if len(built) == 1 else FusionRetriever(built, weights, k_rrf, name=head)
    for name, arg in post:
        if name == "rerank":
            if not arg:
                raise UnknownComponentError("reranker", "rerank:", ["rerank:<cross-encoder path or hub id>"])
            r = RerankRetriever(r, arg)
        else:
            r = MMRRetriever(r, collection, float(arg) if arg else 0.5)
    return r


class CollectionRetriever(BaseRetriever):
    """Any pdfqa retriever as a LangChain retriever; metadata as in ``Hit.to_document`` (+ ``score``)."""

    collection: Any
    k: int = 5
    retriever: str | None = None
    embedder: str | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.collection.search(query, k=self.k, retriever=self.retriever, embedder=self.embedder)
        return [h.to_document() for h in hits]


def rrf_scores(rankings: list[list[str]], weights: list[float] | None = None, k_rrf: int = RRF_K) -> dict[str, float]:
    """Reciprocal-rank fusion of ranked id lists (exposed for evaluation and tests)."""
    weights = weights or [1.0] * len(rankings)
    out: dict[str, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, i in enumerate(ranking, 1):
            out[i] = out.get(i, 0.0) + w / (k_rrf + rank)
    return out


__all__ = ["CollectionRetriever", "DenseRetriever", "FusionRetriever", "LexicalRetriever", "MMRRetriever",
           "RerankRetriever", "Retriever", "get_retriever", "parse_spec", "rrf_scores", "np"]
