"""``bert:<path>[#mean|#cls]`` over a tiny randomly initialised BERT built and saved in the test (no hub)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pdfqa.embeddings.bert import BertEmbedder, from_spec, parse_spec  # noqa: E402
from pdfqa.errors import PdfqaError  # noqa: E402

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "cat", "dog", "sat", "on", "mat", "run", "##ning", "##s", "zero", "trust", "network",
         "access", "is", "model", "security", "every", "request", "verified", ".", ",", "?",
         "東", "京", "大", "学"]
MAX_POS = 64


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    vocab = d / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + WORDS) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary as ``vocab=`` (a path or a dict); ``vocab_file=`` is silently ignored there
    tok = BertTokenizerFast(vocab=str(vocab), do_lower_case=True, model_max_length=MAX_POS)
    assert tok.tokenize("running cats") == ["run", "##ning", "cat", "##s"], "the test vocabulary was not loaded"
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=MAX_POS)
    BertModel(config).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def mean(model_dir):
    return from_spec(f"bert:{model_dir}")


@pytest.fixture(scope="module")
def cls(model_dir):
    return from_spec(f"bert:{model_dir}#cls")


def test_spec_parsing():
    assert parse_spec("bert:some/model") == ("some/model", "mean")
    assert parse_spec("bert:some/model#cls") == ("some/model", "cls")
    assert parse_spec("bert:/a#b/model#mean") == ("/a#b/model", "mean")
    e = from_spec("bert:tohoku-nlp/bert-base-japanese-v3#cls")
    assert (e.model_name, e.pooling, e.spec) == ("tohoku-nlp/bert-base-japanese-v3", "cls",
                                                 "bert:tohoku-nlp/bert-base-japanese-v3#cls")
    assert e._model is None  # lazy: nothing loaded by the constructor
    with pytest.raises(PdfqaError, match="pooling"):
        from_spec("bert:some/model#max")
    with pytest.raises(PdfqaError):
        from_spec("bert:")


def test_dims_normalisation_and_limits(mean, cls):
    v = mean.embed_passages(["the cat sat on the mat .", "zero trust network access"])
    assert v.shape == (2, 32) and v.dtype == np.float32
    assert mean.dim == 32 and cls.dim == 32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert mean.max_tokens == MAX_POS  # min(tokenizer, config, 512)
    assert mean.passage_overhead == 2
    d = mean.describe()
    assert d["dim"] == 32 and d["normalized"] is True and d["pooling"] == "mean"
    assert mean.embed_passages([]).shape == (0, 32)


def test_mean_and_cls_differ(mean, cls):
    texts = ["the cat sat on the mat .", "every request is verified"]
    vm, vc = mean.embed_passages(texts), cls.embed_passages(texts)
    np.testing.assert_allclose(np.linalg.norm(vc, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vm, vc, atol=1e-3)
    # the [CLS] vector is the first hidden state: check it against the model run by hand
    tok, model = cls._tokenizer, cls._model
    with torch.inference_mode():
        hidden = model(**tok(texts[:1], return_tensors="pt")).last_hidden_state[0]
    want_cls = hidden[0].numpy() / np.linalg.norm(hidden[0].numpy())
    want_mean = hidden.mean(0).numpy() / np.linalg.norm(hidden.mean(0).numpy())
    np.testing.assert_allclose(vc[0], want_cls, atol=1e-5)
    np.testing.assert_allclose(vm[0], want_mean, atol=1e-5)


def test_padding_and_batch_order_do_not_change_vectors(model_dir):
    short = "the cat sat"
    long = "zero trust network access is a security model : every request is verified , every dog runs ."
    e1 = BertEmbedder(str(model_dir), batch_size=1)
    e8 = BertEmbedder(str(model_dir), batch_size=8)
    alone = e1.embed_passages([short])[0]
    batch = e8.embed_passages([short, long, "a dog", short])  # the longer text pads the short ones
    np.testing.assert_allclose(batch[0], alone, atol=1e-5)
    np.testing.assert_allclose(batch[3], alone, atol=1e-5)
    np.testing.assert_allclose(batch[1], e1.embed_passages([long])[0], atol=1e-5)
    np.testing.assert_allclose(batch[2], e1.embed_passages(["a dog"])[0], atol=1e-5)
    assert not np.allclose(batch[0], batch[1], atol=1e-3)  # different texts, different vectors
    # queries and passages share one convention; LangChain interface returns lists
    np.testing.assert_allclose(e8.embed_queries([short])[0], alone, atol=1e-5)
    assert np.allclose(e8.embed_query(short), alone, atol=1e-5)


def test_truncation_at_max_tokens(mean):
    words = ["cat", "dog", "mat", "sat"] * 100  # 400 one-token words, far past 64 positions
    long_text = " ".join(words)
    head_text = " ".join(words[:MAX_POS - 2])  # what fits between [CLS] and [SEP]
    v_long, v_head = mean.embed_passages([long_text, head_text])
    assert np.all(np.isfinite(v_long))
    np.testing.assert_allclose(v_long, v_head, atol=1e-5)
    assert not np.allclose(v_long, mean.embed_passages([" ".join(words[:20])])[0], atol=1e-3)


def test_count_tokens(mean):
    assert mean.count_tokens("the cat sat") == 3  # no [CLS]/[SEP]
    assert mean.count_tokens("running cats") == 4  # run ##ning cat ##s
    assert mean.count_tokens("東京大学") == 4  # CJK ideographs split one per token
    assert mean.count_tokens("") == 0
    assert mean.count_tokens(" ".join(["cat"] * 300)) == 300  # counted beyond max_tokens, no truncation


def test_load_errors(monkeypatch, tmp_path):
    with pytest.raises(PdfqaError, match="no model folder"):
        from_spec(f"bert:{tmp_path}/missing").warm_up()

    def offline(*args, **kwargs):
        raise OSError("You need to install fugashi to use MecabTokenizer")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(PdfqaError) as err:
        from_spec("bert:someone/bert-ja").warm_up()
    msg = str(err.value)
    assert "someone/bert-ja" in msg and "fugashi unidic-lite" in msg and "hub" in msg
