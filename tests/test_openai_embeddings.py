"""``openai:<model>`` against a real local HTTP server speaking the OpenAI wire format (tests/openai_server.py)."""
from __future__ import annotations

import json
import socket
import urllib.request

import numpy as np
import pytest

pytest.importorskip("langchain_openai")

from pdfqa.embeddings.openai import OpenAIEmbedder, approx_tokens, from_spec  # noqa: E402
from pdfqa.errors import PdfqaError  # noqa: E402
from tests.openai_server import embed_text, serve, split_reply  # noqa: E402

KEY = "sk-test-SECRET-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_ORG_ID", "OPENAI_ORGANIZATION", "OPENAI_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))  # empty: nothing cached


@pytest.fixture
def srv():
    with serve(api_key=KEY) as s:
        yield s


def test_round_trip_order_and_discovered_dim(srv):
    e = from_spec("openai:test-embed", base_url=srv.base_url)
    assert e.spec == "openai:test-embed"
    texts = ["alpha beta", "梅雨とは何か", "gamma delta epsilon"]
    v = e.embed_passages(texts)
    assert v.shape == (3, 64) and v.dtype == np.float32 and e.dim == 64  # unknown model: dim from the response
    np.testing.assert_allclose(v, np.array([embed_text(t, 64) for t in texts]), atol=1e-6)  # order kept
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    (req,) = srv.requests_to("/embeddings")
    assert req.status == 200 and req.json["model"] == "test-embed"
    assert req.json["input"] == texts  # strings, not token arrays, for a server that is not OpenAI's
    assert req.headers.get("authorization") == "<redacted>"
    assert e._client.check_embedding_ctx_length is False
    # queries use the same convention; the LangChain interface returns plain lists
    assert np.allclose(e.embed_query("alpha beta"), v[0], atol=1e-6)
    assert e.embed_passages([]).shape == (0, 64)


def test_batches_keep_order(srv):
    e = OpenAIEmbedder("test-embed", base_url=srv.base_url, batch_size=2)
    texts = [f"text number {i} about topic {i % 3}" for i in range(5)]
    v = e.embed_passages(texts)
    assert [len(r.json["input"]) for r in srv.requests_to("/embeddings")] == [2, 2, 1]
    np.testing.assert_allclose(v, np.array([embed_text(t, 64) for t in texts]), atol=1e-6)


def test_known_models_have_their_dimension_without_a_request(srv):
    small = from_spec("openai:text-embedding-3-small", base_url=srv.base_url)
    large = from_spec("openai:text-embedding-3-large", base_url=srv.base_url)
    ada = from_spec("openai:text-embedding-ada-002", base_url=srv.base_url)
    assert (small.dim, large.dim, ada.dim) == (1536, 3072, 1536)
    assert srv.requests == []
    assert small.embed_passages(["hello"]).shape == (1, 1536)
    assert small.max_tokens == 8191
    assert small.describe()["dim"] == 1536


def test_dimensions_are_passed_on(srv):
    e = OpenAIEmbedder("text-embedding-3-large", base_url=srv.base_url, dimensions=256)
    assert e.dim == 256 and e.embed_passages(["shorter vectors"]).shape == (1, 256)
    assert srv.requests_to("/embeddings")[0].json["dimensions"] == 256


def test_unknown_model_dim_probe(srv):
    e = from_spec("openai:my-local-embedder", base_url=srv.base_url)
    assert e.dim == 64
    assert len(srv.requests_to("/embeddings")) == 1
    assert e.dim == 64 and len(srv.requests_to("/embeddings")) == 1  # asked once


def test_query_is_closest_to_its_near_duplicate(srv):
    e = from_spec("openai:test-embed", base_url=srv.base_url)
    passages = [
        "The rainy season in Japan usually starts in early June.",
        "Zero trust network access verifies every request, inside or outside the network.",
        "BM25 ranks documents by term frequency and inverse document frequency.",
        "ゼロトラストとは、すべてのアクセスを検証するセキュリティモデルです。",
    ]
    q = e.embed_queries(["zero trust network access verifies every request"])[0]
    sims = e.embed_passages(passages) @ q
    assert int(np.argmax(sims)) == 1
    assert sims[1] > sims[0] + 0.2


def test_env_base_url_is_used(srv, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    e = from_spec("openai:test-embed")
    assert e.base_url == srv.base_url
    assert e.embed_passages(["x y z"]).shape == (1, 64)
    assert len(srv.requests_to("/embeddings")) == 1


def test_wrong_key_is_a_clear_error_without_the_key(monkeypatch):
    wrong = "sk-wrong-KEY-should-not-leak-42"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with serve(api_key="sk-the-right-one") as s:
        e = from_spec("openai:test-embed", base_url=s.base_url)
        with pytest.raises(PdfqaError) as err:
            e.embed_passages(["hello"])
        assert len(s.requests) == 1  # a 401 is not retried
    msg = str(err.value)
    assert "401" in msg and "OPENAI_API_KEY" in msg and "openai:test-embed" in msg
    assert wrong not in msg and "should-not-leak" not in msg
    assert "\n" not in msg


def test_rate_limit_then_success_with_retries():
    with serve(api_key=KEY, fail_first=2) as s:
        e = OpenAIEmbedder("test-embed", base_url=s.base_url, max_retries=3)
        v = e.embed_passages(["retry me"])
        assert [r.status for r in s.requests] == [429, 429, 200]
    np.testing.assert_allclose(v[0], embed_text("retry me", 64), atol=1e-6)


def test_rate_limit_exhausted_is_a_clear_error():
    with serve(api_key=KEY, fail_first=10) as s:
        e = OpenAIEmbedder("test-embed", base_url=s.base_url, max_retries=1)
        with pytest.raises(PdfqaError) as err:
            e.embed_passages(["hello"])
        assert len(s.requests) == 2  # first try + one retry
    msg = str(err.value)
    assert "429" in msg and "rate limit" in msg and "\n" not in msg and KEY not in msg


def test_timeout_is_a_clear_error():
    with serve(api_key=KEY, delay=1.5) as s:
        e = OpenAIEmbedder("test-embed", base_url=s.base_url, timeout=0.3, max_retries=0)
        with pytest.raises(PdfqaError, match="timed out"):
            e.embed_passages(["slow"])


def test_connection_refused_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    e = OpenAIEmbedder("test-embed", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5)
    with pytest.raises(PdfqaError, match="cannot connect"):
        e.embed_passages(["hello"])


def test_missing_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    e = from_spec("openai:text-embedding-3-small")  # OpenAI itself: a key is required
    assert e.dim == 1536  # knowing the dimension needs no key
    with pytest.raises(PdfqaError) as err:
        e.embed_passages(["hello"])
    msg = str(err.value)
    assert "OPENAI_API_KEY" in msg and "base URL" in msg

    with serve() as s:  # a local server that needs no key: a placeholder is sent
        v = from_spec("openai:test-embed", base_url=s.base_url).embed_passages(["hello"])
        assert v.shape == (1, 64)
    with serve(api_key="needed") as s:  # ... and one that does need a key says so
        with pytest.raises(PdfqaError, match="401.*set OPENAI_API_KEY"):
            from_spec("openai:test-embed", base_url=s.base_url).embed_passages(["hello"])


def test_count_tokens_falls_back_offline(srv, monkeypatch):
    import tiktoken

    def no_download(name):
        raise AssertionError("must not try to download the tiktoken encoding for a non-OpenAI server")

    monkeypatch.setattr(tiktoken, "get_encoding", no_download)
    e = from_spec("openai:test-embed", base_url=srv.base_url)
    assert e.count_tokens("abcdefg") == approx_tokens("abcdefg") == 3
    assert e.count_tokens("") == 0
    e.embed_passages(["warm"])  # warm-up does not try it either
    assert e._client.check_embedding_ctx_length is False


def test_spec_errors():
    with pytest.raises(PdfqaError, match="openai:<model>"):
        from_spec("openai:")
    with pytest.raises(PdfqaError):
        from_spec("text-embedding-3-small")


# the test server itself: token-id input, and the chat endpoints issue 4 relies on ----------------
def _post(url: str, body: dict, key: str | None = None) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def test_server_accepts_token_id_input(srv):
    body = _post(srv.base_url + "/embeddings", {"model": "m", "input": [[1, 2, 3], [1, 2, 4]],
                                                "encoding_format": "float"}, KEY)
    a, b = (np.array(d["embedding"]) for d in body["data"])
    assert [d["index"] for d in body["data"]] == [0, 1] and a.shape == (64,)
    assert 0.2 < float(a @ b) < 0.999  # shared tokens: similar, not equal
    single = _post(srv.base_url + "/embeddings", {"model": "m", "input": [1, 2, 3]}, KEY)
    assert np.allclose(single["data"][0]["embedding"], a)
    assert body["usage"]["prompt_tokens"] == 6


def test_server_chat_completions_with_the_openai_sdk():
    openai = pytest.importorskip("openai")
    with serve(api_key=KEY) as s:
        client = openai.OpenAI(base_url=s.base_url, api_key=KEY, max_retries=0)
        r = client.chat.completions.create(model="fake-chat", messages=[
            {"role": "system", "content": "be brief"}, {"role": "user", "content": "東京の天気は? sunny"}])
        assert r.choices[0].message.content == "東京の天気は? sunny" and r.choices[0].finish_reason == "stop"

        s.responder = lambda messages: f"{len(messages)} messages; the last said: {messages[-1]['content']}"
        stream = client.chat.completions.create(model="fake-chat", stream=True,
                                                stream_options={"include_usage": True},
                                                messages=[{"role": "user", "content": "hi there"}])
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "1 messages; the last said: hi there"
        assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3  # really streamed
        assert chunks[-1].usage is not None and chunks[-1].choices == []
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
        assert s.requests_to("/chat/completions")[-1].json["stream"] is True
        assert [m.id for m in client.models.list()][0] == "fake-chat"
    assert "".join(split_reply("長い日本語の文章はいくつかの断片に分かれます。 and words")) == \
        "長い日本語の文章はいくつかの断片に分かれます。 and words"


def test_cli_base_url_is_recorded_and_reused(srv, tmp_path):
    """`pdfqa index --embedder openai:M --base-url URL` talks to URL (no OPENAI_BASE_URL set), the
    collection records it, and a later search without --base-url goes back to the same server."""
    import os
    import subprocess
    import sys

    from tests.conftest import JA_PAPER, ROOT

    col = tmp_path / "c"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "pdfqa.cli", *map(str, a)], capture_output=True,  # noqa: E731
                                    text=True, cwd=ROOT, env=env, timeout=300)
    p = run("index", JA_PAPER, "-c", col, "--embedder", "openai:test-embed", "--base-url", srv.base_url, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    manifest = json.loads((col / "manifest.json").read_text())
    assert manifest["embedders"]["openai:test-embed"]["base_url"] == srv.base_url
    served = len(srv.requests_to("/embeddings"))
    assert served >= 1
    p = run("search", "ゼロトラスト", "-c", col, "-r", "openai:test-embed", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["hits"][0]["doc"] == JA_PAPER.name
    # the query (and the dimension probe of a model it does not know) went to the recorded server
    assert len(srv.requests_to("/embeddings")) > served
    p = run("search", "x", "-c", col, "-r", "openai:test-embed", "--base-url", "http://127.0.0.1:9/v1")
    assert p.returncode == 2 and "cannot connect" in p.stderr and "127.0.0.1:9" in p.stderr
