"""Language-aware text utilities shared by chunking, lexical search and answering."""
from .lang import detect_language, is_cjk
from .sentences import join_lines, split_sentences

__all__ = ["detect_language", "is_cjk", "join_lines", "split_sentences"]
