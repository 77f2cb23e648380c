"""A copy of the installed onnxruntime whose kernels are chosen as on a CPU without AVX-512 (AVX2/FMA only).

onnxruntime picks its MLAS kernels once, when the library loads, from CPUID and XGETBV; there is no
setting or environment variable to cap them (MLAS's ``platform.cpp``: the AVX-512 block is entered when
CPUID.7 reports AVX512F and XCR0 enables the ZMM state). To measure the AVX2 code path on an AVX-512
machine, this script copies the onnxruntime package and flips two branches in the copy's native module:

1. MLAS's platform setup: ``je`` past the AVX-512 block becomes ``jmp`` (so the dispatch table keeps
   the AVX2 entries: ``MlasGemmU8S8KernelAvx2``, ``MlasGemmFloatKernelFma3``, the FMA3 GELU/exp/...);
   the AVX-VNNI (VEX) and AVX-VNNI-INT8 checks after it stay as they are (this CPU has neither);
2. onnxruntime's ``CPUIDInfo``: the ``je`` into "XCR0 enables AVX-512 state" becomes a no-op, so
   operators that ask it (``HasAVX512f``) see an AVX2 CPU too.

Nothing else changes: the same binary kernels an AVX2-only CPU runs, on this CPU's cores. It then
proves the switch functionally: onnxruntime's AVX2 u8 x s8 kernel adds pairs of products in int16
(``vpmaddubsw``), which saturates for 255 x 127 x 2 > 32767, while the AVX-512 VNNI kernel does
not; a product of all-255 activations and all-127 weights tells the two apart.

    .venv/bin/python benchmarks/ort_avx2.py [--out benchmarks/out/ort-avx2]
    PYTHONPATH=benchmarks/out/ort-avx2:src .venv/bin/python ...   # then imports the AVX2 copy

:func:`avx2_env` is the whole environment of an "AVX2-only CPU" run (``engine_bound.py --cpu avx2``,
``ingest_vs_langchain.py --cpu avx2``): the patched onnxruntime first on PYTHONPATH; torch capped to AVX2
through its documented switches (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``,
``MKL_ENABLE_INSTRUCTIONS=AVX2``); and ``PDFQA_CPU_FLAGS`` = this CPU's flags without the AVX-512,
VNNI, AMX and BF16 ones, so pdfqa plans (and keys its cached kernel choice) as on such a CPU.

The byte patterns are those of the onnxruntime 1.32 manylinux x86-64 wheel; another build is refused
(each pattern must occur exactly once) rather than patched blindly.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# MLAS_PLATFORM::MLAS_PLATFORM: test $0x10000,%r10d (CPUID.7:EBX.AVX512F); je +n; mov %r8,%rax; not %rax;
# test $0xe0,%al (XCR0 opmask/ZMM state)
MLAS_AVX512 = re.compile(rb"\x41\xf7\xc2\x00\x00\x01\x00(\x74)[\x00-\x7f]\x4c\x89\xc0\x48\xf7\xd0\xa8\xe0", re.S)
# onnxruntime::CPUIDInfo: and $0xe6,%r9d ... cmp $0xe6,%r9d; je rel32 (has_avx512f_ and friends)
CPUID_AVX512 = re.compile(rb"\x41\x81\xe1\xe6\x00\x00\x00.{0,8}\x41\x81\xf9\xe6\x00\x00\x00(\x0f\x84.{4})", re.S)


def patch(data: bytearray) -> list[str]:
    done = []
    for name, pat, new in (("MLAS platform: skip the AVX-512 block", MLAS_AVX512, b"\xeb"),
                           ("CPUIDInfo: no AVX-512 state", CPUID_AVX512, b"\x66\x0f\x1f\x44\x00\x00")):
        hits = list(pat.finditer(bytes(data)))
        if len(hits) != 1:
            raise SystemExit(f"{name}: pattern found {len(hits)} times (expected once): not the onnxruntime build "
                             "this script knows; nothing patched")
        start, end = hits[0].span(1)
        data[start:end] = new
        done.append(f"{name} at 0x{start:x}")
    return done


def build(out: Path) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    src = Path(list(spec.submodule_search_locations)[0])
    dst = out / "onnxruntime"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    (mod,) = (dst / "capi").glob("onnxruntime_pybind11_state*.so")
    data = bytearray(mod.read_bytes())
    for line in patch(data):
        print("patched:", line)
    tmp = mod.with_suffix(".tmp")
    tmp.write_bytes(bytes(data))
    os.chmod(tmp, 0o755)
    os.replace(tmp, mod)
    return dst


AVX2_ONLY_DROP = ("avx512", "vnni", "amx", "bf16", "avx_vnni")


def avx2_env(out: Path | None = None, base: dict | None = None) -> dict:
    """The environment of a process that runs as on an AVX2-only CPU (builds the patched copy if missing)."""
    out = Path(out or ROOT / "benchmarks" / "out" / "ort-avx2")
    if not (out / "onnxruntime").exists():
        build(out)
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([str(out), str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")
    with open("/proc/cpuinfo") as fh:
        flags = next(line for line in fh if line.startswith("flags")).split(":", 1)[1].split()
    env["PDFQA_CPU_FLAGS"] = " ".join(f for f in flags if not any(d in f for d in AVX2_ONLY_DROP))
    return env


def rerun_as_avx2(script: str, argv: list[str] | None) -> int:
    """Run ``script`` again with ``--worker`` added, in :func:`avx2_env` (the ``--cpu avx2`` of a benchmark);
    prints the command first. Returns its exit status."""
    print(f"command: {' '.join(shlex.quote(a) for a in [sys.executable, *sys.argv])}", flush=True)
    cmd = [sys.executable, script, "--worker", *(argv if argv is not None else sys.argv[1:])]
    return subprocess.run(cmd, env=avx2_env()).returncode


PROBE = r"""
import numpy as np, onnxruntime as ort
from onnx import TensorProto, helper as oh, numpy_helper as nh
K, N = 64, 16
w = np.full((K, N), 127, np.int8)
node = oh.make_node("DynamicQuantizeMatMul", ["A", "W", "s", "z"], ["Y"], domain="com.microsoft")
g = oh.make_graph([node], "probe", [oh.make_tensor_value_info("A", TensorProto.FLOAT, [None, K])],
                  [oh.make_tensor_value_info("Y", TensorProto.FLOAT, [None, N])],
                  [nh.from_array(w, "W"), nh.from_array(np.ones(N, np.float32), "s"), nh.from_array(np.zeros(N, np.int8), "z")])
m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17), oh.make_opsetid("com.microsoft", 1)], ir_version=8)
y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"A": np.ones((4, K), np.float32)})[0]
print(ort.__file__, float(y[0, 0]))
"""


def probe(pythonpath: str | None) -> float:
    """The all-255 x all-127 product over K=64 (exact: 8128; int16-saturating pairs: 4112)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    path, value = out.stdout.split()
    print(f"  {path}: {value}")
    return float(value)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "ort-avx2"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    build(out)
    print("u8 x s8 probe (8128 = exact, ~4112 = pairs saturated in int16, the AVX2 kernel):")
    stock, avx2 = probe(None), probe(str(out))
    if not (abs(stock - 8128) < 1 and abs(avx2 - 8128) > 1000):
        print("the copy does not behave as the AVX2 path: do not use it for measurements")
        return 1
    print(f"ok: PYTHONPATH={out} imports onnxruntime on its AVX2 kernels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
