"""Lexical indexes over a collection's chunks: BM25 (bm25s) and TF-IDF, with Japanese-aware tokens.

Both take pre-tokenized documents (see :mod:`pdfqa.text.tokenize`: MeCab for Japanese, stemming
and stop-words for English) and map their rows to chunk row ids. Saved without pickle: bm25s's
own ``.npy``/``.json`` files, and ``.npz`` + JSON for TF-IDF.

>>> idx = BM25Index.build([10, 11, 12], [["梅雨", "雨季"], ["北海道", "梅雨"], ["token", "split"]])
>>> idx.search(["梅雨", "北海道"], k=2)
([11, 10], [1.0, 0.324])
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import CollectionError, UnknownComponentError
from .statements import RULES_VERSION, page_statements
from .store import atomic_write_bytes, atomic_write_json

LEXICAL_KINDS = ("bm25", "tfidf")


def import_bm25s():
    """``bm25s``, imported without numba. bm25s imports numba whenever it is installed (ranx, an
    evaluation extra, installs it), which costs ~0.3 s of CPU (and more wall time) at every start,
    while pdfqa uses only its numpy/scipy paths (``index``, ``get_scores``, ``save``/``load``). numba is
    hidden only while bm25s itself is first imported; anything importing numba later gets it."""
    import sys

    if "bm25s" in sys.modules or "numba" in sys.modules:
        import bm25s

        return bm25s
    sys.modules["numba"] = None  # type: ignore[assignment]  # how Python marks a module as absent
    try:
        import bm25s
    finally:
        if "numba" in sys.modules and sys.modules["numba"] is None:
            del sys.modules["numba"]
    return bm25s



def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest ``scores``, best first (ties in index order).

    >>> top_indices(np.array([0.1, 0.9, 0.5, 0.9]), 3).tolist()
    [1, 3, 2]
    """
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]

class LexicalIndex:
    kind = ""
    #: the tokenizer's cache key the tokens came from ("" in indexes written before it was recorded)
    tokenizer_key = ""

    def __init__(self, ids: np.ndarray, generation: int = 0):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.generation = generation

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, tokens: list[str], k: int) -> tuple[list[int], list[float]]:
        raise NotImplementedError

    @staticmethod
    def load(path: Path) -> "LexicalIndex":
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CollectionError(f"{path}: unreadable lexical index ({e})") from e
        cls = {"bm25": BM25Index, "tfidf": TfidfIndex}[meta["kind"]]
        idx = cls._load(path, meta)
        idx.generation = int(meta.get("generation", -1))
        idx.tokenizer_key = meta.get("tokenizer_key", "")
        idx.meta = meta
        return idx

    def save(self, path: Path, meta: dict) -> None:
        """Write into a fresh sibling folder, then swap it in (readers see old or new, never a mix)."""
        import os
        import shutil

        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self._save(tmp)
        np.save(tmp / "ids.npy", self.ids, allow_pickle=False)
        atomic_write_json(tmp / "meta.json", {**meta, "kind": self.kind, "generation": self.generation,
                                              "count": len(self)})
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)


def _normalise_top(scores: np.ndarray) -> np.ndarray:
    top = float(scores.max()) if len(scores) else 0.0
    return scores / top if top > 0 else scores


class BM25Index(LexicalIndex):
    """Okapi BM25 (bm25s, Lucene variant, k1=1.5, b=0.75). Scores are divided by the best score of
    the query (1.0 = best match) so they read the same across queries."""

    kind = "bm25"

    def __init__(self, ids, model, generation: int = 0):
        super().__init__(ids, generation)
        self.model = model

    @classmethod
    def build(cls, ids, token_lists: list[list[str]], *, k1: float = 1.5, b: float = 0.75) -> "BM25Index":
        bm25s = import_bm25s()

        if not token_lists:  # an emptied collection: nothing to index (bm25s cannot index zero documents)
            return cls(np.zeros(0, dtype=np.int64), None)
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index([t if t else [""] for t in token_lists], show_progress=False)
        return cls(ids, model)

    def search(self, tokens: list[str], k: int) -> tuple[list[int], list[float]]:
        if not len(self) or not tokens:
            return [], []
        vocab = self.model.vocab_dict
        qids = [vocab[t] for t in dict.fromkeys(tokens) if t in vocab]
        if not qids:
            return [], []
        scores = self.model.get_scores(qids)  # a dense score per document: one sparse row-sum
        top = top_indices(scores, k)
        top = top[scores[top] > 0]
        norm = _normalise_top(scores[top])
        return self.ids[top].tolist(), [round(float(s), 3) for s in norm]

    def _save(self, path: Path) -> None:
        if self.model is not None:
            self.model.save(str(path), show_progress=False)

    @classmethod
    def _load(cls, path: Path, meta: dict) -> "BM25Index":
        bm25s = import_bm25s()

        if not meta.get("count"):
            return cls(np.zeros(0, dtype=np.int64), None)
        model = bm25s.BM25.load(str(path), mmap=False, show_progress=False)
        return cls(np.load(path / "ids.npy", allow_pickle=False), model)


class TfidfIndex(LexicalIndex):
    """The classic baseline: sublinear tf × smoothed idf, L2-normalised rows, cosine scores."""

    kind = "tfidf"

    def __init__(self, ids, matrix, vocab: dict[str, int], idf: np.ndarray, generation: int = 0):
        super().__init__(ids, generation)
        self.matrix, self.vocab, self.idf = matrix, vocab, idf

    @classmethod
    def build(cls, ids, token_lists: list[list[str]]) -> "TfidfIndex":
        from scipy import sparse

        vocab: dict[str, int] = {}
        rows, cols, vals = [], [], []
        for r, toks in enumerate(token_lists):
            counts: dict[int, int] = {}
            for t in toks:
                j = vocab.setdefault(t, len(vocab))
                counts[j] = counts.get(j, 0) + 1
            rows.extend([r] * len(counts))
            cols.extend(counts)
            vals.extend(1.0 + np.log(list(counts.values())) if counts else [])
        n = len(token_lists)
        tf = sparse.csr_matrix((np.asarray(vals, dtype=np.float32), (rows, cols)), shape=(n, max(1, len(vocab))))
        df = np.bincount(tf.indices, minlength=tf.shape[1])
        idf = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        return cls(ids, _l2_rows(tf.multiply(idf).tocsr()), vocab, idf)

    def search(self, tokens: list[str], k: int) -> tuple[list[int], list[float]]:
        cols: dict[int, int] = {}
        for t in tokens:
            if t in self.vocab:
                cols[self.vocab[t]] = cols.get(self.vocab[t], 0) + 1
        if not cols or not len(self):
            return [], []
        q = np.zeros(self.matrix.shape[1], dtype=np.float32)
        for j, c in cols.items():
            q[j] = (1 + np.log(c)) * self.idf[j]
        q /= np.linalg.norm(q)
        scores = self.matrix @ q
        top = top_indices(scores, k)
        top = top[scores[top] > 0]
        return self.ids[top].tolist(), [round(float(s), 6) for s in scores[top]]

    def _save(self, path: Path) -> None:
        from scipy import sparse

        sparse.save_npz(path / "matrix.npz", self.matrix)
        np.save(path / "idf.npy", self.idf, allow_pickle=False)
        atomic_write_bytes(path / "vocab.json", json.dumps(self.vocab, ensure_ascii=False).encode())

    @classmethod
    def _load(cls, path: Path, meta: dict) -> "TfidfIndex":
        from scipy import sparse

        return cls(np.load(path / "ids.npy", allow_pickle=False), sparse.load_npz(path / "matrix.npz").tocsr(),
                   json.loads((path / "vocab.json").read_text()), np.load(path / "idf.npy", allow_pickle=False))


def _l2_rows(m):
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    from scipy import sparse

    return sparse.diags(1.0 / norms).dot(m).tocsr().astype(np.float32)


class DocumentIndex:
    """BM25 over whole documents (the tokens of all a document's chunks together) and over their titles:
    which *document* a query is about. Company names, product names, course titles and dates separate
    documents far better than they separate chunks, most of which never repeat them (a 10-Q's chunks
    rarely say "Apple"); a title ("3M COMPANY, Form 10-K, fiscal year ended December 31, 2018") names
    the company and the period in a handful of words where the whole text names every year it compares.
    ``hybrid`` fuses it as a document prior (:mod:`pdfqa.retrieval`).

    >>> idx = DocumentIndex.build(["a.pdf", "a.pdf", "b.pdf"], [["apple", "sales"], ["margin"], ["intel", "sales"]],
    ...                           title_tokens=[["apple", "2018"], ["intel", "2019"]])
    >>> idx.ranks(["apple", "margin"])
    {'a.pdf': 1}
    >>> idx.ranks(["sales", "2019"], source="title")
    {'b.pdf': 1}
    >>> idx.ranks(["sales", "2019"], source="both")
    {'b.pdf': 1, 'a.pdf': 2}
    >>> idx.chunks_per_doc
    1.5
    """

    tokenizer_key = ""
    #: sources a ranking can come from: the whole text, the titles, or their reciprocal-rank fusion
    SOURCES = ("text", "title", "both")

    def __init__(self, bm25: BM25Index, docs: list[str], n_chunks: int, generation: int = 0,
                 title_tokens: list[list[str]] | None = None):
        self.bm25, self.docs, self.n_chunks, self.generation = bm25, docs, n_chunks, generation
        self.title_tokens = title_tokens if title_tokens is not None else [[] for _ in docs]
        self._titles: BM25Index | None = None

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def chunks_per_doc(self) -> float:
        return self.n_chunks / len(self.docs) if self.docs else 0.0

    @classmethod
    def build(cls, chunk_docs: list[str], token_lists: list[list[str]], generation: int = 0,
              title_tokens: list[list[str]] | None = None) -> "DocumentIndex":
        """``title_tokens``: each document's title, tokenized, in the order documents first appear in
        ``chunk_docs``."""
        docs = list(dict.fromkeys(chunk_docs))
        pos = {d: i for i, d in enumerate(docs)}
        bags: list[list[str]] = [[] for _ in docs]
        for d, toks in zip(chunk_docs, token_lists):
            bags[pos[d]].extend(toks)
        return cls(BM25Index.build(np.arange(len(docs), dtype=np.int64), bags), docs, len(chunk_docs), generation,
                   title_tokens)

    def _title_index(self) -> BM25Index:
        if self._titles is None:  # a few words per document: built in memory on first use
            self._titles = BM25Index.build(np.arange(len(self.docs), dtype=np.int64), self.title_tokens)
        return self._titles

    def ranks(self, tokens: list[str], k: int | None = None, source: str = "text") -> dict[str, int]:
        """Document → 1-based rank for the documents that match ``tokens`` at all (best first), by BM25
        over their whole text, their titles, or the RRF of both (k=20, as the page priors' "both")."""
        if source not in self.SOURCES:
            raise ValueError(f"document ranking source {source!r}: one of {', '.join(self.SOURCES)}")
        n = k or len(self.docs)
        if source == "both":
            from .retrieval import rrf_scores

            # each side's best 1,000 (a document ranked lower gains almost nothing from a prior, and a
            # collection of 10^5 documents must not sort them all per query); ties keep the text's order
            fused = rrf_scores([list(self.ranks(tokens, 1000, "text")), list(self.ranks(tokens, 1000, "title"))],
                               k_rrf=20)
            return {d: r for r, d in enumerate(sorted(fused, key=lambda d: -fused[d])[:n], 1)}
        ids, _ = (self.bm25 if source == "text" else self._title_index()).search(tokens, n)
        return {self.docs[i]: r for r, i in enumerate(ids, 1)}

    def save(self, path: Path, meta: dict) -> None:
        self.bm25.generation = self.generation
        self.bm25.save(path, {**meta, "docs": self.docs, "n_chunks": self.n_chunks, "title_tokens": self.title_tokens})

    @classmethod
    def load(cls, path: Path) -> "DocumentIndex":
        bm25 = LexicalIndex.load(path)
        meta = bm25.meta
        try:
            docs, n_chunks = list(meta["docs"]), int(meta["n_chunks"])
        except (KeyError, TypeError, ValueError) as e:
            raise CollectionError(f"{path}: not a document index ({e})") from e
        if len(docs) != len(bm25):
            raise CollectionError(f"{path}: {len(docs)} document names for {len(bm25)} rows")
        titles = meta.get("title_tokens")
        # saved before titles were ranked: generation -1 makes the collection rebuild it (derived data)
        idx = cls(bm25, docs, n_chunks, bm25.generation if titles is not None else -1, titles)
        idx.tokenizer_key = bm25.tokenizer_key
        return idx


class PageIndex:
    """BM25 over whole pages (the tokens of every chunk on a page; a chunk spanning two pages counts
    on both): which *page* a query is about. A financial statement, a KPI table or a slide fills its
    page, and questions about it name words spread over the whole page ("capital expenditure ... cash
    flow statement") that no single chunk holds. ``hybrid`` fuses it as a page prior
    (:mod:`pdfqa.retrieval`), and the chunks of its best pages join the candidates.

    >>> idx = PageIndex.build([1, 2, 3], ["a.pdf", "a.pdf", "b.pdf"], [[1], [1, 2], [1]],
    ...                       [["cash", "flows"], ["capital", "expenditure"], ["revenue"]])
    >>> idx.ranks(["capital", "cash"])
    {('a.pdf', 1): 1, ('a.pdf', 2): 2}
    >>> idx.chunks_of(("a.pdf", 2))
    [2]
    """

    tokenizer_key = ""

    def __init__(self, bm25: BM25Index, pages: list[tuple[str, int]], chunk_ids: list[list[int]],
                 generation: int = 0, statements: list[list[str]] | None = None):
        self.bm25, self.pages, self.chunk_ids, self.generation = bm25, pages, chunk_ids, generation
        #: per page, the primary financial statements it holds (see :mod:`pdfqa.statements`)
        self.statements = statements or [[] for _ in pages]
        self._pos = {p: i for i, p in enumerate(pages)}
        #: chunks per page on average (a chunk spanning two pages counts on each)
        self.chunks_per_page = sum(map(len, chunk_ids)) / len(pages) if pages else 0.0

    def __len__(self) -> int:
        return len(self.pages)

    @classmethod
    def build(cls, ids, chunk_docs: list[str], chunk_pages: list[list[int]], token_lists: list[list[str]],
              generation: int = 0, page_titles: dict | None = None) -> "PageIndex":
        """``page_titles``: (document, page) → the headings and table captions on it, which tell
        statement pages (:func:`pdfqa.statements.page_statements`)."""
        pos: dict[tuple[str, int], int] = {}
        bags: list[list[str]] = []
        members: list[list[int]] = []
        for cid, d, pages, toks in zip(np.asarray(ids).tolist(), chunk_docs, chunk_pages, token_lists):
            for pg in pages:
                key = (d, int(pg))
                if key not in pos:
                    pos[key] = len(bags)
                    bags.append([])
                    members.append([])
                bags[pos[key]].extend(toks)
                members[pos[key]].append(int(cid))
        pages_list = list(pos)
        stmts = [page_statements((page_titles or {}).get(pg, [])) for pg in pages_list]
        return cls(BM25Index.build(np.arange(len(bags), dtype=np.int64), bags), pages_list, members, generation, stmts)

    @property
    def has_statements(self) -> bool:
        return any(self.statements)

    def statement_pages(self, kinds: list[str], docs: list[str] | None = None) -> list[tuple[str, int]]:
        """Pages holding any of the statements ``kinds`` (of ``docs`` only, when given), in order."""
        want, keep = set(kinds), set(docs) if docs is not None else None
        return [pg for pg, st in zip(self.pages, self.statements)
                if want & set(st) and (keep is None or pg[0] in keep)]

    def ranks(self, tokens: list[str], k: int = 50) -> dict[tuple[str, int], int]:
        """(document, page) → 1-based rank for the best ``k`` pages that match ``tokens`` at all."""
        ids, _ = self.bm25.search(tokens, min(k, len(self.pages))) if self.pages else ([], [])
        return {self.pages[i]: r for r, i in enumerate(ids, 1)}

    def chunks_of(self, page: tuple[str, int]) -> list[int]:
        """Row ids of the chunks on ``page`` (document, 1-based page)."""
        i = self._pos.get(page)
        return list(self.chunk_ids[i]) if i is not None else []

    def save(self, path: Path, meta: dict) -> None:
        self.bm25.generation = self.generation
        self.bm25.save(path, {**meta, "pages": [[d, p] for d, p in self.pages], "chunk_ids": self.chunk_ids,
                              "statements": self.statements, "statement_rules": RULES_VERSION})

    @classmethod
    def load(cls, path: Path) -> "PageIndex":
        bm25 = LexicalIndex.load(path)
        meta = bm25.meta
        try:
            pages = [(str(d), int(p)) for d, p in meta["pages"]]
            chunk_ids = [[int(x) for x in row] for row in meta["chunk_ids"]]
        except (KeyError, TypeError, ValueError) as e:
            raise CollectionError(f"{path}: not a page index ({e})") from e
        if len(pages) != len(bm25) or len(chunk_ids) != len(pages):
            raise CollectionError(f"{path}: {len(pages)} page names for {len(bm25)} rows")
        stmts = meta.get("statements")  # absent in page indexes saved before statement pages existed
        # statement pages found by other rules: generation -1 makes the collection rebuild it (derived data)
        current = meta.get("statement_rules") == RULES_VERSION
        idx = cls(bm25, pages, chunk_ids, bm25.generation if current else -1,
                  [list(x) for x in stmts] if isinstance(stmts, list) and len(stmts) == len(pages) else None)
        idx.tokenizer_key = bm25.tokenizer_key
        return idx


def build_lexical(kind: str, ids, token_lists: list[list[str]]) -> LexicalIndex:
    if kind == "bm25":
        return BM25Index.build(ids, token_lists)
    if kind == "tfidf":
        return TfidfIndex.build(ids, token_lists)
    raise UnknownComponentError("lexical index", kind, list(LEXICAL_KINDS))
