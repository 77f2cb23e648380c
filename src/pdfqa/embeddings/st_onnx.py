"""Any BERT-family sentence-transformers model on the encoder engine: ``minilm`` and ``st:<path>``.

The model is read from its own folder, as sentence-transformers would load it: ``modules.json``
(Transformer → Pooling → Normalize; a plain transformers folder gets mean pooling, as
sentence-transformers gives it), ``sentence_bert_config.json`` (``max_seq_length``,
``do_lower_case``), the pooling config, ``config.json`` and the weights (``model.safetensors`` or
``pytorch_model.bin``). Its encoder becomes the engine's graph (:mod:`pdfqa.embeddings.encoder_graph`)
from those weights, on the kernel measured for this CPU (:mod:`pdfqa.embeddings.engine`); its
tokenizer runs through ``tokenizers`` (``tokenizer.json``) or, lacking one, transformers' tokenizer.
Vectors are L2-normalised (as pdfqa normalises every embedder's).

Architectures: ``bert``, ``roberta``, ``xlm-roberta``, ``camembert``, ``electra`` (embedding size =
hidden size) and ``distilbert`` with absolute positions, activation GELU (erf or tanh) or ReLU; pooling
mean, CLS, max or mean/sqrt(length), one mode. Anything else -- another architecture (MPNet, DeBERTa),
a Dense layer after pooling, several pooling modes -- cannot be exported: the embedder says so once
and runs the model through sentence-transformers/torch instead, as does a CPU without AVX2 or an
install without onnxruntime. The first float32 graph of a model is checked against the torch model
(cosine >= 0.999 on the calibration texts, recorded in the graph's ``meta.json``) where
sentence-transformers is installed; a model that fails the check also falls back to torch.

Cache: ``$PDFQA_CACHE/models/<name>-<first 12 hex of the weights' SHA-256>/`` (see the engine).
``PDFQA_ST_ENGINE=torch`` runs ``minilm``/``st:`` models through sentence-transformers as before
(``onnx`` insists on the engine; ``auto``, the default, falls back as above).

>>> e = OnnxSTEmbedder("/no/such/model", spec="st:/no/such/model")
>>> e.spec
'st:/no/such/model'
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..errors import PdfqaError, UnknownComponentError
from . import kernels
from .encoder_graph import EncoderConfig
from .engine import EncoderEmbedder, cache_base, files_sha256

log = logging.getLogger(__name__)

ST_ENGINE_ENV = "PDFQA_ST_ENGINE"
ST_ENGINES = ("auto", "onnx", "torch")
ARCHITECTURES = ("bert", "roberta", "xlm-roberta", "camembert", "electra", "distilbert")
ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_fast": "gelu_tanh",
        "relu": "relu"}
#: sentence-transformers' pooling modes (its config's ``pooling_mode``, or the older ``pooling_mode_*`` flags)
#: → the engine's (None: not supported)
POOLING_MODES = {"mean": "mean", "cls": "cls", "max": "max", "mean_sqrt_len_tokens": "mean_sqrt_len",
                 "weightedmean": None, "lasttoken": None}
LEGACY_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                       "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


class ExportError(PdfqaError):
    """The model cannot run on the engine (the reason is the message); the embedder uses torch instead."""


def st_engine() -> str:
    want = os.environ.get(ST_ENGINE_ENV, "auto").strip().lower() or "auto"
    if want not in ST_ENGINES:
        raise UnknownComponentError(f"sentence-transformers engine ({ST_ENGINE_ENV})", want, list(ST_ENGINES))
    return want


# ------------------------------------------------------------------------------------------------
# the model folder


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"cannot read {path} ({e})") from e


def resolve_folder(name: str) -> Path:
    """A local folder for ``name`` (a path, or a hub id already in the local hub cache / downloadable)."""
    p = Path(os.path.expanduser(name))
    if p.is_dir():
        return p
    if p.exists() or name.startswith(("/", "./", "../", "~")):
        raise ExportError(f"no model folder at {name!r}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name))
    except Exception as e:  # noqa: BLE001 - offline, unknown id, no huggingface_hub
        raise ExportError(f"cannot get {name!r} from the hub ({type(e).__name__}: {str(e)[:160]})") from e


def read_st_layout(folder: Path) -> dict:
    """What sentence-transformers would build from ``folder``: the transformer's folder, pooling, whether
    it normalises, max_seq_length and do_lower_case. Raises ExportError for what the engine cannot run."""
    modules_file = folder / "modules.json"
    tf_dir, pooling, normalize = folder, "mean", False
    if modules_file.exists():
        modules = _read_json(modules_file)
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        for m, kind in zip(modules, kinds):
            sub = folder / m.get("path", "")
            if kind == "Transformer":
                tf_dir = sub
            elif kind == "Pooling":
                cfg = _read_json(sub / "config.json")
                modes = cfg.get("pooling_mode")  # sentence-transformers >= 6: a mode or a list of modes
                if modes is None:
                    modes = [LEGACY_POOLING_KEYS.get(k, k) for k, v in cfg.items() if k.startswith("pooling_mode_") and v]
                modes = [modes] if isinstance(modes, str) else list(modes)
                if len(modes) != 1 or POOLING_MODES.get(modes[0]) is None:
                    raise ExportError(f"pooling {'+'.join(modes) or 'none'} is not supported (one of mean, cls, "
                                      "max, mean_sqrt_len_tokens)")
                modes = [POOLING_MODES[modes[0]]]
                if cfg.get("include_prompt") is False:
                    raise ExportError("pooling without the prompt tokens (include_prompt=false) is not supported")
                pooling = modes[0]
            elif kind == "Normalize":
                normalize = True
            else:
                raise ExportError(f"module {m.get('type')!r} after the transformer is not supported")
        if "Transformer" not in kinds:
            raise ExportError("modules.json has no Transformer module")
    st_cfg = {}
    for f in (tf_dir / "sentence_bert_config.json", folder / "sentence_bert_config.json"):
        if f.exists():
            st_cfg = _read_json(f)
            break
    return {"transformer": tf_dir, "pooling": pooling, "normalize": normalize,
            "max_seq_length": st_cfg.get("max_seq_length"), "do_lower_case": bool(st_cfg.get("do_lower_case"))}


def weight_files(tf_dir: Path) -> list[Path]:
    for pattern in ("model.safetensors", "model-*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin"):
        found = sorted(tf_dir.glob(pattern))
        if found:
            return found
    raise ExportError(f"no weights (model.safetensors or pytorch_model.bin) in {tf_dir}")


def load_state(files: list[Path]) -> dict[str, np.ndarray]:
    """The weights as float32 numpy arrays (safetensors read without torch where it can)."""
    out: dict[str, np.ndarray] = {}
    for f in files:
        if f.suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file

                out.update({k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(f)).items()})
                continue
            except (ImportError, TypeError, ValueError):  # bfloat16 tensors: numpy has no bf16
                pass
            try:
                from safetensors.torch import load_file as load_torch
            except ImportError as e:
                raise ExportError(f"cannot read {f.name}: pip install safetensors torch") from e
            out.update({k: v.float().numpy() for k, v in load_torch(str(f)).items()})
        else:
            try:
                import torch
            except ImportError as e:
                raise ExportError(f"reading {f.name} needs torch") from e
            state = torch.load(str(f), map_location="cpu", weights_only=True)
            out.update({k: v.float().numpy() for k, v in state.items() if hasattr(v, "float")})
    return out


class HFWeights:
    """A transformers BERT-family checkpoint as :class:`EncoderWeights` (+ its embedding tables)."""

    def __init__(self, config: dict, state: dict[str, np.ndarray], pooling: str):
        mt = config.get("model_type", "")
        if mt not in ARCHITECTURES:
            raise ExportError(f"model type {mt!r} is not one the engine exports ({', '.join(ARCHITECTURES)})")
        self.model_type = mt
        distil = mt == "distilbert"
        if not distil and config.get("position_embedding_type", "absolute") != "absolute":
            raise ExportError(f"position embeddings {config.get('position_embedding_type')!r} are not supported")
        act = config.get("activation" if distil else "hidden_act", "gelu")
        if act not in ACTS:
            raise ExportError(f"activation {act!r} is not supported")
        if mt == "electra" and config.get("embedding_size", config["hidden_size"]) != config["hidden_size"]:
            raise ExportError("ELECTRA with an embedding projection is not supported")
        key = next((k for k in state if k.endswith("embeddings.word_embeddings.weight")), None)
        if key is None:
            raise ExportError("no embeddings.word_embeddings.weight in the checkpoint")
        self.prefix = key[: -len("embeddings.word_embeddings.weight")]
        self._s = state
        if distil:
            self.config = EncoderConfig(hidden=config["dim"], layers=config["n_layers"], heads=config["n_heads"],
                                        ffn=config["hidden_dim"], eps=1e-12, act=ACTS[act], pooling=pooling)
        else:
            self.config = EncoderConfig(hidden=config["hidden_size"], layers=config["num_hidden_layers"],
                                        heads=config["num_attention_heads"], ffn=config["intermediate_size"],
                                        eps=float(config.get("layer_norm_eps", 1e-12)), act=ACTS[act], pooling=pooling)
        self.word = self._get("embeddings.word_embeddings.weight")
        self.position = self._get("embeddings.position_embeddings.weight")
        tt = self.prefix + "embeddings.token_type_embeddings.weight"
        self.type0 = state[tt][0] if tt in state else np.zeros(self.config.hidden, np.float32)
        # RoBERTa-style models number positions from padding_idx + 1
        self.position_offset = (int(config.get("pad_token_id", 1)) + 1) if mt in ("roberta", "xlm-roberta",
                                                                                "camembert") else 0
        self.max_positions = self.position.shape[0] - self.position_offset
        for i in range(self.config.layers):  # every tensor present, before any graph is built
            for n in ("q", "k", "v", "ao", "fi", "fo"):
                self.linear(i, n)
            for n in ("aln", "oln"):
                self.norm(i, n)
        self.norm(-1, "emb")

    def _get(self, name: str) -> np.ndarray:
        k = self.prefix + name
        if k not in self._s:
            if k.endswith(".weight") and k[:-7] + ".gamma" in self._s:  # old checkpoints: LayerNorm gamma/beta
                return self._s[k[:-7] + ".gamma"]
            if k.endswith(".bias") and k[:-5] + ".beta" in self._s:
                return self._s[k[:-5] + ".beta"]
            raise ExportError(f"tensor {k!r} missing from the checkpoint")
        return self._s[k]

    _BERT = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
             "aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    _DISTIL = {"q": "attention.q_lin", "k": "attention.k_lin", "v": "attention.v_lin", "ao": "attention.out_lin",
               "fi": "ffn.lin1", "fo": "ffn.lin2", "aln": "sa_layer_norm", "oln": "output_layer_norm"}

    def _name(self, layer: int, name: str) -> str:
        if self.model_type == "distilbert":
            return f"transformer.layer.{layer}.{self._DISTIL[name]}"
        return f"encoder.layer.{layer}.{self._BERT[name]}"

    def linear(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        base = self._name(layer, name)
        return self._get(base + ".weight"), self._get(base + ".bias")

    def norm(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        base = "embeddings.LayerNorm" if layer < 0 else self._name(layer, name)
        return self._get(base + ".weight"), self._get(base + ".bias")


@contextlib.contextmanager
def quiet_transformers():
    """transformers' loading bars and notices off (pdfqa's output stays quiet unless --verbose)."""
    try:
        from transformers.utils import logging as tlog
    except ImportError:
        yield
        return
    bars, level = tlog.is_progress_bar_enabled(), tlog.get_verbosity()
    tlog.disable_progress_bar()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)
        if bars:
            tlog.enable_progress_bar()


class _Tokenizer:
    """Content ids and the special tokens around them, as the model's own tokenizer gives them."""

    def __init__(self, tf_dir: Path, lower: bool):
        self.lower = lower
        self._fast = None
        self._slow = None
        cfg = {}
        if (tf_dir / "tokenizer_config.json").exists():
            cfg = _read_json(tf_dir / "tokenizer_config.json")
        if (tf_dir / "tokenizer.json").exists():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tf_dir / "tokenizer.json"))
            tok.no_truncation()
            tok.no_padding()
            self._fast = tok
            with_sp, without = tok.encode("x", add_special_tokens=True).ids, tok.encode("x", add_special_tokens=False).ids
            pad = cfg.get("pad_token")
            pad = pad.get("content") if isinstance(pad, dict) else pad
            self.pad = tok.token_to_id(pad) if pad else None
        else:
            try:
                from transformers import AutoTokenizer

                self._slow = AutoTokenizer.from_pretrained(str(tf_dir), local_files_only=True)
            except Exception as e:  # noqa: BLE001
                raise ExportError(f"cannot load the tokenizer of {tf_dir} ({type(e).__name__}: {str(e)[:160]})") from e
            without = self._slow("x", add_special_tokens=False)["input_ids"]
            with_sp = self._slow("x", add_special_tokens=True)["input_ids"]
            self.pad = self._slow.pad_token_id
        at = next((i for i in range(len(with_sp)) if with_sp[i:i + len(without)] == without), None)
        if at is None:
            raise ExportError("cannot tell the tokenizer's special tokens around a text")
        self.bos, self.eos = with_sp[:at], with_sp[at + len(without):]

    def content_ids(self, texts: list[str]) -> list[list[int]]:
        if self.lower:
            texts = [t.lower() for t in texts]
        if self._fast is not None:
            return [e.ids for e in self._fast.encode_batch(texts, add_special_tokens=False)] if texts else []
        return [list(x) for x in self._slow(texts, add_special_tokens=False, verbose=False)["input_ids"]] if texts else []


# ------------------------------------------------------------------------------------------------
# the embedder


class OnnxSTEmbedder(EncoderEmbedder):
    """A sentence-transformers model (local folder or hub id) on the encoder engine; torch where it cannot
    run there (see the module's docstring). Same ``spec``, ``dim``, ``max_tokens`` and tokens as
    :class:`pdfqa.embeddings.sentence_transformers.SentenceTransformerEmbedder`, so a collection indexed
    by either reads as the same embedder."""

    def __init__(self, model: str, *, spec: str | None = None, query_prefix: str = "", passage_prefix: str = "",
                 engine: str | None = None, **engine_kw):
        super().__init__(**engine_kw)
        self.model_name = model
        self.spec = spec or f"st:{model}"
        self.what = self.spec
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.engine = engine or st_engine()
        if self.engine not in ST_ENGINES:
            raise UnknownComponentError("sentence-transformers engine", self.engine, list(ST_ENGINES))
        self._torch = None  # the sentence-transformers embedder, where the engine cannot run this model
        self._loaded = False
        self._tok: _Tokenizer | None = None

    # -- loading, and the fallback

    def _use_torch(self, reason: str) -> None:
        from .sentence_transformers import SentenceTransformerEmbedder

        if self.engine == "onnx":
            raise PdfqaError(f"embedder {self.spec!r}: {ST_ENGINE_ENV}=onnx, but the engine cannot run it: {reason}")
        kernels.say_once(f"torch:{self.spec}:{reason}", "embedder %r runs on sentence-transformers/torch: %s",
                         self.spec, reason)
        self._torch = SentenceTransformerEmbedder(self.model_name, spec=self.spec, query_prefix=self.query_prefix,
                                                  passage_prefix=self.passage_prefix)

    def _load_model(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            try:
                if self.engine == "torch":
                    raise ExportError(f"{ST_ENGINE_ENV}=torch")
                reason = kernels.engine_unavailable_reason()
                if reason:
                    raise ExportError(reason)
                self._load_engine_model()
            except ExportError as e:
                self._use_torch(str(e))
            self._loaded = True

    def _load_engine_model(self) -> None:
        folder = resolve_folder(self.model_name)
        layout = read_st_layout(folder)
        tf_dir = layout["transformer"]
        config = _read_json(tf_dir / "config.json")
        files = weight_files(tf_dir)
        self._sha = files_sha256(files)
        weights = HFWeights(config, load_state(files), layout["pooling"])
        tok = _Tokenizer(tf_dir, layout["do_lower_case"])
        limit = layout["max_seq_length"]
        if not limit:  # sentence-transformers' default: the tokenizer's and the positions' limits
            tml = _read_json(tf_dir / "tokenizer_config.json").get("model_max_length") if (
                tf_dir / "tokenizer_config.json").exists() else None
            limit = min(x for x in (tml if isinstance(tml, int) and tml < 1_000_000 else None,
                                    weights.max_positions) if x)
        self._max_tokens = int(min(limit, weights.max_positions))
        self._window = self._max_tokens - len(tok.bos) - len(tok.eos)
        self._bos, self._eos = tok.bos, tok.eos
        self._pad = tok.pad if tok.pad is not None else int(config.get("pad_token_id") or 0)
        self._tok, self._weights, self._layout = tok, weights, layout
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", self.spec.split(":", 1)[-1].rstrip("/").split("/")[-1])[:40]
        self._cache = (self._cache_dir or cache_base()) / f"{base or 'model'}-{self._sha[:12]}"

    def warm_up(self) -> None:
        self._load_model()
        if self._torch is not None:
            return self._torch.warm_up()
        try:
            super().warm_up()
        except (ExportError, PdfqaError) as e:
            if isinstance(e, ExportError) or "cannot run here" in str(e):
                self._use_torch(str(e))
                return self._torch.warm_up()
            raise

    # -- the engine's hooks

    def _content_ids(self, texts: list[str], prefix: str) -> list[list[int]]:
        return self._tok.content_ids([prefix + t for t in texts])

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        w = self._weights
        L = ids.shape[1]
        emb = w.word[ids]
        emb += w.position[w.position_offset:w.position_offset + L] + w.type0
        return emb

    def _model_cache(self) -> Path:
        return self._cache

    def _source_sha256(self) -> str:
        return self._sha

    def _check_fp32(self, path: Path, meta: dict) -> dict:
        """The float32 graph against the torch model on the calibration texts that fit one window."""
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            return {}
        from .engine import CALIBRATION_TEXTS, OrtRunner, calibration_sample

        texts = [t for t, ids in zip(calibration_sample(), self._tok.content_ids(calibration_sample()))
                 if len(ids) <= self._window] or list(CALIBRATION_TEXTS[:4])
        ours = self._run([ids for ids in self._tok.content_ids(texts)], runner=OrtRunner(path), workers=1)
        ours /= np.linalg.norm(ours, axis=1, keepdims=True)
        local = os.path.isdir(self.model_name)
        with quiet_transformers():
            st = SentenceTransformer(self.model_name, device="cpu", local_files_only=local or None)
            ref = st.encode(texts, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        cos = float((ours * ref).sum(1).min())
        if cos < kernels.QUALITY_BAR["fp32"]:
            path.with_name("meta.json").unlink(missing_ok=True)
            raise ExportError(f"the exported graph's vectors differ from the torch model's (min cosine {cos:.4f} "
                              f"< {kernels.QUALITY_BAR['fp32']} on {len(texts)} texts)")
        return {"against": "sentence-transformers", "texts": len(texts), "min_cosine": round(cos, 6)}

    # -- the interface (the torch embedder's, where it runs)

    @property
    def dim(self) -> int:
        self._load_model()
        return self._torch.dim if self._torch is not None else self._weights.config.hidden

    @property
    def max_tokens(self) -> int:  # type: ignore[override]
        """sentence-transformers' ``max_seq_length`` (known once the model is read)."""
        self._load_model()
        if self._torch is not None:
            self._torch.warm_up()
            return self._torch.max_tokens
        return self._max_tokens

    @property
    def passage_overhead(self) -> int:  # type: ignore[override]
        self._load_model()
        if self._torch is not None:
            return self._torch.passage_overhead
        return len(self._bos) + len(self._eos) + (self.count_tokens(self.passage_prefix) if self.passage_prefix else 0)

    def count_tokens(self, text: str) -> int:
        self._load_model()
        if self._torch is not None:
            return self._torch.count_tokens(text)
        return len(self._tok.content_ids([text])[0])

    def describe(self) -> dict:
        self._load_model()
        if self._torch is not None:
            self._torch.warm_up()
            return self._torch.describe()
        return {"spec": self.spec, "dim": self.dim, "normalized": True, "max_tokens": self._max_tokens}

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        self._load_model()
        if self._torch is not None:
            return self._torch.embed_passages(texts)
        return self._encode(list(texts), self.passage_prefix)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        self._load_model()
        if self._torch is not None:
            return self._torch.embed_queries(texts)
        return self._encode(list(texts), self.query_prefix)

    @property
    def runs_on(self) -> str:
        """``onnxruntime <kernel>`` or ``torch`` (after loading)."""
        self._load_model()
        return "torch" if self._torch is not None else f"onnxruntime {self.kernel or '(kernel not chosen yet)'}"


__all__ = ["ARCHITECTURES", "ExportError", "HFWeights", "OnnxSTEmbedder", "ST_ENGINE_ENV", "read_st_layout",
           "resolve_folder", "st_engine"]
