"""Quiet output for the command line and the web app: third-party warnings, logs and progress bars
off unless asked for (``pdfqa -v``), pdfqa's own messages kept.

What a library may print is not pdfqa's to decide, but what ``pdfqa ...`` prints is: transformers'
``torch_dtype`` notices and "Loading weights" bars, the GGUF de-quantising bar, huggingface_hub's
download bars, tokenizers' fork warning, onnxruntime's and Ray's logs all say nothing a user of pdfqa
can act on. :func:`configure` is called once, before those libraries are imported (most read their
settings from the environment at import time); the environment variables are only defaults, so a
user who sets one keeps it.

>>> configure(verbose=False)                  # doctest: +SKIP
>>> import logging; logging.getLogger("transformers").isEnabledFor(logging.WARNING)   # doctest: +SKIP
False

pdfqa's own progress bars are not silenced here: they show on a terminal only (:func:`bar_disable`).
"""
from __future__ import annotations

import logging
import os
import sys
import warnings

#: environment defaults that keep third-party libraries quiet (set only where the user has not)
QUIET_ENV = {
    "TOKENIZERS_PARALLELISM": "false",          # the "process just got forked" warning
    "TRANSFORMERS_VERBOSITY": "error",           # `torch_dtype` is deprecated!, generation notices
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",         # transformers' "Loading weights" / GGUF bars use these
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ORT_LOGGING_LEVEL": "3",                    # onnxruntime: errors only
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",       # Ray Data's per-operator bars
    # every tqdm bar that does not say otherwise (transformers' GGUF de-quantising bar, for one);
    # pdfqa's own bars pass ``disable`` explicitly (see bar_disable), which tqdm lets win
    "TQDM_DISABLE": "1",
}
#: loggers of libraries pdfqa uses that log at INFO/WARNING level about their own business
NOISY_LOGGERS = ("transformers", "sentence_transformers", "huggingface_hub", "onnxruntime", "ray", "httpx",
                 "httpcore", "urllib3", "openai", "langchain", "langchain_core", "langsmith", "gensim", "numba",
                 "faiss", "filelock", "accelerate", "torch", "jieba", "spacy", "sudachipy", "pymilvus",
                 "milvus_lite", "tesserocr", "PIL", "multipart", "uvicorn.error")

_configured: bool | None = None
_env_set: set[str] = set()


def _is_pdfqa(record: logging.LogRecord) -> bool:
    return record.name == "pdfqa" or record.name.startswith("pdfqa.")


class _Handler(logging.StreamHandler):
    """stderr for pdfqa's own records (their loggers' levels decide: ``pdfqa`` WARNING, INFO when
    verbose) and everyone else's at ``others_level`` and up (whatever level a library sets on its own
    logger: bm25s logs DEBUG records, for one). pdfqa's read ``pdfqa: message``; the rest
    ``name: level: message``."""

    def __init__(self):
        super().__init__(sys.stderr)
        self.others_level = logging.ERROR

    def filter(self, record: logging.LogRecord) -> bool:
        return _is_pdfqa(record) or record.levelno >= self.others_level

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if _is_pdfqa(record):
            return f"pdfqa: {msg}"
        return f"{record.name}: {record.levelname.lower()}: {msg}"


def configure(verbose: bool = False) -> None:
    """Silence third-party warnings, logs and progress bars (``verbose=False``) or let them through
    (``verbose=True``); pdfqa's own warnings go to stderr as ``pdfqa: ...`` either way (and its INFO
    messages too when verbose). Idempotent; a later call with another ``verbose`` switches."""
    global _configured
    for k, v in QUIET_ENV.items():
        if not verbose and k not in os.environ:
            os.environ[k] = v
            _env_set.add(k)
        elif verbose and k in _env_set:  # undo only what a quiet call set, never the user's own
            os.environ.pop(k, None)
            _env_set.discard(k)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None:
        handler = _Handler()
        root.addHandler(handler)
    handler.others_level = logging.WARNING if verbose else logging.ERROR
    logging.getLogger("pdfqa").setLevel(logging.INFO if verbose else logging.WARNING)
    for name in NOISY_LOGGERS:
        # libraries that install a handler of their own (transformers, ray) print through it, not ours
        for h in logging.getLogger(name).handlers:
            h.setLevel(logging.WARNING if verbose else logging.ERROR)
    if verbose:
        warnings.resetwarnings()
        warnings.simplefilter("default")
    else:
        warnings.filterwarnings("ignore")
        warnings.filterwarnings("default", module=r"pdfqa(\.|$)")
    _silence_loaded(verbose)
    _configured = verbose


def _silence_loaded(verbose: bool) -> None:
    """Libraries imported before :func:`configure` read their settings already: tell them directly."""
    tf = sys.modules.get("transformers")
    if tf is not None:
        try:
            from transformers.utils import logging as tf_logging

            if verbose:
                tf_logging.set_verbosity_warning()
                tf_logging.enable_progress_bar()
            else:
                tf_logging.set_verbosity_error()
                tf_logging.disable_progress_bar()
        except Exception:  # noqa: BLE001 - an older/newer transformers without these helpers
            pass
    hub = sys.modules.get("huggingface_hub")
    if hub is not None and not verbose:
        try:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
        except Exception:  # noqa: BLE001
            pass
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        try:
            ort.set_default_logger_severity(2 if verbose else 3)
        except Exception:  # noqa: BLE001
            pass


def is_verbose() -> bool:
    """Whether :func:`configure` was called with ``verbose=True`` (False when it was not called)."""
    return bool(_configured)


def bar_disable(wanted: bool = True) -> bool | None:
    """tqdm's ``disable`` argument for one of pdfqa's own progress bars: disabled when not ``wanted``,
    else shown only where its stream is a terminal (tqdm's own check, ``disable=None``), so a log file
    or a pipe never fills with carriage returns.

    >>> bar_disable(False), bar_disable(True)
    (True, None)
    """
    return True if not wanted else None


__all__ = ["NOISY_LOGGERS", "QUIET_ENV", "bar_disable", "configure", "is_verbose"]
