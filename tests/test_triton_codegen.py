"""Triton code generation without a GPU: every kind of kernel the scheduler produces becomes Triton
source that Triton compiles to PTX for sm_90 (GPUTarget("cuda", 90, 32)), including the GEMM
template in each dtype. Numerics are checked by tests/test_cuda_device.py under the interpreter.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import ember
from ember.compiler import dtypes as D
from ember.compiler.kir import Param
from ember.compiler.ops import BINARY, PRIMS, REDUCE, TERNARY, UNARY
from ember.compiler.rewrite import rewrite
from ember.compiler.schedule import schedule
from ember.compiler.templates import GemmKernel

triton = pytest.importorskip("triton")
from triton.backends.compiler import GPUTarget  # noqa: E402

from ember.compiler.codegen import triton as tg  # noqa: E402
from ember.compiler.runtime import cuda  # noqa: E402
from ember.kernels import triton_gemm  # noqa: E402

SM90 = GPUTarget("cuda", 90, 32)
rng = np.random.default_rng(0)


def kernels(*tensors):
    """The kernels the scheduler makes to compute `tensors` together (nothing runs)."""
    nodes = [r for r in dict.fromkeys(rewrite([t.node for t in tensors])) if not r.realized]
    return [sk.kernel for sk in schedule(nodes)]


def ptx(kernel, config: int = 0) -> str:
    tk = tg.render(kernel, "ember_test_kernel")
    ck = cuda.compile_config(tk, tk.configs[config], SM90)
    text = ck.asm["ptx"]
    assert ".target sm_90" in text and ".entry ember_test_kernel" in text
    return text


def t(shape, dtype=ember.float32, lo=-3, hi=3):
    a = rng.uniform(lo, hi, shape)
    return ember.tensor(a.astype(np.float32)).to(dtype) if dtype is not ember.bool else ember.tensor(a > 0)


X = t((6, 13))
IDX = ember.tensor(rng.integers(0, 13, (6, 4)))
CASES = {
    "elementwise": lambda: [X.exp() * 2 + 1],
    "broadcast": lambda: [X + X[0], X.reshape(6, 13, 1) * X.reshape(6, 1, 13)],
    "views": lambda: [X.T[::2, 1:] * 2, X.flip(1) - X.flip(0), X.unsqueeze(0).expand(3, 6, 13) + 1],
    "reduce-fits": lambda: [X.softmax(1), X.sum(0), X.amax(1)],
    "reduce-looped": lambda: [t((64, 5000)).softmax(1)],
    "reduce-scalar": lambda: [X.sum(), X - X.mean()],
    "reduce-multi-axis": lambda: [t((4, 5, 6)).sum((0, 2)), t((4, 5, 6)).prod(1)],
    "layernorm": lambda: [ember.nn.functional.layer_norm(X, (13,))],
    "multi-output": lambda: [X.exp(), X.sum(0), X.T + 1, (X * 3).mean()],
    "gather": lambda: [X[ember.tensor([0, 3, 5])], X.gather(1, IDX), X[:, ember.tensor([[1, 2], [0, 12]])]],
    "pad": lambda: [ember.nn.functional.pad(X, (2, 3, 1, 1)), ember.nn.functional.pad(X, (1, 1), value=2.5)],
    "rng": lambda: [ember.rand(5, 3), ember.randn(7), ember.randint(-5, 10, (4, 4)),
                    ember.rand(3, dtype=ember.float64)],
    "bitcast": lambda: [X.view(ember.int32) + 1],
    "argmax": lambda: [X.argmax(1), X.max(0).values],
}
FLOAT_TYPES = [ember.float16, ember.bfloat16, ember.float64]
INT_TYPES = [ember.int8, ember.int16, ember.int32, ember.int64, ember.uint8]


def _float_kernel(dt):
    y = X.to(dt)
    return [y.tanh() + y.sin() * y.cos() + y.erf() + y.abs().sqrt() + y.abs().log() + y.floor() + y.round(),
            (y.trunc() + y.ceil() + y.abs() ** 2.5).sum(0), y.amax(1), y.prod(0), y.to(ember.int32)]


def _int_kernel(dt):
    y = (X * 20).to(dt)
    return [(y // (y.abs() + 1)) + y % 3 + (y << 1) + (y >> 1) + (y ^ y), y.sum(1), y.amax(0), y.to(ember.float16),
            -y if dt.is_signed else y * 3, y.prod(1)]


for _dt in FLOAT_TYPES:
    CASES[_dt.name] = lambda dt=_dt: _float_kernel(dt)
for _dt in INT_TYPES:
    CASES[_dt.name] = lambda dt=_dt: _int_kernel(dt)
CASES["bool"] = lambda: [(X > 0) & ~(X[0] > 1), (X > 0).any(1), (X > 0).all(0), (X > 0).to(ember.float32)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_kernel_compiles_to_ptx_for_sm90(case):
    ks = kernels(*CASES[case]())
    assert ks
    for k in ks:
        ptx(k)


def test_looped_reductions_and_tiled_loops_compile(monkeypatch):
    """Small blocks force `for` loops over every vectorized loop (the long-row path)."""
    monkeypatch.setitem(tg.LIMITS, "rblock", 8)
    monkeypatch.setitem(tg.LIMITS, "tile", 32)
    monkeypatch.setitem(tg.LIMITS, "xblock", 16)
    ks = kernels(X.softmax(1), X.T.sum(1), X + X[0])
    srcs = [tg.render(k, "k").source for k in ks]
    assert any(re.search(r"for \w*r\d_b in range\(0, 13, 8\)", s) for s in srcs)   # a looped reduction
    assert any(re.search(r"for \w*i1_b in range\(0, 13, 8\)", s) for s in srcs)    # a looped output row
    for k in ks:
        ptx(k)


def test_reduction_that_fits_is_one_block_without_a_loop():
    [k] = kernels(X.softmax(1))
    src = tg.render(k, "k").source
    assert "for " not in src and "tl.sum(" in src and "tl.reduce(" in src
    assert src.count("tl.store(") == 1


def test_multi_nest_kernel_is_one_launch_with_program_ranges():
    [k] = kernels(X.exp(), X.sum(0), (X * 3).mean())
    tk = tg.render(k, "k")
    assert tk.source.count("if (tl.program_id(0) >=") == 3
    assert tk.configs[0].grid[0] >= 3


def test_indices_past_int32_use_int64():
    big = ember.tensor([1.0]).expand(1 << 16, 1 << 16) * ember.tensor(np.ones((1 << 16, 1), np.float32))
    [k] = kernels(big)
    src = tg.render(k, "k").source
    assert ".to(tl.int64)" in src
    ptx(k)
    [small] = kernels(X * 2)
    assert ".to(tl.int64)" not in tg.render(small, "k").source


def test_every_elementwise_primitive_has_a_triton_rendering():
    """One ALU table mirrors codegen/llvm.py's: every unary/binary/ternary primitive (casts are
    handled apart) and every reduction's combine step."""
    for name, p in PRIMS.items():
        if p.kind in (UNARY, BINARY, TERNARY) and name not in ("cast", "bitcast", "contiguous"):
            assert name in tg.ALU, name
        if p.kind == REDUCE:
            assert tg.REDUCE_COMBINE[name] in tg.ALU


def _gemm(dt, batch=2, M=64, N=48, K=40, a=None, b=None):
    a = a or (M * K, K, 1)
    b = b or (0, 1, K)       # B^T of a (N, K) matrix shared by the batch
    return GemmKernel(f"gemm_{dt.name}", dt, batch, M, N, K, a, b, 0, 0,
                      [Param(dt, batch * M * N, "out"), Param(dt, batch * M * K, "in"), Param(dt, N * K, "in")])


@pytest.mark.parametrize("dt", [D.float32, D.float64, D.float16, D.bfloat16], ids=lambda d: d.name)
def test_gemm_template_compiles_in_every_dtype(dt):
    text = ptx(_gemm(dt))
    if dt in (D.float16, D.bfloat16):
        assert "wgmma" in text or "mma" in text   # tensor cores, float32 accumulation
    if dt is D.float64:
        assert "mma" in text


def test_gemm_template_has_autotune_candidates_clipped_to_the_problem():
    big = triton_gemm.configs(D.bfloat16, 4096, 4096, 4096, 1)
    assert len(big) >= 4 and len({tuple(c.constexprs.values()) for c in big}) == len(big)
    small = triton_gemm.configs(D.float32, 20, 30, 17, 3)
    assert all(c.constexprs["BLOCK_M"] == 32 and c.constexprs["BLOCK_N"] == 32 for c in small)
    assert all(c.grid == (1, 3, 1) for c in small)


def test_gemm_from_the_scheduler_and_conv_windows_compile():
    a, b = t((64, 96)), t((96, 80))
    ks = kernels(a @ b, ember.nn.functional.conv2d(t((2, 8, 12, 12)), t((16, 8, 3, 3)), padding=1))
    gemms = [k for k in ks if isinstance(k, GemmKernel)]
    assert len(gemms) == 2 and any(not g.affine for g in gemms)
    for k in ks:
        ptx(k, config=-1)


def test_tf32_is_opt_in(monkeypatch):
    assert 'input_precision="ieee"' in triton_gemm.render(_gemm(D.float32), "g").source
    monkeypatch.setenv("EMBER_ALLOW_TF32", "1")
    assert 'input_precision="tf32"' in triton_gemm.render(_gemm(D.float32), "g").source
