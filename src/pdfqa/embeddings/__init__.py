"""Embedders by spec string: ``e5-small`` (default), ``minilm``, ``st:<path or hub id>``,
``bert:<path or hub id>[#mean|#cls]``, ``openai:<model>``,
``word2vec:ja-ginza|glove-50|train|<path>`` (averaged word vectors, ``#nosif`` for a plain mean).

>>> from pdfqa.embeddings import get_embedder, EMBEDDERS
>>> get_embedder("e5-small").spec
'e5-small'
>>> get_embedder("nope")
Traceback (most recent call last):
...
pdfqa.errors.UnknownComponentError: unknown embedder 'nope'; known: e5-small, minilm, st:<path or hub id>, bert:<path or hub id>[#mean|#cls], openai:<model>, word2vec:ja-ginza, word2vec:glove-50, word2vec:train, word2vec:<path to .bin/.txt/.vec>
"""
from __future__ import annotations

from functools import lru_cache

from ..errors import UnknownComponentError
from .base import Embedder

DEFAULT_EMBEDDER = "e5-small"
EMBEDDERS = ("e5-small", "minilm", "st:<path or hub id>", "bert:<path or hub id>[#mean|#cls]", "openai:<model>",
             "word2vec:ja-ginza", "word2vec:glove-50", "word2vec:train", "word2vec:<path to .bin/.txt/.vec>")


@lru_cache(maxsize=8)
def get_embedder(spec: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder for ``spec`` (one shared instance per spec: models load once per process)."""
    spec = (spec or DEFAULT_EMBEDDER).strip()
    if spec in ("e5-small", "e5", "multilingual-e5-small"):
        from .e5 import E5Embedder

        return E5Embedder()
    if spec == "minilm":
        from .sentence_transformers import SentenceTransformerEmbedder, minilm_path

        return SentenceTransformerEmbedder(minilm_path(), spec="minilm")
    if spec.startswith("st:") and len(spec) > 3:
        from .sentence_transformers import SentenceTransformerEmbedder

        name = spec[3:]
        e5 = "e5" in name.lower()
        return SentenceTransformerEmbedder(name, spec=spec, query_prefix="query: " if e5 else "",
                                           passage_prefix="passage: " if e5 else "")
    if spec.startswith("bert:") and len(spec) > 5:
        from .bert import from_spec as bert_from_spec

        return bert_from_spec(spec)
    if spec.startswith("openai:") and len(spec) > 7:
        from .openai import from_spec as openai_from_spec

        return openai_from_spec(spec)  # base URL: OPENAI_BASE_URL (the spec names the model, not the server)
    if spec.startswith("word2vec:"):
        from .word2vec import from_spec as word2vec_from_spec

        return word2vec_from_spec(spec)
    raise UnknownComponentError("embedder", spec, list(EMBEDDERS))


__all__ = ["DEFAULT_EMBEDDER", "EMBEDDERS", "Embedder", "get_embedder"]
