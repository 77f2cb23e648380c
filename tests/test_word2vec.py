"""Word-vector embedders (``word2vec:*``) and word-vector exploration (``pdfqa.wordvectors``)."""
from __future__ import annotations

import logging
import pickle

import numpy as np
import pytest

from pdfqa.embeddings.base import Embedder
from pdfqa.embeddings.word2vec import (
    VectorTokenizer, Word2VecEmbedder, from_spec, ja_ginza_vocab_dir, load_vectors, zipf_probabilities)
from pdfqa.errors import PdfqaError, UnknownComponentError
from pdfqa.wordvectors import most_similar, similarity, words_sharing_vector

from .conftest import SLIDES

pytest.importorskip("gensim")


@pytest.fixture(scope="module")
def ginza():
    pytest.importorskip("sudachipy")
    e = from_spec("word2vec:ja-ginza")
    e.warm_up()
    return e


@pytest.fixture(scope="module")
def glove():
    e = from_spec("word2vec:glove-50")
    e.warm_up()
    return e


@pytest.fixture(scope="module")
def slide_texts():
    from pdfqa.chunking import chunk_document
    from pdfqa.pdf import read_pdf

    return [c.text for c in chunk_document(read_pdf(SLIDES))]


def cos(a, b) -> float:
    return float(np.dot(a, b))


# ------------------------------------------------------------------------------- loading sources

def test_ja_ginza_vectors_are_keyed_by_sudachi_normalized_forms(ginza):
    wv = ginza.vectors
    assert wv.dim == 300 and wv.n_vectors == 20_000 and wv.vocab_size > 400_000
    # frequency-sorted table: the most frequent words first (so the Zipf estimate of p(w) applies)
    assert wv.kv.index_to_key[:4] == ["の", "、", "て", "に"]
    assert "為る" in wv.index and "無い" in wv.index  # normalized forms of する / ない
    assert "コンピューター" in wv.index and "コンピュータ" not in wv.index
    # the Sudachi tokenizer produces exactly those keys
    forms = [t.forms[0] for t in ginza.tokenizer.tokens("コンピュータを使った")]
    assert forms == ["コンピューター", "使う"]


def test_ja_ginza_rows_agree_with_spacys_vectors(ginza):
    """Words map to the rows spaCy's own Vectors table gives their hash (read here without a pipeline)."""
    from spacy.strings import hash_string
    from spacy.vectors import Vectors

    table = Vectors().from_disk(ja_ginza_vocab_dir())
    wv = ginza.vectors
    for word in ("自衛隊", "陸上自衛隊", "為る", "コンピューター", "東京"):
        assert wv.row(wv.entry(word)) == table.key2row[hash_string(word)], word
    assert hash_string("自衛隊") == 14744770421101264824


def test_glove_parquet_index_matches_the_matrix(glove):
    wv = glove.vectors
    assert wv.dim == 50 and wv.vocab_size == 400_000
    assert wv.kv.index_to_key[:6] == ["the", ",", ".", "of", "to", "and"]
    # words past the parquet dictionary page (PLAIN-encoded pages) are aligned with their vectors too
    assert wv.index["matinees"] >= 95_360
    assert "matinee" in [w for w, _ in most_similar(wv, ["matinees"], topn=3)]
    assert wv.kv.index_to_key[-1] == "sandberger"


def test_sources_are_cached_per_process(glove):
    assert load_vectors("glove-50") is glove.vectors
    assert from_spec("word2vec:glove-50#nosif").vectors is glove.vectors


# -------------------------------------------------------------------------------------- embedding

def test_ja_ginza_embeds_japanese(ginza):
    assert isinstance(ginza, Embedder)
    assert ginza.spec == "word2vec:ja-ginza" and ginza.dim == 300 and ginza.normalized
    texts = ["今日は雨が降って寒い。", "明日は雪が降るらしい。", "国会で予算案が可決された。"]
    v = ginza.embed_passages(texts)
    assert v.shape == (3, 300) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.3
    q = ginza.embed_queries(["雪の日は寒い"])[0]
    assert cos(q, v[0]) > cos(q, v[2]) and cos(q, v[1]) > cos(q, v[2])
    assert np.allclose(ginza.embed_documents(texts[:1])[0], v[0], atol=1e-6)  # LangChain's interface
    long = ("今日は雨が降って寒い。" * 500 + "\n") * 4  # 22k characters: fed to Sudachi in pieces
    assert ginza.count_tokens(long) == 4 * 500 * ginza.count_tokens(texts[0])
    assert cos(ginza.embed_passages([long])[0], v[0]) == pytest.approx(1, abs=1e-4)


def test_glove_embeds_english(glove):
    assert glove.dim == 50
    v = glove.embed_passages(["The cat sat on the mat.", "A dog lay on the rug.",
                              "Stock markets fell sharply today.", "Shares dropped on Wall Street."])
    assert v.shape == (4, 50)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert cos(v[0], v[1]) > cos(v[0], v[2]) + 0.2
    assert cos(v[2], v[3]) > cos(v[2], v[1]) + 0.2


def test_english_words_are_lowercased_not_stemmed():
    words = VectorTokenizer().words("Tokenizers are splitting the TEXTS")
    assert words == ["tokenizers", "splitting", "texts"]


def test_oov_rate_and_zero_vector_for_unknown_text():
    e = from_spec("word2vec:glove-50")  # a fresh instance: fresh counters, shared vectors
    assert e.oov_rate is None and e.describe()["oov_rate"] is None
    v = e.embed_passages(["the cat qwxzrtvq", "qwxzrtvq zzqqxxvv", ""])
    assert e.tokens_seen == 4 and e.tokens_oov == 3  # "the" is a stop-word: not counted
    assert e.oov_rate == pytest.approx(3 / 4)
    assert np.all(np.isfinite(v))
    assert np.linalg.norm(v[0]) == pytest.approx(1, abs=1e-5)
    assert not v[1].any() and not v[2].any()
    d = e.describe()
    assert d["oov_rate"] == 0.75 and d["tokens_seen"] == 4 and d["spec"] == "word2vec:glove-50"
    assert d["dim"] == 50 and d["sif"] is True and d["word_probabilities"] == "zipf-rank"
    e.embed_passages(["cat dog"])
    assert e.oov_rate == pytest.approx(3 / 6)  # over everything embedded so far


def test_unknown_compound_falls_back_to_its_parts(ginza):
    e = from_spec("word2vec:ja-ginza")
    assert not any(f in e.vectors.index for f in e.tokenizer.tokens("多要素認証")[0].forms)
    v = e.embed_passages(["多要素認証"])[0]
    assert e.oov_rate == 0 and np.linalg.norm(v) == pytest.approx(1, abs=1e-5)


def test_nosif_is_a_plain_average(glove):
    plain = from_spec("word2vec:glove-50#nosif")
    assert plain.spec == "word2vec:glove-50#nosif" and not plain.sif
    text = "king queen castle people"
    kv = glove.vectors.kv
    expected = np.mean([kv[w] for w in text.split()], axis=0)
    got = plain.embed_passages([text])[0]
    assert np.allclose(got, expected / np.linalg.norm(expected), atol=1e-5)
    # SIF down-weights the frequent "people" relative to the rarer words, so the vectors differ
    assert not np.allclose(glove.embed_passages([text])[0], got, atol=1e-3)


# -------------------------------------------------------------------------------- word2vec files

@pytest.mark.parametrize("binary", [False, True])
def test_word2vec_file_via_path_spec(tmp_path, binary):
    from gensim.models import KeyedVectors

    words = ["apple", "banana", "car", "truck"]
    vecs = np.array([[1, 0, 0], [0.8, 0.2, 0], [0, 0, 1], [0, 0.1, 0.9]], dtype=np.float32)
    path = tmp_path / ("vecs.bin" if binary else "vecs.txt")
    if binary:
        kv = KeyedVectors(3)
        kv.add_vectors(words, vecs)
        kv.save_word2vec_format(str(path), binary=True)
    else:
        path.write_text("4 3\n" + "".join(f"{w} {' '.join(map(str, v))}\n" for w, v in zip(words, vecs)))
    e = from_spec(f"word2vec:{path}")
    assert e.spec == f"word2vec:{path}" and e.dim == 3
    got = e.embed_passages(["Apple and banana", "truck"])
    p = zipf_probabilities(4)  # no counts in the file: Zipf by rank, file order
    assert p[0] == pytest.approx(1 / (1 + 1 / 2 + 1 / 3 + 1 / 4))
    w = 1e-3 / (1e-3 + p)
    exp = w[0] * vecs[0] + w[1] * vecs[1]
    assert np.allclose(got[0], exp / np.linalg.norm(exp), atol=1e-5)
    assert np.allclose(got[1], vecs[3] / np.linalg.norm(vecs[3]), atol=1e-5)
    plain = from_spec(f"word2vec:{path}#nosif").embed_passages(["apple banana"])[0]
    assert np.allclose(plain, (vecs[0] + vecs[1]) / np.linalg.norm(vecs[0] + vecs[1]), atol=1e-5)
    assert most_similar(str(path), ["car"], topn=1)[0][0] == "truck"


def test_spec_errors(tmp_path):
    with pytest.raises(UnknownComponentError) as ei:
        from_spec("word2vec:nope")
    msg = str(ei.value)
    assert "'nope'" in msg and "ja-ginza" in msg and "glove-50" in msg and "train" in msg
    missing = tmp_path / "missing.bin"
    with pytest.raises(PdfqaError, match="missing.bin"):
        from_spec(f"word2vec:{missing}")
    with pytest.raises(PdfqaError, match="nosif"):
        from_spec("word2vec:glove-50#bogus")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(pickle.dumps({"not": "vectors"}))
    with pytest.raises(PdfqaError, match="bad.bin"):
        from_spec(f"word2vec:{bad}").warm_up()


# ------------------------------------------------------------------------------------------ train

def test_train_fit_save_load_round_trip(tmp_path, slide_texts, caplog):
    e = from_spec("word2vec:train")
    assert isinstance(e, Word2VecEmbedder) and e.needs_fit and e.dim == 100
    with pytest.raises(PdfqaError, match="fit"):
        e.embed_passages(["tokenization"])
    e.fit(slide_texts)
    assert not e.needs_fit
    wv = e.vectors
    assert wv.vocab_size > 50 and wv.prob_source == "counts"
    assert "token" in wv.index and "tokenization" in wv.index  # surface words, not stems
    path = tmp_path / "w2v" / "model.bin"
    e.save(path)
    raw = path.read_bytes()
    assert raw.startswith(f"{wv.vocab_size} 100\n".encode())  # word2vec binary header, not a pickle
    assert not raw.startswith(b"\x80")
    with pytest.raises(Exception):
        pickle.loads(raw)
    counts = (tmp_path / "w2v" / "model.bin.vocab").read_text(encoding="utf8").splitlines()
    assert len(counts) == wv.vocab_size and counts[0].split(" ")[1].isdigit()

    e2 = from_spec("word2vec:train")
    e2.load(path)
    assert not e2.needs_fit and e2.vectors.prob_source == "counts"
    for word in wv.kv.index_to_key:
        assert np.array_equal(wv.kv[word], e2.vectors.kv[word])
    a, b = e.embed_passages(slide_texts[:5]), e2.embed_passages(slide_texts[:5])
    assert np.array_equal(a, b) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    # without the counts file the vectors still load; SIF falls back to Zipf, with a warning
    (tmp_path / "w2v" / "model.bin.vocab").unlink()
    e3 = from_spec("word2vec:train")
    with caplog.at_level(logging.WARNING):
        e3.load(path)
    assert e3.vectors.prob_source == "zipf-rank" and "Zipf" in caplog.text
    with pytest.raises(PdfqaError, match="nothing to save"):
        from_spec("word2vec:train").save(tmp_path / "x.bin")
    with pytest.raises(PdfqaError, match="pretrained"):
        from_spec("word2vec:glove-50").fit(["a b"])


# ------------------------------------------------------------------------------ word exploration

def test_glove_analogy_king_man_woman():
    res = most_similar("glove-50", ["king", "woman"], ["man"], topn=5)
    assert res[0][0] == "queen" and res[0][1] > 0.8
    assert all(isinstance(w, str) and isinstance(s, float) for w, s in res)
    assert [w for w, _ in res][:1] == ["queen"]
    assert most_similar("glove-50", ["paris", "japan"], ["france"], topn=1)[0][0] == "tokyo"


def test_ja_ginza_analogy_jieitai_minus_umi(ginza):
    """自衛隊 − 海: what ja_ginza 5.x's pruned vectors really give.

    陸上自衛隊 (and 海上/航空自衛隊) have *the same vector* as 自衛隊 in this table, so they cannot
    come out of the analogy; the nearest other vectors are military words."""
    res = most_similar("ja-ginza", ["自衛隊"], ["海"], topn=10)
    words = [w for w, _ in res]
    assert {"米軍", "陸軍", "軍隊"} <= set(words)
    assert "自衛隊" not in words and "陸上自衛隊" not in words
    assert "陸上自衛隊" in words_sharing_vector("ja-ginza", "自衛隊", limit=None)
    assert similarity("ja-ginza", "陸上自衛隊", "自衛隊") == pytest.approx(1.0)
    assert similarity("ja-ginza", "陸上自衛隊", "海") < 0.5
    # a query word missing in its typed form resolves through Sudachi (コンピュータ → コンピューター)
    assert most_similar(ginza, ["コンピュータ"], topn=3)[0][0] == "ソフトウェア"


def test_unknown_words_are_named():
    with pytest.raises(PdfqaError) as ei:
        most_similar("glove-50", ["king", "qwxzrtvq"], ["zzqqxxvv"])
    assert "not in the glove-50 vocabulary" in str(ei.value)
    assert "'qwxzrtvq'" in str(ei.value) and "'zzqqxxvv'" in str(ei.value) and "'king'" not in str(ei.value)
    with pytest.raises(UnknownComponentError):
        most_similar("nope", ["king"])
    with pytest.raises(PdfqaError, match="train"):
        most_similar("train", ["king"])
