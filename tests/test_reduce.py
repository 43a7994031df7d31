"""Reductions: values against numpy (float64 references), result shapes/dtypes and errors against
PyTorch, for random shapes (0-size and 0-dim included), dims (int, tuple, None, negative), keepdim,
non-contiguous views and every dtype each op supports."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import ember
from test_movement import (ALL_DTYPES, DTYPES, FLOAT_DTYPES, SETTINGS, check, et, make, same_error, tt,
                           viewed)


def torch_dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


@st.composite
def dim_spec(draw, ndim: int, allow_tuple: bool = True):
    """None, an int, or (if allowed) a tuple of distinct dims; negative dims included."""
    choices = ["none", "int"] + (["tuple"] if allow_tuple else [])
    kind = draw(st.sampled_from(choices)) if ndim else "none"
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    dims = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(d - ndim if draw(st.booleans()) else d for d in dims)


def np_axis(dim, ndim):
    if dim is None or dim == ():
        return tuple(range(ndim))
    return (dim % ndim,) if isinstance(dim, int) else tuple(d % ndim for d in dim)


def scale_tol(dtype: str, ref: np.ndarray, n: int):
    """Tolerance for a reduction of n terms: half types round every partial result."""
    mag = float(np.max(np.abs(ref))) if ref.size else 1.0
    if dtype in ("float16", "bfloat16"):
        eps = 1e-3 if dtype == "float16" else 8e-3
        return (eps * 4, eps * (mag + 1) * max(1, n) ** 0.5 * 4)
    return None


# ---- sum / mean / prod / amax / amin / all / any ---------------------------------------------

@SETTINGS
@given(st.data())
def test_sum_prod_amax_amin_all_any(data):
    dtype = data.draw(st.sampled_from(ALL_DTYPES))
    x, a = data.draw(viewed(dtype, max_dims=4))
    dim = data.draw(dim_spec(a.ndim))
    keep = data.draw(st.booleans())
    axis = np_axis(dim, a.ndim)
    ta = tt(a)
    tdim = dim if dim is not None else ()
    a64 = a.astype(np.float64) if dtype in FLOAT_DTYPES else a.astype(np.int64)
    n = int(np.prod([a.shape[i] for i in axis])) if a.ndim else 1

    want = np.sum(a64, axis=axis, keepdims=keep)
    ts = ta.sum(dim, keepdim=keep)
    check(x.sum(dim, keep), want, dtype=torch_dtype_name(ts), tol=scale_tol(dtype, want, n))
    if dim is None and not keep:
        check(x.sum(), want, dtype=torch_dtype_name(ts), tol=scale_tol(dtype, want, n))

    wantb = np.all(a != 0, axis=axis, keepdims=keep)
    tb = ta.all(dim, keepdim=keep)
    check(x.all(dim, keep), wantb, dtype=torch_dtype_name(tb))
    wantb = np.any(a != 0, axis=axis, keepdims=keep)
    check(ember.any(x, dim, keep), wantb, dtype=torch_dtype_name(tb))

    if a.ndim and all(a.shape[i] for i in axis) and (a.size or dim is not None):
        for fn, ref in (("amax", np.max), ("amin", np.min)):
            tw = getattr(ta, fn)(tdim, keepdim=keep)
            check(getattr(x, fn)(dim if dim is not None else (), keep), ref(a, axis=axis, keepdims=keep).reshape(tw.shape),
                  dtype=dtype)

    if dim is None or isinstance(dim, int):
        tp = ta.prod(dim, keepdim=keep) if dim is not None else ta.prod()
        wp = np.prod(a64, axis=axis, keepdims=keep).reshape(tp.shape)
        check(x.prod(dim, keep) if dim is not None else x.prod(), wp, dtype=torch_dtype_name(tp),
              tol=scale_tol(dtype, wp, n) if dtype in FLOAT_DTYPES else None)


@SETTINGS
@given(st.data())
def test_mean_var_std(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES))
    x, a = data.draw(viewed(dtype, max_dims=4))
    dim = data.draw(dim_spec(a.ndim))
    keep = data.draw(st.booleans())
    corr = data.draw(st.sampled_from([None, 0, 1, 2]))
    axis = np_axis(dim, a.ndim)
    a64 = a.astype(np.float64)
    n = int(np.prod([a.shape[i] for i in axis])) if a.ndim else 1
    with np.errstate(all="ignore"):
        mean = np.mean(a64, axis=axis, keepdims=keep) if n else np.full(
            np.sum(a64, axis=axis, keepdims=keep).shape, np.nan)
        ddof = 1 if corr is None else corr
        dev = a64 - np.mean(a64, axis=axis, keepdims=True) if n else a64
        var = np.sum(dev * dev, axis=axis, keepdims=keep) / max(0, n - ddof)
    tol = scale_tol(dtype, mean, n)
    check(x.mean(dim, keep), mean, dtype=dtype, tol=tol)
    kw = {} if corr is None else {"correction": corr}
    vtol = (tol[0], tol[1] * (np.nanmax(np.abs(a64)) + 1) * 2) if tol and a.size else tol
    check(x.var(dim, keepdim=keep, **kw), var, dtype=dtype, tol=vtol)
    check(ember.std(x, dim, keepdim=keep, **kw), np.sqrt(var), dtype=dtype, tol=vtol)
    v, m = ember.var_mean(x, dim, keepdim=keep, **kw)
    check(v, var, dtype=dtype, tol=vtol)
    check(m, mean, dtype=dtype, tol=tol)


def test_var_unbiased_positional_and_legacy_forms():
    a = make((3, 4), "float64")
    x = et(a)
    check(x.var(1, False), np.var(a, 1))
    check(x.var(False), np.var(a))
    check(x.std(0, True, True), np.std(a, 0, ddof=1, keepdims=True))
    check(x.var(unbiased=False), np.var(a))


# ---- max / min / argmax / argmin -------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_max_min_with_dim_return_values_and_first_indices(data):
    dtype = data.draw(st.sampled_from(["float32", "float64", "int32", "int8", "uint8", "float16", "bfloat16"]))
    x, a = data.draw(viewed(dtype, min_dims=1, max_dims=3, min_side=1))
    if dtype.startswith("float") or dtype == "bfloat16":
        a = np.round(a.astype(np.float64)).astype(a.dtype)  # ties on purpose
        x = et(a)
    d = data.draw(st.integers(-a.ndim, a.ndim - 1))
    keep = data.draw(st.booleans())
    r = x.max(d, keep)
    check(r.values, np.max(a, d, keepdims=keep), dtype=dtype)
    check(r.indices, np.argmax(a, d, keepdims=keep), dtype="int64")
    values, indices = ember.min(x, d, keepdim=keep)
    check(values, np.min(a, d, keepdims=keep), dtype=dtype)
    check(indices, np.argmin(a, d, keepdims=keep), dtype="int64")
    check(x.argmax(d, keep), np.argmax(a, d, keepdims=keep))
    check(x.argmin(d), np.argmin(a, d))
    check(x.argmax(), np.argmax(a))
    check(x.argmin(keepdim=True), np.argmin(a).reshape((1,) * a.ndim))
    check(x.max(), np.max(a), dtype=dtype)
    check(ember.min(x), np.min(a), dtype=dtype)


def test_nan_propagates_through_max_min_and_is_the_argmax():
    a = np.array([[1.0, np.nan, 3.0, np.nan], [2.0, 2.0, 1.0, 1.0]], np.float32)
    x = et(a)
    t = tt(a)
    for got, want in [(x.max(1), t.max(1)), (x.min(1), t.min(1))]:
        check(got.values, want.values.numpy())
        check(got.indices, want.indices.numpy())
    check(x.amax(1), t.amax(1).numpy())
    check(x.argmax(), np.argmax(a))
    check(x.argmin(1), t.argmin(1).numpy())
    check(x.max(), np.array(np.nan, np.float32))


def test_max_of_bool_and_zero_dim():
    a = np.array([False, True, True])
    r = et(a).max(0)
    check(r.values, np.array(True), dtype="bool")
    check(r.indices, np.array(1))
    s = et(np.array(2.5, np.float32))
    check(s.max(0).values, np.array(2.5, np.float32))
    check(s.max(0).indices, np.array(0))
    check(s.argmax(0), np.array(0))
    check(s.sum(0), np.array(2.5, np.float32))
    check(s.softmax(0), np.array(1.0, np.float32))


# ---- logsumexp / softmax / log_softmax -------------------------------------------------------

def np_logsumexp(a, axis, keepdims):
    m = np.max(a, axis=axis, keepdims=True) if a.size else np.zeros([1] * a.ndim)
    m = np.where(np.isfinite(m), m, 0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis)


@SETTINGS
@given(st.data())
def test_softmax_log_softmax_logsumexp_are_stable(data):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES))
    x, a = data.draw(viewed(dtype, min_dims=1, max_dims=3))
    big = data.draw(st.sampled_from([1.0, 30.0]))  # x*30 overflows exp in float16 without the shift
    if big != 1:
        a = (a.astype(np.float64) * big).astype(a.dtype)
        x = et(a)
    a64 = a.astype(np.float64)
    d = data.draw(st.integers(-a.ndim, a.ndim - 1))
    lse = np_logsumexp(a64, (d % a.ndim,), True)
    tol = {"float16": (5e-3, 5e-3), "bfloat16": (3e-2, 3e-2)}.get(dtype)
    ltol = (tol[0], tol[1] * (1 + np.max(np.abs(a64), initial=0))) if tol else None
    check(x.softmax(d), np.exp(a64 - lse), dtype=dtype, tol=tol)
    check(ember.log_softmax(x, d), a64 - lse, dtype=dtype, tol=ltol)
    keep = data.draw(st.booleans())
    check(x.logsumexp(d, keep), lse if keep else np.squeeze(lse, d % a.ndim), dtype=dtype, tol=ltol)
    check(x.softmax(d, dtype=ember.float64), np.exp(a64 - lse), dtype="float64",
          tol=tol and (tol[0], tol[1]))


def test_softmax_extremes_match_torch():
    a = np.array([[-np.inf, -np.inf], [np.inf, 1.0], [1000.0, -1000.0], [0.0, 0.0]], np.float32)
    for fn in ("softmax", "log_softmax"):
        want = getattr(tt(a), fn)(1).numpy()
        np.testing.assert_array_equal(np.isnan(getattr(et(a), fn)(1).numpy()), np.isnan(want))
        check(getattr(et(a[2:]), fn)(1), want[2:])
    check(et(a).logsumexp(1), tt(a).logsumexp(1).numpy())
    check(et(np.zeros((2, 0), np.float32)).logsumexp(1), np.full(2, -np.inf, np.float32))
    check(et(np.arange(4)).logsumexp(0), tt(np.arange(4)).logsumexp(0).numpy(), dtype="float32")


# ---- cumsum / cumprod / norm -----------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_cumsum_cumprod(data):
    dtype = data.draw(st.sampled_from(ALL_DTYPES))
    x, a = data.draw(viewed(dtype, min_dims=1, max_dims=3, max_side=5))
    d = data.draw(st.integers(-a.ndim, a.ndim - 1))
    acc = np.float64 if dtype in FLOAT_DTYPES else np.int64
    want_t = tt(a).cumsum(d)
    ws = np.cumsum(a.astype(acc), d)
    check(x.cumsum(d), ws, dtype=torch_dtype_name(want_t), tol=scale_tol(dtype, ws, a.shape[d]))
    wp = np.cumprod(a.astype(acc), d)
    check(ember.cumprod(x, d), wp, dtype=torch_dtype_name(want_t),
          tol=scale_tol(dtype, wp, a.shape[d]) if dtype in FLOAT_DTYPES else None)
    check(x.cumsum(d, dtype=ember.float64), np.cumsum(a.astype(np.float64), d), dtype="float64",
          tol=(1e-2, 1e-2) if dtype == "bfloat16" else None)


@SETTINGS
@given(st.data())
def test_vector_norms(data):
    x, a = data.draw(viewed("float64", min_dims=1, max_dims=3, min_side=1))
    dim = data.draw(dim_spec(a.ndim))
    axis = np_axis(dim, a.ndim)
    keep = data.draw(st.booleans())
    p = data.draw(st.sampled_from(["fro", 2, 1, math.inf, -math.inf, 0, 3.0]))
    flat = np.moveaxis(a, axis, tuple(range(-len(axis), 0))).reshape(a.shape[:0] + tuple(
        n for i, n in enumerate(a.shape) if i not in axis) + (-1,))
    ordp = 2 if p == "fro" else p
    want = np.linalg.norm(flat, ord=ordp, axis=-1)
    if keep:
        want = want.reshape([1 if i in axis else n for i, n in enumerate(a.shape)])
    check(x.norm(p, dim, keep), want)


# ---- structure: adjacent reduced axes merge into one ------------------------------------------

def _reduce_nodes(t: ember.Tensor):
    from ember.compiler import toposort
    return [n for n in toposort([t.node]) if n.op in ("sum", "prod", "rmax", "rmin")]


def test_adjacent_reduced_axes_become_one_loop():
    a = make((2, 3, 4, 5), "float64")
    y = et(a).sum((1, 2))
    (node,) = _reduce_nodes(y)
    assert node.arg == (1,) and node.srcs[0].shape == (2, 12, 5)
    check(y, a.sum((1, 2)))
    z = et(a).amax((0, 1, 3))
    (node,) = _reduce_nodes(z)
    assert node.arg == (0, 2)
    check(z, a.max((0, 1, 3)))


# ---- dtypes and errors -----------------------------------------------------------------------

def test_sum_dtype_argument_and_accumulation_types():
    a = make((3, 4), "int8", high=100)
    check(et(a).sum(), np.sum(a.astype(np.int64)), dtype="int64")
    check(et(a).sum(dtype=ember.int8), np.sum(a, dtype=np.int8), dtype="int8")
    check(et(a).sum(1, dtype=ember.float64), a.astype(np.float64).sum(1), dtype="float64")
    check(et(a > 0).sum(0), (a > 0).sum(0), dtype="int64")
    check(et(a).mean(dtype=ember.float64), a.astype(np.float64).mean(), dtype="float64")
    check(et(a.astype(np.uint8)).all(0), (a != 0).all(0).astype(np.uint8), dtype="uint8")
    check(et(a).count_nonzero(1), np.count_nonzero(a, 1))
    check(et(a).nansum(), np.sum(a.astype(np.int64)))
    f = np.array([1.0, np.nan, 2.0], np.float32)
    check(et(f).nansum(), np.float32(3.0))


def test_empty_reductions_give_identities():
    a = np.zeros((2, 0), np.float32)
    x = et(a)
    check(x.sum(1), np.zeros(2, np.float32))
    check(x.prod(1), np.ones(2, np.float32))
    check(x.mean(1), np.full(2, np.nan, np.float32))
    check(x.all(1), np.ones(2, bool))
    check(x.any(), np.array(False))
    check(x.max(0).values, np.zeros((0,), np.float32))
    check(x.cumsum(1), a)


@pytest.mark.parametrize("call", [
    lambda m: m.zeros(3, dtype=m.int64).mean(),
    lambda m: m.zeros(3, dtype=m.bool).mean(),
    lambda m: m.zeros(0, 3).max(),
    lambda m: m.zeros(0, 3).max(0),
    lambda m: m.zeros(0, 3).amax(0),
    lambda m: m.zeros(0, 3).amax(),
    lambda m: m.zeros(0, 3).argmax(),
    lambda m: m.zeros(0, 3).argmin(0),
    lambda m: m.zeros(3, dtype=m.bool).argmax(),
    lambda m: m.zeros(3, dtype=m.int64).var(),
    lambda m: m.zeros(3, dtype=m.int64).std(0),
    lambda m: m.zeros(3, dtype=m.int64).softmax(0),
    lambda m: m.zeros(3, dtype=m.bool).log_softmax(0),
    lambda m: m.zeros(2, 3).sum((0, 0)),
    lambda m: m.zeros(2, 3).sum((0, -2)),
    lambda m: m.zeros(2, 3).sum(2),
    lambda m: m.zeros(2, 3).mean(-3),
    lambda m: m.zeros(2, 3).max(dim=(0, 1)),
    lambda m: m.zeros(2, 3).prod(dim=(0, 1)),
    lambda m: m.zeros(2, 3).softmax(2),
    lambda m: m.zeros(2, 3).cumsum(2),
    lambda m: m.zeros(0, 3).norm(float("inf")),
    lambda m: m.zeros(2, 3, dtype=m.int64).norm(),
    lambda m: m.zeros(0, 3).aminmax(),
])
def test_reduction_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


def test_reductions_are_lazy_and_raise_eagerly():
    x = ember.ones(3, 4)
    y = x.sum(1)
    assert y.node.op != "buffer"  # nothing ran yet
    with pytest.raises(IndexError):
        x.sum(5)
    assert DTYPES["float32"][0] is y.dtype
