"""Local transformers chat models: ``hf:<path or hub id>[#opts]`` and ``rinna:<path or hub id>[#opts]``.

``hf:`` loads any causal LM with ``AutoModelForCausalLM`` + ``AutoTokenizer`` and builds the prompt
with the tokenizer's own chat template (``apply_chat_template(..., add_generation_prompt=True)``).
A model without a chat template is refused with a clear error, unless it is one of rinna's
instruction models (below), whose prompt format pdfqa writes itself.

Options, as keyword arguments or after ``#`` in the spec, comma-separated
(``hf:mistralai/Mistral-7B-Instruct-v0.2#device=cuda,load_in_4bit=true``):

====================  =========================================================================
``device``            ``cpu`` (default), ``cuda`` / ``cuda:N``, ``auto`` (accelerate spreads the
                      layers over the GPUs and the CPU). With ``load_in_4bit``/``load_in_8bit`` the
                      default is ``cuda``.
``dtype``             ``auto`` (default: float32 on the CPU; on a GPU the checkpoint's float16 /
                      bfloat16, else bfloat16 where supported, else float16), ``float16``,
                      ``bfloat16``, ``float32``
``load_in_4bit``      bitsandbytes NF4 with double quantisation (CUDA only; ``pip install bitsandbytes``)
``load_in_8bit``      bitsandbytes LLM.int8 (CUDA only)
``max_new_tokens``    default length of a reply (512)
``temperature``       0 (default) = greedy decoding, reproducible; > 0 samples
``top_p``             nucleus sampling when ``temperature`` > 0
``repetition_penalty``  passed to ``generate`` (rinna: 1.1 by default)
``context_window``    override the window read from the config
``local_files_only``  never try the hub (a missing model fails at once instead of after retries)
``trust_remote_code`` allow the model's own modelling code (off by default)
``memory_budget_gb``  pretend this much memory is free (skips the GPU/RAM query; for tests and for
                      keeping room for other processes)
====================  =========================================================================

Memory is checked before loading: the parameters are counted on the ``meta`` device from the
config (nothing is allocated) and multiplied by the bytes per parameter of the dtype or
quantisation; on CUDA the result (+10 % working room for activations and the KV cache) is compared
with ``torch.cuda.mem_get_info()``, on the CPU with ``MemAvailable``. A model that would not fit
fails with e.g. ``needs ~14.5 GB (float16 weights) ..., the GPU has 11.8 GB free; try
load_in_4bit=true (~4.2 GB)`` instead of an out-of-memory crash half-way through loading.

``mistralai/Mistral-7B-Instruct-v0.2`` (7.24 B parameters): float16 ~14.5 GB of weights, 8-bit ~7.5 GB,
4-bit ~4.2 GB by this estimate (about 4.5 GB as usually quoted, with the CUDA context) -- so in
4-bit it fits a 16 GB GPU (T4, V100-16GB, RTX 4080) with room for long prompts:
``hf:mistralai/Mistral-7B-Instruct-v0.2#device=cuda,load_in_4bit=true``. Mistral's chat template
accepts only alternating user/assistant turns and raises on a ``system`` message; when a template
raises on one, the system text is merged into the first user turn (separated by a blank line) and
the template is applied again.

rinna
-----
``rinna:<path or id>`` (and ``hf:`` specs detected as rinna) use the format of the model cards,
built by :func:`build_rinna_prompt`:

- ``bilingual`` (``rinna/bilingual-gpt-neox-4b-instruction-ppo`` / ``-sft``): utterances
  ``ユーザー: …`` / ``システム: …`` joined by ``"\\n"``; the prompt ends with ``"\\nシステム: "``.
- ``nl`` (``rinna/japanese-gpt-neox-3.6b-instruction-sft`` / ``-sft-v2`` / ``-ppo``): the same, but the
  tokenizer has no newline, so utterances are joined by ``"<NL>"``, newlines inside utterances
  become ``"<NL>"`` too, and ``"<NL>"`` in the output is turned back into ``"\\n"``.

A system message (pdfqa's instructions) becomes the start of the first ``ユーザー:`` utterance
(blank line, then the user text); assistant messages are ``システム:`` utterances. Prompts are
encoded with ``add_special_tokens=False`` and the tokenizer is loaded with ``use_fast=False``
(sentencepiece), as the cards say (transformers >= 5 ignores ``use_fast`` and always builds the
tokenizers-backed tokenizer). The reply is cut where the model starts a new ``ユーザー:`` /
``システム:`` turn.

Decoding: the cards sample (bilingual: ``temperature=1.0, top_p=0.85``; 3.6B SFT:
``temperature=0.7``; 3.6B PPO: ``temperature=0.7, repetition_penalty=1.1``). pdfqa decodes greedily
by default for reproducible answers, with ``repetition_penalty=1.1`` (greedy decoding of these
models otherwise loops); ``sampling=card`` restores the card's settings, ``temperature=`` sets your own.
Option ``style=bilingual|nl`` overrides the detection.

Detection rule (``hf:`` specs; :func:`detect_rinna_style`): the model is rinna's if

1. a name -- the id/path in the spec (HF cache folders ``models--rinna--X`` count as ``rinna/X``)
   or ``_name_or_path`` in its ``config.json`` -- contains ``rinna/bilingual-gpt-neox`` or
   ``rinna/japanese-gpt-neox`` and ``instruction``; style ``bilingual`` if the name says
   ``bilingual``, else ``nl``. (rinna's later instruction models -- youri, nekomata, ... -- use
   other, Alpaca-style formats and are deliberately not matched.) Or
2. for a local folder: ``config.json`` has ``model_type: gpt_neox``, ``tokenizer_config.json``
   names ``T5Tokenizer`` (rinna's GPT-NeoX models are the ones that pair GPT-NeoX with a
   sentencepiece T5 tokenizer) and there is no chat template; style ``nl`` if the tokenizer files
   contain a ``<NL>`` piece, else ``bilingual``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from ..errors import PdfqaError
from .base import Generator

log = logging.getLogger(__name__)

DTYPES = ("auto", "float16", "bfloat16", "float32")
RINNA_STYLES = ("bilingual", "nl")
RINNA_SAMPLING = ("greedy", "card")
#: longest context pdfqa uses by default (configs of some models claim 128k+; the KV cache would not fit)
CONTEXT_CAP = 32768
#: used when the config cannot be read (offline hub id) -- conservative
FALLBACK_CONTEXT = 2048
#: bytes per parameter
DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}
#: bytes per quantised parameter (NF4 + double-quantised block constants; int8 + row scales)
QUANT_BYTES = {"4bit": 0.52, "8bit": 1.0}
#: working room on top of the weights (activations, KV cache) when checking that a model fits
WORKING_ROOM = 0.10

_BOOL = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
#: option name -> type, for ``hf:`` specs (``rinna:`` adds style and sampling)
HF_OPTIONS: dict[str, type] = {
    "device": str, "dtype": str, "load_in_4bit": bool, "load_in_8bit": bool, "max_new_tokens": int,
    "temperature": float, "top_p": float, "repetition_penalty": float, "context_window": int,
    "local_files_only": bool, "trust_remote_code": bool, "memory_budget_gb": float,
}
RINNA_OPTIONS: dict[str, type] = {**HF_OPTIONS, "style": str, "sampling": str}

_RINNA_SPEAKER = {"user": "ユーザー", "assistant": "システム"}
RINNA_STOPS = ("\nユーザー:", "\nシステム:")


# --------------------------------------------------------------------------------------------- specs
def parse_options(text: str, known: dict[str, type], *, what: str) -> dict[str, Any]:
    """``"device=cuda,load_in_4bit=true"`` → ``{"device": "cuda", "load_in_4bit": True}``, typed by ``known``.

    Unknown names and unparsable values raise :class:`PdfqaError` naming ``what`` and the known names."""
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in known:
            raise PdfqaError(f"{what}: unknown option {part!r}; known: {', '.join(sorted(known))} (as name=value)")
        typ = known[key]
        try:
            if typ is bool:
                if value.lower() not in _BOOL:
                    raise ValueError(value)
                out[key] = _BOOL[value.lower()]
            else:
                out[key] = typ(value)
        except ValueError:
            raise PdfqaError(f"{what}: option {key}={value!r} is not a valid {typ.__name__}") from None
    return out


def parse_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``"hf:<model>[#opts]"`` / ``"rinna:<model>[#opts]"`` → ``(prefix, model, options)``."""
    spec = spec.strip()
    prefix, _, rest = spec.partition(":")
    if prefix not in ("hf", "rinna") or not rest:
        raise PdfqaError(f"not a transformers generator spec: {spec!r}; expected hf:<path or hub id>[#opts] "
                         f"or rinna:<path or hub id>[#opts]")
    model, opts = rest, ""
    if "#" in rest:
        head, _, tail = rest.rpartition("#")
        if "=" in tail or not tail.strip():
            model, opts = head, tail
    model = model.strip()
    if not model:
        raise PdfqaError(f"generator {spec!r}: no model path or hub id")
    known = RINNA_OPTIONS if prefix == "rinna" else HF_OPTIONS
    return prefix, model, parse_options(opts, known, what=f"generator {spec!r}")


def from_spec(spec: str, **kwargs) -> Generator:
    """The generator for ``hf:<path or id>[#opts]`` or ``rinna:<path or id>[#opts]``.

    ``kwargs`` override the spec's options. An ``hf:`` spec naming one of rinna's GPT-NeoX
    instruction models (see :func:`detect_rinna_style`) gives a :class:`RinnaGenerator`."""
    prefix, model, opts = parse_spec(spec)
    opts.update(kwargs)
    spec = spec.strip()
    if prefix == "rinna":
        return RinnaGenerator(model, spec=spec, **opts)
    style = detect_rinna_style(model)
    if style is not None:
        log.info("%s: detected rinna's %s prompt format", spec, style)
        opts.setdefault("style", style)
        return RinnaGenerator(model, spec=spec, **opts)
    return HFGenerator(model, spec=spec, **opts)


# --------------------------------------------------------------------------------------------- prompts
def _check_messages(messages: list[dict]) -> None:
    if not messages:
        raise PdfqaError("no messages to answer")
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise PdfqaError(f"bad chat message {m!r}: expected {{'role': 'system'|'user'|'assistant', 'content': str}}")


def merge_system_message(messages: list[dict], sep: str = "\n\n") -> list[dict]:
    """The messages with every ``system`` message moved into the first ``user`` message
    (system text, ``sep``, user text). Without a user message the system text becomes one, first."""
    _check_messages(messages)
    system = sep.join(str(m.get("content") or "") for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}{sep}{m.get('content') or ''}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def build_rinna_prompt(messages: list[dict], style: str = "bilingual") -> str:
    """rinna's instruction-model prompt for ``messages`` (pure; no tokenizer needed).

    Each utterance is ``"<speaker>: <text>"`` with speaker ``ユーザー`` (user) or ``システム``
    (assistant); a system message is put in front of the first user utterance (blank line between);
    utterance texts are stripped of surrounding whitespace. ``style="bilingual"`` joins utterances
    with ``"\\n"``; ``style="nl"`` joins them with ``"<NL>"`` and writes newlines inside utterances
    as ``"<NL>"``. The prompt ends with the separator and ``"システム: "``.

    >>> build_rinna_prompt([{"role": "user", "content": "こんにちは"}], "nl")
    'ユーザー: こんにちは<NL>システム: '
    """
    if style not in RINNA_STYLES:
        raise PdfqaError(f"unknown rinna prompt style {style!r}; use one of {', '.join(RINNA_STYLES)}")
    sep = "<NL>" if style == "nl" else "\n"
    _check_messages(messages)
    cleaned = [{"role": m["role"], "content": str(m.get("content") or "").replace("\r\n", "\n").replace("\r", "\n")
                .strip()} for m in messages]
    turns = []
    for m in merge_system_message(cleaned):
        text = m["content"]
        if style == "nl":
            text = text.replace("\n", "<NL>")
        turns.append(f"{_RINNA_SPEAKER[m['role']]}: {text}")
    turns.append("システム: ")
    return sep.join(turns)


# --------------------------------------------------------------------------------------------- rinna detection
_RINNA_NAME = re.compile(r"rinna/(bilingual|japanese)-gpt-neox")


def _rinna_style_from_name(name: str) -> str | None:
    n = name.replace("\\", "/").lower().replace("models--rinna--", "rinna/")
    m = _RINNA_NAME.search(n)
    if m is None or "instruction" not in n[m.start():]:
        return None
    return "bilingual" if m.group(1) == "bilingual" else "nl"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _files_have_nl_piece(folder: Path) -> bool:
    for name in ("tokenizer.json", "spiece.model", "spiece.vocab", "added_tokens.json", "tokenizer.model"):
        p = folder / name
        try:
            if p.is_file() and b"<NL>" in p.read_bytes():
                return True
        except OSError:
            continue
    return False


def detect_rinna_style(model: str, *, config: dict | None = None, tokenizer_config: dict | None = None,
                       has_nl_piece: bool | None = None) -> str | None:
    """``"bilingual"`` / ``"nl"`` when ``model`` is one of rinna's GPT-NeoX instruction models, else ``None``.

    ``config`` / ``tokenizer_config`` (the JSON files as dicts) and ``has_nl_piece`` (the tokenizer
    has a ``<NL>`` piece) are read from ``model``'s folder when it is one and they are not given.
    The rule is in the module docstring.

    >>> detect_rinna_style("rinna/bilingual-gpt-neox-4b-instruction-ppo")
    'bilingual'
    >>> detect_rinna_style("rinna/japanese-gpt-neox-3.6b-instruction-sft")
    'nl'
    >>> detect_rinna_style("rinna/youri-7b-instruction") is None
    True
    """
    folder = Path(os.path.expanduser(model))
    local = folder.is_dir()
    if local:
        if config is None:
            config = _read_json(folder / "config.json")
        if tokenizer_config is None:
            tokenizer_config = _read_json(folder / "tokenizer_config.json")
    config, tokenizer_config = config or {}, tokenizer_config or {}
    names = [model, str(config.get("_name_or_path") or "")]
    if local:
        names.append(str(folder.resolve()))
    for name in names:
        style = _rinna_style_from_name(name)
        if style:
            return style
    tok_class = str(tokenizer_config.get("tokenizer_class") or config.get("tokenizer_class") or "")
    has_template = bool(tokenizer_config.get("chat_template")) or (local and (folder / "chat_template.jinja").exists())
    if config.get("model_type") == "gpt_neox" and tok_class.removesuffix("Fast") == "T5Tokenizer" and not has_template:
        if has_nl_piece is None:
            has_nl_piece = local and _files_have_nl_piece(folder)
        return "nl" if has_nl_piece else "bilingual"
    return None


# --------------------------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryEstimate:
    """The weights' size: ``params`` in all, ``quantizable`` of them in linear layers other than the
    output head (what bitsandbytes quantises), stored as ``dtype`` or ``quantization``."""

    params: int
    quantizable: int
    dtype: str = "float16"
    quantization: str | None = None  # "4bit" | "8bit"

    @property
    def weight_bytes(self) -> int:
        per = DTYPE_BYTES[self.dtype]
        if self.quantization is None:
            return int(self.params * per)
        return int(self.quantizable * QUANT_BYTES[self.quantization] + (self.params - self.quantizable) * per)

    @property
    def gb(self) -> float:
        return self.weight_bytes / 1e9

    def describe(self) -> str:
        return f"{self.quantization} weights" if self.quantization else f"{self.dtype} weights"


def fmt_bytes(n: float) -> str:
    """``14.48e9`` → ``'14.5 GB'``; small sizes in MB / kB."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB"


def count_parameters(config, *, trust_remote_code: bool = False) -> tuple[int, int]:
    """``(params, quantizable)`` of the causal LM built from ``config`` on the meta device (no memory
    used); a formula from the config's sizes when that fails."""
    try:
        import torch
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        head = model.get_output_embeddings()
        total = sum(p.numel() for p in model.parameters())
        quantizable = sum(m.weight.numel() for m in model.modules()
                          if isinstance(m, torch.nn.Linear) and m is not head)
        return int(total), int(quantizable)
    except Exception as e:  # custom architectures, missing modelling code: estimate from the sizes
        log.debug("counting parameters on the meta device failed (%s); using the formula", e)
    h = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 0)
    n_layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "n_layer", 0) or 0)
    vocab = int(getattr(config, "vocab_size", 0) or 0)
    inter = int(getattr(config, "intermediate_size", 0) or 4 * h)
    per_layer = 4 * h * h + 3 * h * inter
    tied = bool(getattr(config, "tie_word_embeddings", False))
    embeddings = vocab * h * (1 if tied else 2)
    return n_layers * per_layer + embeddings, n_layers * per_layer


def _mem_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(name: str, estimate: MemoryEstimate, free_bytes: int, *, where: str = "the GPU") -> None:
    """Raise :class:`PdfqaError` when ``estimate`` (+ working room) does not fit in ``free_bytes``.

    >>> check_fits("m", MemoryEstimate(7_241_732_096, 6_979_321_856, "float16"), int(11.8e9))
    Traceback (most recent call last):
    ...
    pdfqa.errors.PdfqaError: m: needs ~14.5 GB (float16 weights, plus ~10% working room), the GPU has 11.8 GB free; try load_in_4bit=true (~4.2 GB)
    """
    need = estimate.weight_bytes
    if need * (1 + WORKING_ROOM) <= free_bytes:
        return
    if where == "the GPU":
        if estimate.quantization != "4bit":
            q4 = replace(estimate, quantization="4bit")
            hint = f"try load_in_4bit=true (~{fmt_bytes(q4.weight_bytes)})"
        else:
            hint = "use a smaller model, or device=auto to put some layers in CPU memory"
        have = f"{where} has {fmt_bytes(free_bytes)} free"
    else:
        hints = []
        if estimate.dtype == "float32" and estimate.quantization is None:
            hints.append(f"try dtype=bfloat16 (~{fmt_bytes(replace(estimate, dtype='bfloat16').weight_bytes)})")
        hints.append("on a CUDA GPU: device=cuda,load_in_4bit=true "
                     f"(~{fmt_bytes(replace(estimate, dtype='float16', quantization='4bit').weight_bytes)})")
        hint = "; ".join(hints)
        have = f"{where} has {fmt_bytes(free_bytes)} available"
    raise PdfqaError(f"{name}: needs ~{fmt_bytes(need)} ({estimate.describe()}, plus ~{WORKING_ROOM:.0%} working "
                     f"room), {have}; {hint}")


# --------------------------------------------------------------------------------------------- text post-processing
class TextPostprocessor:
    """Incremental clean-up of generated text, identical for ``generate`` and ``stream``: literal
    ``replacements`` (rinna's ``"<NL>"`` → ``"\\n"``) and ``stops`` (the reply ends before the first
    one). :meth:`feed` returns the text that is safe to show now (text that could still turn into a
    replacement or a stop is held back); :meth:`finish` returns the rest. ``stopped`` turns true
    once a stop was seen."""

    def __init__(self, replacements: dict[str, str] | None = None, stops: tuple[str, ...] = ()):
        self.replacements = dict(replacements or {})
        self.stops = tuple(s for s in stops if s)
        self._raw = ""
        self._emitted = 0
        self.stopped = False

    def _apply(self, raw: str) -> str:
        for old, new in self.replacements.items():
            raw = raw.replace(old, new)
        return raw

    @staticmethod
    def _partial_suffix(text: str, keys) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of one of ``keys``."""
        best = 0
        for key in keys:
            for n in range(min(len(key) - 1, len(text)), best, -1):
                if text.endswith(key[:n]):
                    best = n
                    break
        return best

    def _emit(self, text: str, hold: int) -> str:
        for stop in self.stops:
            i = text.find(stop)
            if i >= 0:
                self.stopped = True
                text, hold = text[:i], 0
        end = max(self._emitted, len(text) - hold)
        out = text[self._emitted:end]
        self._emitted = end
        return out

    def feed(self, piece: str) -> str:
        if self.stopped or not piece:
            return ""
        self._raw += piece
        safe_raw = self._raw[:len(self._raw) - self._partial_suffix(self._raw, self.replacements)]
        text = self._apply(safe_raw)
        return self._emit(text, self._partial_suffix(text, self.stops))

    def finish(self) -> str:
        if self.stopped:
            return ""
        return self._emit(self._apply(self._raw), 0)

    def process(self, text: str) -> str:
        """The whole of ``text`` post-processed (a fresh instance's feed + finish)."""
        return self.feed(text) + self.finish()


# --------------------------------------------------------------------------------------------- generators
def _looks_like_path(model: str) -> bool:
    return (model.startswith(("/", "./", "../", "~", ".\\")) or "\\" in model or model.count("/") > 1
            or os.path.isabs(model))


def _transformers_major() -> int:
    import transformers

    try:
        return int(transformers.__version__.split(".")[0])
    except ValueError:
        return 5


class HFGenerator(Generator):
    """A local transformers causal LM prompted through its own chat template (``hf:<path or id>``).

    Loads lazily (tokenizer on first :meth:`count_tokens` / :meth:`build_prompt`, model on
    :meth:`warm_up` or first generation). Options: see the module docstring."""

    options = HF_OPTIONS
    #: passed to AutoTokenizer.from_pretrained
    tokenizer_kwargs: dict[str, Any] = {}

    def __init__(self, model: str, *, spec: str | None = None, device: str | None = None, dtype: str = "auto",
                 load_in_4bit: bool = False, load_in_8bit: bool = False, max_new_tokens: int = 512,
                 temperature: float = 0.0, top_p: float | None = None, repetition_penalty: float | None = None,
                 context_window: int | None = None, local_files_only: bool = False,
                 trust_remote_code: bool = False, memory_budget_gb: float | None = None):
        if not model or not str(model).strip():
            raise PdfqaError("hf generator: no model path or hub id")
        self.model_name = str(model).strip()
        self.spec = spec or f"hf:{self.model_name}"
        if dtype not in DTYPES:
            raise PdfqaError(f"{self.spec}: unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        if load_in_4bit and load_in_8bit:
            raise PdfqaError(f"{self.spec}: choose one of load_in_4bit and load_in_8bit")
        quantization = "4bit" if load_in_4bit else "8bit" if load_in_8bit else None
        device = (device or ("cuda" if quantization else "cpu")).strip().lower()
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", device):
            raise PdfqaError(f"{self.spec}: unknown device {device!r}; use cpu, cuda, cuda:N or auto")
        if quantization and device == "cpu":
            raise PdfqaError(f"{self.spec}: load_in_{quantization} needs a CUDA GPU (bitsandbytes); "
                             f"use device=cuda, or drop the option to run on the CPU")
        if max_new_tokens < 1:
            raise PdfqaError(f"{self.spec}: max_new_tokens must be at least 1, not {max_new_tokens}")
        if temperature < 0:
            raise PdfqaError(f"{self.spec}: temperature must be >= 0 (0 = greedy), not {temperature}")
        if context_window is not None and context_window < 16:
            raise PdfqaError(f"{self.spec}: context_window={context_window} is too small")
        self.device, self.dtype, self.quantization = device, dtype, quantization
        self.max_new_tokens, self.temperature, self.top_p = int(max_new_tokens), float(temperature), top_p
        self.repetition_penalty = repetition_penalty
        self.local_files_only, self.trust_remote_code = local_files_only, trust_remote_code
        self.memory_budget_gb = memory_budget_gb
        self._context_override = context_window
        self._context_window: int | None = None
        self._config = None
        self._tok = None
        self._model = None
        self._lock = threading.RLock()
        self._merge_system = False  # set once the template refused a system message

    # -- loading -----------------------------------------------------------------------------------
    def _load_error(self, what: str, e: BaseException) -> PdfqaError:
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if what == "tokenizer" and any(w in str(e).lower() for w in ("sentencepiece", "protobuf")):
            hint = "its sentencepiece tokenizer needs: pip install sentencepiece protobuf"
        elif Path(os.path.expanduser(self.model_name)).exists():
            hint = "is it a folder written by save_pretrained (config.json, weights, tokenizer files)?"
        else:
            hint = ("give a local folder written by save_pretrained (hf:/path/to/model), or allow the download "
                    "from the Hugging Face hub (network access; HF_HUB_OFFLINE unset; local_files_only=false)")
        return PdfqaError(f"{self.spec}: could not load the {what} of {self.model_name!r} ({cause}); {hint}")

    def _source(self) -> str:
        p = Path(os.path.expanduser(self.model_name))
        if p.exists():
            return str(p)
        if _looks_like_path(self.model_name):
            raise PdfqaError(f"{self.spec}: no model folder {self.model_name!r}; give a folder written by "
                             f"save_pretrained or a hub id (org/name)")
        return self.model_name

    def _hub_kwargs(self) -> dict:
        return {"local_files_only": self.local_files_only, "trust_remote_code": self.trust_remote_code}

    def _load_config(self):
        with self._lock:
            if self._config is None:
                try:
                    from transformers import AutoConfig
                except ImportError as e:
                    raise PdfqaError(f"{self.spec} needs torch and transformers: pip install torch transformers") from e
                try:
                    self._config = AutoConfig.from_pretrained(self._source(), **self._hub_kwargs())
                except PdfqaError:
                    raise
                except Exception as e:
                    raise self._load_error("config", e) from e
            return self._config

    def _load_tokenizer(self):
        with self._lock:
            if self._tok is None:
                try:
                    from transformers import AutoTokenizer
                except ImportError as e:
                    raise PdfqaError(f"{self.spec} needs torch and transformers: pip install torch transformers") from e
                try:
                    tok = AutoTokenizer.from_pretrained(self._source(), **self._hub_kwargs(), **self.tokenizer_kwargs)
                except PdfqaError:
                    raise
                except Exception as e:
                    raise self._load_error("tokenizer", e) from e
                self._tokenizer_loaded(tok)  # may refuse the model: then nothing is kept
                self._tok = tok
            return self._tok

    def _tokenizer_loaded(self, tok) -> None:
        """Hook for subclasses (checks that need the tokenizer)."""
        if not getattr(tok, "chat_template", None):
            raise self._no_template_error()

    def _no_template_error(self) -> PdfqaError:
        try:
            cfg = self._load_config()
        except PdfqaError:
            cfg = None
        neox = cfg is not None and getattr(cfg, "model_type", "") == "gpt_neox"
        hint = (" For rinna's GPT-NeoX instruction models use rinna:" + self.model_name + "." if neox else
                " Use an instruction-tuned model that ships one (tokenizer_config.json 'chat_template' or "
                "chat_template.jinja), or rinna:<path> for rinna's instruction models.")
        return PdfqaError(f"{self.spec}: the tokenizer of {self.model_name!r} has no chat template, so pdfqa "
                          f"cannot tell how to prompt it.{hint}")

    def _resolve_dtype(self, config, device: str) -> str:
        if self.dtype != "auto":
            return self.dtype
        import torch

        on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if not on_gpu:
            return "float32"
        own = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        own = str(own).replace("torch.", "") if own is not None else ""
        if own in ("float16", "bfloat16"):
            return own
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"

    def estimate_memory(self) -> MemoryEstimate:
        """The weights' size for this model, dtype and quantisation (reads only the config)."""
        config = self._load_config()
        params, quantizable = count_parameters(config, trust_remote_code=self.trust_remote_code)
        dtype = self._resolve_dtype(config, self.device)
        return MemoryEstimate(params, quantizable, dtype, self.quantization)

    def _check_memory(self, estimate: MemoryEstimate) -> None:
        import torch

        if self.memory_budget_gb is not None:
            where = "the GPU" if self.device.startswith("cuda") else "the machine"
            check_fits(self.spec, estimate, int(self.memory_budget_gb * 1e9), where=where)
            return
        if self.device.startswith("cuda"):
            index = int(self.device.split(":")[1]) if ":" in self.device else torch.cuda.current_device()
            free, _total = torch.cuda.mem_get_info(index)
            check_fits(self.spec, estimate, int(free), where="the GPU")
        elif self.device == "cpu":
            available = _mem_available_bytes()
            if available is not None:
                check_fits(self.spec, estimate, available, where="the machine")
        # device=auto: accelerate offloads what does not fit to the CPU (and disk); nothing to refuse

    def _quantization_config(self, dtype: str):
        if self.quantization is None:
            return None
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as e:
            raise PdfqaError(f"{self.spec}: load_in_{self.quantization} needs bitsandbytes (and a CUDA GPU): "
                             f"pip install bitsandbytes") from e
        import torch
        from transformers import BitsAndBytesConfig

        if self.quantization == "4bit":
            return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=getattr(torch, dtype if dtype != "float32" else "float16"))
        return BitsAndBytesConfig(load_in_8bit=True)

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch
                from transformers import AutoModelForCausalLM
            except ImportError as e:
                raise PdfqaError(f"{self.spec} needs torch and transformers: pip install torch transformers") from e
            source = self._source()
            config = self._load_config()
            self._load_tokenizer()
            if self.device.startswith("cuda") and not torch.cuda.is_available():
                raise PdfqaError(f"{self.spec}: device={self.device} but torch sees no CUDA GPU "
                                 f"(torch {torch.__version__}); use device=cpu or install a CUDA build of torch")
            if self.device == "auto":
                try:
                    import accelerate  # noqa: F401
                except ImportError as e:
                    raise PdfqaError(f"{self.spec}: device=auto needs accelerate: pip install accelerate") from e
            quant = self._quantization_config("float16")  # fails early if bitsandbytes is missing
            estimate = self.estimate_memory()
            if quant is not None:
                quant = self._quantization_config(estimate.dtype)
            self._check_memory(estimate)
            kwargs: dict[str, Any] = {**self._hub_kwargs(), "config": config}
            kwargs["dtype" if _transformers_major() >= 5 else "torch_dtype"] = getattr(torch, estimate.dtype)
            move = False
            if quant is not None:
                kwargs["quantization_config"] = quant
                kwargs["device_map"] = "auto" if self.device == "auto" else {"": self.device}
            elif self.device == "auto":
                kwargs["device_map"] = "auto"
            elif self.device.startswith("cuda"):
                try:  # straight onto the GPU, without a full copy in CPU memory first
                    import accelerate  # noqa: F401

                    kwargs["device_map"] = {"": self.device}
                except ImportError:
                    move = True
            log.info("%s: loading %s (~%s of %s)", self.spec, self.model_name, fmt_bytes(estimate.weight_bytes),
                     estimate.describe())
            try:
                model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
                if move:
                    model = model.to(self.device)
            except torch.cuda.OutOfMemoryError as e:
                raise PdfqaError(f"{self.spec}: out of GPU memory while loading (~{fmt_bytes(estimate.weight_bytes)} "
                                 f"of {estimate.describe()}); try load_in_4bit=true or a smaller model") from e
            except Exception as e:
                raise self._load_error("model", e) from e
            self._model = model.eval()

    # -- interface ---------------------------------------------------------------------------------
    @property
    def context_window(self) -> int:  # type: ignore[override]
        if self._context_override:
            return int(self._context_override)
        if self._context_window is None:
            try:
                config = self._load_config()
            except PdfqaError:
                return FALLBACK_CONTEXT  # not cached: the config may load later
            n = None
            for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx"):
                value = getattr(config, key, None)
                if isinstance(value, int) and value > 0:
                    n = value
                    break
            if n is None and self._tok is not None:
                mml = getattr(self._tok, "model_max_length", None)
                if isinstance(mml, int) and 0 < mml < 1_000_000:
                    n = mml
            self._context_window = min(n or FALLBACK_CONTEXT, CONTEXT_CAP)
        return self._context_window

    @context_window.setter
    def context_window(self, value: int) -> None:
        self._context_override = int(value)

    def count_tokens(self, text: str) -> int:
        tok = self._load_tokenizer()
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def build_prompt(self, messages: list[dict]) -> str:
        """The prompt text the model sees for ``messages`` (chat template, generation prompt added)."""
        _check_messages(messages)
        tok = self._load_tokenizer()
        msgs = merge_system_message(messages) if self._merge_system else [dict(m) for m in messages]
        try:
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception as e:
            if self._merge_system or not any(m["role"] == "system" for m in messages):
                raise PdfqaError(f"{self.spec}: the chat template refused the messages ({e})") from e
            first = e
        merged = merge_system_message(messages)
        try:
            prompt = tok.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        except Exception as e:
            raise PdfqaError(f"{self.spec}: the chat template refused the messages ({e}; with the system message "
                             f"as it was: {first})") from e
        log.info("%s: the chat template refused a system message (%s); merging it into the first user turn",
                 self.spec, first)
        self._merge_system = True
        return prompt

    def _postprocessor(self) -> TextPostprocessor:
        return TextPostprocessor()

    def _decode_kwargs(self) -> dict:
        return {"skip_special_tokens": True}

    def _sampling(self, overrides: dict) -> dict:
        temperature = overrides.get("temperature")
        temperature = self.temperature if temperature is None else float(temperature)
        top_p = overrides.get("top_p", self.top_p)
        penalty = overrides.get("repetition_penalty", self.repetition_penalty)
        kw: dict[str, Any] = {}
        if temperature > 0:
            kw.update(do_sample=True, temperature=temperature)
            if top_p is not None:
                kw["top_p"] = float(top_p)
        else:  # greedy; clear sampling settings a checkpoint's generation_config may carry
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if penalty is not None:
            kw["repetition_penalty"] = float(penalty)
        return kw

    def _special_ids(self) -> dict:
        tok = self._tok
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return {"pad_token_id": pad} if pad is not None else {}

    def _prepare(self, messages: list[dict], max_new_tokens: int | None, overrides: dict):
        self.warm_up()
        prompt = self.build_prompt(messages)
        enc = self._tok(prompt, add_special_tokens=False, return_tensors="pt")
        n_prompt = int(enc["input_ids"].shape[1])
        window = self.context_window
        if n_prompt >= window:
            raise PdfqaError(f"{self.spec}: the prompt has {n_prompt} tokens, the model's context window is {window}; "
                             f"retrieve fewer or shorter passages")
        want = int(max_new_tokens or self.max_new_tokens)
        enc = {k: v.to(self._model.device) for k, v in enc.items()}
        kwargs = {"max_new_tokens": max(1, min(want, window - n_prompt)), **self._sampling(overrides),
                  **self._special_ids()}
        return enc, n_prompt, kwargs

    def _generation_failed(self, e: BaseException) -> PdfqaError:
        return PdfqaError(f"{self.spec}: generation failed ({type(e).__name__}: {e})")

    def generate(self, messages: list[dict], *, max_new_tokens: int | None = None, **kwargs) -> str:
        """The reply (new text only, special tokens skipped). ``kwargs``: ``temperature``, ``top_p``,
        ``repetition_penalty`` override the configured ones for this call; others are ignored."""
        enc, n_prompt, gen = self._prepare(messages, max_new_tokens, kwargs)
        try:
            out = self._model.generate(**enc, **gen)
        except Exception as e:
            raise self._generation_failed(e) from e
        text = self._tok.decode(out[0, n_prompt:], **self._decode_kwargs())
        return self._postprocessor().process(text)

    def stream(self, messages: list[dict], *, max_new_tokens: int | None = None, **kwargs) -> Iterator[str]:
        """The reply in pieces as they are generated (a background thread runs ``generate`` with a
        ``TextIteratorStreamer``); closing the iterator early stops the generation."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        enc, _n_prompt, gen = self._prepare(messages, max_new_tokens, kwargs)
        streamer = TextIteratorStreamer(self._tok, skip_prompt=True, **self._decode_kwargs())
        cancel = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        errors: list[BaseException] = []

        def run():
            try:
                self._model.generate(**enc, **gen, streamer=streamer, stopping_criteria=StoppingCriteriaList([_Cancel()]))
            except BaseException as e:  # re-raised in the caller's thread below
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=run, name=f"pdfqa-generate-{self.model_name}", daemon=True)
        post = self._postprocessor()
        thread.start()
        try:
            for piece in streamer:
                out = post.feed(piece)
                if out:
                    yield out
                if post.stopped:
                    break
            if not post.stopped:
                tail = post.finish()
                if tail:
                    yield tail
        finally:
            cancel.set()
            thread.join()
        if errors:
            raise self._generation_failed(errors[0]) from errors[0]

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model_name, "device": self.device, "dtype": self.dtype,
                "quantization": self.quantization, "temperature": self.temperature}


class RinnaGenerator(HFGenerator):
    """rinna's GPT-NeoX instruction models (``rinna:<path or id>``), prompted in the format of their
    model cards (:func:`build_rinna_prompt`). ``style`` ``bilingual`` or ``nl`` (default: detected
    from the name, else from the tokenizer: a ``<NL>`` piece means ``nl``); ``sampling`` ``greedy``
    (default; ``repetition_penalty`` 1.1) or ``card`` (the card's sampling settings)."""

    options = RINNA_OPTIONS
    tokenizer_kwargs = {"use_fast": False}

    def __init__(self, model: str, *, spec: str | None = None, style: str | None = None, sampling: str = "greedy",
                 repetition_penalty: float | None = 1.1, **kwargs):
        if style is not None and style not in RINNA_STYLES:
            raise PdfqaError(f"{spec or 'rinna:' + str(model)}: unknown style {style!r}; use one of "
                             f"{', '.join(RINNA_STYLES)}")
        if sampling not in RINNA_SAMPLING:
            raise PdfqaError(f"{spec or 'rinna:' + str(model)}: unknown sampling {sampling!r}; use one of "
                             f"{', '.join(RINNA_SAMPLING)}")
        super().__init__(model, spec=spec or f"rinna:{str(model).strip()}", repetition_penalty=repetition_penalty,
                         **kwargs)
        self.style = style or detect_rinna_style(self.model_name)
        self.sampling = sampling
        self._nl_is_special = False
        self._strip: tuple[str, ...] = ()

    @property
    def languages(self) -> frozenset[str]:  # type: ignore[override]
        return frozenset({"ja"}) if self.style == "nl" else frozenset({"ja", "en"})

    def _tokenizer_loaded(self, tok) -> None:
        vocab = tok.get_vocab()
        if self.style is None:
            self.style = "nl" if "<NL>" in vocab else "bilingual"
            log.info("%s: rinna prompt style %s (from the tokenizer)", self.spec, self.style)
        nl_id = vocab.get("<NL>")
        self._nl_is_special = nl_id is not None and nl_id in set(tok.all_special_ids)
        if self._nl_is_special:  # keep <NL> in the decoded text, drop the other special tokens by hand
            self._strip = tuple(t for t in tok.all_special_tokens if t and t != "<NL>")

    def build_prompt(self, messages: list[dict]) -> str:
        self._load_tokenizer()
        return build_rinna_prompt(messages, self.style or "bilingual")

    def count_tokens(self, text: str) -> int:
        tok = self._load_tokenizer()
        if self.style == "nl":
            text = text.replace("\r\n", "\n").replace("\n", "<NL>")
        return len(tok(text, add_special_tokens=False)["input_ids"])

    def _decode_kwargs(self) -> dict:
        return {"skip_special_tokens": not self._nl_is_special}

    def _postprocessor(self) -> TextPostprocessor:
        replacements = {t: "" for t in self._strip}
        if self.style == "nl":
            replacements["<NL>"] = "\n"
        return TextPostprocessor(replacements, RINNA_STOPS)

    def _sampling(self, overrides: dict) -> dict:
        if self.sampling == "card" and overrides.get("temperature") is None:
            if self.style == "bilingual":
                card = {"temperature": 1.0, "top_p": 0.85, "repetition_penalty": None}
            else:
                ppo = "ppo" in self.model_name.lower()
                card = {"temperature": 0.7, "top_p": None, "repetition_penalty": 1.1 if ppo else None}
            overrides = {**card, **{k: v for k, v in overrides.items() if v is not None}}
        return super()._sampling(overrides)

    def _special_ids(self) -> dict:
        tok = self._tok
        ids = {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
        if ids["pad_token_id"] is None:
            ids["pad_token_id"] = tok.eos_token_id
        return {k: v for k, v in ids.items() if v is not None}

    def describe(self) -> dict:
        return {**super().describe(), "style": self.style, "sampling": self.sampling}


__all__ = ["HFGenerator", "RinnaGenerator", "MemoryEstimate", "TextPostprocessor", "build_rinna_prompt",
           "check_fits", "count_parameters", "detect_rinna_style", "from_spec", "merge_system_message",
           "parse_options", "parse_spec"]
