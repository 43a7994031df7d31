"""Triton GEMM template: C[t] = A[t] @ B[t] for a matched `GemmKernel` (compiler/templates.py).

A classic tiled kernel: each program computes a BLOCK_M x BLOCK_N tile of C, walking K in
BLOCK_K steps with `tl.dot` into an accumulator (float32 for float32/float16/bfloat16 inputs,
float64 for float64), with grouped tile ordering (GROUP_M rows of tiles share B panels in L2).
Shapes, strides (any: transposed, broadcast batches, flips) and offsets are baked into the source
like the LLVM template; block sizes are constexpr parameters and a handful of configurations are
autotuned on the GPU (the runtime times each once per kernel). float32 uses IEEE products unless
TF32 is allowed (`EMBER_ALLOW_TF32=1`, like torch.backends.cuda.matmul.allow_tf32).

    tk = render(gemm_kernel, "ember_gemm")     # TritonKernel: source + signature + configs
"""
from __future__ import annotations

import os

from ember.compiler import dtypes as D
from ember.compiler.codegen.triton import HEADER, Config, TritonKernel, pointer_signature, tl_storage

# (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, num_warps, num_stages): Triton's tutorial set for Hopper-class
# GPUs; half types take deeper K steps, float64 smaller tiles (its MMA is narrow).
_CONFIGS = {
    "half": [(128, 256, 64, 8, 8, 3), (128, 128, 64, 8, 4, 4), (128, 64, 64, 8, 4, 4), (64, 128, 64, 8, 4, 4),
             (64, 64, 64, 8, 4, 4)],
    "float32": [(128, 128, 32, 8, 8, 3), (128, 64, 32, 8, 4, 4), (64, 128, 32, 8, 4, 4), (64, 64, 32, 8, 4, 4)],
    "float64": [(64, 64, 16, 8, 4, 3), (32, 64, 16, 8, 4, 3), (32, 32, 16, 8, 2, 3)],
}

_SOURCE = '''
@triton.jit
def {name}(C, A, B, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
           GROUP_M: tl.constexpr):
    # template gemm: C[{batch}x{M}x{N}] = A @ B, K={K}
    pid = tl.program_id(0)
    t = tl.program_id(1){idx}
    num_m = tl.cdiv({M}, BLOCK_M)
    num_n = tl.cdiv({N}, BLOCK_N)
    group = GROUP_M * num_n
    first_m = (pid // group) * GROUP_M
    group_m = tl.minimum(num_m - first_m, GROUP_M)
    pm = first_m + (pid % group) % group_m
    pn = (pid % group) // group_m
    rm = pm * BLOCK_M + tl.arange(0, BLOCK_M){idx}
    rn = pn * BLOCK_N + tl.arange(0, BLOCK_N){idx}
    rk = tl.arange(0, BLOCK_K){idx}
    # rows/columns past the edge read a valid row (rm % M) and are never stored
    am = rm % {M}
    bn = rn % {N}
    a_rows = A + {a_off} + {a_t} + ({a_m})[:, None]
    b_cols = B + {b_off} + {b_t} + ({b_n})[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype={acc})
    for k in range(0, tl.cdiv({K}, BLOCK_K)):
        kk = k * BLOCK_K + rk
        k_ok = kk < {K}
        a = tl.load(a_rows + ({a_k})[None, :], mask=k_ok[None, :], other=0)
        b = tl.load(b_cols + ({b_k})[:, None], mask=k_ok[:, None], other=0)
        acc = tl.dot(a, b, acc{precision})
    c_ptr = C + t * {MN} + rm[:, None] * {N} + rn[None, :]
    tl.store(c_ptr, acc.to({out}), mask=(rm[:, None] < {M}) & (rn[None, :] < {N}))
'''


def _offset(entry, i: str) -> str:
    """Offset of index vector `i` along one role: `i * stride`, or for a mode table
    ((size, stride), ...) innermost first, the mixed-radix sum of its digits times their strides."""
    if isinstance(entry, int):
        return f"{i} * {entry}" if entry else "0"
    terms, inner = [], 1
    for size, stride in entry:
        if stride:
            terms.append(f"(({i} // {inner}) % {size}) * {stride}" if inner > 1 else f"({i} % {size}) * {stride}")
        inner *= size
    return " + ".join(terms) or "0"


def _span(entry, n: int) -> int:
    if isinstance(entry, int):
        return abs(entry) * (n + 256)
    return sum(abs(stride) * size for size, stride in entry)


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def configs(dtype: D.DType, M: int, N: int, K: int, batch: int) -> list[Config]:
    """Autotune candidates, each block clipped to the problem (a 20-row GEMM gets no 128-row
    tiles); tl.dot needs blocks of at least 16."""
    table = _CONFIGS["half" if dtype in (D.float16, D.bfloat16) else dtype.name]
    out, seen = [], set()
    for bm, bn, bk, gm, warps, stages in table:
        bm, bn, bk = (max(16, min(b, _pow2(n))) for b, n in ((bm, M), (bn, N), (bk, K)))
        if (bm, bn, bk) in seen:
            continue
        seen.add((bm, bn, bk))
        grid = (-(-M // bm) * -(-N // bn), batch, 1)
        out.append(Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk, "GROUP_M": gm}, grid,
                          min(warps, max(1, bm * bn // 512)), stages))
    return out


def render(k, name: str) -> TritonKernel:
    """The Triton source of GemmKernel `k` (see compiler/templates.py for its fields)."""
    sat, sam, sak = k.a_strides
    sbt, sbk, sbn = k.b_strides
    span = max(abs(k.a_offset) + _span(sat, k.batch) + _span(sam, k.M) + _span(sak, k.K),
               abs(k.b_offset) + _span(sbt, k.batch) + _span(sbk, k.K) + _span(sbn, k.N), k.batch * k.M * k.N)
    wide = span >= 1 << 31   # offsets past int32: index in int64
    if k.dtype is D.float64:
        acc, precision = "tl.float64", ', input_precision="ieee"'
    elif k.dtype is D.float32:
        tf32 = os.environ.get("EMBER_ALLOW_TF32") == "1"
        acc, precision = "tl.float32", f', input_precision="{"tf32" if tf32 else "ieee"}"'
    else:
        acc, precision = "tl.float32", ""
    src = _SOURCE.format(name=name, batch=k.batch, M=k.M, N=k.N, K=k.K, MN=k.M * k.N,
                         a_t=_offset(sat, "t"), a_m=_offset(sam, "am"), a_k=_offset(sak, "kk"),
                         b_t=_offset(sbt, "t"), b_k=_offset(sbk, "kk"), b_n=_offset(sbn, "bn"),
                         a_off=k.a_offset, b_off=k.b_offset, acc=acc, out=tl_storage(k.dtype),
                         precision=precision, idx=".to(tl.int64)" if wide else "")
    signature = {"C": pointer_signature(k.params[0].dtype), "A": pointer_signature(k.params[1].dtype),
                 "B": pointer_signature(k.params[2].dtype),
                 "BLOCK_M": "constexpr", "BLOCK_N": "constexpr", "BLOCK_K": "constexpr", "GROUP_M": "constexpr"}
    return TritonKernel(name, HEADER + "\n" + src, signature, configs(k.dtype, k.M, k.N, k.K, k.batch),
                        {(i,): [["tt.divisibility", 16]] for i in range(3)})


__all__ = ["render", "configs"]
