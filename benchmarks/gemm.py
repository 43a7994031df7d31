"""GEMM benchmarks: float32 C = A @ B at 1024^3 and 2048^3, and the mid-size products of training steps.

Two entry points:

- `BENCHMARKS`, registered in suite.py: `a @ b` in every framework's table column (ember's row is
  whatever its matmul lowers to), and two mid-size rows: a linear layer `x @ w.mT` and a batched
  attention product `q @ k.mT`.
- `python -m benchmarks.gemm [--sizes 1024 2048] [--mid] [--rounds 7] [--threads 2] [--cpu-time]`:
  the generated kernel itself (kernels/gemm.py, compiled and launched through the CPU runtime, no
  graph) against torch.matmul and numpy in the same process, interleaved round by round (the order
  reversed every other round) so that load from other processes hits every column alike; prints
  median GFLOP/s, the ratio to torch, and the load. `--mid` runs the products of the MLP and
  tiny-GPT training steps (`MID_SHAPES`) with the strides ember's matcher finds there (transposed
  weights, weight gradients summing over the token axis, attention heads read from a
  (seq, batch*heads, head_dim) array) instead of the squares.
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
        impls={"numpy": _matmul, "torch": _matmul, "ember": _matmul, "jax": _matmul},
        bytes=lambda n: 3 * 4 * n * n,
        flops=lambda n: 2 * n ** 3,
        bound="compute",
        targets=(Target("speedup", 0.9, "torch", "#8"),),
        rtol=1e-3, atol=1e-2,
    )


def _mid_inputs(size):
    batch, m, n, k = size
    rng = np.random.default_rng(8)
    shape = (batch,) if batch > 1 else ()
    return {"a": rng.standard_normal((*shape, m, k), np.float32), "b": rng.standard_normal((*shape, n, k), np.float32)}


def _times_transposed(a, b):  # a linear layer (x @ W^T) or attention scores (Q @ K^T)
    return a @ b.mT


def _mid_bench(name: str, describe: str, full: tuple, quick: tuple) -> Bench:
    return Bench(
        name=name, describe=describe, sizes={"full": full, "quick": quick}, inputs=_mid_inputs,
        impls={"numpy": _times_transposed, "torch": _times_transposed, "ember": _times_transposed,
               "jax": _times_transposed},
        bytes=lambda s: 4 * s[0] * (s[1] * s[3] + s[2] * s[3] + s[1] * s[2]),
        flops=lambda s: 2 * s[0] * s[1] * s[2] * s[3], bound="compute",
        targets=(Target("speedup", 1.0, "torch"),), rtol=1e-3, atol=1e-3)


BENCHMARKS = (_bench(1024, 128), _bench(2048, 256),
              _mid_bench("linear1024x512x128", "float32 x @ w.mT, x 1024x128, w 512x128 (a GPT feed-forward layer)",
                         (1, 1024, 512, 128), (1, 128, 64, 32)),
              _mid_bench("bmm64x64x64x32", "float32 q @ k.mT, q and k 64x64x32 (attention scores, 16 batches x 4 heads)",
                         (64, 64, 64, 32), (8, 16, 16, 8)))


# The products of the training steps (benchmarks/training.py) as ember's matcher finds them
# (`ember.debug.capture()`): (label, batch, M, N, K, A strides (t, m, k), B strides (t, k, n)).
MID_SHAPES = (
    ("mlp x@W1^T", 1, 256, 512, 784, (0, 784, 1), (0, 1, 784)),
    ("mlp dW1 = g^T@x", 1, 512, 784, 256, (0, 1, 512), (0, 784, 1)),
    ("mlp x@W2^T", 1, 256, 512, 512, (0, 512, 1), (0, 1, 512)),
    ("mlp x@W3^T (N=10)", 1, 256, 10, 512, (0, 512, 1), (0, 1, 512)),
    ("mlp dW3 (M=10)", 1, 10, 512, 256, (0, 1, 10), (0, 512, 1)),
    ("gpt ff1 x@W^T", 1, 1024, 512, 128, (0, 128, 1), (0, 1, 128)),
    ("gpt ff2 x@W^T", 1, 1024, 128, 512, (0, 512, 1), (0, 1, 512)),
    ("gpt dW ff1 (K=1024)", 1, 128, 512, 1024, (0, 1, 128), (0, 512, 1)),
    ("gpt dW ff2 (K=1024)", 1, 512, 128, 1024, (0, 1, 512), (0, 128, 1)),
    ("gpt qkv x@W^T", 1, 1024, 128, 128, (0, 128, 1), (0, 1, 128)),
    ("gpt dW qkv (K=1024)", 1, 128, 128, 1024, (0, 1, 128), (0, 128, 1)),
    ("gpt attn Q@K^T", 64, 64, 64, 32, (32, 2048, 1), (32, 1, 2048)),
    ("gpt attn P@V", 64, 64, 32, 64, (4096, 64, 1), (32, 2048, 1)),
    ("gpt attn dP^T@Q", 64, 32, 64, 64, (32, 1, 2048), (4096, 64, 1)),
)


# ---- the kernel alone -------------------------------------------------------------------------------

def _square(n: int) -> tuple:
    return (f"{n}^3", 1, n, n, n, (0, n, 1), (0, n, 1))


def _strided(buf: np.ndarray, shape: tuple, strides: tuple) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(buf, shape, [s * buf.itemsize for s in strides], writeable=False)


def kernel_vs_peers(sizes=(1024, 2048), rounds=7, threads=2, dtype_name="float32", cpu_time=False, shapes=None):
    """Median GFLOP/s of the generated kernel, torch.matmul and numpy on n^3 products, or on
    `shapes` ((label, batch, M, N, K, a_strides, b_strides), e.g. MID_SHAPES): the operands are
    strided views of one buffer each, as in the program the shape came from."""
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
    for label, batch, M, N, K, sa, sb in shapes or [_square(n) for n in sizes]:
        rng = np.random.default_rng(0)
        span = [1 + sum((d - 1) * st for d, st in zip(dims, strides))
                for dims, strides in (((batch, M, K), sa), ((batch, K, N), sb))]
        a, b = (rng.standard_normal(n).astype(dtype.np) for n in span)
        va, vb = _strided(a, (batch, M, K), sa), _strided(b, (batch, K, N), sb)
        c = np.empty((batch, M, N), dtype.np)
        t0 = time.perf_counter()
        fn = gemm.compile_gemm(dtype, batch, M, N, K, sa, sb)
        compile_s = time.perf_counter() - t0
        ta = torch.from_numpy(a).as_strided((batch, M, K), sa)
        tb = torch.from_numpy(b).as_strided((batch, K, N), sb)
        if batch == 1:
            ta, tb, va, vb = ta[0], tb[0], va[0], vb[0]
        ptrs = [c.ctypes.data, a.ctypes.data, b.ctypes.data]
        flops = gemm.gemm_flops(batch, M, N, K)
        runs = {"ember kernel": lambda: cpu.launch(fn, ptrs, flops), "torch": lambda: torch.matmul(ta, tb)}
        if not cpu_time:
            runs["numpy"] = lambda: va @ vb
        times = {k: [] for k in runs}
        for f in runs.values():  # warm-up
            f()
        loads = []
        for r in range(rounds):
            for k, f in (list(runs.items()) if r % 2 == 0 else list(runs.items())[::-1]):
                t0 = clock()
                f()
                times[k].append(clock() - t0)
            loads.append(os.getloadavg()[0])
        err = float(np.abs(c.reshape(va.shape[:-2] + (M, N)) - va.astype(np.float64) @ vb).max())
        med = {k: statistics.median(v) for k, v in times.items()}
        for k in runs:
            rows.append((label, k, flops / med[k] / 1e9, med["torch"] / med[k], max(times[k]) / min(times[k])))
        print(f"{label} ({batch}x{M}x{N}x{K}): compile {compile_s:.2f} s, max abs error vs float64 {err:.2g}, "
              f"load during {min(loads):.2f}-{max(loads):.2f}", flush=True)
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
    p.add_argument("--mid", action="store_true", help="the training steps' products (MID_SHAPES) instead of n^3")
    args = p.parse_args(argv)
    kernel_vs_peers(args.sizes, args.rounds, args.threads, args.dtype, args.cpu_time,
                    shapes=MID_SHAPES if args.mid else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
