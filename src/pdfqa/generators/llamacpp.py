"""llama.cpp models through llama-cpp-python: ``llamacpp:<file.gguf>[#opts]``.

llama-cpp-python is an optional extra, ``pip install 'pdfqa[llamacpp]'``; it compiles llama.cpp from
source when no wheel fits (about 15 minutes on two cores). The prompt is formatted by llama.cpp
from the chat template stored in the GGUF file (``create_chat_completion``).

Options after ``#``, comma-separated (``llamacpp:/models/mistral-7b-instruct-v0.2.Q4_K_M.gguf#n_ctx=8192``):
``n_ctx`` (context window, default 4096), ``n_threads`` (default: llama.cpp's choice),
``n_gpu_layers`` (0 = CPU only, -1 = all layers on the GPU of a CUDA/Metal build),
``max_new_tokens`` (512), ``temperature`` (0 = greedy), ``chat_format`` (override the GGUF's template,
e.g. ``mistral-instruct``, ``chatml``).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

from ..errors import PdfqaError
from .base import Generator

INSTALL = "pip install 'pdfqa[llamacpp]'  (or: pip install llama-cpp-python; it compiles llama.cpp, ~15 min)"
OPTIONS: dict[str, type] = {"n_ctx": int, "n_threads": int, "n_gpu_layers": int, "max_new_tokens": int,
                            "temperature": float, "chat_format": str}


def parse_spec(spec: str) -> tuple[str, dict]:
    """``"llamacpp:<file.gguf>[#opts]"`` → ``(path, options)``."""
    from .transformers import parse_options  # light: that module imports torch only when a model loads

    spec = spec.strip()
    if not spec.startswith("llamacpp:") or len(spec) <= len("llamacpp:"):
        raise PdfqaError(f"not a llama.cpp generator spec: {spec!r}; expected llamacpp:<file.gguf>[#opts]")
    path, opts = spec[len("llamacpp:"):], ""
    if "#" in path:
        head, _, tail = path.rpartition("#")
        if "=" in tail or not tail.strip():
            path, opts = head, tail
    path = path.strip()
    if not path:
        raise PdfqaError(f"generator {spec!r}: no .gguf file")
    return path, parse_options(opts, OPTIONS, what=f"generator {spec!r}")


def from_spec(spec: str, **kwargs) -> "LlamaCppGenerator":
    path, opts = parse_spec(spec)
    opts.update(kwargs)
    return LlamaCppGenerator(path, spec=spec.strip(), **opts)


class LlamaCppGenerator(Generator):
    """A GGUF model run by llama.cpp (``Llama(model_path, n_ctx, n_threads, verbose=False)``), loaded
    lazily in :meth:`warm_up`. A missing file or a missing llama-cpp-python raises :class:`PdfqaError`."""

    def __init__(self, model_path: str | os.PathLike, *, spec: str | None = None, n_ctx: int = 4096,
                 n_threads: int | None = None, n_gpu_layers: int = 0, max_new_tokens: int = 512,
                 temperature: float = 0.0, chat_format: str | None = None):
        self.model_path = Path(os.path.expanduser(str(model_path)))
        self.spec = spec or f"llamacpp:{model_path}"
        if n_ctx < 16:
            raise PdfqaError(f"{self.spec}: n_ctx={n_ctx} is too small")
        if max_new_tokens < 1:
            raise PdfqaError(f"{self.spec}: max_new_tokens must be at least 1, not {max_new_tokens}")
        if temperature < 0:
            raise PdfqaError(f"{self.spec}: temperature must be >= 0 (0 = greedy), not {temperature}")
        self.n_ctx, self.n_threads, self.n_gpu_layers = int(n_ctx), n_threads, int(n_gpu_layers)
        self.max_new_tokens, self.temperature, self.chat_format = int(max_new_tokens), float(temperature), chat_format
        self.context_window = self.n_ctx
        self._llm = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._llm is not None:
                return
            if not self.model_path.is_file():
                raise PdfqaError(f"{self.spec}: no such GGUF file: {self.model_path}")
            try:
                from llama_cpp import Llama
            except ImportError as e:
                raise PdfqaError(f"{self.spec} needs llama-cpp-python, which is not installed: {INSTALL}") from e
            kwargs = {"model_path": str(self.model_path), "n_ctx": self.n_ctx, "n_threads": self.n_threads,
                      "n_gpu_layers": self.n_gpu_layers, "verbose": False}
            if self.chat_format:
                kwargs["chat_format"] = self.chat_format
            try:
                self._llm = Llama(**kwargs)
            except Exception as e:  # llama.cpp reports a bad file as ValueError/RuntimeError
                raise PdfqaError(f"{self.spec}: llama.cpp could not load {self.model_path.name} ({e}); "
                                 f"is it a GGUF model file?") from e
            try:
                self.context_window = int(self._llm.n_ctx())
            except Exception:
                pass

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False))

    def _kwargs(self, max_new_tokens: int | None, kwargs: dict) -> dict:
        temperature = kwargs.get("temperature")
        out = {"max_tokens": int(max_new_tokens or self.max_new_tokens),
               "temperature": self.temperature if temperature is None else float(temperature)}
        if kwargs.get("top_p") is not None:
            out["top_p"] = float(kwargs["top_p"])
        return out

    def generate(self, messages: list[dict], *, max_new_tokens: int | None = None, **kwargs) -> str:
        self.warm_up()
        try:
            result = self._llm.create_chat_completion(messages=messages, stream=False,
                                                      **self._kwargs(max_new_tokens, kwargs))
        except Exception as e:
            raise PdfqaError(f"{self.spec}: generation failed ({type(e).__name__}: {e})") from e
        return result["choices"][0]["message"].get("content") or ""

    def stream(self, messages: list[dict], *, max_new_tokens: int | None = None, **kwargs) -> Iterator[str]:
        self.warm_up()
        try:
            for chunk in self._llm.create_chat_completion(messages=messages, stream=True,
                                                          **self._kwargs(max_new_tokens, kwargs)):
                piece = chunk["choices"][0].get("delta", {}).get("content")
                if piece:
                    yield piece
        except PdfqaError:
            raise
        except Exception as e:
            raise PdfqaError(f"{self.spec}: generation failed ({type(e).__name__}: {e})") from e

    def describe(self) -> dict:
        return {**super().describe(), "model_path": str(self.model_path), "n_gpu_layers": self.n_gpu_layers}


__all__ = ["LlamaCppGenerator", "from_spec", "parse_spec"]
