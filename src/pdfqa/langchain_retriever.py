"""A collection as a LangChain ``BaseRetriever`` (kept out of :mod:`pdfqa.retrieval`: importing
``langchain_core.retrievers`` costs about a second, which ``pdfqa search``/``ask`` do not need).

>>> from pdfqa import Collection
>>> r = Collection.open("my-collection").as_retriever(k=3)     # doctest: +SKIP
>>> docs = r.invoke("What is WordPiece?")                     # doctest: +SKIP
>>> docs = r.invoke("What is WordPiece?", k=1)                # doctest: +SKIP  (k at invoke time)
>>> docs = await r.ainvoke("ゼロトラストとは")                  # doctest: +SKIP
>>> docs[0].metadata["doc"], docs[0].metadata["pages"], docs[0].metadata["score"]   # doctest: +SKIP

Each ``Document`` carries the chunk's text and, as metadata, ``doc``, ``doc_hash``, ``page``, ``pages``,
``page_label``, ``heading_path``, ``kinds``, ``char_start``, ``char_end``, ``chunk_id`` and the
retriever's ``score``.
"""
from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class CollectionRetriever(BaseRetriever):
    """Any pdfqa retriever spec over a collection as a LangChain retriever. ``k`` is the number of
    documents returned, also accepted at invoke time (``retriever.invoke(query, k=1)``)."""

    collection: Any
    k: int = 5
    retriever: str | None = None
    embedder: str | None = None

    def _search(self, query: str, k: int | None) -> list[Document]:
        k = self.k if k is None else int(k)
        if k < 1:
            return []
        hits = self.collection.search(query, k=k, retriever=self.retriever, embedder=self.embedder)
        return [h.to_document() for h in hits]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None) -> list[Document]:
        return self._search(query, k)

    async def _aget_relevant_documents(self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: int | None = None) -> list[Document]:
        # the search is CPU work (numpy, FAISS, onnxruntime): off the event loop, in a worker thread
        import asyncio

        return await asyncio.to_thread(self._search, query, k)


__all__ = ["CollectionRetriever"]
