"""ember.debug: see what the compiler did.

    with ember.debug.capture() as cap:
        y = (x.exp() * w).sum(1).numpy()
    print(len(cap.kernels), cap.kernels[0].ops, cap.kernels[0].source("llvm"))

The `ember` command line (ember/cli.py) is built on these records: `ember run`, `ember kernels`,
`ember explain`, `ember graph`, `ember info`.
"""
from __future__ import annotations

import json
import os
import time

from ember.compiler.buffer import memory_stats, reset_peak as reset_peak_memory_stats
from ember.compiler.debug import STAGES, Capture, KernelRecord, StageUnavailable, count_flops, level

__all__ = ["capture", "Capture", "KernelRecord", "STAGES", "StageUnavailable", "count_flops", "level",
           "memory_stats", "reset_peak_memory_stats", "machine_info", "calibration"]


def capture() -> Capture:
    """Context manager recording every kernel launched inside it (name, backend, ops fused,
    shape, time, flops, and the kernel at each stage via `.source(stage)`, stages in
    `ember.debug.STAGES`), and every graph structure compiled (`cap.plans`: graph text/dot and,
    per kernel, why each output got a buffer)."""
    return Capture()


def machine_info() -> dict:
    """What ember can run on here: versions, the LLVM target, CPU features, cores, CUDA/Triton.

    >>> ember.debug.machine_info()["cpu"]
    'znver3'
    """
    import ctypes.util
    import importlib.metadata
    import platform

    import llvmlite
    import llvmlite.binding as llvm
    import numpy as np

    import ember
    from ember.compiler.runtime import cpu

    c = cpu.compiler()
    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = None
    return {
        "ember": ember.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(map(str, llvm.llvm_version_info)),
        "target": c.triple,
        "cpu": c.cpu,
        "cpu_features": [f[1:] for f in c.features.split(",") if f.startswith("+")],
        "cores": os.cpu_count(),
        "threads": cpu.num_threads(),
        "backends": {"llvm": "available",
                     "triton": "available (any kernel compiles for sm_90)" if triton else "needs the 'triton' package"},
        "cuda_driver": ctypes.util.find_library("cuda") is not None,
        "cuda": _cuda_info(),
        "triton": triton,
    }


def _cuda_info() -> dict:
    """How the "cuda" device is served: a GPU (name, compute capability), Triton's interpreter, or
    not at all (and why)."""
    from ember.compiler.runtime import cuda
    mode = cuda.mode()
    info = {"mode": mode or "unavailable", "devices": cuda.device_count()}
    if mode is None:
        info["reason"] = cuda._state.get("reason", "")
    else:
        info["device"] = cuda.device_name()
        if mode == "gpu":
            drv = cuda._driver()
            dev = cuda._check(drv.cuDeviceGet(0))
            attr = drv.CUdevice_attribute
            info["compute_capability"] = ".".join(str(cuda._check(drv.cuDeviceGetAttribute(a, dev))) for a in (
                attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR))
    return info


def _fingerprint() -> str:
    from ember.compiler.runtime import cpu
    c = cpu.compiler()
    return f"{c.fingerprint}|threads={cpu.num_threads()}"


def _path():
    from ember.compiler import cache
    # hidden, so `ember cache clear` (which manages compiled kernels) keeps it
    return cache.cache_dir() / ".calibration.json"


def calibration(recalibrate: bool = False) -> dict:
    """Measured memory bandwidth and peak FLOP/s of this machine, measured once and kept in the
    cache directory (`ember info --calibrate` measures again).

    >>> cal = ember.debug.calibration(); cal["bandwidth_GBps"], cal["peak_GFLOPs"]
    """
    path = _path()
    if not recalibrate:
        try:
            cal = json.loads(path.read_text())
            if cal.get("fingerprint") == _fingerprint():
                return cal
        except (OSError, ValueError):
            pass
    cal = _measure()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cal, indent=1))
    os.replace(tmp, path)
    return cal


def _best(f, repeats: int, budget_s: float) -> float:
    best, t_end = float("inf"), time.perf_counter() + budget_s
    for i in range(repeats):
        best = min(best, f())
        if time.perf_counter() > t_end and i >= 1:
            break
    return best


def _measure() -> dict:
    import numpy as np

    import ember
    from ember.compiler.realize import run

    # bandwidth: an ember-generated streaming kernel (y = -x, split across cores like any kernel)
    n = 8 << 20
    x = ember.tensor(np.ones(n, np.float32))

    def stream() -> float:
        with Capture() as cap:
            run([(-x).node])  # the compiled backend, whatever EMBER_BACKEND says
        return cap.kernels[-1].time_s

    stream()  # compile, and fault in the output pages
    t_bw = _best(stream, 7, 1.0)
    # peak FLOP/s: BLAS float32 matmul through numpy (vectorized FMA on every core)
    m = 1024
    a = np.random.default_rng(0).standard_normal((m, m), dtype=np.float32)

    def matmul() -> float:
        t = time.perf_counter()
        a @ a
        return time.perf_counter() - t

    matmul()
    t_mm = _best(matmul, 7, 1.0)
    return {
        "fingerprint": _fingerprint(),
        "bandwidth_GBps": round(2 * 4 * n / t_bw / 1e9, 2),
        "bandwidth_method": f"ember-generated kernel y = -x over {4 * n >> 20} MiB float32 "
                            f"(read + write), best of several",
        "peak_GFLOPs": round(2 * m ** 3 / t_mm / 1e9, 2),
        "peak_method": f"numpy float32 matmul {m}x{m} (BLAS), best of several",
        "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
