"""OpenAI embeddings, and any server speaking the OpenAI embeddings API: ``openai:<model>``.

Known models: ``text-embedding-3-small`` (1536-d), ``text-embedding-3-large`` (3072-d) and
``text-embedding-ada-002`` (1536-d); for any other model name (a vLLM, Ollama, LM Studio or
text-embeddings-inference server, say) the dimension is read from the first response. Requests go
through LangChain's ``OpenAIEmbeddings``; vectors are L2-normalised here (OpenAI's already are;
compatible servers' may not be).

Configuration:

- the key comes from ``OPENAI_API_KEY`` (never logged, never put in a message). Without a key,
  talking to OpenAI fails with a message saying so; with a base URL (a local server that needs no
  key) a placeholder key is sent instead.
- the server is ``base_url`` (constructor / :func:`from_spec` argument), else ``OPENAI_BASE_URL``,
  else ``OPENAI_API_BASE``, else OpenAI's. For servers other than OpenAI's, texts are sent as strings
  (``check_embedding_ctx_length=False``): most compatible servers do not accept token arrays.
- errors become one-line :class:`~pdfqa.errors.PdfqaError`\\ s: 401 (key rejected), 429 (rate limit or
  quota, after the SDK's ``max_retries`` retries, which honour ``Retry-After``), timeouts and refused
  connections, and any other HTTP status with the server's message.

Tokens: ``count_tokens`` uses tiktoken's ``cl100k_base`` (the encoding of all three OpenAI models)
when tiktoken is installed and its encoding file can be had: from tiktoken's cache, or downloaded
when the server is OpenAI's (which means the network is there). Otherwise it falls back to an
approximation, ``ceil(len(text) / 3)``, which over-counts English and is near the mark for Japanese.
``max_tokens`` is 8191, OpenAI's limit per input.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
import threading
from urllib.parse import urlparse

import numpy as np

from ..errors import PdfqaError
from .base import Embedder, l2_normalize

log = logging.getLogger(__name__)

KNOWN_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
OPENAI_HOST = "api.openai.com"
#: sent as the key to servers (given by base URL) that need none; OpenAI itself would answer 401
PLACEHOLDER_KEY = "sk-no-key-required"
CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def resolve_base_url(base_url: str | None = None) -> str | None:
    """The server to talk to: the argument, else ``OPENAI_BASE_URL``, else ``OPENAI_API_BASE``, else None (OpenAI)."""
    for value in (base_url, os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_BASE")):
        if value and value.strip():
            return value.strip()
    return None


def is_openai_url(base_url: str | None) -> bool:
    return base_url is None or (urlparse(base_url).hostname or "").lower() == OPENAI_HOST


def _tiktoken_cache_path(url: str) -> str | None:
    """Where tiktoken caches ``url`` (the same rule as ``tiktoken.load.read_file_cached``); None: caching is off."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        cache_dir = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        cache_dir = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir == "":
        return None
    return os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())


def load_cl100k(allow_download: bool):
    """tiktoken's ``cl100k_base``, or None when tiktoken is missing or its file cannot be had offline."""
    try:
        import tiktoken
    except ImportError:
        return None
    cached = _tiktoken_cache_path(CL100K_URL)
    if not allow_download and not (cached and os.path.exists(cached)):
        return None
    try:
        return tiktoken.get_encoding("cl100k_base")
    except Exception as e:  # no network, bad cache, ...: count approximately
        log.info("tiktoken cl100k_base is not available (%s); counting tokens approximately", type(e).__name__)
        return None


def approx_tokens(text: str) -> int:
    """The fallback token count: one token per three characters, rounded up."""
    return math.ceil(len(text) / 3)


class OpenAIEmbedder(Embedder):
    """``openai:<model>`` through ``langchain_openai.OpenAIEmbeddings``; L2-normalised vectors."""

    max_tokens = 8191
    passage_overhead = 0  # the API adds nothing around a text

    def __init__(self, model: str, *, base_url: str | None = None, spec: str | None = None,
                 dimensions: int | None = None, batch_size: int = 256, timeout: float = 60.0,
                 max_retries: int = 3):
        if not model or not model.strip():
            raise PdfqaError("openai embedder: no model name; use openai:<model>, e.g. openai:text-embedding-3-small")
        if batch_size < 1:
            raise PdfqaError(f"batch_size must be at least 1, got {batch_size}")
        self.model = model.strip()
        self.spec = spec or f"openai:{self.model}"
        self.base_url = resolve_base_url(base_url)
        self.dimensions = dimensions
        self.batch_size, self.timeout, self.max_retries = batch_size, timeout, max_retries
        self._dim: int | None = dimensions or KNOWN_DIMS.get(self.model)
        self._client = None
        self._key: str | None = None
        self._encoding = None
        self._encoding_tried = False
        self._lock = threading.Lock()

    @property
    def is_openai(self) -> bool:
        return is_openai_url(self.base_url)

    @property
    def _where(self) -> str:
        return self.base_url or "api.openai.com"

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model!r}, base_url={self.base_url!r})"

    # loading ---------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        if self._client is not None:
            return
        with self._lock:
            if self._client is not None:
                return
            key = (os.environ.get("OPENAI_API_KEY") or "").strip()
            if not key:
                if self.is_openai:
                    raise PdfqaError(f"embedder {self.spec!r}: no API key; set OPENAI_API_KEY, or give the base URL "
                                     "of an OpenAI-compatible server that needs none (base_url= / OPENAI_BASE_URL)")
                key = PLACEHOLDER_KEY
            try:
                from langchain_openai import OpenAIEmbeddings
            except ImportError as e:
                raise PdfqaError(f"embedder {self.spec!r} needs langchain-openai: pip install langchain-openai") from e
            ctx_check = self.is_openai and self._get_encoding() is not None
            kwargs = dict(model=self.model, api_key=key, base_url=self.base_url, chunk_size=self.batch_size,
                          max_retries=self.max_retries, timeout=self.timeout, check_embedding_ctx_length=ctx_check)
            if self.dimensions:
                kwargs["dimensions"] = self.dimensions
            try:
                client = OpenAIEmbeddings(**kwargs)
            except Exception as e:
                raise PdfqaError(f"embedder {self.spec!r}: cannot set up the client for {self._where} "
                                 f"({type(e).__name__}: {self._scrub(str(e), key)[:200]})") from e
            self._key = key
            self._client = client

    def _get_encoding(self):
        if not self._encoding_tried:
            self._encoding = load_cl100k(allow_download=self.is_openai)
            self._encoding_tried = True
        return self._encoding

    # interface -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._dim is None:  # an unknown model: ask the server once
            self._encode(["dimension probe"])
        return int(self._dim)

    def count_tokens(self, text: str) -> int:
        enc = self._get_encoding()
        if enc is not None:
            return len(enc.encode_ordinary(text))
        return approx_tokens(text)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    def describe(self) -> dict:
        return {**super().describe(), "base_url": self.base_url}

    # requests --------------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # the API rejects empty strings; a space embeds as "nothing" just as well
        texts = [t if t.strip() else " " for t in texts]
        try:
            vectors = self._client.embed_documents(texts)
        except PdfqaError:
            raise
        except Exception as e:
            raise self._error(e) from e
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != len(texts):
            raise PdfqaError(f"embedder {self.spec!r}: {self._where} answered {arr.shape[0] if arr.ndim else 0} "
                             f"vectors for {len(texts)} texts")
        if self._dim is None:
            self._dim = int(arr.shape[1])
        elif arr.shape[1] != self._dim:
            raise PdfqaError(f"embedder {self.spec!r}: {self._where} answered {arr.shape[1]}-d vectors, expected "
                             f"{self._dim}-d for {self.model!r}")
        return l2_normalize(arr)

    @staticmethod
    def _scrub(text: str, key: str | None) -> str:
        text = " ".join(str(text).split())
        if key and key != PLACEHOLDER_KEY:
            text = text.replace(key, "***")
        return text

    def _error(self, e: Exception) -> PdfqaError:
        """One line naming the embedder, the server and what to do; never the key."""
        import openai

        head = f"embedder {self.spec!r} at {self._where}"
        if isinstance(e, openai.AuthenticationError):
            what = ("the server asks for a key: set OPENAI_API_KEY" if self._key == PLACEHOLDER_KEY
                    else "the API key was rejected: check OPENAI_API_KEY")
            return PdfqaError(f"{head}: 401 Unauthorized, {what}")
        if isinstance(e, openai.RateLimitError):
            msg = self._scrub(getattr(e, "message", str(e)), self._key)[:160]
            return PdfqaError(f"{head}: 429 rate limit or quota exceeded after {self.max_retries} retries "
                              f"({msg}); wait and retry, lower the batch size, or check the account's quota")
        if isinstance(e, openai.APITimeoutError):
            return PdfqaError(f"{head}: timed out after {self.timeout:g} s ({self.max_retries} retries); "
                              "the server is slow or unreachable: retry, or raise the timeout")
        if isinstance(e, openai.APIConnectionError):
            return PdfqaError(f"{head}: cannot connect ({self._scrub(str(e.__cause__ or e), self._key)[:120]}); "
                              "check the base URL and the network")
        if isinstance(e, openai.NotFoundError):
            return PdfqaError(f"{head}: 404, no model {self.model!r} or no embeddings endpoint there "
                              f"({self._scrub(getattr(e, 'message', str(e)), self._key)[:160]})")
        if isinstance(e, openai.APIStatusError):
            return PdfqaError(f"{head}: HTTP {e.status_code} "
                              f"({self._scrub(getattr(e, 'message', str(e)), self._key)[:200]})")
        return PdfqaError(f"{head}: {type(e).__name__}: {self._scrub(str(e), self._key)[:200]}")


def from_spec(spec: str, base_url: str | None = None) -> OpenAIEmbedder:
    """``openai:<model>`` → an :class:`OpenAIEmbedder` (no request is made yet).

    >>> from_spec("openai:text-embedding-3-small").dim
    1536
    """
    if not spec.startswith("openai:") or not spec[len("openai:"):].strip():
        raise PdfqaError(f"not an openai embedder spec: {spec!r}; expected openai:<model>, "
                         "e.g. openai:text-embedding-3-small")
    return OpenAIEmbedder(spec[len("openai:"):], base_url=base_url, spec=spec)


__all__ = ["KNOWN_DIMS", "OpenAIEmbedder", "approx_tokens", "from_spec", "load_cl100k", "resolve_base_url"]
