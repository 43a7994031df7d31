"""Kernels of the tiny-GPT training step (benchmarks/training.py) that had their own slow paths:
values against numpy, and the loop structure (from the kernel IR) that makes them fast."""
import numpy as np
from hypothesis import given, settings, strategies as st

import ember


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 9), st.integers(1, 20), st.integers(1, 40), st.integers(0, 2**31))
def test_column_sums_of_differently_permuted_views_share_a_kernel(b, s, d, seed):
    """A bias gradient summed over a (seq, batch, d) view next to LayerNorm's weight gradient
    summed over (batch, seq, d): same output shape, different sources. Each group of outputs
    accumulates into its outputs with contiguous loads (no strided reduction loop)."""
    rng = np.random.default_rng(seed)
    g, xh, h = (rng.standard_normal((b, s, d)).astype(np.float32) for _ in range(3))
    tg, txh, th = (ember.tensor(a) for a in (g, xh, h))
    with ember.debug.capture() as cap:
        dw, db, dh = (tg * txh).sum((0, 1)), tg.sum((0, 1)), (th.permute(1, 0, 2) * 2).sum((0, 1))
        ember.realize(dw, db, dh)
    for got, want in ((dw, (g.astype(np.float64) * xh).sum((0, 1))), (db, g.sum((0, 1), dtype=np.float64)),
                      (dh, 2 * h.sum((0, 1), dtype=np.float64))):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)
    if b * s >= 16 and d > 1:
        [k] = [k for k in cap.kernels if k.name.startswith("r_")]
        ir = k.source("ir")
        assert "# reduce" not in ir, ir       # every sum accumulates into its output


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 12), st.integers(2, 40), st.integers(8, 70), st.integers(8, 70), st.integers(0, 2**31))
def test_weight_gradient_over_seq_major_tokens_sums_in_memory_order(b, s, d1, d2, seed):
    """dW = g^T x summed over tokens taken in (seq, batch) order (what attention's batch_first
    transposes produce): k is summed, so the GEMM may run over the tokens in memory order, where
    each operand's two token axes fold into one plain stride."""
    rng = np.random.default_rng(seed)
    g, x = rng.standard_normal((b, s, d2)).astype(np.float32), rng.standard_normal((b, s, d1)).astype(np.float32)
    tg, tx = (ember.tensor(a).permute(1, 0, 2).reshape(s * b, -1) for a in (g, x))
    with ember.debug.capture() as cap:
        got = (tg.mT @ tx).numpy()
    want = np.einsum("bsi,bsj->ij", g.astype(np.float64), x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(b * s))
    gemms = [k.compiled.kernel for k in cap.kernels if k.name.startswith("gemm")]
    if 2 * b * s * d1 * d2 >= 1 << 18:
        [kern] = gemms
        assert isinstance(kern.a_strides[2], int) and isinstance(kern.b_strides[1], int), str(kern)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 5), st.integers(1, 40), st.integers(33, 64), st.integers(1, 70), st.booleans(),
       st.integers(1, 3), st.integers(0, 2**31))
def test_attention_scores_read_rows_of_q_in_place(batch, M, N, K, interleaved, nt, seed):
    """Q K^T (rows of Q with contiguous k's, up to 4 column slivers of C): the micro-kernel reads
    A in place instead of packing it; A^T views keep the packed path. Values against numpy for
    thread counts that split rows or columns."""
    from ember.compiler import dtypes as D
    from ember.kernels import gemm
    cfg = gemm.default_config(D.float32)
    n = min(N, 4 * cfg.nr)
    # heads side by side, as attention reads them from a (seq, batch*heads, head_dim) array
    sa = (K, batch * K, 1) if interleaved else (M * K, K, 1)
    sb = (K, 1, batch * K) if interleaved else (K * n, 1, K)
    spec = gemm._Spec("g", "float", 4, batch, M, n, K, sa, sb, 0, 0, cfg)
    assert spec.a_direct
    if K > 1 and M > 1:   # A^T: k's strided
        assert not gemm._Spec("g", "float", 4, batch, M, n, K, (M * K, 1, M), sb, 0, 0, cfg).a_direct
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(batch * M * K).astype(np.float32)
    b = rng.standard_normal(batch * K * n).astype(np.float32)
    va = np.lib.stride_tricks.as_strided(a, (batch, M, K), [4 * s for s in sa])
    vb = np.lib.stride_tricks.as_strided(b, (batch, K, n), [4 * s for s in sb])
    fn = gemm.compile_gemm(D.float32, batch, M, n, K, sa, sb)
    c = np.full(batch * M * n, np.nan, np.float32)
    for t in range(nt):
        fn(c.ctypes.data, a.ctypes.data, b.ctypes.data, t, nt)
    want = va.astype(np.float64) @ vb
    tol = (K + 2) * np.finfo(np.float32).eps * (np.abs(va).astype(np.float64) @ np.abs(vb)) + 1e-30
    assert (np.abs(c.reshape(want.shape) - want) <= tol).all()


def test_concatenated_sums_are_not_computed_at_padded_positions():
    """cat of three column sums (MultiheadAttention's in-projection bias gradient is
    cat(sum(dq), sum(dk), sum(dv))): each sum runs over its own 64 columns, not over the 192
    positions of the concatenation with masked loads."""
    xs = [np.random.default_rng(i).standard_normal((1024, 64)).astype(np.float32) for i in range(3)]
    with ember.debug.capture() as cap:
        got = ember.cat([(ember.tensor(x) * 3).sum(0) for x in xs]).numpy()
    np.testing.assert_allclose(got, np.concatenate([3 * x.astype(np.float64).sum(0) for x in xs]),
                               rtol=1e-4, atol=1e-3)
    for k in cap.kernels:
        ir = k.source("ir")
        assert not (" if " in ir and ("# reduce" in ir or "# serial" in ir)), ir


def test_multihead_attention_in_projection_gradients_match_torch():
    import torch
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    em = ember.nn.MultiheadAttention(32, 4, batch_first=True)
    em.load_state_dict({k: ember.tensor(v.detach().numpy().copy()) for k, v in tm.state_dict().items()})
    x = np.random.default_rng(1).standard_normal((8, 64, 32)).astype(np.float32)
    tx = torch.from_numpy(x)
    tm(tx, tx, tx, need_weights=False)[0].square().sum().backward()
    ex = ember.tensor(x)
    em(ex, ex, ex, need_weights=False)[0].square().sum().backward()
    for name in ("in_proj_bias", "in_proj_weight", "out_proj.bias"):
        want = dict(tm.named_parameters())[name].grad.numpy()
        got = dict(em.named_parameters())[name].grad.numpy()
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())


def test_reduce_loops_put_a_contiguous_one_innermost():
    """Reduced axes come in logical order; the loop a load steps through by 1 goes innermost
    (a sum over (seq, batch) of a batch-major array), and nothing moves otherwise."""
    from types import SimpleNamespace
    from ember.compiler.lower import _contiguous_last
    from ember.compiler.symbolic import Expr, Var
    s, b, c = Var("s", 0, 63), Var("b", 0, 15), Var("c", 0, 31)

    def load(terms):
        return SimpleNamespace(op="load", arg=(0, Expr(terms, 0), ()))
    loops = ((s, 64), (b, 16))
    assert _contiguous_last(loops, [load({s: 1, b: 8192, c: 64})]) == ((b, 16), (s, 64))
    assert _contiguous_last(loops, [load({s: 32, b: 1, c: 64})]) == loops          # already innermost
    assert _contiguous_last(loops, [load({s: 32, b: 8192, c: 1})]) == loops        # none contiguous
    assert _contiguous_last(((s, 64),), [load({s: 7})]) == ((s, 64),)
