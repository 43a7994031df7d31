"""The MNIST CNN training step's kernel structure (issue #8): what the scheduler and the layers do so
that the step moves little memory, each checked on values against torch or numpy.

- the size limit counts a node shared at one index once (Philox is one kernel, not cut into
  kernels writing 32-bit intermediates), while views that move elements still count per use (a
  chain of shifted sums is still cut) and long chains are cut by depth (lowering recurses);
- a dropout mask is one byte per element, computed once, read by the forward and the backward;
- a root reading a same-shape root of an earlier kernel joins its nest (max pool's tie count is
  computed with its max under ember.compile, where the forward's saved values are outputs);
- a stride-1 convolution's backward writes the padded output gradient once and reads the weight
  and bias gradients from it (no unpadded copy); bias gradients against torch.
"""
from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings, strategies as st

import ember
import ember.nn.functional as F
from ember.compiler import Node, dtypes as D, schedule
from ember.compiler.buffer import Buffer
from ember.compiler.ir import const, toposort

RNG = np.random.default_rng(3)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def kernels_of(*tensors):
    with ember.debug.capture() as cap:
        ember.realize(*tensors)
    return cap.kernels


def close(a, b, tol=2e-4):
    a = a.detach().numpy() if isinstance(a, ember.Tensor) else a
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, atol=tol * scale, rtol=tol)


def size_limited(outputs):
    roots = {id(n): (n, "output") for n in outputs}
    schedule._size_limit(toposort(outputs), roots)
    return [n for n, why in roots.values() if why == "size-limit"]


# ---- the size limit ---------------------------------------------------------------------------------

def test_random_numbers_are_not_cut_by_the_size_limit():
    ember.manual_seed(5)
    u = ember.rand(5000)
    assert size_limited([u.node]) == []
    ks = kernels_of(u)
    assert len(ks) == 1, [k.name for k in ks]
    x = u.numpy()
    assert x.min() >= 0.0 and x.max() < 1.0 and abs(float(x.mean()) - 0.5) < 0.02
    ember.manual_seed(5)
    np.testing.assert_array_equal(ember.rand(5000).numpy(), x)


def test_shifted_sums_still_count_per_use():
    """y = x[1:] + x[:-1], repeated: each level reads the one below at two indices, so inlining
    all of them would compute the bottom 2^depth times; the size limit must still cut it."""
    a = randn(64)
    x = ember.tensor(a)
    want = a.astype(np.float64)
    for _ in range(14):
        x = x[1:] * 0.5 + x[:-1] * 0.25
        want = want[1:] * 0.5 + want[:-1] * 0.25
    assert size_limited([x.node])
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-4)


def test_deep_chains_are_cut_by_depth():
    a = np.arange(6, dtype=np.float32)
    n = Node.make("buffer", arg=Buffer.from_array(a), dtype=D.float32, shape=(6,))
    for _ in range(3 * schedule.MAX_KERNEL_DEPTH):
        n = Node.make("add", [Node.make("mul", [n, const(0.5, D.float32, (6,))]), const(1.0, D.float32, (6,))])
    cut = size_limited([n])
    assert 2 <= len(cut) <= 8


# ---- dropout ------------------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(st.integers(1, 300), st.sampled_from([0.1, 0.5, 0.9]))
def test_dropout_mask_is_one_byte_buffer_computed_once(n, p):
    x = ember.tensor(randn(n) + 3.0, requires_grad=True)       # no zeros: dropped = exactly zero
    y = F.dropout(x, p)
    (y * y).sum().backward()
    ks = kernels_of(y, x.grad)
    params = [(p.dtype, p.role, p.numel) for k in ks for p in k.compiled.kernel.params]
    assert (D.bool_, "out", n) in params                              # the mask, written once
    assert sum(1 for k in ks if "xor" in k.ops) == 1                  # the generator runs once
    assert not any(dt is D.uint32 for dt, _, _ in params)             # no generator intermediates
    yv, gv, xv = y.detach().numpy(), x.grad.numpy(), x.detach().numpy()
    kept = yv != 0
    np.testing.assert_allclose(yv[kept], xv[kept] / (1 - p), rtol=1e-6)
    np.testing.assert_allclose(gv, np.where(kept, 2 * yv / (1 - p), 0.0), rtol=1e-5)


# ---- max pooling --------------------------------------------------------------------------------------

def test_a_root_joins_the_nest_of_the_same_shape_root_it_reads():
    """Outputs a (a row max), z (reads a, another shape: a kernel of its own) and c (reads a, a's
    shape). c used to join the last kernel, z's, and load a from memory; now it joins a's nest
    and uses a while it is computed (max pooling's tie count in ember.compile's forward)."""
    x = randn(64, 33)
    ex = ember.tensor(x)
    a = ex.amax(1, keepdim=True)
    z = (ex - a).exp().sum(0)
    c = (ex == a).sum(1, keepdim=True, dtype=ember.uint8)
    # in this order of outputs the roots come as a, z, c (toposort takes the last output first)
    ks = schedule.schedule([c.node, z.node, a.node])
    owner = [k for k in ks if any(n.op == "rmax" for n in k.outputs)]
    assert len(owner) == 1 and [n.op for n in owner[0].outputs] == ["rmax", "sum"], \
        [[n.op for n in k.outputs] for k in ks]
    np.testing.assert_array_equal(a.numpy(), x.max(1, keepdims=True))
    np.testing.assert_allclose(z.numpy(), np.exp(x - x.max(1, keepdims=True)).sum(0), rtol=1e-5)
    np.testing.assert_array_equal(c.numpy(), (x == x.max(1, keepdims=True)).sum(1, keepdims=True))


def test_max_pool_gradient_splits_ties_through_a_gemm():
    """The CNN's shape of graph: the pooled value feeds a GEMM; the forward counts each window's
    maxima, the backward divides the gradient among them (amax's convention)."""
    x, w = randn(8, 16, 12, 12), randn(576, 32)
    x[0, 0, :2, :2] = 1.5          # a window of ties
    ex, tx = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ey = F.max_pool2d(ex, 2).reshape(8, 576) @ ember.tensor(w)
    ty = torch.nn.functional.max_pool2d(tx, 2).reshape(8, 576) @ torch.tensor(w)
    g = randn(8, 32)
    (ey * ember.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    close(ey, ty)
    want = tx.grad.numpy().copy()
    want[0, 0, :2, :2] = want[0, 0, :2, :2].sum() / 4
    close(ex.grad, want)


# ---- convolution backward -----------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(5, 9), st.sampled_from([1, 3]),
       st.sampled_from([1, 2]), st.sampled_from([0, 1]), st.sampled_from([1, 2]), st.booleans())
def test_conv2d_gradients_with_bias(n, c, o, h, k, stride, pad, dil, bias):
    if dil * (k - 1) + 1 > h + 2 * pad:
        return
    x, w, b = randn(n, c, h, h + 1), randn(o, c, k, k), randn(o)
    ex, ew = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    eb = ember.tensor(b, requires_grad=True) if bias else None
    tb = torch.tensor(b, requires_grad=True) if bias else None
    ey = F.conv2d(ex, ew, eb, stride=stride, padding=pad, dilation=dil)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=pad, dilation=dil)
    g = randn(*ty.shape)
    (ey * ember.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    close(ey, ty)
    close(ex.grad, tx.grad)
    close(ew.grad, tw.grad)
    if bias:
        close(eb.grad, tb.grad)


def test_conv_backward_writes_the_padded_gradient_once():
    """relu(conv) -> conv: the second conv's output gradient is computed straight into its padded
    layout; no kernel copies an unpadded gradient into a padded one."""
    x, w1, w2, b2 = randn(2, 1, 12, 12), randn(4, 1, 3, 3), randn(6, 4, 3, 3), randn(6)
    g = randn(2, 6, 8, 8)
    ex = ember.tensor(x)
    ew1, ew2, eb2 = (ember.tensor(a, requires_grad=True) for a in (w1, w2, b2))
    tw1, tw2, tb2 = (torch.tensor(a, requires_grad=True) for a in (w1, w2, b2))
    ey = F.conv2d(F.relu(F.conv2d(ex, ew1)), ew2, eb2)
    ty = torch.nn.functional.conv2d(torch.relu(torch.nn.functional.conv2d(torch.tensor(x), tw1)), tw2, tb2)
    (ey.relu() * ember.tensor(g)).sum().backward()
    (ty.relu() * torch.tensor(g)).sum().backward()
    ks = kernels_of(ew1.grad, ew2.grad, eb2.grad)
    assert not any(k.name.startswith("e_copy") for k in ks), [k.name for k in ks]
    for e, t in ((ew1, tw1), (ew2, tw2), (eb2, tb2)):
        close(e.grad, t.grad)


# ---- GEMM packing: the ragged last sliver of B ----------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(st.integers(1, 15), st.integers(1, 3), st.sampled_from([(3, 3), (1, 5), (2, 2)]))
def test_weight_gradient_with_few_columns(extra, c, kernel):
    """A conv weight gradient's columns are c * kernel positions (9 for a 3x3 kernel): fewer than a
    sliver, whose k's (batch and positions) are runs: packed by register transposes, the lanes past
    the last column repeating it. Values against torch; a GEMM runs (the product is large)."""
    x, g = randn(32, c, 24 + extra, 24), randn(32, 4, 25 + extra - kernel[0], 25 - kernel[1])
    w = randn(4, c, *kernel)
    ex, ew = ember.tensor(x), ember.tensor(w, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    (F.conv2d(ex, ew) * ember.tensor(g)).sum().backward()
    (torch.nn.functional.conv2d(torch.tensor(x), tw) * torch.tensor(g)).sum().backward()
    ks = kernels_of(ew.grad)
    assert any(k.name.startswith("gemm") for k in ks), [k.name for k in ks]
    close(ew.grad, tw.grad)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 47), st.integers(40, 300))
def test_matmul_with_transposed_ragged_right_operand(n, k):
    """A @ B^T: B's k's are contiguous, so the last n % 16 columns go through the same transposes."""
    a, b = randn(70, k), randn(n, k)
    y = ember.tensor(a) @ ember.tensor(b).t()
    np.testing.assert_allclose(y.numpy(), a @ b.T, rtol=1e-4, atol=1e-4 * np.sqrt(k))
