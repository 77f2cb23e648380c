"""Retrievers over a collection, as LangChain ``BaseRetriever``s.

>>> retriever = Collection.open("my-collection").as_retriever(k=3)       # doctest: +SKIP
>>> docs = retriever.invoke("What is WordPiece?")                        # doctest: +SKIP
>>> docs[0].metadata["doc"], docs[0].metadata["pages"], docs[0].metadata["score"]  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever


class CollectionRetriever(BaseRetriever):
    """Dense retrieval over a :class:`~pdfqa.collection.Collection`; metadata as in ``Hit.to_document``."""

    collection: Any
    k: int = 5
    embedder: str | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [h.to_document() for h in self.collection.search(query, k=self.k, embedder=self.embedder)]
