"""GEMM benchmarks: float32 C = A @ B at 1024^3 and 2048^3.

Two entry points:

- `BENCHMARKS`, registered in suite.py: `a @ b` in every framework's table column (ember's row is
  whatever its matmul lowers to).
- `python -m benchmarks.gemm [--sizes 1024 2048] [--rounds 7] [--threads 2] [--cpu-time]`: the
  generated kernel itself (kernels/gemm.py, compiled and launched through the CPU runtime, no graph)
  against torch.matmul and numpy in the same process, interleaved round by round so that load from
  other processes hits every column alike; prints median GFLOP/s, the ratio to torch, and the load.
  `--cpu-time` divides by the calling thread's CPU time instead of wall time (one thread each; numpy
  is left out since its BLAS threads are not counted): on a machine shared with other jobs that
  measures the kernels rather than the scheduler, whereas wall-clock ratios there mostly measure
  how badly torch's spin-waiting threads are preempted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

from .harness import Bench, Target


def _inputs(n):
    rng = np.random.default_rng(8)
    return {"a": rng.standard_normal((n, n), np.float32), "b": rng.standard_normal((n, n), np.float32)}


def _matmul(a, b):  # the same expression in numpy, torch and ember
    return a @ b


def _bench(full: int, quick: int) -> Bench:
    return Bench(
        name=f"gemm{full}",
        describe=f"float32 matmul {full}^3 (flops = 2 n^3; bytes = read A, B + write C)",
        sizes={"full": full, "quick": quick},
        inputs=_inputs,
        impls={"numpy": _matmul, "torch": _matmul, "ember": _matmul},
        bytes=lambda n: 3 * 4 * n * n,
        flops=lambda n: 2 * n ** 3,
        bound="compute",
        targets=(Target("speedup", 0.9, "torch"),),
        rtol=1e-3, atol=1e-2,
    )


BENCHMARKS = (_bench(1024, 128), _bench(2048, 256))


# ---- the kernel alone -------------------------------------------------------------------------------

def kernel_vs_peers(sizes=(1024, 2048), rounds=7, threads=2, dtype_name="float32", cpu_time=False):
    """Median GFLOP/s of the generated kernel, torch.matmul and numpy on n^3 products."""
    import torch

    from ember.compiler import dtypes as D
    from ember.compiler.runtime import cpu
    from ember.kernels import gemm

    dtype = D.by_name(dtype_name)
    if cpu_time:
        threads = 1
    torch.set_num_threads(threads)
    os.environ["EMBER_NUM_THREADS"] = str(threads)
    clock = time.thread_time if cpu_time else time.perf_counter
    print(f"isa {gemm.host_isa()}, config {gemm.default_config(dtype)}, threads {threads} (torch "
          f"{torch.get_num_threads()}), {'CPU' if cpu_time else 'wall'} time, load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n)).astype(dtype.np) for _ in range(2))
        c = np.empty((n, n), dtype.np)
        t0 = time.perf_counter()
        fn = gemm.compile_gemm(dtype, 1, n, n, n, (0, n, 1), (0, n, 1))
        compile_s = time.perf_counter() - t0
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ptrs = [c.ctypes.data, a.ctypes.data, b.ctypes.data]
        flops = gemm.gemm_flops(1, n, n, n)
        runs = {"ember kernel": lambda: cpu.launch(fn, ptrs, flops), "torch": lambda: torch.matmul(ta, tb)}
        if not cpu_time:
            runs["numpy"] = lambda: a @ b
        times = {k: [] for k in runs}
        for f in runs.values():  # warm-up
            f()
        loads = []
        for _ in range(rounds):
            for k, f in runs.items():
                t0 = clock()
                f()
                times[k].append(clock() - t0)
            loads.append(os.getloadavg()[0])
        err = float(np.abs(c - a.astype(np.float64) @ b).max())
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in runs:
            rows.append((n, k, flops / med[k] / 1e9, med["torch"] / med[k], max(times[k]) / min(times[k])))
        print(f"n={n}: compile {compile_s:.2f} s, max abs error vs float64 {err:.2g}, load during "
              f"{min(loads):.2f}-{max(loads):.2f}", flush=True)
        for r in rows[-len(runs):]:
            print(f"  {r[1]:<13} {r[2]:7.1f} GFLOP/s  {r[3]:5.2f}x torch  (max/min time {r[4]:.2f})", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gemm", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--cpu-time", action="store_true", help="GFLOP per CPU-second of one thread")
    args = p.parse_args(argv)
    kernel_vs_peers(args.sizes, args.rounds, args.threads, args.dtype, args.cpu_time)
    return 0


if __name__ == "__main__":
    sys.exit(main())
