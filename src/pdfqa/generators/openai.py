"""OpenAI chat models and OpenAI-compatible servers through langchain-openai.

Specs: ``openai:<model>`` (e.g. ``openai:gpt-4o-mini``, ``openai:gpt-3.5-turbo``; key from
``OPENAI_API_KEY``) and ``openai-compatible:<base_url>[#model]`` for llamafile, LM Studio, Ollama,
vLLM or text-generation-webui (``openai-compatible:http://localhost:11434/v1#llama3``; without
``#model`` the server's first listed model is used; a key is sent only if ``OPENAI_API_KEY`` is set).
The key is never logged or put in an error message.
"""
from __future__ import annotations

import json
import os
import urllib.request
from typing import Iterator

from ..errors import PdfqaError
from .base import Generator

#: context windows of the OpenAI models people name most; others default to 8192
CONTEXT_WINDOWS = {"gpt-3.5-turbo": 16385, "gpt-4": 8192, "gpt-4-32k": 32768, "gpt-4-turbo": 128000,
                   "gpt-4o": 128000, "gpt-4o-mini": 128000, "gpt-4.1": 1047576, "gpt-4.1-mini": 1047576}


def _window(model: str, default: int) -> int:
    for name in sorted(CONTEXT_WINDOWS, key=len, reverse=True):
        if model.startswith(name):
            return CONTEXT_WINDOWS[name]
    return default


class OpenAIGenerator(Generator):
    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None, spec: str | None = None,
                 timeout: float = 60.0, max_retries: int = 3, temperature: float = 0.0,
                 context_window: int | None = None, compatible: bool = False):
        self.model = model
        self.base_url = base_url.rstrip("/") if base_url else None
        self.compatible = compatible
        self.spec = spec or (f"openai-compatible:{base_url}#{model}" if compatible else f"openai:{model}")
        self.timeout, self.max_retries, self.temperature = timeout, max_retries, temperature
        self.context_window = context_window or _window(model, 4096 if compatible else 8192)
        self._api_key = api_key
        self._client = None

    def _key(self) -> str:
        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        if self.compatible:
            return "not-needed"  # local servers ignore it, the client insists on one
        raise PdfqaError(f"{self.spec}: no API key: set OPENAI_API_KEY (or use openai-compatible:<base_url> for a "
                         f"local server)")

    def warm_up(self) -> None:
        if self._client is not None:
            return
        try:
            from langchain_openai import ChatOpenAI
        except ImportError as e:
            raise PdfqaError(f"{self.spec} needs langchain-openai: pip install 'pdfqa[openai]'") from e
        self._client = ChatOpenAI(model=self.model, api_key=self._key(), base_url=self.base_url,
                                  timeout=self.timeout, max_retries=self.max_retries, temperature=self.temperature)

    def _explain(self, e: Exception) -> PdfqaError:
        import openai

        where = self.base_url or "api.openai.com"
        if isinstance(e, openai.AuthenticationError):
            return PdfqaError(f"{self.spec}: the server rejected the API key (401); check OPENAI_API_KEY")
        if isinstance(e, openai.RateLimitError):
            return PdfqaError(f"{self.spec}: rate limited (429) after {self.max_retries} retries with backoff; "
                              f"wait and retry, or check your quota")
        if isinstance(e, openai.APITimeoutError):
            return PdfqaError(f"{self.spec}: no answer from {where} within {self.timeout:g}s (timeout)")
        if isinstance(e, openai.APIConnectionError):
            return PdfqaError(f"{self.spec}: cannot reach {where} ({type(e.__cause__ or e).__name__}); is the server running?")
        if isinstance(e, openai.NotFoundError):
            return PdfqaError(f"{self.spec}: model {self.model!r} not found on {where} (404)")
        if isinstance(e, openai.APIStatusError):
            return PdfqaError(f"{self.spec}: {where} answered {e.status_code}: {str(e.message)[:200]}")
        return PdfqaError(f"{self.spec}: {type(e).__name__}: {str(e)[:200]}")

    def generate(self, messages: list[dict], *, max_new_tokens: int = 512, **kwargs) -> str:
        self.warm_up()
        try:
            return str(self._client.invoke(messages, max_tokens=max_new_tokens).content)
        except PdfqaError:
            raise
        except Exception as e:
            raise self._explain(e) from e

    def stream(self, messages: list[dict], *, max_new_tokens: int = 512, **kwargs) -> Iterator[str]:
        self.warm_up()
        try:
            for chunk in self._client.stream(messages, max_tokens=max_new_tokens):
                if chunk.content:
                    yield str(chunk.content)
        except PdfqaError:
            raise
        except Exception as e:
            raise self._explain(e) from e


def first_model(base_url: str, timeout: float = 10.0) -> str:
    """The first model a compatible server lists at ``GET /models``."""
    req = urllib.request.Request(base_url.rstrip("/") + "/models")
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = json.load(r).get("data") or []
    except Exception as e:
        raise PdfqaError(f"openai-compatible:{base_url}: cannot list models ({type(e).__name__}: {e}); "
                         f"name one with #model") from e
    if not data:
        raise PdfqaError(f"openai-compatible:{base_url}: the server lists no models; name one with #model")
    return str(data[0]["id"])


def from_spec(spec: str) -> OpenAIGenerator:
    if spec.startswith("openai-compatible:"):
        rest = spec[len("openai-compatible:"):]
        base_url, _, model = rest.partition("#")
        if not base_url.startswith(("http://", "https://")):
            raise PdfqaError(f"{spec}: expected openai-compatible:<http(s)://host:port/v1>[#model]")
        model = model or first_model(base_url)
        return OpenAIGenerator(model, base_url=base_url, compatible=True, spec=spec)
    model = spec[len("openai:"):] or "gpt-4o-mini"
    return OpenAIGenerator(model, base_url=os.environ.get("OPENAI_BASE_URL"), spec=spec)
