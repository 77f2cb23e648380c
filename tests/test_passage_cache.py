"""Sentence vectors cached per process (pdfqa.embeddings.cache) with the real e5-small embedder: each
text's vector is the one it gets embedded alone, whatever it was asked with and whatever came before."""
import numpy as np

from pdfqa.embeddings import get_embedder
from pdfqa.embeddings.cache import PassageCache, cached_passages, passage_cache

SENTENCES = ["BPE was originally a compression technique for byte sequences.",
             "WordPiece picks the merge that most increases the likelihood of the training data.",
             "ゼロトラストの概念は 2010 年に提唱された。",
             "The skip-gram model predicts the context words of a centre word.",
             "Self-attention lets every position attend to every other position."]


def test_vectors_are_each_text_embedded_alone_whatever_the_batch_or_history():
    emb = get_embedder("e5-small")
    alone = np.stack([emb.embed_passages([t])[0] for t in SENTENCES])
    cache = passage_cache(emb)
    before = cache.misses
    first = cached_passages(emb, SENTENCES[:3])
    assert np.array_equal(first, alone[:3])
    assert cache.misses - before == 3
    hits = cache.hits
    # another question's sentences: two seen before (from the cache), two new, one repeated
    again = cached_passages(emb, [SENTENCES[4], SENTENCES[1], SENTENCES[3], SENTENCES[0], SENTENCES[4]])
    assert np.array_equal(again, alone[[4, 1, 3, 0, 4]])
    assert cache.hits - hits == 2
    assert cached_passages(emb, []).shape == (0, emb.dim)


def test_the_cache_keeps_the_most_recently_used():
    c = PassageCache(max_entries=2)
    v = np.eye(3, dtype=np.float32)
    c.store(["a", "b"], v[:2])
    assert c.lookup(["a"])[0] is not None  # "a" is now the most recent
    c.store(["c"], v[2:])
    got = c.lookup(["a", "b", "c"])
    assert got[1] is None and np.array_equal(got[0], v[0]) and np.array_equal(got[2], v[2]) and len(c) == 2
