"""The embedder interface: a LangChain ``Embeddings`` that also knows its name, size and tokenizer."""
from __future__ import annotations

from abc import abstractmethod

import numpy as np
from langchain_core.embeddings import Embeddings


class Embedder(Embeddings):
    """Base for pdfqa embedders. Models load lazily on first use (``warm_up``) and are reused.

    Attributes a collection records in its manifest: ``spec`` (the registry name), ``dim``,
    ``normalized`` (vectors are L2-normalised, so inner product = cosine) and ``max_tokens`` (the
    model's maximum sequence length, prefix and special tokens included).
    """

    spec: str = ""
    normalized: bool = True
    max_tokens: int = 512
    #: tokens the model adds around a passage (prefix, BOS/EOS) that count against ``max_tokens``
    passage_overhead: int = 2
    #: texts per ``embed_passages`` call when a collection embeds many (an engine that forms its own
    #: length-bucketed batches and spreads them over workers wants larger calls)
    embed_batch_size: int = 32

    @property
    @abstractmethod
    def dim(self) -> int: ...

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone in the model's own tokenizer (no prefix, no special tokens)."""

    @abstractmethod
    def embed_passages(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 for documents, in the model's passage convention."""

    @abstractmethod
    def embed_queries(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32 for queries, in the model's query convention."""

    def warm_up(self) -> None:
        """Load the model now (otherwise it loads on first use)."""

    def describe(self) -> dict:
        return {"spec": self.spec, "dim": self.dim, "normalized": self.normalized, "max_tokens": self.max_tokens}

    # LangChain ``Embeddings``
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_passages(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_queries([text])[0].tolist()


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)
