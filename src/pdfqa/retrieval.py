"""Retrievers by spec string, all over one collection's chunks; each also a LangChain ``BaseRetriever``.

Spec grammar (the same in the CLI, Python, evaluation reports):

- an embedder spec (``e5-small``, ``minilm``, ``st:…``, ``bert:…``, ``word2vec:…``, ``openai:…``) or
  ``dense`` (the collection's default embedder): dense search in that embedder's FAISS index;
- ``bm25`` / ``tfidf`` (optionally ``bm25:sudachi`` etc. for another tokenizer): lexical search;
- ``hybrid`` (= ``bm25+dense+doc-bm25+page-dense+statements``) or any ``A+B[+C]``: reciprocal-rank fusion of the
  parts. Priors score chunks by the rank of something larger than a chunk and take part only where that
  unit holds several chunks (never in a passage pool, where they would repeat a chunk ranking):
  ``page-dense`` ranks whole pages by the query's cosine to each page's mean chunk vector, ``page-bm25``
  by BM25 over the page's text; ``statements`` brings in the primary financial statement pages a
  question's line items are read from (filings); ``doc-bm25`` ranks documents by BM25 over their titles
  (:data:`DOC_PRIOR_SOURCE`; or their whole text); ``hybrid`` then ranks each page's best chunk before
  any page's second one (:data:`HYBRID_PER_PAGE`);
- stages after ``|``: ``rerank:<cross-encoder>`` re-scores the top candidates, ``mmr[:λ]`` picks
  diverse ones; ``rerank:<model>`` alone means ``hybrid|rerank:<model>``.

>>> parse_spec("hybrid|mmr:0.7")
(['bm25', 'dense', 'doc-bm25', 'page-dense', 'statements'], [('mmr', '0.7')])
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .documents import Hit
from .errors import UnknownComponentError

#: names accepted besides embedder specs
RETRIEVERS = ("dense", "bm25", "tfidf", "hybrid", "A+B (fusion)", "A+page-dense / A+page-bm25 (page priors)",
              "A+statements (statement prior)", "A+doc-bm25 (document prior)", "…|rerank:<model>", "…|mmr[:lambda]")
DEFAULT_RETRIEVER = "hybrid"
#: reciprocal-rank fusion constant and `hybrid`'s weights (BM25, dense, document prior, dense page
#: prior, statement prior): the best on every public set at once (jsquad_valid, jaquad_dev,
#: squad_expmrc, sec10q, financebench_dev and the course PDFs) among the rows that keep each set at its
#: bar, with benchmarks/fusion_grid.py; reported leave-one-set-out in benchmarks/README.md (the
#: statement prior's weight rests on financebench_dev alone: left out, the choice sets it to 0)
RRF_K = 20
HYBRID_WEIGHTS = (1.0, 0.5, 0.25, 0.5, 0.5)
#: the document prior's own RRF constant: small, so the best-matching documents stand out (any of
#: 1-10 with a weight of 0.35-1.0 gave the same doc-hit@5 on sec10q)
DOC_RRF_K = 5
#: the document prior takes part only where documents have at least this many chunks on average
DOC_PRIOR_MIN_CHUNKS = 2.0
DOC_PRIOR = "doc-bm25"
#: what the document prior ranks documents by: BM25 over their whole text, over their titles, or the
#: RRF of both (see :class:`~pdfqa.lexical.DocumentIndex`); chosen with the weights (titles alone found
#: filings best but cost the course set's MRR; both keeps every set at its bar)
DOC_PRIOR_SOURCE = "both"
#: the page priors (dense: mean chunk vector per page; BM25 over whole pages); their RRF constant, and
#: how many of the best pages bring their chunks into the candidates (bringing in none or three gave the
#: same figures on every set); they take part only where pages hold this many chunks on average (not in
#: passage pools or slide decks, where a page is a chunk)
PAGE_PRIOR = "page-bm25"
PAGE_DENSE_PRIOR = "page-dense"
PAGE_RRF_K = 5
PAGE_DENSE_RRF_K = 20
PAGE_CANDIDATES = 0
PAGE_PRIOR_MIN_CHUNKS = 1.5
#: the statement prior: in filings, the primary statement pages (balance sheet, income, cash flows) a
#: question's line items are read from, of the documents the document index ranks best
STATEMENT_PRIOR = "statements"
STATEMENT_DOCS = 3
#: `hybrid` ranks each page's best chunk before any page's second one (0: off): the top hits then cover
#: more pages, each page its own piece of evidence; a page's first chunk never ranks lower for it, so hit
#: and MRR over pages and documents can only rise; chosen with the weights
HYBRID_PER_PAGE = 1
PRIORS = (DOC_PRIOR, PAGE_PRIOR, PAGE_DENSE_PRIOR, STATEMENT_PRIOR)
HYBRID_PRIORS = [DOC_PRIOR, PAGE_DENSE_PRIOR, STATEMENT_PRIOR]


def parse_spec(spec: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(fused parts, post-stages) of a retriever spec."""
    spec = spec.strip()
    if spec.startswith("rerank:"):
        spec = f"{DEFAULT_RETRIEVER}|{spec}"
    head, *stages = [s.strip() for s in spec.split("|")]
    if head == "hybrid":
        parts = ["bm25", "dense", *HYBRID_PRIORS]
    elif head.startswith("hybrid:"):
        parts = ["bm25", head[len("hybrid:"):], *HYBRID_PRIORS]
    else:
        parts = [p.strip() for p in head.split("+")] if "+" in head and not head.startswith(("st:", "bert:", "word2vec:")) else [head]
    post = []
    for st in stages:
        name, _, arg = st.partition(":")
        if name not in ("rerank", "mmr"):
            raise UnknownComponentError("retriever stage", st, ["rerank:<model>", "mmr[:lambda]"])
        post.append((name, arg))
    return parts, post


def part_kind(part: str) -> str:
    """What a fused part of a spec is: ``lexical`` (bm25/tfidf[:tokenizer]), ``prior`` (see
    :data:`PRIORS`) or ``dense`` (``dense`` or an embedder spec).

    >>> [part_kind(p) for p in parse_spec("hybrid")[0]]
    ['lexical', 'dense', 'prior', 'prior', 'prior']
    """
    if part in PRIORS:
        return "prior"
    return "lexical" if part.split(":")[0] in ("bm25", "tfidf") else "dense"


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


def _prior_alone() -> UnknownComponentError:
    return UnknownComponentError("retriever", "+".join(PRIORS), [
        f"A+{DOC_PRIOR} (a document prior fused with a retriever, e.g. e5-small+doc-bm25)",
        f"A+{PAGE_DENSE_PRIOR} or A+{PAGE_PRIOR} (a page prior fused with a retriever, e.g. bm25+dense+page-dense)",
        f"A+{STATEMENT_PRIOR} (the statement prior, e.g. bm25+dense+statements)", "hybrid"])


class DocumentPrior:
    """``doc-bm25``: ranks *documents* by BM25 over their titles, their whole text or both (``source``,
    default :data:`DOC_PRIOR_SOURCE`; see :class:`~pdfqa.lexical.DocumentIndex`); documents that match
    nothing are not ranked and gain nothing. In a fusion each candidate chunk gains
    ``w / (k_doc + its document's rank)``. ``active`` is False where documents average fewer than
    :data:`DOC_PRIOR_MIN_CHUNKS` chunks (passage pools), since there it would only repeat ``bm25``;
    ``ranks`` is then empty."""

    name = DOC_PRIOR

    def __init__(self, collection, k_doc: int = DOC_RRF_K, min_chunks: float = DOC_PRIOR_MIN_CHUNKS,
                 source: str = DOC_PRIOR_SOURCE):
        from .text.tokenize import get_tokenizer

        self.collection, self.k_doc, self.min_chunks, self.source = collection, k_doc, min_chunks, source
        self.collection.document_index()  # built (and saved) now, not on the first query
        self._tok = get_tokenizer(collection.store.manifest.get("lexical", {}).get("bm25", {})
                                  .get("tokenizer", "default"))

    @property
    def active(self) -> bool:
        return self.collection.document_index().chunks_per_doc >= self.min_chunks

    def ranks(self, query: str) -> dict[str, int]:
        """Document → 1-based rank for ``query`` ({} where the prior does not take part)."""
        idx = self.collection.document_index()
        return idx.ranks(self._tok(query), source=self.source) if idx.chunks_per_doc >= self.min_chunks else {}


class PagePrior:
    """``page-bm25``: ranks *pages* by BM25 over their whole text (see :class:`~pdfqa.lexical.PageIndex`);
    in a fusion each candidate chunk gains ``w / (k_page + the rank of its best page)``, and the chunks
    of the ``candidates`` best pages join the candidates (a statement that fills a page is found as that
    page even when none of its chunks ranks alone). ``active`` is False where pages average fewer than
    :data:`PAGE_PRIOR_MIN_CHUNKS` chunks (passage pools, slide decks: a page is a chunk there)."""

    name = PAGE_PRIOR

    def __init__(self, collection, k_page: int = PAGE_RRF_K, candidates: int = PAGE_CANDIDATES,
                 min_chunks: float = PAGE_PRIOR_MIN_CHUNKS):
        from .text.tokenize import get_tokenizer

        self.collection, self.k_page, self.candidates, self.min_chunks = collection, k_page, candidates, min_chunks
        self.collection.page_index()  # built (and saved) now, not on the first query
        self._tok = get_tokenizer(collection.store.manifest.get("lexical", {}).get("bm25", {})
                                  .get("tokenizer", "default"))

    def _active(self, idx) -> bool:
        return idx.chunks_per_page >= self.min_chunks

    @property
    def active(self) -> bool:
        return self._active(self.collection.page_index())

    def ranks(self, query: str, k: int = 50) -> dict[tuple[str, int], int]:
        """(document, page) → 1-based rank for ``query`` ({} where the prior does not take part)."""
        idx = self.collection.page_index()
        return idx.ranks(self._tok(query), k) if self._active(idx) else {}

    def candidate_rows(self, ranks: dict[tuple[str, int], int]) -> list[int]:
        """Row ids of the chunks on the best :attr:`candidates` pages of ``ranks``."""
        idx = self.collection.page_index()
        best = sorted(ranks, key=ranks.get)[:self.candidates]
        return [rid for page in best for rid in idx.chunks_of(page)]


class DensePagePrior(PagePrior):
    """``page-dense``: ranks *pages* by the cosine of the query's vector to each page's mean chunk vector
    in the collection's default embedder (:meth:`~pdfqa.collection.Collection.page_vectors`; nothing
    is re-embedded); in a fusion each candidate chunk gains ``w / (k_page + the rank of its best page)``.
    Takes part where :class:`PagePrior` does."""

    name = PAGE_DENSE_PRIOR

    def __init__(self, collection, k_page: int = PAGE_DENSE_RRF_K, candidates: int = PAGE_CANDIDATES,
                 min_chunks: float = PAGE_PRIOR_MIN_CHUNKS):
        super().__init__(collection, k_page, candidates, min_chunks)
        if self.active:
            collection.page_vectors()  # built now, not on the first query

    def ranks(self, query: str, k: int = 50) -> dict[tuple[str, int], int]:
        if not self._active(self.collection.page_index()):
            return {}
        pages, vecs = self.collection.page_vectors()
        if not pages:
            return {}
        from .lexical import top_indices

        sims = vecs @ np.asarray(self.collection.query_vector(query), dtype=np.float32)
        top = top_indices(sims, k)
        return {pages[j]: r for r, j in enumerate(top.tolist(), 1)}


class StatementPrior:
    """``statements``: for a question that names a statement or its line items (capital expenditure →
    cash flows, PP&E → balance sheet, revenue → income; see :mod:`pdfqa.statements`), the pages of
    those statements in the :data:`STATEMENT_DOCS` documents the document index ranks best join the
    candidates and each of their chunks gains ``w / (k_doc + its document's rank)``. ``active`` only
    where the collection holds statement pages (filings, annual reports)."""

    name = STATEMENT_PRIOR

    def __init__(self, collection, n_docs: int = STATEMENT_DOCS, k_doc: int = DOC_RRF_K):
        self.collection, self.n_docs, self.k_doc = collection, n_docs, k_doc
        self.collection.page_index()
        self._documents = DocumentPrior(collection)  # ranks the documents when the fusion has no document prior

    @property
    def active(self) -> bool:
        return self.collection.page_index().has_statements

    def ranks(self, query: str, doc_ranks: dict[str, int] | None = None) -> dict[tuple[str, int], int]:
        """Statement page → the rank of its document, for the statements ``query`` needs ({} otherwise).
        ``doc_ranks``: the document prior's ranking of this query, when the fusion has one already."""
        from .statements import question_statements

        idx = self.collection.page_index()
        kinds = question_statements(query) if idx.has_statements else []
        if not kinds:
            return {}
        docs = {d: r for d, r in (doc_ranks or self._documents.ranks(query)).items() if r <= self.n_docs}
        return {pg: docs[pg[0]] for pg in idx.statement_pages(kinds, list(docs))}

    def candidate_rows(self, ranks: dict[tuple[str, int], int]) -> list[int]:
        idx = self.collection.page_index()
        return [rid for page in ranks for rid in idx.chunks_of(page)]


_PRIOR_TYPES = (DocumentPrior, PagePrior, StatementPrior)  # DensePagePrior is a PagePrior


def _prior_role(part) -> str:
    """Which of fuse_scores' prior slots a prior fills: ``doc``, ``page`` or ``stmt``."""
    return "doc" if isinstance(part, DocumentPrior) else "page" if isinstance(part, PagePrior) else "stmt"


class FusionRetriever(Retriever):
    """Reciprocal-rank fusion: score = Σ wᵢ / (k_rrf + rankᵢ); each part contributes its top ``depth``.
    A :class:`DocumentPrior` part adds ``w / (k_doc + rank of the chunk's document)`` to every candidate."""

    def __init__(self, parts: list, weights: list[float] | None = None, k_rrf: int = RRF_K,
                 depth: int = 50, name: str = "", per_page: int = 0):
        self.parts, self.per_page = parts, per_page
        self.weights = weights or [1.0] * len(parts)
        if len(self.weights) != len(parts):
            raise ValueError(f"{len(self.weights)} fusion weights for {len(parts)} retrievers")
        if all(isinstance(p, _PRIOR_TYPES) for p in parts):
            raise _prior_alone()  # a prior ranks documents or pages, not chunks
        roles = [_prior_role(p) for p in parts if isinstance(p, _PRIOR_TYPES)]
        if len(roles) != len(set(roles)):
            raise UnknownComponentError("retriever", self.name if name else "+".join(p.name for p in parts), [
                "one prior of each kind per fusion (page-dense or page-bm25, not both)"])
        self.k_rrf, self.depth = k_rrf, depth
        self.name = name or "+".join(p.name for p in parts)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        rankings, weights, chunks = [], [], {}
        priors: dict[str, tuple] = {}
        for part, w in zip(self.parts, self.weights):
            if isinstance(part, _PRIOR_TYPES):
                if w:
                    priors[_prior_role(part)] = (part, w)
                continue
            hits = part.search(query, max(self.depth, k))
            rankings.append([h.chunk.chunk_id for h in hits])
            weights.append(w)
            chunks.update((h.chunk.chunk_id, h.chunk) for h in hits)
        if not chunks:
            return []
        opts: dict = {}
        doc_ranks = priors["doc"][0].ranks(query) if "doc" in priors else {}
        for kind, (ranks_key, w_key, k_key, members_key) in (("page", ("page_ranks", "w_page", "k_page", "page_members")),
                                                            ("stmt", ("stmt_ranks", "w_stmt", "k_stmt", "stmt_members"))):
            if kind not in priors:
                continue
            prior, w = priors[kind]
            ranks = prior.ranks(query, doc_ranks) if kind == "stmt" else prior.ranks(query)
            if not ranks:
                continue
            # the chunks of the prior's pages join the candidates (loaded only when new)
            rows = prior.candidate_rows(ranks)
            for c in prior.collection.store.chunks_by_rowid(rows).values():
                chunks.setdefault(c.chunk_id, c)
            best = sorted(ranks, key=ranks.get)[:prior.candidates] if kind == "page" else list(ranks)
            members = {pg: [] for pg in best}
            for cid, c in chunks.items():
                for pg in c.pages:
                    if (c.doc, pg) in members:
                        members[(c.doc, pg)].append(cid)
            opts.update({ranks_key: ranks, w_key: w, k_key: prior.k_page if kind == "page" else prior.k_doc,
                         members_key: members})
        if doc_ranks:
            prior, w = priors["doc"]
            opts.update(doc_ranks=doc_ranks, w_doc=w, k_doc=prior.k_doc)
        fused = fuse_scores(rankings, weights, self.k_rrf, doc_of={cid: c.doc for cid, c in chunks.items()},
                            pages_of={cid: c.pages for cid, c in chunks.items()}, **opts)
        ranked = [cid for cid, _ in sorted(fused.items(), key=lambda kv: -kv[1])]
        if self.per_page:
            ranked = spread_pages(ranked, {cid: (c.doc, c.pages[0]) for cid, c in chunks.items()}, self.per_page)
        return [Hit(chunk=chunks[cid], score=round(fused[cid], 6), retriever=self.name) for cid in ranked[:k]]


def fuse_scores(rankings: list[list], weights: list[float], k_rrf: int = RRF_K, *, doc_of: dict | None = None,
                pages_of: dict | None = None, doc_ranks: dict | None = None, w_doc: float = 0.0,
                k_doc: int = DOC_RRF_K, page_ranks: dict | None = None, w_page: float = 0.0,
                k_page: int = PAGE_RRF_K, page_members: dict | None = None, stmt_ranks: dict | None = None,
                w_stmt: float = 0.0, k_stmt: int = DOC_RRF_K, stmt_members: dict | None = None) -> dict:
    """``hybrid``'s scoring, one pure function (the retriever and benchmarks/fusion_grid.py share it):
    weighted reciprocal-rank fusion of the ``rankings``; then every candidate — including the chunks of
    the best pages (``page_members``: page → chunk keys) and of the statement pages (``stmt_members``) —
    gains the page prior (``w_page / (k_page + rank of its best page)``), the statement prior
    (``w_stmt / (k_stmt + rank of its statement page's document)``) and the document prior
    (``w_doc / (k_doc + rank of its document)``).

    >>> fuse_scores([["a", "b"]], [1.0], 1, doc_of={"a": "x", "b": "y", "c": "y"},
    ...             pages_of={"a": [1], "b": [2], "c": [3]}, page_ranks={("y", 3): 1}, w_page=1.0, k_page=1,
    ...             page_members={("y", 3): ["c"]})
    {'a': 0.5, 'b': 0.3333333333333333, 'c': 0.5}
    """
    fused = rrf_scores(rankings, weights, k_rrf)
    for ranks, w, kp, members in ((page_ranks, w_page, k_page, page_members), (stmt_ranks, w_stmt, k_stmt, stmt_members)):
        if ranks and w:
            for keys in (members or {}).values():
                for key in keys:
                    fused.setdefault(key, 0.0)
    # both page-level priors are scored on the full candidate set (a page's chunks may come from either)
    for ranks, w, kp in ((page_ranks, w_page, k_page), (stmt_ranks, w_stmt, k_stmt)):
        if ranks and w:
            add_page_prior(fused, pages_of, doc_of, ranks, w, kp)
    if doc_ranks and w_doc:
        add_document_prior(fused, doc_of, doc_ranks, w_doc, k_doc)
    return fused


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
        kind = part_kind(p)
        if kind == "lexical":
            name, _, tok = p.partition(":")
            built.append(LexicalRetriever(collection, name, tok or None))
        elif kind == "prior":
            built.append({DOC_PRIOR: DocumentPrior, PAGE_PRIOR: PagePrior, PAGE_DENSE_PRIOR: DensePagePrior,
                          STATEMENT_PRIOR: StatementPrior}[p](collection))
        elif p == "dense":
            built.append(DenseRetriever(collection))
        else:
            collection.check_embedder(p)  # explains what the collection has
            built.append(DenseRetriever(collection, p))
    head = spec.split("|")[0].strip()
    if weights is None and (head == "hybrid" or head.startswith("hybrid:")):
        weights = list(HYBRID_WEIGHTS)
    if all(isinstance(b, _PRIOR_TYPES) for b in built):
        raise _prior_alone()
    hybrid = head == "hybrid" or head.startswith("hybrid:")
    r: Retriever = built[0] if len(built) == 1 else FusionRetriever(built, weights, k_rrf, name=head,
                                                                    per_page=HYBRID_PER_PAGE if hybrid else 0)
    for name, arg in post:
        if name == "rerank":
            if not arg:
                raise UnknownComponentError("reranker", "rerank:", ["rerank:<cross-encoder path or hub id>"])
            r = RerankRetriever(r, arg)
        else:
            r = MMRRetriever(r, collection, float(arg) if arg else 0.5)
    return r


def __getattr__(name: str) -> Any:
    # the LangChain retriever lives in its own module: langchain_core.retrievers takes ~1 s to import
    if name == "CollectionRetriever":
        from .langchain_retriever import CollectionRetriever

        return CollectionRetriever
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def spread_pages(ranked: list, page_of: dict, per_page: int = 1) -> list:
    """``ranked`` reordered so that each page's first ``per_page`` chunks come before any page's next
    ones (order kept within each group): the best hits cover more pages. A page's first chunk never moves
    down, so hit@k and MRR over pages and documents can only rise.

    >>> spread_pages(["a1", "a2", "b1", "a3", "c1"], {"a1": 1, "a2": 1, "a3": 1, "b1": 2, "c1": 3})
    ['a1', 'b1', 'c1', 'a2', 'a3']
    """
    seen: dict = {}
    first, rest = [], []
    for key in ranked:
        page = page_of[key]
        seen[page] = seen.get(page, 0) + 1
        (first if seen[page] <= per_page else rest).append(key)
    return first + rest


def rrf_scores(rankings: list[list], weights: list[float] | None = None, k_rrf: int = RRF_K) -> dict:
    """Reciprocal-rank fusion of ranked id lists (exposed for evaluation and tests).

    >>> rrf_scores([["a", "b"], ["b"]], [1.0, 0.5], k_rrf=1) == {"a": 0.5, "b": 1/3 + 0.25}
    True
    """
    weights = weights or [1.0] * len(rankings)
    out: dict = {}
    for ranking, w in zip(rankings, weights):
        for rank, i in enumerate(ranking, 1):
            out[i] = out.get(i, 0.0) + w / (k_rrf + rank)
    return out


def add_page_prior(scores: dict, pages_of: dict, doc_of: dict, page_ranks: dict[tuple[str, int], int],
                   weight: float, k_page: int = PAGE_RRF_K) -> dict:
    """Add ``weight / (k_page + rank of the chunk's best page)`` to each fused chunk score, in place.

    >>> add_page_prior({"c1": 0.1, "c2": 0.1}, {"c1": [3], "c2": [4, 5]}, {"c1": "a.pdf", "c2": "a.pdf"},
    ...                {("a.pdf", 5): 1, ("a.pdf", 4): 2}, 0.5, 4)
    {'c1': 0.1, 'c2': 0.2}
    """
    for cid in scores:
        d = doc_of[cid]
        best = min((page_ranks[(d, p)] for p in pages_of[cid] if (d, p) in page_ranks), default=None)
        if best is not None:
            scores[cid] += weight / (k_page + best)
    return scores


def add_document_prior(scores: dict, doc_of: dict, doc_ranks: dict[str, int], weight: float,
                       k_doc: int = DOC_RRF_K) -> dict:
    """Add ``weight / (k_doc + rank of the chunk's document)`` to each fused chunk score, in place
    (chunks of documents the prior did not rank gain nothing). Returns ``scores``.

    >>> add_document_prior({"c1": 0.1, "c2": 0.1}, {"c1": "a.pdf", "c2": "b.pdf"}, {"b.pdf": 1}, 0.5, 4)
    {'c1': 0.1, 'c2': 0.2}
    """
    for cid in scores:
        r = doc_ranks.get(doc_of[cid])
        if r is not None:
            scores[cid] += weight / (k_doc + r)
    return scores


__all__ = ["add_document_prior", "add_page_prior", "fuse_scores", "spread_pages", "CollectionRetriever", "DenseRetriever", "DocumentPrior", "PagePrior", "DensePagePrior", "StatementPrior", "FusionRetriever", "LexicalRetriever", "MMRRetriever",
           "RerankRetriever", "Retriever", "get_retriever", "parse_spec", "part_kind", "rrf_scores", "np"]
