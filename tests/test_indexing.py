"""__getitem__/__setitem__ and gather/index_select/take_along_dim/masked_fill.

Values are checked against numpy where numpy and PyTorch agree (basic indexing, masks) and against
PyTorch where they differ (an int next to advanced indices is a basic index in PyTorch, an advanced
one in numpy); error types against PyTorch.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, strategies as st

import ember
from test_movement import ALL_DTYPES, SETTINGS, check, et, make, np_of, same_error, shapes, tt, viewed


# ---- strategies ------------------------------------------------------------------------------

@st.composite
def basic_index(draw, shape):
    """A tuple of ints, positive-step slices, None and at most one Ellipsis for `shape`."""
    items, d, ellipsis = [], 0, False
    while d < len(shape):
        # after an Ellipsis the remaining items must reach the last dim
        kind = draw(st.sampled_from(["int", "slice", "slice", "none"] + ([] if ellipsis else ["ellipsis", "stop"])))
        n = shape[d]
        if kind == "int" and n:
            items.append(draw(st.integers(-n, n - 1)))
            d += 1
        elif kind == "slice":
            bound = st.none() | st.integers(-n - 2, n + 2)
            items.append(slice(draw(bound), draw(bound), draw(st.sampled_from([None, 1, 2, 3]))))
            d += 1
        elif kind == "none":
            items.append(None)
        elif kind == "ellipsis" and not ellipsis:
            ellipsis = True
            items.append(Ellipsis)
            d = draw(st.integers(d, len(shape)))  # Ellipsis swallows some dims
        elif kind == "stop":
            break
    return tuple(items)


def index_forms(draw, arr: np.ndarray):
    """An integer index array as a list, a numpy array or an ember int32/int64 tensor."""
    form = draw(st.sampled_from(["list", "numpy", "int64", "int32"] if arr.size or arr.ndim == 1 else
                                ["numpy", "int64", "int32"]))  # a list would lose an empty array's shape
    if form == "list":
        return arr.tolist()
    if form == "numpy":
        return arr
    return et(arr.astype(np.int32 if form == "int32" else np.int64))


@st.composite
def advanced_index(draw, shape):
    """(ember index, torch index): integer arrays broadcasting together, mixed with slices/ints/None."""
    nd = len(shape)
    n_adv = draw(st.integers(1, min(3, nd)))
    adv_dims = sorted(draw(st.permutations(range(nd)))[:n_adv])
    assume(all(shape[d] > 0 for d in adv_dims))
    bshape = draw(shapes(0, 2, 0, 3))
    e_items, t_items = [], []
    for d in range(nd):
        n = shape[d]
        if d in adv_dims:
            ishape = tuple(1 if draw(st.booleans()) else s for s in bshape)[len(bshape) - draw(st.integers(0, len(bshape))):]
            vals = draw(st.integers(0, 2**16)).__mod__
            arr = np.random.default_rng(vals(997)).integers(-n, n, size=ishape)
            e_items.append(index_forms(draw, arr))
            t_items.append(torch.from_numpy(arr))
        else:
            kind = draw(st.sampled_from(["full", "int", "strided"] if n else ["full"]))
            item = {"full": slice(None), "int": draw(st.integers(-n, n - 1)) if n else 0,
                    "strided": slice(1, None, 2)}[kind]
            e_items.append(item)
            t_items.append(item)
        if draw(st.integers(0, 5)) == 0:
            e_items.append(None)
            t_items.append(None)
    return tuple(e_items), tuple(t_items)


# ---- getitem ---------------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_basic_getitem_matches_numpy(data):
    x, a = data.draw(viewed(max_dims=4, max_side=5))
    idx = data.draw(basic_index(a.shape))
    check(x[idx], a[idx])
    if len(idx) == 1:
        check(x[idx[0]], a[idx[0]])


@SETTINGS
@given(st.data())
def test_advanced_getitem_matches_torch(data):
    x, a = data.draw(viewed(min_dims=1, max_dims=4, min_side=1, max_side=4))
    e_idx, t_idx = data.draw(advanced_index(a.shape))
    check(x[e_idx], np_of(tt(a)[t_idx]))


@pytest.mark.parametrize("idx", [
    (slice(None), [0, 2]), (0, slice(None), [1, 3]), ([0, 1], slice(None), [1, 3]),
    (None, [1, 0], None, [2, 2]), (Ellipsis, [[0], [3]]), ([[0, 1]], [[0], [2]], 1),
    ([1, 0], slice(None), np.int64(1)), (np.array([1, -1]),), ([],), (slice(None), [], 0),
])
def test_advanced_getitem_placement_rules(idx):
    a = make((2, 3, 4), "float64")
    t_idx = tuple(torch.tensor(i, dtype=torch.int64) if isinstance(i, (list, np.ndarray)) else i for i in idx)
    check(et(a)[idx], tt(a)[t_idx].numpy())


@SETTINGS
@given(st.data())
def test_boolean_mask_getitem(data):
    x, a = data.draw(viewed(min_dims=1, max_dims=3, max_side=4))
    k = data.draw(st.integers(1, a.ndim))
    start = data.draw(st.integers(0, a.ndim - k))
    mask = np.random.default_rng(data.draw(st.integers(0, 99))).random(a.shape[start:start + k]) < 0.5
    idx = (slice(None),) * start + (mask,)
    want = a[idx]
    check(x[idx], want)
    check(x[(slice(None),) * start + (et(mask),)], want)
    if start == 0:
        check(x[et(mask)], want)


def test_mask_from_lazy_comparison_and_zero_dim_bools():
    a = make((3, 4), "float32")
    x = et(a)
    check(x[x.T.T > 0], a[a > 0])
    check(x[True], a[None])
    check(x[False], a[None][:0])
    check(x[[True, False, True]], a[[True, False, True]])


def test_getitem_on_zero_dim_and_every_dtype():
    for dtype in ALL_DTYPES:
        a = make((3, 4), dtype, seed=1)
        x = et(a)
        check(x[1:, [0, 2]], a[1:, [0, 2]], dtype=dtype)
        check(x[..., ::2][-1], a[..., ::2][-1], dtype=dtype)
        s = et(a[0, 0])
        check(s[()], a[0, 0], dtype=dtype)
        check(s[None, ...], a[0, 0][None], dtype=dtype)


@pytest.mark.parametrize("idx", [
    5, -4, (0, 5), (slice(None), slice(None), 0), slice(None, None, -1), (slice(None), slice(0, 2, -2)),
    1.5, [True, False], [5], [-4], (slice(None), [3]), ([0, 1], [0, 1, 2]),
])
def test_getitem_errors_like_torch(idx):
    t_idx = idx
    if isinstance(idx, list):
        t_idx = torch.tensor(idx)
    elif isinstance(idx, tuple):
        t_idx = tuple(torch.tensor(i) if isinstance(i, list) else i for i in idx)
    same_error(lambda: ember.zeros(3, 3)[idx], lambda: torch.zeros(3, 3)[t_idx])


def test_getitem_float_index_tensor_raises_index_error():
    same_error(lambda: ember.zeros(3)[ember.tensor([1.0])], lambda: torch.zeros(3)[torch.tensor([1.0])])


def test_getitem_validates_lazy_index_tensors():
    idx = ember.tensor([1, 2]) * 2  # lazy: [2, 4], 4 is out of range for size 3
    with pytest.raises(IndexError, match="index 4 is out of bounds for dimension 0 with size 3"):
        ember.zeros(3)[idx]


# ---- setitem ---------------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_basic_setitem_matches_numpy(data):
    dtype = data.draw(st.sampled_from(["float32", "int16", "bool", "bfloat16"]))
    a = make(data.draw(shapes(0, 4, 0, 4)), dtype, seed=data.draw(st.integers(0, 99)))
    idx = data.draw(basic_index(a.shape))
    target = a[idx].shape
    vshape = data.draw(st.sampled_from([target, (), target[1:] if target else (), (1,) + target,
                                        tuple(1 for _ in target)]))
    value = make(vshape, dtype, seed=7)
    x = et(a.copy())
    x[idx] = et(value)
    want = a.copy()
    want[idx] = value if value.shape[:1] != (1,) or len(vshape) <= len(target) else value[0]
    check(x, want, dtype=dtype)


@SETTINGS
@given(st.data())
def test_advanced_setitem_with_distinct_indices(data):
    shape = data.draw(shapes(1, 3, 1, 4))
    a = make(shape, "float64", seed=1)
    nd = len(shape)
    adv = sorted(data.draw(st.permutations(range(nd)))[:data.draw(st.integers(1, nd))])
    sizes = [shape[d] for d in adv]
    k = data.draw(st.integers(0, int(np.prod(sizes))))
    flat = np.random.default_rng(data.draw(st.integers(0, 99))).permutation(int(np.prod(sizes)))[:k]
    cols = np.unravel_index(flat, sizes)
    e_idx, t_idx = [], []
    for d in range(nd):
        if d in adv:
            c = cols[adv.index(d)]
            c = np.where(np.arange(c.size) % 2 == 1, c - shape[d], c)  # some negative
            e_idx.append(index_forms(data.draw, c))
            t_idx.append(torch.from_numpy(c))
        else:
            e_idx.append(slice(None))
            t_idx.append(slice(None))
    want = tt(a)
    value_shape = tuple(want[tuple(t_idx)].shape)
    scalar = data.draw(st.booleans())
    value = 3.5 if scalar else make(value_shape, "float64", seed=5)
    want[tuple(t_idx)] = value if scalar else torch.from_numpy(value)
    x = et(a.copy())
    x[tuple(e_idx)] = value if scalar else et(value)
    check(x, want.numpy())


def test_setitem_duplicate_indices_write_one_of_the_values():
    x = ember.zeros(4)
    x[[1, 1, 2]] = ember.tensor([5.0, 7.0, 9.0])
    got = x.numpy()
    assert got[1] in (5.0, 7.0) and got[2] == 9.0 and got[0] == got[3] == 0


def test_setitem_with_mask_scalar_and_tensor_values():
    a = make((3, 4), "float32")
    x = et(a.copy())
    x[x < 0] = 0.0  # lazy mask, scalar: no host sync needed
    check(x, np.where(a < 0, 0, a))
    m = a > 0.5
    x = et(a.copy())
    x[et(m)] = et(np.arange(m.sum(), dtype=np.float32))
    want = a.copy()
    want[m] = np.arange(m.sum())
    check(x, want)
    x = et(a.copy())
    x[:, [True, False, True, False]] = -1.0
    want = a.copy()
    want[:, [True, False, True, False]] = -1
    check(x, want)


def test_setitem_casts_value_and_keeps_dtype():
    x = ember.zeros(3, dtype=ember.int32)
    x[0] = 1.7
    x[1:] = ember.tensor([2.9, -3.9])
    check(x, np.array([1, 2, -3], np.int32), dtype="int32")
    y = ember.zeros(2)
    y[0] = True
    check(y, np.array([1, 0], np.float32), dtype="float32")


def test_setitem_into_views_and_strided_boxes():
    a = make((5, 6), "float64")
    x = et(a.copy()).T  # a non-contiguous lazy view
    x[1::2, ::3] = ember.tensor([[1.0], [2.0], [3.0]], dtype=ember.float64)
    want = a.T.copy()
    want[1::2, ::3] = [[1.0], [2.0], [3.0]]
    check(x, want)
    x[..., -1, None] = 0.0
    want[..., -1, None] = 0
    check(x, want)


@pytest.mark.parametrize("idx,value", [
    (0, "ones4"), (0, "ones23"), (slice(None), "list"), (5, 1.0), (slice(None, None, -1), 1.0),
    ("mask_bad", "ones2"),
])
def test_setitem_errors_like_torch(idx, value):
    def run(m):
        x = m.zeros(2, 3)
        v = {"ones4": lambda: m.ones(4), "ones23": lambda: m.ones(2, 3), "list": lambda: [1.0, 2.0, 3.0],
             "ones2": lambda: m.ones(2)}.get(value, lambda: value)()
        i = m.tensor([[True, False, True], [False, False, True]]) if idx == "mask_bad" else idx
        x[i] = v
    same_error(lambda: run(ember), lambda: run(torch))


# ---- gather & co. ----------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_gather_matches_take_along_axis(data):
    dtype = data.draw(st.sampled_from(ALL_DTYPES))
    x, a = data.draw(viewed(dtype, min_dims=1, max_dims=3, min_side=1))
    d = data.draw(st.integers(-a.ndim, a.ndim - 1))
    ishape = tuple(data.draw(st.integers(0, n)) if i != d % a.ndim else data.draw(st.integers(0, 4))
                   for i, n in enumerate(a.shape))
    idx = np.random.default_rng(3).integers(0, a.shape[d], size=ishape)
    itype = data.draw(st.sampled_from([np.int64, np.int32]))
    sub = a[tuple(slice(0, n) if i != d % a.ndim else slice(None) for i, n in enumerate(ishape))]
    check(ember.gather(x, d, et(idx.astype(itype))), np.take_along_axis(sub, idx, d), dtype=dtype)
    box = tuple(slice(0, n) if i != d % a.ndim else slice(None) for i, n in enumerate(ishape))
    check(x[box].take_along_dim(et(idx), d), np.take_along_axis(sub, idx, d), dtype=dtype)


@SETTINGS
@given(st.data())
def test_index_select_matches_numpy_take(data):
    x, a = data.draw(viewed(min_dims=0, max_dims=3, min_side=1))
    d = data.draw(st.integers(-max(a.ndim, 1), max(a.ndim, 1) - 1))
    n = a.shape[d] if a.ndim else 1
    idx = np.random.default_rng(4).integers(0, n, size=data.draw(st.integers(0, 5)))
    want = np.take(a, idx, axis=d) if a.ndim else a
    if a.ndim == 0:
        idx = idx[:1] if idx.size else np.zeros(1, np.int64)
    check(ember.index_select(x, d, et(idx)), want)


def test_take_along_dim_broadcasts_and_flattens():
    a = make((3, 4), "float32")
    idx = np.array([[0], [3], [-1]])
    check(et(a).take_along_dim(et(idx), 1), np_of(torch.take_along_dim(tt(a), torch.from_numpy(idx), 1)))
    check(ember.take_along_dim(et(a), et(np.array([5, 0]))), a.reshape(-1)[[5, 0]])
    row = np.array([[1, 2]])
    check(ember.take_along_dim(et(a), et(row), 1), np_of(torch.take_along_dim(tt(a), torch.from_numpy(row), 1)))


@pytest.mark.parametrize("call", [
    lambda m: m.gather(m.zeros(3, 4), 1, m.zeros(4, 2, dtype=m.int64)),
    lambda m: m.gather(m.zeros(3, 4), 1, m.zeros(2, 2, dtype=m.int64) + 5),
    lambda m: m.gather(m.zeros(3, 4), 1, m.zeros(2, 2, dtype=m.int64) - 1),
    lambda m: m.gather(m.zeros(3, 4), 1, m.zeros(2, dtype=m.int64)),
    lambda m: m.gather(m.zeros(3, 4), 2, m.zeros(2, 2, dtype=m.int64)),
    lambda m: m.index_select(m.zeros(3, 4), 1, m.zeros(2, dtype=m.int16)),
    lambda m: m.index_select(m.zeros(3, 4), 1, m.zeros(2, 2, dtype=m.int64)),
    lambda m: m.index_select(m.zeros(3, 4), 1, m.zeros(2, dtype=m.int64) + 4),
    lambda m: m.zeros(2, 3).masked_fill(m.zeros(3), 1.0),
    lambda m: m.zeros(2, 3).masked_fill(m.zeros(3, dtype=m.bool), m.zeros(3)),
])
def test_gather_family_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


@SETTINGS
@given(st.data())
def test_masked_fill_broadcasts_and_casts(data):
    dtype = data.draw(st.sampled_from(ALL_DTYPES))
    x, a = data.draw(viewed(dtype, max_dims=3))
    mshape = data.draw(st.sampled_from([a.shape, a.shape[1:], (1,) * a.ndim, (2,) + a.shape]))
    mask = np.asarray(np.random.default_rng(5).random(mshape) < 0.5)
    value = data.draw(st.sampled_from([1.5, 0, True, -2]))
    want = torch.masked_fill(tt(a), torch.from_numpy(mask), value)
    check(x.masked_fill(et(mask), value), np_of(want), dtype=dtype)
    check(ember.masked_fill(x, et(mask), et(np.array(value))), np_of(want), dtype=dtype)


def test_masked_fill_in_place():
    a = make((2, 3))
    x = et(a)
    assert x.masked_fill_(et(a > 0), 0.0) is x
    check(x, np.where(a > 0, 0, a))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_setitem_every_dtype_basic_advanced_and_mask(dtype):
    a = make((3, 4), dtype, seed=2)
    v = make((2,), dtype, seed=3)
    x = et(a.copy())
    x[1:, ::2] = et(v)
    x[[0, 2], [3, 1]] = et(v[::-1].copy())
    x[et(a != a[0, 0])] = et(v[:1])
    want = a.copy()
    want[1:, ::2] = v
    want[[0, 2], [3, 1]] = v[::-1]
    want[a != a[0, 0]] = v[0]
    check(x, want, dtype=dtype)


@pytest.mark.parametrize("dtype,value", [("uint8", -2), ("int8", 200), ("int8", -129), ("uint8", 256)])
def test_scalar_values_wrap_or_overflow_like_torch(dtype, value):
    def run(m):
        x = m.zeros(3, dtype=getattr(m, dtype))
        x[0] = value
        return x
    try:
        want = run(torch)
    except RuntimeError:
        same_error(lambda: run(ember), lambda: run(torch))
    else:
        check(run(ember), want.numpy(), dtype=dtype)


def test_gradients_flow_through_getitem_and_setitem():
    a = make((3, 4), "float64")
    grads = []
    for m, make_t in ((ember, et), (torch, tt)):
        w = make_t(a)
        w.requires_grad = True
        x = m.zeros(3, 4, dtype=m.float64)
        x[1:, [0, 2]] = w[:2, 1:3] * 2
        x[0] = w[2]
        (x * x).sum().backward()
        grads.append(w.grad.numpy())
    np.testing.assert_allclose(grads[0], grads[1])
