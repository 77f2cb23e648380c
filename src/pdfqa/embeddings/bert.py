"""A raw pretrained encoder (BERT and kin) with mean or [CLS] pooling: ``bert:<path or hub id>[#mean|#cls]``.

The model is loaded with transformers ``AutoModel`` / ``AutoTokenizer`` and run with torch on the CPU
under ``torch.inference_mode()``. The sentence vector is the mean of the last hidden states over the
attention mask (``#mean``, the default) or the hidden state of the first token (``#cls``); vectors
are L2-normalised. Texts are batched in order of token length with padding only to the longest text
of each batch, and truncated at the model's maximum length (from the tokenizer and the config,
capped at 512). There are no query/passage prefixes: queries and passages are encoded the same way.

Why this family is here: it is the baseline the course compares against. A masked-LM encoder was
never trained to put similar sentences close together, so pooled raw BERT vectors retrieve worse
than a contrastively trained embedder (``e5-small``, the default) -- measuring by how much is the
point. Mean pooling is usually the better of the two poolings for raw BERT; ``#cls`` is there for the
comparison (the [CLS] vector of a raw MLM encoder is trained only through next-sentence prediction,
if at all).

Hub ids for users online (hub downloads do not work on the machines this was built on; give a local
folder written by ``save_pretrained`` there):

- Japanese: ``bert:tohoku-nlp/bert-base-japanese-v3`` (the model first published as
  ``cl-tohoku/bert-base-japanese-v3``; the organisation was renamed and the hub is expected to redirect the
  old id). BERT-base (12 layers, 768-d, 512 tokens), apache-2.0, trained on Japanese CC-100 and
  Wikipedia; its tokenizer (``BertJapaneseTokenizer``) splits words with MeCab through ``fugashi`` with
  the ``unidic-lite`` dictionary (Unidic 2.1.2), then WordPiece (32768 pieces), so it needs
  ``pip install fugashi unidic-lite``. Chosen because it tokenizes Japanese into real words, which
  multilingual BERT's character-heavy vocabulary does not.
- Mixed Japanese/English corpora: ``bert:google-bert/bert-base-multilingual-cased`` (formerly
  ``bert-base-multilingual-cased``): BERT-base trained on Wikipedia in 104 languages, apache-2.0,
  cased, one vocabulary for both languages -- so Japanese and English chunks land in one vector space.

>>> e = from_spec("bert:tohoku-nlp/bert-base-japanese-v3#cls")
>>> e.model_name, e.pooling
('tohoku-nlp/bert-base-japanese-v3', 'cls')
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..errors import PdfqaError
from .base import Embedder, l2_normalize

POOLINGS = ("mean", "cls")
#: the longest input any pdfqa BERT embedder runs (BERT's position table has 512 entries)
MAX_TOKENS_CAP = 512
JAPANESE_HUB_ID = "tohoku-nlp/bert-base-japanese-v3"
MULTILINGUAL_HUB_ID = "google-bert/bert-base-multilingual-cased"


def parse_spec(spec: str) -> tuple[str, str]:
    """``"bert:<name>[#mean|#cls]"`` → ``(name, pooling)``."""
    if not spec.startswith("bert:") or len(spec) <= len("bert:"):
        raise PdfqaError(f"not a bert embedder spec: {spec!r}; expected bert:<path or hub id>[#mean|#cls]")
    name, pooling = spec[len("bert:"):], "mean"
    if "#" in name:
        head, _, tail = name.rpartition("#")
        if tail not in POOLINGS:
            raise PdfqaError(f"embedder {spec!r}: unknown pooling {tail!r}; use #mean (default) or #cls")
        name, pooling = head, tail
    if not name:
        raise PdfqaError(f"embedder {spec!r}: no model path or hub id before '#'")
    return name, pooling


class BertEmbedder(Embedder):
    """A raw transformers encoder with mean (default) or [CLS] pooling; L2-normalised vectors.

    ``dim`` is the model's hidden size; ``max_tokens`` is the smallest of the tokenizer's
    ``model_max_length``, the config's ``max_position_embeddings`` and 512 (known after ``warm_up``).
    """

    passage_overhead = 2  # [CLS] ... [SEP]

    def __init__(self, model: str, *, pooling: str = "mean", spec: str | None = None, device: str = "cpu",
                 batch_size: int = 16):
        if pooling not in POOLINGS:
            raise PdfqaError(f"unknown pooling {pooling!r} for {model!r}; use one of {', '.join(POOLINGS)}")
        if batch_size < 1:
            raise PdfqaError(f"batch_size must be at least 1, got {batch_size}")
        self.model_name = model
        self.pooling = pooling
        self.spec = spec or (f"bert:{model}" if pooling == "mean" else f"bert:{model}#{pooling}")
        self.device, self.batch_size = device, batch_size
        self.max_tokens = MAX_TOKENS_CAP
        self._model = None
        self._tokenizer = None
        self._lock = threading.Lock()

    # loading ---------------------------------------------------------------------------------------
    def warm_up(self) -> None:
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            try:
                import torch  # noqa: F401
                from transformers import AutoModel, AutoTokenizer
            except ImportError as e:
                raise PdfqaError(f"embedder {self.spec!r} needs torch and transformers: pip install 'pdfqa[st]'") from e
            local = os.path.exists(self.model_name)
            if not local and self.model_name.startswith(("/", "./", "../", "~")):
                raise PdfqaError(f"embedder {self.spec!r}: no model folder at {self.model_name!r}; give a folder "
                                 "written by save_pretrained, or a hub id such as " + JAPANESE_HUB_ID)
            try:
                tokenizer = AutoTokenizer.from_pretrained(self.model_name, local_files_only=local)
                model = AutoModel.from_pretrained(self.model_name, local_files_only=local)
            except Exception as e:
                hint = ("give a local folder written by save_pretrained, or allow the download from the hub "
                        "(network access, HF_HUB_OFFLINE unset)")
                text = f"{type(e).__name__}: {str(e)[:200]}"
                if any(w in str(e).lower() for w in ("fugashi", "unidic", "mecab")):
                    hint = "Japanese BERT tokenizers need: pip install fugashi unidic-lite; " + hint
                raise PdfqaError(f"embedder {self.spec!r}: cannot load model {self.model_name!r} ({text}); {hint}") from e
            model.eval()
            model.to(self.device)
            self.max_tokens = _max_tokens(tokenizer, model.config)
            self._tokenizer = tokenizer
            self._model = model

    # interface -------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        self.warm_up()
        return int(self._model.config.hidden_size)

    def count_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts))

    def describe(self) -> dict:
        return {**super().describe(), "pooling": self.pooling}

    # encoding --------------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> np.ndarray:
        self.warm_up()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        tok = self._tokenizer
        enc = tok(texts, add_special_tokens=True, truncation=True, max_length=self.max_tokens, padding=False,
                  verbose=False)
        names = [k for k in ("input_ids", "token_type_ids") if k in enc]
        lengths = [len(ids) for ids in enc["input_ids"]]
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])  # longest first: padding stays small
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                width = max(lengths[i] for i in idx)
                batch = {}
                for name in names:
                    fill = pad_id if name == "input_ids" else 0
                    batch[name] = torch.tensor([enc[name][i] + [fill] * (width - lengths[i]) for i in idx],
                                               dtype=torch.long, device=self.device)
                mask = torch.tensor([[1] * lengths[i] + [0] * (width - lengths[i]) for i in idx],
                                    dtype=torch.long, device=self.device)
                hidden = self._model(**batch, attention_mask=mask).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    m = mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
                out[idx] = pooled.float().cpu().numpy()
        return l2_normalize(out)


def _max_tokens(tokenizer, config) -> int:
    candidates = [MAX_TOKENS_CAP]
    tml = getattr(tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 1_000_000:  # transformers uses a huge sentinel for "unknown"
        candidates.append(tml)
    mpe = getattr(config, "max_position_embeddings", None)
    if isinstance(mpe, int) and mpe > 0:
        # RoBERTa-style models reserve padding_idx + 1 positions
        roberta_like = getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert")
        offset = ((getattr(config, "pad_token_id", None) or 1) + 1) if roberta_like else 0
        candidates.append(mpe - offset)
    return min(candidates)


def from_spec(spec: str) -> BertEmbedder:
    """``bert:<path or hub id>[#mean|#cls]`` → a :class:`BertEmbedder` (nothing is loaded yet)."""
    name, pooling = parse_spec(spec)
    return BertEmbedder(name, pooling=pooling, spec=spec)


__all__ = ["BertEmbedder", "JAPANESE_HUB_ID", "MULTILINGUAL_HUB_ID", "POOLINGS", "from_spec", "parse_spec"]
