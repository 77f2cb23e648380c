"""Generators by spec string.

================================  =====================================================================
``default``                        offline: the extractive answerer (chosen from benchmarks/README.md)
``extractive``                     the fact (a span, else the sentence, list item or table row) from the
                                   retrieved blocks, then its supporting sentence, cited (any language)
``smollm2``                        SmolLM2-135M-Instruct alone (English, small: expect weak answers)
``openai:<model>``                 OpenAI chat models (``OPENAI_API_KEY``)
``openai-compatible:<url>[#m]``    llamafile, LM Studio, Ollama, vLLM, text-generation-webui
``hf:<path or id>[#opts]``         local transformers chat models (e.g. Mistral-7B-Instruct)
``rinna:<path or id>``             rinna's Japanese/bilingual instruction models
``llamacpp:<file.gguf>``           llama.cpp (``pip install 'pdfqa[llamacpp]'``)
================================  =====================================================================
"""
from __future__ import annotations

from functools import lru_cache

from ..errors import UnknownComponentError
from .base import Generator

DEFAULT_GENERATOR = "default"
GENERATORS = ("default", "extractive", "smollm2", "openai:<model>", "openai-compatible:<base_url>[#model]",
              "hf:<path or hub id>", "rinna:<path or hub id>", "llamacpp:<file.gguf>")


@lru_cache(maxsize=8)
def get_generator(spec: str = DEFAULT_GENERATOR) -> Generator:
    """The generator for ``spec`` (one shared instance per spec: models load once per process)."""
    spec = (spec or DEFAULT_GENERATOR).strip()
    if spec == "default":
        from .default import DefaultGenerator

        return DefaultGenerator()
    if spec == "extractive":
        from .extractive import ExtractiveGenerator

        return ExtractiveGenerator()
    if spec == "smollm2":
        from .smollm import SmolLM2Generator

        return SmolLM2Generator()
    if spec.startswith(("openai:", "openai-compatible:")):
        from .openai import from_spec

        return from_spec(spec)
    if spec.startswith(("hf:", "rinna:")):
        from .transformers import from_spec as hf_from_spec

        return hf_from_spec(spec)
    if spec.startswith("llamacpp:"):
        from .llamacpp import from_spec as llama_from_spec

        return llama_from_spec(spec)
    raise UnknownComponentError("generator", spec, list(GENERATORS))


__all__ = ["DEFAULT_GENERATOR", "GENERATORS", "Generator", "get_generator"]
