"""GEMM epilogues (templates.gemm_epilogue): elementwise consumers of a matrix product computed by the
GEMM's micro-kernel from its accumulator registers. Values against numpy (float64 reference),
gradients against torch, and the fusion itself checked on the kernels that ran."""
import numpy as np
import torch
from hypothesis import given, settings, strategies as st

import ember
import ember.nn.functional as F
from ember.kernels.gemm import default_config

rng = np.random.default_rng(0)
CFG = default_config(ember.float32)


def run(fn, *arrays):
    """fn(*tensors) realized: (numpy result(s), the kernels that ran)."""
    ts = [ember.tensor(a) for a in arrays]
    with ember.debug.capture() as cap:
        out = fn(*ts)
        outs = out if isinstance(out, tuple) else (out,)
        ember.realize(*outs)       # one graph, one plan
        got = [o.numpy() for o in outs]
    return got, [k.name for k in cap.kernels]


def fused(names):
    """One GEMM kernel ran and it carried the epilogue (nothing else ran)."""
    return len(names) == 1 and names[0].startswith("gemm_") and names[0].count("_") > 1


# sizes around the register tile: full tiles, a ragged last row panel / column sliver, fewer rows
# (one row is a matrix-vector product: a loop nest, not the template)
# or columns than one tile
dims = st.sampled_from([2, 3, CFG.mr - 1, CFG.mr, CFG.mr + 1, 2 * CFG.mr + 3, 64, 100])
cols = st.sampled_from([5, CFG.nr - 1, CFG.nr, CFG.nr + 3, 3 * CFG.nr, 70, 129])
ks = st.sampled_from([16, 33, 64, 300])


def big_enough(M, N, K):
    """K raised until the product is large enough for the GEMM template (else a fused loop nest)."""
    return max(K, -(-(1 << 18) // (2 * M * N)))


ACTIVATIONS = {   # name: (ember, numpy, fused: only ops the vector epilogue renders)
    "relu": (lambda z: z.relu(), lambda z: np.maximum(z, 0), True),
    "leaky-relu": (lambda z: F.leaky_relu(z, 0.1), lambda z: np.where(z > 0, z, 0.1 * z), True),
    "scale-clamp": (lambda z: (z * 0.5).clamp(-1, 2), lambda z: np.clip(z * 0.5, -1, 2), True),
    "gelu-tanh": (lambda z: F.gelu(z, approximate="tanh"),
                  lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3))), False),
    "sigmoid": (lambda z: z.sigmoid(), lambda z: 1 / (1 + np.exp(-z)), False),
}


@settings(max_examples=25, deadline=None)
@given(M=dims, N=cols, K=ks, act=st.sampled_from(sorted(ACTIVATIONS)), dt=st.sampled_from([np.float32, np.float64]))
def test_linear_bias_activation(M, N, K, act, dt):
    K = big_enough(M, N, K)
    x, w, b = (rng.standard_normal(s).astype(dt) for s in ((M, K), (N, K), (N,)))
    f, ref, vector = ACTIVATIONS[act]
    (got,), names = run(lambda x, w, b: f(x @ w.T + b), x, w, b)
    want = ref(x.astype(np.float64) @ w.T.astype(np.float64) + b)
    tol = 1e-4 if dt == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.sqrt(K))
    assert fused(names) == vector, names


@settings(max_examples=15, deadline=None)
@given(T=st.integers(1, 4), M=dims, N=cols, K=ks)
def test_batched_residual(T, M, N, K):
    """bmm + a residual of the output's shape + a per-column scale: the batch role in the epilogue."""
    K = big_enough(T * M, N, K)
    a, b, r, s = (rng.standard_normal(sh).astype(np.float32) for sh in ((T, M, K), (T, K, N), (T, M, N), (N,)))
    (got,), names = run(lambda a, b, r, s: (a @ b) * s + r, a, b, r, s)
    want = np.matmul(a.astype(np.float64), b) * s + r
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))
    assert fused(names), names


def test_two_outputs_and_views():
    """Pre-activation and activation both kept (two outputs); a bias read through a transposed view."""
    x, w = rng.standard_normal((70, 96)).astype(np.float32), rng.standard_normal((96, 45)).astype(np.float32)
    bias = rng.standard_normal((45, 1)).astype(np.float32)
    (z, h), names = run(lambda x, w, bias: ((x @ w + bias.T).contiguous(), (x @ w + bias.T).relu()), x, w, bias)
    want = x.astype(np.float64) @ w + bias.T
    np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h, np.maximum(want, 0), rtol=1e-4, atol=1e-4)


def test_a_product_asked_for_is_stored():
    """The product realized together with a value reading it: C must be stored, so no epilogue."""
    x, w = rng.standard_normal((64, 96)).astype(np.float32), rng.standard_normal((96, 64)).astype(np.float32)
    (p, h), names = run(lambda x, w: (x @ w, (x @ w - 1).relu()), x, w)
    want = x.astype(np.float64) @ w
    np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h, np.maximum(want - 1, 0), rtol=1e-4, atol=1e-4)


def test_reading_other_elements_is_not_fused():
    """A consumer reading the product at other elements (another tile's values) must not be an
    epilogue: rows flipped (contiguous along the columns, so only the element check stops it) and
    columns flipped."""
    x, w = rng.standard_normal((64, 96)).astype(np.float32), rng.standard_normal((96, 64)).astype(np.float32)
    p = x.astype(np.float64) @ w
    for axis in (0, 1):
        (got,), names = run(lambda x, w: (x @ w) + (x @ w).flip(axis), x, w)
        np.testing.assert_allclose(got, p + np.flip(p, axis), rtol=1e-4, atol=1e-4)
        assert not fused(names)


def test_optimizer_like_update_stays_a_separate_kernel():
    """Adam's update does not all fit an epilogue: its moments read and write four matrices beside C
    (at most templates.EPILOGUE_MAX_MATRICES fit), its parameter update takes a square root (not
    among the ops the micro-kernel renders). What does not fit is a kernel of its own; the values
    are right either way."""
    g, d, p, m, v = (rng.standard_normal(s).astype(np.float32) for s in ((96, 64), (64, 80), (96, 80), (96, 80), (96, 80)))
    v = np.abs(v)

    def step(g, d, p, m, v):
        gr = g @ d
        m2 = m * 0.9 + gr * 0.1
        v2 = v * 0.99 + gr * gr * 0.01
        return p - 0.01 * m2 / (v2.sqrt() + 1e-8), m2, v2
    (p2, m2, v2), names = run(step, g, d, p, m, v)
    gr = g.astype(np.float64) @ d
    wm, wv = m * 0.9 + gr * 0.1, v * 0.99 + gr * gr * 0.01
    np.testing.assert_allclose(m2, wm, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(v2, wv, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(p2, p - 0.01 * wm / (np.sqrt(wv) + 1e-8), rtol=1e-4, atol=1e-4)
    assert len(names) == 2 and names[0].startswith("gemm_1x96x80x64") and not names[1].startswith("gemm")


def test_mlp_gradients_match_torch():
    """Forward epilogues (bias + ReLU) and backward ones (the ReLU mask on dX) in a training graph."""
    x = rng.standard_normal((50, 40)).astype(np.float32)
    params = [rng.standard_normal(s).astype(np.float32) * 0.2 for s in ((64, 40), (64,), (30, 64), (30,))]
    ep = [ember.tensor(a, requires_grad=True) for a in params]
    tp = [torch.tensor(a, requires_grad=True) for a in params]
    for lib, ps, xx in ((ember, ep, ember.tensor(x)), (torch, tp, torch.tensor(x))):
        h = (xx @ ps[0].T + ps[1]).relu()
        ((h @ ps[2].T + ps[3]).relu() ** 2).sum().backward()
    for e, t in zip(ep, tp):
        np.testing.assert_allclose(e.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(B=st.integers(2, 5), T=st.sampled_from([7, 16, 33]), N=cols)
def test_rows_over_batch_and_sequence(B, T, N):
    """A linear layer over (batch, sequence, features) with a residual-free bias + ReLU: the product's
    rows span two axes, split back per row inside the epilogue (tiles straddle batch boundaries)."""
    K = big_enough(B * T, N, 48)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((B, T, K), (N, K), (N,)))
    (got,), names = run(lambda x, w, b: (x @ w.T + b).relu(), x, w, b)
    want = np.maximum(x.astype(np.float64) @ w.T + b, 0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))
    assert fused(names), names
