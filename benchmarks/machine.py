"""What every benchmark prints about the machine it ran on (the figures are only comparable within one run)."""
from __future__ import annotations

import os
import platform


def machine() -> str:
    """CPU model, cores, the SIMD flags that matter for the embedders, Python, current load average."""
    cpu = flags = load = ""
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
        have = next(line for line in info if line.startswith("flags")).split()
        flags = " ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8") if f in have)
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/loadavg") as fh:
            load = "load average " + " ".join(fh.read().split()[:3])
    except OSError:
        pass
    return f"{cpu or platform.processor()}, {os.cpu_count()} cores ({flags}), Python {platform.python_version()}, {load}"
