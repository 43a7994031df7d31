"""Convolutions and long graphs on the fast paths.

- conv forward, input gradient and weight gradient each run as one call of the GEMM template,
  packing panels straight from the window view (no loop-nest reduction, no im2col buffer), for
  stride, padding, dilation and groups; values against torch (first and second derivatives);
- the GEMM kernel reads operands through mixed-radix "modes" (kernels/gemm.py) correctly, for
  random layouts, against a numpy gather;
- non-overlapping pooling windows have a reduction-free gradient;
- scheduling work grows linearly with the graph (a count of Python calls, not a timing).
"""
from __future__ import annotations

import cProfile
import pstats
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import ember
import ember.nn.functional as F
from ember.compiler import dtypes as D, rewrite, schedule, templates
from ember.compiler.ir import toposort
from ember.kernels import gemm

RNG = np.random.default_rng(7)
REDUCTIONS = {"sum", "prod", "rmax", "rmin"}


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def close(a, b, tol=2e-4):
    a = a.detach().numpy() if isinstance(a, ember.Tensor) else a
    b = b.detach().numpy()
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, atol=tol * scale, rtol=tol)


def conv_both(fn, x, w, g, **kw):
    """fn(x, w, **kw) forward + backward with upstream g, in ember (captured) and torch."""
    ex, ew = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    ey = getattr(F, fn)(ex, ew, **kw)
    ty = getattr(torch.nn.functional, fn)(tx, tw, **kw)
    (ey * ember.tensor(g(tuple(ty.shape)))).sum().backward()
    (ty * torch.tensor(g(tuple(ty.shape)))).sum().backward()
    with ember.debug.capture() as cap:
        ember.realize(ey, ex.grad, ew.grad)
    close(ey, ty)
    close(ex.grad, tx.grad)
    close(ew.grad, tw.grad)
    return cap.kernels


def upstream(shape):
    return np.random.default_rng(len(shape) + sum(shape)).standard_normal(shape).astype(np.float32)


def assert_three_gemms(kernels):
    """Forward, input gradient and weight gradient are GEMM calls; nothing else reduces."""
    names = [k.name for k in kernels]
    assert sum(n.startswith("gemm") for n in names) == 3, names
    loops = [k.name for k in kernels if not k.name.startswith("gemm") and REDUCTIONS & set(k.ops)]
    assert not loops, f"reductions outside the GEMM template: {loops}"


@pytest.mark.parametrize("n,c,h,o,k,kw", [
    (4, 1, 28, 32, 3, {}),                                   # the MNIST CNN's first conv
    (2, 16, 12, 32, 3, {}),                                  # ... and its second, smaller
    (2, 8, 17, 16, 3, {"stride": 2, "padding": 1}),
    (2, 8, 12, 16, 3, {"padding": 2, "dilation": 2}),
    (2, 8, 11, 16, 3, {"padding": "same", "groups": 2}),
    (4, 8, 12, 16, (2, 3), {"stride": (1, 2), "padding": (1, 0)}),
])
def test_conv2d_forward_and_both_gradients_are_gemms(n, c, h, o, k, kw):
    k = k if isinstance(k, tuple) else (k, k)
    groups = kw.get("groups", 1)
    kernels = conv_both("conv2d", randn(n, c, h, h + 1), randn(o, c // groups, *k), upstream, **kw)
    assert_three_gemms(kernels)


def test_conv1d_and_conv3d_are_gemms():
    assert_three_gemms(conv_both("conv1d", randn(8, 16, 64), randn(32, 16, 5), upstream, stride=2, padding=2))
    assert_three_gemms(conv_both("conv3d", randn(2, 4, 6, 7, 8), randn(8, 4, 3, 3, 3), upstream, padding=1))


def test_conv_transpose2d_matches_torch_through_gemms():
    kernels = conv_both("conv_transpose2d", randn(2, 8, 9, 9), randn(8, 12, 3, 3), upstream, stride=2,
                        padding=1, output_padding=1)
    assert sum(k.name.startswith("gemm") for k in kernels) == 3, [k.name for k in kernels]


def test_conv2d_second_derivative_matches_torch():
    x, w, g = randn(2, 3, 7, 7), randn(4, 3, 3, 3), randn(2, 4, 5, 5)
    ex, ew = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (egx,) = ember.autograd.grad((F.conv2d(ex, ew, stride=2, padding=2) * ember.tensor(g)).sum(), ex,
                                 create_graph=True)
    (tgx,) = torch.autograd.grad((torch.nn.functional.conv2d(tx, tw, stride=2, padding=2) * torch.tensor(g)).sum(),
                                 tx, create_graph=True)
    (egx * egx).sum().backward()
    (tgx * tgx).sum().backward()
    close(egx, tgx)
    close(ew.grad, tw.grad)
    assert ex.grad is None and tx.grad is None  # the input gradient is linear in the input


def test_conv_matches_gemm_with_window_modes():
    """The forward product's window operand is not affine: its strides are mixed-radix modes."""
    x = ember.tensor(randn(2, 8, 10, 10))
    y = F.conv2d(x, ember.tensor(randn(16, 8, 3, 3)))
    sums = [n for n in toposort([y.node]) if n.op == "sum"]
    kern, a, b = templates.match_gemm(sums[0])
    assert (kern.batch, kern.M, kern.N, kern.K) == (2, 16, 64, 72)
    assert not kern.affine and a is not b
    assert kern.b_strides[1] == ((3, 1), (3, 10), (8, 100)) and kern.b_strides[2] == ((8, 1), (8, 10))


def test_plain_matmul_views_stay_affine():
    a, b = ember.tensor(randn(3, 70, 40)), ember.tensor(randn(50, 40))
    y = a @ b.t()
    kern, _, _ = templates.match_gemm([n for n in toposort([y.node]) if n.op == "sum"][0])
    assert kern.affine and (kern.batch, kern.M, kern.N, kern.K) == (1, 210, 50, 40)
    np.testing.assert_allclose(y.numpy(), a.numpy() @ b.numpy().T, rtol=1e-4, atol=1e-4)


def test_operand_mixing_row_and_k_indices_is_not_a_gemm_but_still_right():
    """A view whose index is not a sum of a row part and a k part (here a transposed matrix read
    back flat with another row length) is left to a loop nest."""
    x, w = randn(60, 12), randn(15, 40)
    a = ember.tensor(x).t().reshape(48, 15)
    y = a @ ember.tensor(w)
    assert templates.match_gemm([n for n in toposort([y.node]) if n.op == "sum"][0]) is None
    np.testing.assert_allclose(y.numpy(), x.T.reshape(48, 15) @ w, rtol=1e-4, atol=1e-4)


def test_max_pool_gradient_reads_each_window_once():
    x, g = randn(2, 3, 8, 10), randn(2, 3, 4, 5)
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (F.max_pool2d(ex, 2) * ember.tensor(g)).sum().backward()
    (torch.nn.functional.max_pool2d(tx, 2) * torch.tensor(g)).sum().backward()
    with ember.debug.capture() as cap:
        ember.realize(ex.grad)
    close(ex.grad, tx.grad)
    # each input element reads its own window (max and tie count, 4 + 4 loads): about 9 iterations
    # per element. Through the tiled window view the gradient summed over 3 x 3 tile repetitions,
    # each redoing the window: 70+ per element.
    work = sum(k.compiled.kernel.work for k in cap.kernels)
    assert work <= 10 * x.size, [(k.name, k.compiled.kernel.work) for k in cap.kernels]


def test_max_pool_gradient_splits_ties_and_has_a_second_derivative():
    # ties: every element of a window equal -> each gets a quarter (amax's convention); a padded,
    # odd-sized input exercises the crop of the disjoint window view
    x = np.repeat(np.repeat(randn(1, 2, 3, 3), 2, 2), 2, 3)[:, :, :5, :6]
    ex = ember.tensor(x, requires_grad=True)
    g = randn(1, 2, 3, 3)
    (F.max_pool2d(ex, 2, ceil_mode=True) * ember.tensor(g)).sum().backward()
    counts = np.array([[4, 4, 4], [4, 4, 4], [2, 2, 2]], np.float32)
    expect = np.repeat(np.repeat(g / counts, 2, 2), 2, 3)[:, :, :5, :6]
    np.testing.assert_allclose(ex.grad.numpy(), expect, rtol=1e-6)
    # second order: d/dw of |d(sum(pool(x) * w))/dx|^2, against torch (no ties here)
    x, w, c = randn(2, 3, 6, 8), randn(2, 3, 3, 4), randn(2, 3, 6, 8)
    ex, ew = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    (egx,) = ember.autograd.grad((F.max_pool2d(ex, 2) * ew).sum(), ex, create_graph=True)
    (tgx,) = torch.autograd.grad((torch.nn.functional.max_pool2d(tx, 2) * tw).sum(), tx, create_graph=True)
    (egx * ember.tensor(c)).sum().backward()
    (tgx * torch.tensor(c)).sum().backward()
    close(egx, tgx)
    close(ew.grad, tw.grad)


# ---- the GEMM kernel through modes ---------------------------------------------------------------

def offsets(n, strides):
    """Offsets of indices 0..n-1 of a role: a stride, or mixed-radix modes ((size, stride), ...)."""
    i = np.arange(n)
    if isinstance(strides, int):
        return i * strides
    out, inner = np.zeros(n, np.int64), 1
    for cnt, s in strides:
        out += s * ((i // inner) % cnt)
        inner *= cnt
    return out


def run_gemm(batch, M, N, K, sa, sb, oa, ob, cfg, nt):
    """The generated kernel on random operands laid out by (sa, sb), against a numpy gather."""
    ia = oa + offsets(batch, sa[0])[:, None, None] + offsets(M, sa[1])[None, :, None] + offsets(K, sa[2])[None, None, :]
    ib = ob + offsets(batch, sb[0])[:, None, None] + offsets(K, sb[1])[None, :, None] + offsets(N, sb[2])[None, None, :]
    a = RNG.standard_normal(int(ia.max()) + 1).astype(np.float32)
    b = RNG.standard_normal(int(ib.max()) + 1).astype(np.float32)
    fn = gemm.compile_gemm(D.float32, batch, M, N, K, sa, sb, oa, ob, config=cfg)
    c = np.full((batch, M, N), np.nan, np.float32)
    threads = [threading.Thread(target=fn, args=(c.ctypes.data, a.ctypes.data, b.ctypes.data, t, nt))
               for t in range(nt)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert ia.min() >= 0 and ib.min() >= 0
    ra, rb = a[ia].astype(np.float64), b[ib].astype(np.float64)
    tol = (K + 2) * np.finfo(np.float32).eps * (np.abs(ra) @ np.abs(rb)) + 1e-30
    assert not np.isnan(c).any()
    assert (np.abs(c - ra @ rb) <= tol).all()


def tiny_config():
    base = gemm.default_config(D.float32)
    return gemm.Config(base.mr, base.nr, base.vec, 2 * base.mr, 8, 2 * base.nr)


@pytest.mark.parametrize("tiny", [False, True])
@pytest.mark.parametrize("shape,sa,sb", [
    # forward conv: A weights, B windows: k = (kw, kh, c), columns = window rows of 12 (wrapping)
    ((4, 20, 100, 27), (0, 27, 1), (500, ((3, 1), (3, 12), (3, 144)), ((10, 1), (10, 12)))),
    # weight gradient: B's k's are window rows (runs of 24: register transposes), A's k runs too
    ((2, 20, 30, 72), (((2, 5000),), 100, ((24, 1), (3, 50))), (0, ((24, 1), (3, 50)), ((3, 1), (10, 300)))),
    # A^T-like A (k-major packing) through a k table; columns in runs of 20 (two-run slivers)
    ((1, 7, 100, 64), (0, 1, ((16, 1), (4, 40))), (0, ((16, 1), (4, 40)), ((20, 1), (5, 30)))),
    # input gradient: flipped weights (negative strides) against windows of a padded gradient
    ((2, 12, 48, 72), (0, 9, ((9, -1), (8, 108))), (7200, ((3, 1), (3, 30), (8, 900)), ((24, 1), (2, 30)))),
])
def test_gemm_packs_window_layouts(shape, sa, sb, tiny):
    run_gemm(*shape, sa, sb, 8, 2, tiny_config() if tiny else None, 2)


@st.composite
def role(draw, sizes=None):
    """A role's size and, per operand, its strides (int or modes); `sizes` fixes the mode sizes."""
    sizes = sizes or draw(st.lists(st.sampled_from([1, 2, 3, 5, 8, 9, 16, 24]), min_size=1, max_size=3)
                          .filter(lambda s: np.prod(s) <= 200))
    # unit strides often: contiguous runs take the vector packing paths
    modes = tuple((c, draw(st.one_of(st.just(1), st.integers(-30, 30)))) for c in sizes)
    return int(np.prod(sizes)), (modes[0][1] if len(modes) == 1 else modes), sizes


@settings(max_examples=25, deadline=None)
@given(data=st.data(), tiny=st.booleans(), nt=st.integers(1, 3))
def test_gemm_reads_operands_through_modes(data, tiny, nt):
    batch, ta, tsz = data.draw(role())
    _, tb, _ = data.draw(role(tsz))
    M, am, _ = data.draw(role())
    K, ak, ksz = data.draw(role())
    _, bk, _ = data.draw(role(ksz))
    N, bn, _ = data.draw(role())
    sa, sb = (ta, am, ak), (tb, bk, bn)
    # base offsets that keep every index in range (strides may be negative)
    low_a = sum(min(0, int(offsets(n, st).min())) for n, st in zip((batch, M, K), sa))
    low_b = sum(min(0, int(offsets(n, st).min())) for n, st in zip((batch, K, N), sb))
    run_gemm(batch, M, N, K, sa, sb, 1 - low_a, -low_b, tiny_config() if tiny else None, nt)


# ---- scheduling work is linear in the graph --------------------------------------------------------

def recurrent_graph(steps):
    """A small recurrent net unrolled `steps` times, forward and backward: every step has shared
    reductions (the matmuls, the softmax), which the scheduler once re-scanned the graph for."""
    rng = np.random.default_rng(0)
    w = ember.tensor(rng.standard_normal((6, 6)).astype(np.float32), requires_grad=True)
    u = ember.tensor(rng.standard_normal((6, 6)).astype(np.float32), requires_grad=True)
    h = ember.tensor(rng.standard_normal((3, 6)).astype(np.float32))
    loss = 0
    for _ in range(steps):
        h = (h @ w).tanh() * (h @ u).sigmoid() + h
        loss = loss + h.softmax(1).sum()
    loss.backward()
    outs = rewrite.rewrite([loss.node, w.grad.node, u.grad.node])
    return [o for o in dict.fromkeys(outs) if not o.realized]


def scheduling_calls(steps) -> tuple[int, int]:
    outs = recurrent_graph(steps)
    prof = cProfile.Profile()
    prof.enable()
    kernels = schedule.schedule(outs)
    prof.disable()
    return pstats.Stats(prof).total_calls, len(kernels)


def test_scheduling_work_grows_linearly_with_the_graph():
    """Python calls (deterministic, unlike time) made by schedule() for 8 and 16 unrolled steps:
    linear work doubles (the old per-reduction rescans made it 3.6x here)."""
    (small, k8), (large, k16) = scheduling_calls(8), scheduling_calls(16)
    assert k16 > 1.8 * k8
    assert large / small < 2.5, (small, large)
