"""A FAISS vector index keyed by chunk row ids, saved with FAISS's own format (no pickle).

>>> import numpy as np
>>> idx = DenseIndex.build(np.array([7, 9]), np.eye(2, 4, dtype="float32"))
>>> idx.search(np.array([[0, 1, 0, 0]], dtype="float32"), k=1)
([9], [1.0])
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import CollectionError
from .store import atomic_write_bytes, atomic_write_json

INDEX_KINDS = ("flat",)


class DenseIndex:
    """Inner-product search (cosine on normalised vectors) over ``IndexIDMap2(IndexFlatIP)``."""

    def __init__(self, index, generation: int = 0):
        self.index = index
        self.generation = generation

    @classmethod
    def empty(cls, dim: int) -> "DenseIndex":
        import faiss

        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)))

    @classmethod
    def build(cls, ids: np.ndarray, vecs: np.ndarray, generation: int = 0) -> "DenseIndex":
        idx = cls.empty(vecs.shape[1])
        idx.add(ids, vecs)
        idx.generation = generation
        return idx

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids, vecs: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids) -> None:
        if len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def search(self, queries: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        """Top-``k`` (ids, scores) for the first query row."""
        if len(self) == 0:
            return [], []
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self)))
        keep = ids[0] >= 0
        return ids[0][keep].tolist(), [round(float(s), 6) for s in scores[0][keep]]

    def save(self, path: Path, meta: dict) -> None:
        """Index file and its JSON sidecar (generation, count), each written aside and renamed."""
        import faiss

        atomic_write_bytes(path, faiss.serialize_index(self.index).tobytes())
        atomic_write_json(path.with_suffix(".json"), {**meta, "generation": self.generation, "count": len(self)})

    @classmethod
    def load(cls, path: Path) -> "DenseIndex":
        import faiss

        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        except Exception as e:
            raise CollectionError(f"{path}: unreadable index ({e})") from e
        return cls(index, int(meta.get("generation", -1)))
