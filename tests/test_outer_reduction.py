"""Reductions over outer axes (bias gradients, LayerNorm weight gradients, column sums) accumulate
into their output with the reduced axes outside: every load is contiguous and the loop vectorizes.
Values against numpy for random shapes, axes, ops and dtypes; the loop structure from the kernel IR."""
import numpy as np
from hypothesis import given, settings, strategies as st

import ember

OPS = {"sum": (lambda t, a: t.sum(a), lambda x, a: x.sum(a)),
       "amax": (lambda t, a: t.amax(a), lambda x, a: x.max(a)),
       "amin": (lambda t, a: t.amin(a), lambda x, a: x.min(a)),
       "prod": (lambda t, a: t.prod(a[0]) if len(a) == 1 else t.prod(a[0]).prod(a[1] - 1),
                lambda x, a: x.prod(a))}


@st.composite
def cases(draw):
    ndim = draw(st.integers(2, 4))
    shape = tuple(draw(st.integers(1, 40)) for _ in range(ndim))
    k = draw(st.integers(1, ndim - 1))            # reduce some leading axes, keep the rest
    axes = tuple(sorted(draw(st.sets(st.integers(0, ndim - 2), min_size=1, max_size=k))))
    return shape, axes


@settings(max_examples=25, deadline=None)
@given(cases(), st.sampled_from(sorted(OPS)), st.sampled_from(["float32", "float64", "int32"]), st.data())
def test_outer_reductions_match_numpy(case, op, dtype, data):
    shape, axes = case
    if op == "prod":
        axes = axes[:2] if len(axes) <= 2 and (len(axes) == 1 or axes[1] == axes[0] + 1) else axes[:1]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    if dtype == "int32":
        x = rng.integers(-3, 4, shape).astype(np.int32)
    else:
        x = rng.uniform(0.5, 1.5 if op == "prod" else 2.0, shape).astype(dtype)
    got = OPS[op][0](ember.tensor(x) * 1, axes).numpy()     # * 1: the reduction reads a fused value
    want = OPS[op][1](x.astype(np.float64) if dtype != "int32" else x.astype(np.int64), axes)
    np.testing.assert_allclose(got, want.astype(got.dtype), rtol=1e-5 if dtype == "float32" else 1e-12)


def test_bias_gradient_shape_accumulates_into_the_output_with_contiguous_loads():
    g = ember.randn(256, 512).realize()
    w = ember.randn(256, 512).realize()
    with ember.debug.capture() as cap:
        out = (g * w).sum(0).numpy()
    prod = g.numpy().astype(np.float64) * w.numpy()
    np.testing.assert_allclose(out, prod.sum(0), rtol=1e-4, atol=1e-6 * np.abs(prod).sum(0).max())
    [k] = cap.kernels
    ir = k.source("ir").splitlines()
    # the reduced axis is the outer, serial loop; the kept axis the inner loop split across threads
    r = next(i for i, ln in enumerate(ir) if "for r0 in 0..256  # serial" in ln)
    assert "for c1 in 0..512  # parallel" in ir[r + 1]
    assert any("load(p0[c1])" in ln for ln in ir[r:]) and any("store(" in ln and "p0[c1]" in ln for ln in ir[r:])


def test_several_outer_reductions_share_one_kernel():
    """A LayerNorm's weight and bias gradients: two column sums of one shape in one kernel, both
    accumulating into their outputs."""
    rng = np.random.default_rng(3)
    g, xh = rng.standard_normal((2, 16, 8, 64)).astype(np.float32)
    eg, ex = ember.tensor(g), ember.tensor(xh)
    with ember.debug.capture() as cap:
        dw, db = (eg * ex).sum((0, 1)), eg.sum((0, 1))
        ember.realize(dw, db)
    [k] = cap.kernels
    ir = k.source("ir")
    assert "# serial" in ir and "reduce(" not in ir and ir.count("store(") == 4   # 2 inits, 2 accumulations
    np.testing.assert_allclose(dw.numpy(), (g.astype(np.float64) * xh).sum((0, 1)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db.numpy(), g.astype(np.float64).sum((0, 1)), rtol=1e-4, atol=1e-4)
