"""Retrieval metrics over ranked document ids, binary relevance (as sentence-transformers/ranx define them).

>>> recall_at(["b", "a", "c"], {"a"}, 1), recall_at(["b", "a", "c"], {"a"}, 2)
(0.0, 1.0)
>>> mrr_at(["b", "a", "c"], {"a"}, 10)
0.5
>>> round(ndcg_at(["b", "a", "c"], {"a", "c"}, 3), 4)
0.6934
"""
from __future__ import annotations

import math


def dedupe(ids: list[str]) -> list[str]:
    """Ranked ids with repeats removed (several chunks of one document count once, at the best rank)."""
    return list(dict.fromkeys(ids))


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    """Fraction of the relevant documents found in the top ``k``."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / len(relevant)


def hit_at(ranked: list[str], relevant: set[str], k: int) -> float:
    """1.0 when any relevant document is in the top ``k`` (the QA sets' "any one counts")."""
    return 1.0 if set(ranked[:k]) & relevant else 0.0


def mrr_at(ranked: list[str], relevant: set[str], k: int) -> float:
    for i, d in enumerate(ranked[:k], 1):
        if d in relevant:
            return 1.0 / i
    return 0.0


def ndcg_at(ranked: list[str], relevant: set[str], k: int) -> float:
    dcg = sum(1.0 / math.log2(i + 1) for i, d in enumerate(ranked[:k], 1) if d in relevant)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def first_rank(ranked: list[str], relevant: set[str]) -> int | None:
    """1-based rank of the first relevant document, ``None`` if absent."""
    for i, d in enumerate(ranked, 1):
        if d in relevant:
            return i
    return None
