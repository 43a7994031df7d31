"""Shared hypothesis strategies and reference helpers for ember's tests.

Arrays are drawn as numpy arrays (the independent reference data); `to_ember` turns one into an
ember tensor with a chosen memory layout (contiguous, or a permuted / strided / flipped view of a
larger buffer, built with the movement primitives), and `to_torch` into the torch reference.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ember
from ember.compiler import dtypes as D

FLOATS = [D.float32, D.float64, D.float16, D.bfloat16]
INTS = [D.int8, D.int16, D.int32, D.int64, D.uint8]
ALL = FLOATS + INTS + [D.bool_]
LAYOUTS = ["contiguous", "permuted", "strided", "flipped"]


def torch_dtype(dt: D.DType) -> torch.dtype:
    return getattr(torch, dt.name)


def ember_dtype(tdt: torch.dtype) -> D.DType:
    return D.by_name(str(tdt).removeprefix("torch."))


def shapes(min_dims=0, max_dims=4, min_side=0, max_side=5):
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcast_pair(max_dims=4):
    """Two shapes that broadcast together (some axes 1 or missing; sizes may be 0)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims, min_side=0,
                                             max_side=4).map(lambda r: r.input_shapes)


def elements(dt: D.DType, lo=None, hi=None, specials: bool = True, nonzero: bool = False, min_abs: float = 0):
    """Scalar values representable in `dt`; floats optionally include nan, +-inf and -0.0, and
    (with min_abs) no magnitudes in (0, min_abs)."""
    if dt is D.bool_:
        return st.booleans().filter(bool) if nonzero else st.booleans()
    if dt.is_int:
        info = np.iinfo(dt.np)
        s = st.integers(info.min if lo is None else max(lo, info.min), info.max if hi is None else min(hi, info.max))
        return s.filter(lambda v: v != 0) if nonzero else s
    width = {D.float16: 16, D.float64: 64}.get(dt, 32)
    lo = -1e4 if lo is None else lo
    hi = 1e4 if hi is None else hi
    s = st.floats(lo, hi, width=width, allow_subnormal=False).filter(lambda v: not 0 < abs(v) < min_abs)
    if specials:
        s = st.one_of(s, st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0]))
    return s.filter(lambda v: v != 0) if nonzero else s


def arrays(dt: D.DType, shape, **kw):
    """numpy arrays of ember dtype `dt` (bfloat16 via ml_dtypes; values rounded to it)."""
    store = np.float32 if dt is D.bfloat16 else dt.np
    return hnp.arrays(store, shape, elements=elements(dt, **kw)).map(lambda a: a.astype(dt.np))


def to_ember(arr: np.ndarray, layout: str = "contiguous") -> ember.Tensor:
    """An ember tensor equal to `arr`, stored as `layout` (views made with the movement primitives)."""
    if layout == "contiguous" or arr.ndim == 0:
        return ember.tensor(arr)
    if layout == "permuted":  # stored transposed, permuted back by a view
        order = tuple(reversed(range(arr.ndim)))
        return ember.tensor(np.ascontiguousarray(arr.transpose(order)))._apply("permute", arg=order)
    if layout == "strided":  # every other element of a buffer twice as long on the last axis
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1] + 1,), dtype=arr.dtype)
        big[..., 1::2] = arr
        arg = tuple((0, 1, n) for n in arr.shape[:-1]) + ((1, 2, arr.shape[-1]),)
        return ember.tensor(big)._apply("slice", arg=arg)
    if layout == "flipped":  # stored reversed on axis 0, flipped back by a negative-step slice
        n = arr.shape[0]
        arg = ((n - 1, -1, n) if n else (0, 1, 0),) + tuple((0, 1, m) for m in arr.shape[1:])
        return ember.tensor(np.ascontiguousarray(arr[::-1]))._apply("slice", arg=arg)
    raise ValueError(layout)


def to_torch(arr) -> torch.Tensor:
    arr = np.asarray(arr)
    if arr.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(arr.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(arr, order="C", copy=True))


def torch_to_numpy(t: torch.Tensor) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        return t.float().numpy().astype(ml_dtypes.bfloat16)
    return t.numpy()


# a few ulps of each float type: composites round once, but libm and PyTorch's vector math differ
# in the last bit
RTOL = {D.float32: 1e-5, D.float64: 1e-12, D.float16: 2e-3, D.bfloat16: 1.6e-2}
ATOL = {D.float32: 1e-6, D.float64: 1e-12, D.float16: 1e-3, D.bfloat16: 1e-2}


def assert_matches(got: ember.Tensor, want, rtol=None, atol=None) -> None:
    """`got` has the reference's dtype and shape, and equal values (close for floats; NaN where
    the reference has NaN). `want` is a torch tensor or a numpy array."""
    if isinstance(want, torch.Tensor):
        assert got.dtype is ember_dtype(want.dtype), (got.dtype, want.dtype)
        want = torch_to_numpy(want)
    else:
        assert got.dtype is D.from_numpy(want.dtype), (got.dtype, want.dtype)
    assert tuple(got.shape) == want.shape, (tuple(got.shape), want.shape)
    g = got.numpy()
    assert g.dtype == want.dtype and g.shape == want.shape
    if got.dtype.is_float:
        np.testing.assert_allclose(g.astype(np.float64), want.astype(np.float64), equal_nan=True,
                                   rtol=RTOL[got.dtype] if rtol is None else rtol,
                                   atol=ATOL[got.dtype] if atol is None else atol)
    else:
        np.testing.assert_array_equal(g, want)


def same_error(ember_call, torch_call):
    """Run the torch call; if it raises, ember must raise the same exception class (or a subclass).
    Returns (ember result, torch result) when neither raises."""
    try:
        want = torch_call()
    except Exception as e:  # noqa: BLE001 - any torch error is the specification
        try:
            ember_call()
        except type(e):
            return None
        raise AssertionError(f"ember did not raise {type(e).__name__} ({e})")
    return ember_call(), want
