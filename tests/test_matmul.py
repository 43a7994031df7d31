"""matmul / @ / mm / bmm / dot / mv / outer / inner: values against numpy, PyTorch's rules for 1-D
operands and batch broadcasting, errors against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

import ember
from ember.compiler import toposort
from test_movement import SETTINGS, check, et, make, same_error, shapes, tt

MATMUL_DTYPES = ["float32", "float64", "float16", "bfloat16", "int32", "int64"]


def np_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The exact product in float64 (or int64), cast back to the operands' dtype."""
    wide = np.float64 if a.dtype.kind == "f" or a.dtype.name == "bfloat16" else np.int64
    return np.matmul(a.astype(wide), b.astype(wide))


def tol_for(dtype: str, k: int, a: np.ndarray, b: np.ndarray):
    if dtype not in ("float16", "bfloat16"):
        return None
    scale = float(np.abs(a.astype(np.float64)).max(initial=0) * np.abs(b.astype(np.float64)).max(initial=0))
    eps = 1e-3 if dtype == "float16" else 8e-3
    return (eps * 2, eps * 2 * scale * max(k, 1))


@st.composite
def matmul_shapes(draw):
    """Operand shapes PyTorch accepts: 1-D or N-D, batch dims broadcasting, any size including 0."""
    n, k, m = (draw(st.integers(0, 4)) for _ in range(3))
    batch = draw(shapes(0, 2, 0, 3))
    ba = tuple(s if draw(st.booleans()) else 1 for s in batch)[draw(st.integers(0, len(batch))):]
    bb = tuple(s if draw(st.booleans()) else 1 for s in batch)[draw(st.integers(0, len(batch))):]
    a = (k,) if draw(st.integers(0, 3)) == 0 else ba + (n, k)
    b = (k,) if draw(st.integers(0, 3)) == 0 else bb + (k, m)
    return a, b


@SETTINGS
@given(st.data())
def test_matmul_matches_numpy_with_broadcast_batches(data):
    dtype = data.draw(st.sampled_from(MATMUL_DTYPES))
    sa, sb = data.draw(matmul_shapes())
    a, b = make(sa, dtype, seed=1), make(sb, dtype, seed=2)
    x, y = et(a), et(b)
    if data.draw(st.booleans()) and b.ndim >= 2:  # right operand as a transposed view
        y = et(np.ascontiguousarray(np.swapaxes(b, -1, -2))).mT
    want = np_matmul(a, b)
    tol = tol_for(dtype, sa[-1], a, b)
    assert tuple((tt(a) @ tt(b)).shape) == want.shape
    check(x @ y, want, dtype=dtype, tol=tol)
    check(ember.matmul(x, y), want, dtype=dtype, tol=tol)
    check(x.matmul(y), want, dtype=dtype, tol=tol)


@SETTINGS
@given(st.data())
def test_mm_bmm_mv_dot_outer_inner(data):
    dtype = data.draw(st.sampled_from(MATMUL_DTYPES))
    n, k, m, bt = (data.draw(st.integers(0, 4)) for _ in range(4))
    a, b = make((n, k), dtype, seed=1), make((k, m), dtype, seed=2)
    check(ember.mm(et(a), et(b)), np_matmul(a, b), dtype=dtype, tol=tol_for(dtype, k, a, b))
    ab, bb = make((bt, n, k), dtype, seed=3), make((bt, k, m), dtype, seed=4)
    check(et(ab).bmm(et(bb)), np_matmul(ab, bb), dtype=dtype, tol=tol_for(dtype, k, ab, bb))
    v, w = make((k,), dtype, seed=5), make((k,), dtype, seed=6)
    check(et(a).mv(et(v)), np_matmul(a, v), dtype=dtype, tol=tol_for(dtype, k, a, v))
    check(ember.dot(et(v), et(w)), np_matmul(v, w), dtype=dtype, tol=tol_for(dtype, k, v, w))
    check(et(v).outer(et(w)), np.outer(v.astype(np.float64), w.astype(np.float64)).astype(v.dtype)
          if dtype in ("float16", "bfloat16") else np.outer(v, w), dtype=dtype, tol=tol_for(dtype, 1, v, w))
    check(ember.inner(et(a), et(make((m, k), dtype, seed=7))), np_matmul(a, make((m, k), dtype, seed=7).T),
          dtype=dtype, tol=tol_for(dtype, k, a, a))


def test_outer_promotes_dtypes_like_torch():
    a, b = np.arange(3), np.linspace(0, 1, 4).astype(np.float32)
    want = torch.outer(tt(a), tt(b))
    check(ember.outer(et(a), et(b)), want.numpy(), dtype="float32")


def test_rmatmul_with_a_numpy_left_operand():
    a, b = make((2, 3), "float32", seed=1), make((3, 4), "float32", seed=2)
    got = ember.Tensor.__rmatmul__(et(b), a)
    check(got, a @ b)


def test_zero_size_contraction_gives_zeros():
    check(ember.zeros(2, 0) @ ember.zeros(0, 3), np.zeros((2, 3), np.float32))
    check(ember.zeros(0) @ ember.zeros(0), np.zeros((), np.float32))


def test_contracted_axis_is_last_in_the_generated_reduction():
    a, b = make((2, 3, 5)), make((5, 4))
    out = et(a) @ et(b)
    (red,) = [n for n in toposort([out.node]) if n.op == "sum"]
    src = red.srcs[0]
    assert src.shape == (2, 3, 4, 5) and red.arg == (3,)
    check(out, a.astype(np.float64) @ b.astype(np.float64))


@pytest.mark.parametrize("call", [
    lambda m: m.zeros(3) @ m.zeros(4),
    lambda m: m.zeros(2, 3) @ m.zeros(4, 5),
    lambda m: m.zeros(2, 3) @ m.zeros(4),
    lambda m: m.zeros(3) @ m.zeros(4, 5),
    lambda m: m.zeros(2, 2, 3) @ m.zeros(3, 2, 5),
    lambda m: m.zeros(2, 3) @ m.zeros(3, 4, dtype=m.float64),
    lambda m: m.zeros(2, 3, dtype=m.bool) @ m.zeros(3, 4, dtype=m.bool),
    lambda m: m.tensor(1.0) @ m.zeros(3),
    lambda m: m.mm(m.zeros(3), m.zeros(3)),
    lambda m: m.mm(m.zeros(2, 3), m.zeros(4, 3)),
    lambda m: m.bmm(m.zeros(2, 2, 3), m.zeros(1, 3, 3)),
    lambda m: m.bmm(m.zeros(2, 3), m.zeros(3, 3)),
    lambda m: m.dot(m.zeros(2), m.zeros(3)),
    lambda m: m.dot(m.zeros(2, 1), m.zeros(2)),
    lambda m: m.dot(m.zeros(2), m.zeros(2, dtype=m.float64)),
    lambda m: m.mv(m.zeros(2, 3), m.zeros(2)),
    lambda m: m.outer(m.zeros(2, 2), m.zeros(3)),
])
def test_matmul_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


def test_matmul_shape_errors_name_both_shapes():
    with pytest.raises(ember.ShapeError, match=r"\[2, 3\].*\[4, 5\]"):
        ember.zeros(2, 3) @ ember.zeros(4, 5)
    with pytest.raises(ember.ShapeError, match=r"\[2, 2, 3\].*\[3, 2, 5\]"):
        ember.zeros(2, 2, 3) @ ember.zeros(3, 2, 5)
