"""A real, local HTTP server speaking the OpenAI wire format, for tests (stdlib only, no network).

It listens on 127.0.0.1 on a free port in a background thread, so the real ``openai`` SDK, LangChain's
``OpenAIEmbeddings`` / ``ChatOpenAI`` and anything else that talks HTTP can be pointed at it with
``base_url=srv.base_url``.

Endpoints
---------
``POST /v1/embeddings``
    ``input``: a string, a list of strings, a list of token ids or a list of token-id lists (what
    LangChain sends when it checks context lengths with tiktoken). Vectors are deterministic: a hashed
    bag of character trigrams (of token-id uni/bigrams for token input), L2-normalised, so texts that
    share wording get similar vectors. Dimension: the real one for OpenAI's own model names
    (``text-embedding-3-small`` 1536, ``-3-large`` 3072, ``ada-002`` 1536), else the ``dim`` option;
    a request's ``dimensions`` field wins. ``encoding_format: "base64"`` (the openai SDK's default) is
    answered with little-endian float32 in base64, ``"float"`` (or none) with JSON numbers.
``POST /v1/chat/completions``
    The reply text is ``srv.responder(messages)`` (default: the text of the last user message).
    Non-streaming answers a ``chat.completion``; ``"stream": true`` answers server-sent events, one
    ``data: {chat.completion.chunk}`` line per piece of the reply (a role chunk first, a
    ``finish_reason: "stop"`` chunk last, a usage chunk when ``stream_options.include_usage``), then
    ``data: [DONE]``.
``GET /v1/models``
    The ``model`` option and the known embedding models, in the ``{"object": "list", "data": [...]}`` shape.

Failure injection (keyword options of :func:`serve`, also settable later as attributes of the handle)
---------------------------------------------------------------------------------------------------
``api_key``        require ``Authorization: Bearer <api_key>``; otherwise 401 with OpenAI's error JSON
                   (``{"error": {"message", "type", "param", "code": "invalid_api_key"}}``).
``fail_first``     answer the first N requests (counted over all endpoints) with ``fail_status``
                   (default 429, ``rate_limit_exceeded``), sending ``retry-after-ms: retry_after_ms``
                   so the SDK's retries stay fast.
``delay``          sleep this many seconds before answering (to trigger client timeouts).
``stream_delay``   sleep this many seconds before each streamed piece of a reply (a slow model).

Every request is recorded in ``srv.requests`` as a :class:`Recorded` (method, path, headers with
lower-cased names and the ``authorization`` value replaced by ``"<redacted>"``, the JSON body, and the
status answered).

>>> from tests.openai_server import serve
>>> import json, urllib.request
>>> with serve() as srv:
...     req = urllib.request.Request(srv.base_url + "/embeddings", method="POST",
...                                  data=json.dumps({"model": "m", "input": ["a", "b"]}).encode())
...     body = json.load(urllib.request.urlopen(req))
>>> [d["index"] for d in body["data"]], len(body["data"][0]["embedding"])
([0, 1], 64)
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

#: embedding dimensions of OpenAI's own models (the server answers with these for those names)
KNOWN_EMBEDDING_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                        "text-embedding-ada-002": 1536}

Responder = Callable[[list[dict]], str]


def message_text(message: dict) -> str:
    """The text of a chat message whose ``content`` is a string or a list of ``{"type": "text"}`` parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def echo_last_user(messages: list[dict]) -> str:
    """The default responder: the text of the last ``user`` message ("" when there is none)."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return message_text(m)
    return ""


def _features(item: Any) -> list[str]:
    if isinstance(item, str):
        t = " " + re.sub(r"\s+", " ", item.lower()).strip() + " "
        return [t[i:i + 3] for i in range(max(1, len(t) - 2))]
    ids = [str(int(x)) for x in item]
    return ids + [a + "," + b for a, b in zip(ids, ids[1:])]


def embed_text(item: str | list[int], dim: int) -> list[float]:
    """Deterministic vector: hashed (signed) bag of character trigrams / token n-grams, L2-normalised."""
    v = np.zeros(dim, dtype=np.float64)
    for f in _features(item):
        h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
        v[h % dim] += 1.0 if (h >> 63) & 1 else -1.0
    n = np.linalg.norm(v)
    if n == 0:
        v[0], n = 1.0, 1.0
    return (v / n).tolist()


def split_reply(text: str, size: int = 8) -> list[str]:
    """Stream pieces: words with their trailing space, long runs (e.g. Japanese) cut every ``size`` characters.

    ``"".join(split_reply(t)) == t`` always.
    """
    pieces = []
    for word in re.findall(r"\S+\s*|\s+", text):
        pieces.extend(word[i:i + size] for i in range(0, len(word), size))
    return pieces


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    json: Any
    status: int = 0


@dataclass
class FakeOpenAI:
    """The handle :func:`serve` yields: options, recorded requests and the server's address."""

    api_key: str | None = None
    fail_first: int = 0
    fail_status: int = 429
    retry_after_ms: int = 10
    delay: float = 0.0
    stream_delay: float = 0.0
    dim: int = 64
    model: str = "fake-chat"
    responder: Responder = echo_last_user
    requests: list[Recorded] = field(default_factory=list)
    base_url: str = ""
    _served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def requests_to(self, path_end: str) -> list[Recorded]:
        """The recorded requests whose path ends with ``path_end`` (e.g. ``"/embeddings"``)."""
        return [r for r in self.requests if r.path.endswith(path_end)]


def _make_handler(state: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive bookkeeping

        def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
            pass

        # plumbing ------------------------------------------------------------------------------
        def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, type_: str, code: str | None, rec: Recorded,
                   headers: dict[str, str] | None = None) -> None:
            rec.status = status
            self._send_json(status, {"error": {"message": message, "type": type_, "param": None, "code": code}},
                            headers)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k.lower(): ("<redacted>" if k.lower() == "authorization" else v) for k, v in self.headers.items()}
            rec = Recorded(method, self.path, headers, body)
            with state._lock:
                state.requests.append(rec)
                state._served += 1
                n = state._served
            if state.delay:
                time.sleep(state.delay)
            if state.api_key is not None:
                auth = self.headers.get("Authorization", "")
                if auth != f"Bearer {state.api_key}":
                    return self._error(401, "Incorrect API key provided. You can find your API key in your "
                                            "account settings.", "invalid_request_error", "invalid_api_key", rec)
            if n <= state.fail_first:
                if state.fail_status == 429:
                    return self._error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded",
                                       rec, {"retry-after-ms": str(state.retry_after_ms)})
                return self._error(state.fail_status, "The server had an error while processing your request.",
                                   "server_error", None, rec, {"retry-after-ms": str(state.retry_after_ms)})
            path = self.path.split("?", 1)[0].rstrip("/")
            if method == "GET" and path == "/v1/models":
                rec.status = 200
                ids = [state.model, *KNOWN_EMBEDDING_DIMS]
                return self._send_json(200, {"object": "list", "data": [
                    {"id": i, "object": "model", "created": 0, "owned_by": "pdfqa-tests"} for i in ids]})
            if method == "POST" and path == "/v1/embeddings":
                return self._embeddings(body, rec)
            if method == "POST" and path == "/v1/chat/completions":
                return self._chat(body, rec)
            return self._error(404, f"Unknown request URL: {method} {self.path}", "invalid_request_error",
                               "unknown_url", rec)

        # endpoints -----------------------------------------------------------------------------
        def _embeddings(self, body: Any, rec: Recorded) -> None:
            if not isinstance(body, dict) or "input" not in body or "model" not in body:
                return self._error(400, "'input' and 'model' are required", "invalid_request_error", None, rec)
            inp = body["input"]
            if isinstance(inp, str) or (isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp)):
                items = [inp]
            elif isinstance(inp, list) and inp:
                items = inp
            else:
                return self._error(400, "'$.input' is invalid", "invalid_request_error", None, rec)
            for it in items:
                if isinstance(it, str) and it == "":
                    return self._error(400, "'$.input' is invalid: empty string", "invalid_request_error", None,
                                       rec)
                if not isinstance(it, (str, list)):
                    return self._error(400, "'$.input' is invalid", "invalid_request_error", None, rec)
            model = body["model"]
            dim = int(body.get("dimensions") or KNOWN_EMBEDDING_DIMS.get(model, state.dim))
            b64 = body.get("encoding_format") == "base64"
            data = []
            for i, it in enumerate(items):
                vec = embed_text(it, dim)
                if b64:
                    vec = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode()
                data.append({"object": "embedding", "index": i, "embedding": vec})
            tokens = sum(len(it) if isinstance(it, list) else max(1, len(it) // 4) for it in items)
            rec.status = 200
            self._send_json(200, {"object": "list", "data": data, "model": model,
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

        def _chat(self, body: Any, rec: Recorded) -> None:
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return self._error(400, "'messages' is required", "invalid_request_error", None, rec)
            reply = state.responder(body["messages"])
            model = body.get("model") or state.model
            created = int(time.time())
            cid = "chatcmpl-" + hashlib.sha1(f"{created}{len(state.requests)}".encode()).hexdigest()[:24]
            prompt_tokens = sum(len(message_text(m).split()) for m in body["messages"])
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(reply.split()),
                     "total_tokens": prompt_tokens + len(reply.split())}
            rec.status = 200
            if not body.get("stream"):
                return self._send_json(200, {
                    "id": cid, "object": "chat.completion", "created": created, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": usage})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()

            def chunk(delta: dict, finish: str | None = None, choices: bool = True, **extra) -> None:
                obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
                       if choices else [], **extra}
                self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                self.wfile.flush()

            chunk({"role": "assistant", "content": ""})
            for piece in split_reply(reply):
                if state.stream_delay:
                    time.sleep(state.stream_delay)
                chunk({"content": piece})
            chunk({}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                chunk({}, choices=False, usage=usage)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()

        def _serve(self, method: str) -> None:
            try:
                self._handle(method)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test): fine
                pass

        def do_GET(self):  # noqa: N802
            self._serve("GET")

        def do_POST(self):  # noqa: N802
            self._serve("POST")

    return Handler


@contextmanager
def serve(**options: Any) -> Iterator[FakeOpenAI]:
    """Run the fake OpenAI server for the ``with`` block; yields a :class:`FakeOpenAI` handle.

    Options: ``api_key``, ``fail_first``, ``fail_status``, ``retry_after_ms``, ``delay``, ``stream_delay``,
    ``dim``, ``model``, ``responder`` (see the module docstring). As a pytest fixture::

        @pytest.fixture
        def openai_server():
            with serve() as srv:
                yield srv
    """
    state = FakeOpenAI(**options)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    httpd.block_on_close = False  # a handler sleeping for a timeout test must not hold up the shutdown
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name="fake-openai")
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


__all__ = ["FakeOpenAI", "KNOWN_EMBEDDING_DIMS", "Recorded", "echo_last_user", "embed_text", "message_text",
           "serve", "split_reply"]
