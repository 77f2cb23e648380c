"""Exploring word vectors: nearest words, analogies, words that share a vector.

Sources are named as in the ``word2vec:`` embedders: ``ja-ginza``, ``glove-50``, or the path of a
word2vec ``.bin``/``.txt``/``.vec`` file (e.g. a ``word2vec:train`` model saved with a collection);
a loaded :class:`~pdfqa.embeddings.word2vec.Word2VecEmbedder` or
:class:`~pdfqa.embeddings.word2vec.WordVectors` is accepted too.

Words are looked up as typed, then lower-cased, then (Japanese) in their Sudachi normalized or
dictionary form when the word is one morpheme (コンピュータ → コンピューター, 食べた → 食べる).

>>> most_similar("glove-50", ["king", "woman"], ["man"], topn=1)     # doctest: +SKIP
[('queen', 0.852...)]

Note on ``ja-ginza``: ja_ginza 5.x ships a *pruned* table, 20,000 distinct vectors for 480,443 words;
each pruned word was given the vector of its nearest kept word. Results list one word per distinct
vector (the most frequent one), and words sharing a query word's vector never appear, since
they are that same vector: 陸上自衛隊, 海上自衛隊 and 航空自衛隊 all *are* 自衛隊's vector
(see :func:`words_sharing_vector`). The classic 自衛隊 − 海 → 陸上自衛隊 demo therefore cannot be
shown with these vectors; use the full chiVe or jawiki entity vectors through a file path for it.
"""
from __future__ import annotations

from typing import Iterable, Union

import numpy as np

from .embeddings.word2vec import Word2VecEmbedder, WordVectors, load_vectors
from .errors import PdfqaError

Source = Union[str, WordVectors, Word2VecEmbedder]


def vectors(source: Source) -> WordVectors:
    """The loaded vectors of ``source`` (loaded once per process)."""
    if isinstance(source, WordVectors):
        return source
    if isinstance(source, Word2VecEmbedder):
        return source.vectors
    return load_vectors(str(source))


def _as_list(words: Iterable[str] | str | None) -> list[str]:
    if words is None:
        return []
    if isinstance(words, str):
        return [words]
    return list(words)


def _resolve_all(wv: WordVectors, words: list[str]) -> list[str]:
    """Vocabulary forms of ``words``; one error naming every unknown word."""
    out, unknown = [], []
    for w in words:
        r = wv.resolve(w)
        if r is None:
            unknown.append(w)
        else:
            out.append(r)
    if unknown:
        raise PdfqaError(f"not in the {wv.name} vocabulary: {', '.join(repr(w) for w in unknown)}")
    return out


def _key(wv: WordVectors, word: str) -> str:
    """The KeyedVectors key holding ``word``'s vector (itself, or the representative of a shared one)."""
    return wv.kv.index_to_key[wv.row(wv.index[word])]


def most_similar(source: Source, positive: Iterable[str] | str, negative: Iterable[str] | str = (),
                 topn: int = 10) -> list[tuple[str, float]]:
    """The ``topn`` words nearest to ``Σ positive − Σ negative`` (gensim's cosine arithmetic over
    unit vectors), the query words' own vectors excluded. ``most_similar(s, ["king", "woman"], ["man"])``
    is the analogy man : king :: woman : ?. Raises :class:`~pdfqa.errors.PdfqaError` naming each
    word the vocabulary lacks."""
    wv = vectors(source)
    pos, neg = _as_list(positive), _as_list(negative)
    if not pos and not neg:
        raise PdfqaError("most_similar needs at least one word")
    if topn < 1:
        return []
    resolved = _resolve_all(wv, pos + neg)
    pos_r, neg_r = resolved[:len(pos)], resolved[len(pos):]
    res = wv.kv.most_similar(positive=[_key(wv, w) for w in pos_r], negative=[_key(wv, w) for w in neg_r],
                             topn=topn)
    return [(str(w), float(s)) for w, s in res]


def similarity(source: Source, word1: str, word2: str) -> float:
    """Cosine similarity of two words (1.0 for words sharing a ja-ginza vector)."""
    wv = vectors(source)
    a, b = _resolve_all(wv, [word1, word2])
    va, vb = wv.vector(a).astype(np.float64), wv.vector(b).astype(np.float64)
    den = np.linalg.norm(va) * np.linalg.norm(vb)
    return float(va @ vb / den) if den else 0.0


def words_sharing_vector(source: Source, word: str, limit: int | None = 50) -> list[str]:
    """Words with exactly ``word``'s vector, most frequent first (only ja-ginza's pruned table has
    such groups; elsewhere just ``[word]``)."""
    wv = vectors(source)
    (w,) = _resolve_all(wv, [word])
    out = wv.words_sharing_vector(w)
    return out if limit is None else out[:limit]


__all__ = ["most_similar", "similarity", "vectors", "words_sharing_vector"]
