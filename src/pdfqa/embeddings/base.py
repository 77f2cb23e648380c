"""The embedder interface: a LangChain ``Embeddings`` that also knows its name, size and tokenizer.

Every pdfqa embedder is a LangChain ``Embeddings`` (``isinstance(get_embedder("e5-small"), Embeddings)``
holds, and LangChain's standard test suites run against each one), without pdfqa importing
``langchain_core`` itself: that import costs ~0.4 s of CPU, which ``pdfqa ask`` does not need.
:class:`Embedder` implements the whole interface (``embed_documents``, ``embed_query`` and their
``aembed_*`` forms) and is registered as a virtual subclass of ``Embeddings`` the moment
``langchain_core.embeddings`` is imported, by whoever imports it, or at once if it already was.

>>> from pdfqa.embeddings import get_embedder
>>> e = get_embedder("e5-small")
>>> from langchain_core.embeddings import Embeddings
>>> isinstance(e, Embeddings)
True
"""
from __future__ import annotations

import asyncio
import importlib.abc
import importlib.util
import sys
from abc import ABC, abstractmethod

import numpy as np

#: the module defining LangChain's ``Embeddings``
LANGCHAIN_EMBEDDINGS = "langchain_core.embeddings.embeddings"


class Embedder(ABC):
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

    def load_all(self) -> None:
        """Load every lazily built part now, not only what embedding needs (a server, before its first
        request); the same as :meth:`warm_up` unless an embedder has more."""
        self.warm_up()

    def describe(self) -> dict:
        return {"spec": self.spec, "dim": self.dim, "normalized": self.normalized, "max_tokens": self.max_tokens}

    # LangChain ``Embeddings``
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """LangChain: passages → lists of floats."""
        return self.embed_passages(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        """LangChain: one query → a list of floats."""
        return self.embed_queries([text])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """LangChain, async: the model runs in a worker thread, off the event loop."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """LangChain, async: the model runs in a worker thread, off the event loop."""
        return await asyncio.to_thread(self.embed_query, text)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _register(module) -> None:
    module.Embeddings.register(Embedder)


class _RegisterWhenImported(importlib.abc.MetaPathFinder):
    """Registers :class:`Embedder` with ``Embeddings`` right after LangChain's module is executed (a
    one-shot import hook: it finds the module with the other finders and wraps its loader)."""

    def find_spec(self, name, path=None, target=None):
        if name != LANGCHAIN_EMBEDDINGS:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _register(module)

            spec.loader.exec_module = exec_module
        return spec


if LANGCHAIN_EMBEDDINGS in sys.modules:
    _register(sys.modules[LANGCHAIN_EMBEDDINGS])
elif not any(isinstance(f, _RegisterWhenImported) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenImported())
