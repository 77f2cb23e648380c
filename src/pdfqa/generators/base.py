"""The generator interface: chat messages in, text (or a stream of text pieces) out.

Every generator — OpenAI, OpenAI-compatible servers, local transformers models, llama.cpp, the
offline default and the extractive answerer — implements :class:`Generator`. Messages are
``[{"role": "system"|"user"|"assistant", "content": str}, ...]``. Models load lazily in
``warm_up()`` (or on first use) and are reused.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator


class Generator(ABC):
    """Attributes: ``spec`` (registry name), ``context_window`` (tokens the model attends to),
    ``languages`` (ISO codes it answers well in, ``None`` = any) and ``extractive`` (True when the
    answer is assembled from the sources rather than generated)."""

    spec: str = ""
    context_window: int = 4096
    languages: frozenset[str] | None = None
    extractive: bool = False

    def warm_up(self) -> None:
        """Load the model now (otherwise on first use)."""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's tokenizer (an estimate where none is available)."""
        return max(1, len(text) // 3)

    @abstractmethod
    def generate(self, messages: list[dict], *, max_new_tokens: int = 512, **kwargs) -> str:
        """The model's reply to ``messages`` (greedy / temperature 0 unless configured otherwise)."""

    def stream(self, messages: list[dict], *, max_new_tokens: int = 512, **kwargs) -> Iterator[str]:
        """Yield the reply in pieces as they are produced (default: one piece)."""
        yield self.generate(messages, max_new_tokens=max_new_tokens, **kwargs)

    def supports(self, language: str) -> bool:
        return self.languages is None or language in self.languages

    def describe(self) -> dict:
        return {"spec": self.spec, "context_window": self.context_window,
                "languages": sorted(self.languages) if self.languages else None}
