"""Evaluation: QA sets, metrics, runs across retrievers, reports."""
from .metrics import hit_at, mrr_at, ndcg_at, recall_at
from .qa import QAFormatError, QAItem, load_corpus, load_qa
from .runner import ensure_retriever, evaluate, open_pool

__all__ = ["QAFormatError", "QAItem", "ensure_retriever", "evaluate", "hit_at", "load_corpus", "load_qa",
           "mrr_at", "ndcg_at", "open_pool", "recall_at"]
