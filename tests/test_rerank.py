"""``rerank:<path>`` over a tiny randomly initialised cross-encoder built in the test, and ``mmr`` on hand-made vectors."""
from __future__ import annotations

import numpy as np
import pytest

from pdfqa.documents import Chunk, Hit
from pdfqa.errors import PdfqaError
from pdfqa.rerank import CrossEncoderReranker, from_spec, get_reranker, mmr

WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "zero", "trust", "network", "access", "is", "what",
         "rain", "season", "june", "starts", "in", "bm25", "ranks", "documents", "by", "term", "?", "."]


def chunk(i: int, text: str, heading_path: list[str] | None = None) -> Chunk:
    return Chunk(chunk_id=f"h-{i:05d}", doc="a.pdf", doc_hash="h", text=text, pages=[i + 1], page_label=None,
                 heading_path=heading_path or [], kinds=["paragraph"], char_start=0, char_end=len(text))


@pytest.fixture(scope="module")
def ce_dir(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sentence_transformers")
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-cross-encoder")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(vocab), model_max_length=128)
    assert "[UNK]" not in tok.tokenize("the cat sat on the mat")
    torch.manual_seed(1)
    config = BertConfig(vocab_size=5 + len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=128, num_labels=1)
    model = BertForSequenceClassification(config)
    with torch.no_grad():  # a visible spread of scores, so the ordering is not decided by float noise
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def hits():
    texts = ["the cat sat on the mat .", "zero trust network access", "rain season starts in june .",
             "bm25 ranks documents by term", "a dog sat on a mat", "what is zero trust ?",
             "the dog is a cat", "network access by term"]
    return [Hit(chunk(i, t, ["sec"] if i == 3 else None), score=1.0 - i / 10, retriever="dense")
            for i, t in enumerate(texts)]


def test_rerank_uses_the_cross_encoders_own_scores(ce_dir, hits):
    from sentence_transformers import CrossEncoder

    query = "what is zero trust network access ?"
    r = from_spec(f"rerank:{ce_dir}")
    assert r._model is None  # lazy
    out = r.rerank(query, hits, top_k=5)
    assert len(out) == 5
    scores = [h.score for h in out]
    assert scores == sorted(scores, reverse=True)
    assert len(set(np.round(scores, 6))) == 5  # distinct: the order is decided by the model

    ref = CrossEncoder(str(ce_dir), device="cpu")
    want = np.asarray(ref.predict([(query, h.chunk.embed_text()) for h in hits]), dtype=np.float64)
    order = np.argsort(-want, kind="stable")[:5]
    assert [h.chunk.chunk_id for h in out] == [hits[i].chunk.chunk_id for i in order]
    np.testing.assert_allclose(scores, want[order], rtol=1e-5, atol=1e-6)

    assert all(h.retriever == "dense|rerank" for h in out)
    assert all(isinstance(h, Hit) and h not in hits for h in out)  # new objects ...
    assert [h.score for h in hits] == [1.0 - i / 10 for i in range(len(hits))]  # ... inputs untouched
    assert out[0].chunk is hits[order[0]].chunk


def test_rerank_edges_and_batching(ce_dir, hits):
    query = "rain in june"
    big = CrossEncoderReranker(str(ce_dir), batch_size=32)
    small = CrossEncoderReranker(str(ce_dir), batch_size=2)  # different padding per batch
    a, b = big.rerank(query, hits, top_k=100), small.rerank(query, hits, top_k=100)
    assert len(a) == len(hits)  # top_k larger than the list: all of them
    assert [h.chunk.chunk_id for h in a] == [h.chunk.chunk_id for h in b]
    np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
    long_hit = Hit(chunk(99, " ".join(["cat", "dog", "mat"] * 200)), score=0.0, retriever="bm25")
    (only,) = big.rerank(query, [long_hit], top_k=1)  # 600 words, truncated at the model's 128 positions
    assert np.isfinite(only.score) and only.retriever == "bm25|rerank"
    assert big._model.max_seq_length == 128
    assert big.rerank(query, [], top_k=3) == []
    assert big.rerank(query, hits, top_k=0) == []
    # headings count: the chunk with a heading path scores differently without it
    no_head = CrossEncoderReranker(str(ce_dir), with_headings=False)
    s_with = big.score(query, [hits[3].chunk.embed_text()])[0]
    s_without = no_head.score(query, [hits[3].chunk.text])[0]
    assert s_with != pytest.approx(s_without, abs=1e-7)


def test_reranker_spec_and_load_errors(tmp_path):
    r = from_spec("rerank:cross-encoder/ms-marco-MiniLM-L-6-v2")
    assert (r.model_name, r.spec) == ("cross-encoder/ms-marco-MiniLM-L-6-v2", "rerank:cross-encoder/ms-marco-MiniLM-L-6-v2")
    with pytest.raises(PdfqaError):
        from_spec("rerank:")
    assert get_reranker("some/model") is get_reranker("some/model")  # shared: loads once
    assert get_reranker("rerank:some/model").spec == get_reranker("some/model").spec == "rerank:some/model"
    with pytest.raises(PdfqaError, match="no model folder"):
        from_spec(f"rerank:{tmp_path}/missing").warm_up()


# mmr ---------------------------------------------------------------------------------------------------
def _hits(n: int) -> list[Hit]:
    return [Hit(chunk(i, f"text {i}"), score=1.0, retriever="dense") for i in range(n)]


def test_mmr_prefers_diversity_when_lambda_is_low():
    hs = _hits(3)
    q = np.array([1.0, 0.0, 0.0])
    vecs = np.array([[0.95, 0.31, 0.0],    # relevant
                     [0.94, 0.34, 0.0],    # its near-duplicate, as relevant
                     [0.70, 0.0, 0.71]])   # less relevant, but different
    low = mmr(q, hs, vecs, k=2, lambda_=0.3)
    assert [h.chunk.chunk_id for h in low] == ["h-00000", "h-00002"]
    high = mmr(q, hs, vecs, k=2, lambda_=1.0)  # pure relevance: both duplicates
    assert [h.chunk.chunk_id for h in high] == ["h-00000", "h-00001"]
    assert low[0] is hs[0]  # the hits themselves


def test_mmr_scale_invariance_and_edges():
    hs = _hits(4)
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(4, 8))
    q = rng.normal(size=8)
    a = mmr(q, hs, vecs, k=3, lambda_=0.5)
    b = mmr(q * 7.0, hs, vecs * np.array([[2.0], [0.5], [3.0], [1.0]]), k=3, lambda_=0.5)
    assert [h.chunk.chunk_id for h in a] == [h.chunk.chunk_id for h in b]
    # lambda 1 is relevance order
    rel = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)) @ (q / np.linalg.norm(q))
    assert [h.chunk.chunk_id for h in mmr(q, hs, vecs, k=4, lambda_=1.0)] == \
        [hs[i].chunk.chunk_id for i in np.argsort(-rel)]
    assert len(mmr(q, hs, vecs, k=10)) == 4 and len({id(h) for h in mmr(q, hs, vecs, k=10)}) == 4
    assert mmr(q, hs, vecs, k=0) == [] and mmr(q, [], np.zeros((0, 8)), k=3) == []
    with pytest.raises(ValueError):
        mmr(q, hs, vecs, k=2, lambda_=1.5)
    with pytest.raises(ValueError):
        mmr(q[:3], hs, vecs, k=2)
