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

INDEX_KINDS = ("flat", "hnsw", "ivfpq")
HNSW_M, HNSW_EF_SEARCH, HNSW_EF_CONSTRUCTION = 32, 64, 80
IVF_NPROBE = 16


class DenseIndex:
    """Inner-product search (cosine on normalised vectors), keyed by chunk row ids.

    ``flat`` (exact, the default), ``hnsw`` (graph, ~3× the memory of the vectors, fast at 100k+;
    deletions rebuild it) or ``ivfpq`` (inverted lists + product quantisation: ~1/30 of the memory,
    approximate; needs ≥ ~10k vectors to train, below that it stays flat).
    """

    def __init__(self, index, generation: int = 0, kind: str = "flat"):
        self.index = index
        self.generation = generation
        self.kind = kind

    @classmethod
    def empty(cls, dim: int, kind: str = "flat") -> "DenseIndex":
        import faiss

        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
            return cls(faiss.IndexIDMap2(inner), kind="hnsw")
        if kind not in INDEX_KINDS:
            from .errors import UnknownComponentError

            raise UnknownComponentError("index kind", kind, list(INDEX_KINDS))
        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), kind="flat")

    @classmethod
    def build(cls, ids: np.ndarray, vecs: np.ndarray, generation: int = 0, kind: str = "flat") -> "DenseIndex":
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        if kind == "ivfpq":
            idx = cls._ivfpq(vecs)
        else:
            idx = cls.empty(vecs.shape[1], kind)
        idx.add(ids, vecs)
        idx.generation = generation
        return idx

    @classmethod
    def _ivfpq(cls, vecs: np.ndarray) -> "DenseIndex":
        import faiss

        n, dim = vecs.shape
        nlist = max(1, int(np.sqrt(n)))
        m = next(m for m in (48, 32, 24, 16, 12, 8, 4, 2, 1) if dim % m == 0)
        if n < 39 * nlist or n < 10_000:  # too few vectors to train the quantisers well
            return cls.empty(dim, "flat")
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = vecs[rng.choice(n, size=min(n, 256 * nlist), replace=False)]
        inner.train(sample)
        inner.nprobe = IVF_NPROBE
        return cls(faiss.IndexIDMap2(inner), kind="ivfpq")

    @property
    def supports_remove(self) -> bool:
        return self.kind != "hnsw"

    def memory_bytes(self) -> int:
        """Size of the serialised index (what it costs on disk and, roughly, in memory)."""
        import faiss

        return int(faiss.serialize_index(self.index).nbytes) if len(self) else 0

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
            if not self.supports_remove:
                raise NotImplementedError("hnsw indexes cannot delete: rebuild from the stored vectors")
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored vectors of row ``ids`` (MMR compares candidates with them)."""
        return np.stack([self.index.reconstruct(int(i)) for i in ids]).astype(np.float32)

    def search(self, queries: np.ndarray, k: int) -> tuple[list[int], list[float]]:
        """Top-``k`` (ids, scores) for the first query row."""
        import faiss

        if len(self) == 0:
            return [], []
        # one query is a single scan: threads only add wake-up and contention cost (8 ms vs 30-50 ms for
        # 100k vectors on 2 busy cores, see benchmarks/README.md)
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self)))
        finally:
            faiss.omp_set_num_threads(threads)
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
        kind = meta.get("kind", "flat")
        if kind == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = HNSW_EF_SEARCH
        elif kind == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
        return cls(index, int(meta.get("generation", -1)), kind=kind)
