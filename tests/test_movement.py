"""Movement ops (reshape, permute, expand, cat, split, pad, flip, repeat, tril, ...): values against
numpy, result shapes/dtypes and error types against PyTorch.

The helpers at the top (dtype table, array makers, comparison, error parity) are imported by
test_indexing.py, test_reduce.py and test_matmul.py.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes

import ember
from ember.ops_movement import pad
from strategies import to_torch as tt, torch_to_numpy as np_of  # noqa: F401 (re-exported)

# ---- shared helpers --------------------------------------------------------------------------

# (name, ember dtype, numpy dtype, torch dtype)
DTYPES = {
    "float32": (ember.float32, np.float32, torch.float32),
    "float64": (ember.float64, np.float64, torch.float64),
    "float16": (ember.float16, np.float16, torch.float16),
    "bfloat16": (ember.bfloat16, ml_dtypes.bfloat16, torch.bfloat16),
    "int8": (ember.int8, np.int8, torch.int8),
    "int16": (ember.int16, np.int16, torch.int16),
    "int32": (ember.int32, np.int32, torch.int32),
    "int64": (ember.int64, np.int64, torch.int64),
    "uint8": (ember.uint8, np.uint8, torch.uint8),
    "bool": (ember.bool, np.bool_, torch.bool),
}
ALL_DTYPES = list(DTYPES)
FLOAT_DTYPES = ["float32", "float64", "float16", "bfloat16"]
INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8"]
SETTINGS = settings(max_examples=20, deadline=None)


def make(shape, dtype: str = "float32", seed: int = 0, low=-5, high=5) -> np.ndarray:
    """A reproducible random numpy array of the dtype (small ints, normal floats, random bools)."""
    rng = np.random.default_rng(seed)
    npdt = DTYPES[dtype][1]
    if dtype == "bool":
        return np.asarray(rng.random(shape) < 0.5)
    if dtype in INT_DTYPES:
        lo = 0 if dtype == "uint8" else low
        return np.asarray(rng.integers(lo, high, size=shape)).astype(npdt)
    return np.asarray(rng.standard_normal(shape) * 2).astype(npdt)


def et(arr: np.ndarray) -> ember.Tensor:
    return ember.tensor(np.asarray(arr))


TOL = {"float16": (2e-3, 2e-3), "bfloat16": (1.6e-2, 1e-2), "float32": (1e-5, 1e-6), "float64": (1e-10, 1e-12)}


def check(got: ember.Tensor, want: np.ndarray, dtype=None, tol=None) -> None:
    """Shape, dtype and values of `got` against the numpy reference (exact unless floating)."""
    want = np.asarray(want)
    assert isinstance(got, ember.Tensor), type(got)
    assert tuple(got.shape) == want.shape, (tuple(got.shape), want.shape)
    if dtype is not None:
        assert got.dtype == DTYPES[dtype][0], (got.dtype, dtype)
    v = got.numpy()
    if v.dtype.kind == "f" or v.dtype == ml_dtypes.bfloat16:
        name = got.dtype.name
        rtol, atol = tol or TOL[name]
        np.testing.assert_allclose(v.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(v, want)


def same_error(ember_call, torch_call):
    """Both calls raise; ember's error is an instance of the type PyTorch raised."""
    with pytest.raises(Exception) as te:
        torch_call()
    with pytest.raises(te.type):
        ember_call()


def shapes(min_dims=0, max_dims=4, min_side=0, max_side=4):
    return array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


@st.composite
def viewed(draw, dtype="float32", min_dims=0, max_dims=4, min_side=0, max_side=4):
    """(ember tensor, numpy array) with equal values; the ember tensor may be a non-contiguous view
    (transposed, strided slice or broadcast) of a realized buffer."""
    shape = draw(shapes(min_dims, max_dims, min_side, max_side))
    kind = draw(st.sampled_from(["plain", "transposed", "strided", "broadcast"]))
    seed = draw(st.integers(0, 2**16))
    if kind == "transposed" and len(shape) >= 2:
        base = make(shape[::-1], dtype, seed)
        return et(base).permute(*reversed(range(len(shape)))), base.transpose()
    if kind == "strided" and len(shape) >= 1:
        base = make(shape[:-1] + (2 * shape[-1] + 1,), dtype, seed)
        return et(base)[..., 1::2], base[..., 1::2]
    if kind == "broadcast" and len(shape) >= 1:
        base = make((1,) + shape[1:], dtype, seed)
        return et(base).expand(*shape), np.broadcast_to(base, shape)
    arr = make(shape, dtype, seed)
    return et(arr), arr


# ---- reshape / view --------------------------------------------------------------------------

@st.composite
def reshape_target(draw, numel):
    """A shape of `numel` elements, possibly with one -1."""
    dims, left = [], numel
    for _ in range(draw(st.integers(0, 3))):
        divs = [d for d in range(1, left + 1) if left % d == 0] if left else [0, 1, 2]
        d = draw(st.sampled_from(divs))
        dims.append(d)
        left = left // d if d else 0
    if numel == 0 and 0 not in dims:
        dims.append(0)
    elif numel and left != 1:
        dims.append(left)
    if numel and dims and draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


@SETTINGS
@given(st.data())
def test_reshape_matches_numpy_including_minus_one(data):
    x, a = data.draw(viewed())
    target = data.draw(reshape_target(a.size))
    check(x.reshape(target), a.reshape(target))
    check(x.view(*target), a.reshape(target))
    check(ember.reshape(x, target), a.reshape(target))


@pytest.mark.parametrize("shape,target", [
    ((2, 3), (5,)), ((2, 3), (-1, -1)), ((2, 3), (-2, 3)), ((0, 3), (0, -1)), ((2, 3), (4, -1)),
])
def test_reshape_errors_like_torch(shape, target):
    same_error(lambda: ember.zeros(shape).reshape(target), lambda: torch.zeros(shape).reshape(target))


def test_view_dtype_bitcasts_equal_item_sizes():
    a = make((2, 3), "float32")
    check(et(a).view(ember.int32), a.view(np.int32))
    with pytest.raises(TypeError):
        et(a).view(ember.int16)


# ---- permute, transpose and friends ----------------------------------------------------------

@SETTINGS
@given(st.data())
def test_permute_transpose_movedim_match_numpy(data):
    x, a = data.draw(viewed(min_dims=1))
    nd = a.ndim
    perm = data.draw(st.permutations(range(nd)))
    neg = [p - nd if data.draw(st.booleans()) else p for p in perm]
    check(x.permute(*neg), a.transpose(perm))
    check(x.permute(neg), a.transpose(perm))
    d0, d1 = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
    check(x.transpose(d0, d1), np.swapaxes(a, d0, d1))
    check(ember.swapaxes(x, d0, d1), np.swapaxes(a, d0, d1))
    check(x.movedim(d0, d1), np.moveaxis(a, d0, d1))
    check(x.T, a.transpose())
    if nd >= 2:
        check(x.mT, np.swapaxes(a, -1, -2))
    if nd <= 2:
        check(x.t(), a.T)


@pytest.mark.parametrize("call", [
    lambda m: m.zeros(2, 3).permute(0),
    lambda m: m.zeros(2, 3).permute(0, 0),
    lambda m: m.zeros(2, 3).permute(0, 2),
    lambda m: m.zeros(2, 3, 4).t(),
    lambda m: m.zeros(2).mT,
    lambda m: m.zeros(2, 3).transpose(0, 2),
    lambda m: m.zeros(2, 3).movedim((0, 1), (0,)),
])
def test_permute_family_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


# ---- expand, squeeze, unsqueeze, flatten, unflatten ------------------------------------------

@SETTINGS
@given(st.data())
def test_expand_and_broadcast_to(data):
    x, a = data.draw(viewed(max_dims=3))
    lead = data.draw(st.lists(st.integers(0, 3), max_size=2))
    target = [data.draw(st.sampled_from([n, -1] if n != 1 else [1, 3, 0, -1])) for n in a.shape]
    sizes = tuple(lead) + tuple(target)
    want_shape = tuple(lead) + tuple(n if t == -1 else t for n, t in zip(a.shape, target))
    want = np.broadcast_to(a, want_shape)
    check(x.expand(*sizes), want)
    check(x.expand(sizes), want)
    check(ember.broadcast_to(x, want_shape), want)
    check(x.expand_as(ember.zeros(want_shape)), want)


@pytest.mark.parametrize("sizes", [(3, 3), (-1, 3, 3), (3,), (-2, 3), (-1, 2, 3)])
def test_expand_errors_like_torch(sizes):
    same_error(lambda: ember.zeros(2, 3).expand(*sizes), lambda: torch.zeros(2, 3).expand(*sizes))


@SETTINGS
@given(st.data())
def test_squeeze_unsqueeze_flatten_unflatten(data):
    x, a = data.draw(viewed(min_side=0, max_side=2))
    nd = a.ndim
    check(x.squeeze(), np.squeeze(a))
    if nd:
        d = data.draw(st.integers(-nd, nd - 1))
        check(x.squeeze(d), np.squeeze(a, d) if a.shape[d] == 1 else a)
        dims = tuple(sorted(set(data.draw(st.lists(st.integers(0, nd - 1), max_size=nd)))))
        drop = tuple(i for i in dims if a.shape[i] == 1)
        check(x.squeeze(dims), np.squeeze(a, drop))
    u = data.draw(st.integers(-nd - 1, nd))
    check(x.unsqueeze(u), np.expand_dims(a, u))
    check(x.flatten(), a.reshape(-1))
    if nd:
        s = data.draw(st.integers(0, nd - 1))
        e = data.draw(st.integers(s, nd - 1))
        want = a.reshape(a.shape[:s] + (-1,) + a.shape[e + 1:]) if a.size else \
            np.zeros(a.shape[:s] + (int(np.prod(a.shape[s:e + 1])),) + a.shape[e + 1:], a.dtype)
        check(x.flatten(s, e), want)
        check(ember.flatten(x, s - nd, e), want)
        n = a.shape[s]
        if n > 0:
            check(x.unflatten(s, (1, n, -1)), a.reshape(a.shape[:s] + (1, n, 1) + a.shape[s + 1:]))


@pytest.mark.parametrize("call", [
    lambda m: m.zeros(2, 3).unsqueeze(3),
    lambda m: m.zeros(2, 3).squeeze(2),
    lambda m: m.zeros(2, 3).flatten(1, 0),
    lambda m: m.zeros(2, 3).unflatten(1, (2, -1)),
    lambda m: m.zeros(2, 3).unflatten(1, ()),
])
def test_shape_op_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


def test_zero_dim_tensors_through_shape_ops():
    a = np.array(2.5, np.float32)
    x = et(a)
    check(x.reshape(()), a)
    check(x.reshape(1, 1), a.reshape(1, 1))
    check(x.unsqueeze(0), a.reshape(1))
    check(x.expand(2, 3), np.broadcast_to(a, (2, 3)))
    check(x.flatten(), a.reshape(1))
    check(x.T, a)
    check(x.t(), a)
    check(x.squeeze(), a)
    check(x.permute(), a)
    check(x.flip(0), a)


@pytest.mark.parametrize("call", [
    lambda m, x: x.squeeze(0), lambda m, x: x.squeeze((-1,)), lambda m, x: x.movedim(0, -1),
    lambda m, x: x.transpose(0, -1), lambda m, x: x.transpose(0, 1), lambda m, x: x.narrow(0, 0, 1),
    lambda m, x: x.select(0, 0), lambda m, x: x.roll(1, 0), lambda m, x: x.roll(1), lambda m, x: x.repeat(2, 1),
    lambda m, x: x.unflatten(0, (1,)), lambda m, x: x.split(1), lambda m, x: x.chunk(1),
    lambda m, x: x.unbind(0), lambda m, x: x.tensor_split(1), lambda m, x: x.tril(),
    lambda m, x: m.stack([x, x]), lambda m, x: x.expand(3), lambda m, x: x.unsqueeze(-1),
])
def test_zero_dim_semantics_like_torch(call):
    def run(m):
        return call(m, m.tensor(2.5))
    try:
        want = run(torch)
    except Exception:  # noqa: BLE001 - the torch error is the specification
        same_error(lambda: run(ember), lambda: run(torch))
        return
    check(run(ember), want.numpy())


# ---- cat / stack / split ---------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_cat_and_stack_match_numpy_with_promotion(data):
    base = data.draw(shapes(1, 3, 0, 3))
    nd = len(base)
    d = data.draw(st.integers(-nd, nd - 1))
    dts = data.draw(st.lists(st.sampled_from(ALL_DTYPES), min_size=1, max_size=4))
    arrs = []
    for i, dt in enumerate(dts):
        shape = list(base)
        shape[d] = data.draw(st.integers(0, 3))
        arrs.append(make(tuple(shape), dt, seed=i))
    want_t = torch.cat([tt(a) for a in arrs], d)
    got = ember.cat([et(a) for a in arrs], d)
    check(got, np_of(want_t), dtype=str(want_t.dtype).replace("torch.", ""))
    same = [make(base, dt, seed=i) for i, dt in enumerate(dts)]
    want_s = torch.stack([tt(a) for a in same], d)
    check(ember.stack([et(a) for a in same], d), np_of(want_s), dtype=str(want_s.dtype).replace("torch.", ""))


def test_cat_of_views_and_legacy_empty_piece():
    a = make((3, 4), "float64")
    x = et(a)
    check(ember.cat([x.T, x.T[:, ::2], et(np.zeros(0))], 1),
          np.concatenate([a.T, a.T[:, ::2]], 1))
    check(ember.concat([x[:1], x.flip(0)]), np.concatenate([a[:1], a[::-1]]))
    neg0 = np.array([-0.0, 1.0], np.float32)
    got = ember.cat([et(neg0), et(neg0)]).numpy()
    assert np.signbit(got[0]) and np.signbit(got[2]), "cat must copy -0.0 exactly"


def test_cat_and_stack_of_many_pieces():
    arrs = [make((2, i % 3, 3), "float32", seed=i) for i in range(40)]
    check(ember.cat([et(a) for a in arrs], 1), np.concatenate(arrs, 1))
    same = [make((2, 3), "int32", seed=i) for i in range(70)]
    check(ember.stack([et(a) for a in same], -1), np.stack(same, -1))


@pytest.mark.parametrize("call", [
    lambda m: m.cat([]),
    lambda m: m.cat([m.zeros(2, 3), m.zeros(3, 3)], 1),
    lambda m: m.cat([m.zeros(2, 3), m.zeros(3)]),
    lambda m: m.cat([m.zeros(()), m.zeros(())]),
    lambda m: m.cat([m.zeros(2, 3), m.zeros(2, 3)], 2),
    lambda m: m.stack([]),
    lambda m: m.stack([m.zeros(2, 3), m.zeros(3, 3)]),
    lambda m: m.stack([m.zeros(2, 3)], 3),
])
def test_cat_stack_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


@SETTINGS
@given(st.data())
def test_split_chunk_unbind_narrow_select(data):
    x, a = data.draw(viewed(min_dims=1, max_side=6))
    nd = a.ndim
    d = data.draw(st.integers(-nd, nd - 1))
    n = a.shape[d]
    ta = tt(a)
    size = data.draw(st.integers(1, 4)) if n else data.draw(st.integers(0, 2))
    for got, want in [(x.split(size, d), ta.split(size, d)),
                      (ember.chunk(x, data.draw(st.integers(1, 4)), d), None)]:
        if want is None:
            k = data.draw(st.integers(1, 4))
            got, want = x.chunk(k, d), ta.chunk(k, d)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            check(g, np_of(w))
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    sizes = [b - c for c, b in zip([0] + cuts, cuts + [n])]
    for g, w in zip(x.split(sizes, d), ta.split(sizes, d)):
        check(g, np_of(w))
    for g, w in zip(x.tensor_split(3, d), np.array_split(a, 3, d)):
        check(g, w)
    for g, w in zip(x.unbind(d), ta.unbind(d)):
        check(g, np_of(w))
    if n:
        start = data.draw(st.integers(-n, n - 1))
        length = data.draw(st.integers(0, n - start % n))
        check(x.narrow(d, start, length), np_of(ta.narrow(d, start, length)))
        i = data.draw(st.integers(-n, n - 1))
        check(x.select(d, i), np.take(a, i, axis=d))


@pytest.mark.parametrize("call", [
    lambda m: m.zeros(2, 3).split(0),
    lambda m: m.zeros(2, 3).split([1, 1], 1),
    lambda m: m.zeros(2, 3).split(-1),
    lambda m: m.zeros(2, 3).chunk(0),
    lambda m: m.zeros(2, 3).narrow(1, 4, 0),
    lambda m: m.zeros(2, 3).narrow(1, 2, 2),
    lambda m: m.zeros(2, 3).narrow(1, 0, -1),
    lambda m: m.zeros(2, 3).select(1, 3),
])
def test_split_family_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


# ---- flip, roll, repeat, tile ----------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_flip_roll_repeat_tile(data):
    x, a = data.draw(viewed(max_dims=3))
    nd = a.ndim
    if nd:
        drawn = data.draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd))
        dims = tuple({v % nd: v for v in drawn}.values())  # distinct dims, some negative
        check(x.flip(dims), np.flip(a, dims))
        check(ember.flip(x, *dims), np.flip(a, dims))
        shift = data.draw(st.integers(-5, 5))
        d = data.draw(st.integers(-nd, nd - 1))
        check(x.roll(shift, d), np.roll(a, shift, d))
        check(x.roll(shift), np.roll(a, shift))
    reps = tuple(data.draw(st.lists(st.integers(0, 3), min_size=nd, max_size=nd + 2)))
    check(x.repeat(*reps), np.tile(a, reps))
    treps = tuple(data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=nd + 1)))
    check(x.tile(treps), np.tile(a, treps))


@pytest.mark.parametrize("call", [
    lambda m: m.zeros(2, 3).flip(0, 0),
    lambda m: m.zeros(2, 3).flip(2),
    lambda m: m.zeros(2, 3).repeat(2),
    lambda m: m.zeros(2, 3).repeat(-1, 1),
    lambda m: m.zeros(2, 3).roll((1, 2), 0),
])
def test_flip_repeat_errors_like_torch(call):
    same_error(lambda: call(ember), lambda: call(torch))


# ---- pad -------------------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_constant_pad_with_value_and_cropping(data):
    dtype = data.draw(st.sampled_from(["float32", "int32", "bool", "float16"]))
    x, a = data.draw(viewed(dtype, min_dims=1, max_dims=3))
    k = data.draw(st.integers(1, a.ndim))
    widths = []
    for n in reversed(a.shape[-k:]):
        b = data.draw(st.integers(-n, 3))
        widths += [b, data.draw(st.integers(-(n + min(b, 0)), 3))]
    value = data.draw(st.sampled_from([0, 1, 7])) if dtype != "bool" else data.draw(st.booleans())
    want = F.pad(tt(a), widths, value=value)
    check(pad(x, widths, value=value), np_of(want), dtype=dtype)
    check(ember.constant_pad_nd(x, widths, value), np_of(want), dtype=dtype)


@pytest.mark.parametrize("mode,np_mode", [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")])
def test_pad_reflect_replicate_circular(mode, np_mode):
    a = make((2, 3, 5), "float32")
    widths = (2, 1, 1, 2)
    check(pad(et(a), widths, mode=mode), np.pad(a, [(0, 0), (1, 2), (2, 1)], mode=np_mode))


@pytest.mark.parametrize("widths", [(1,), (1, 1, 1, 1, 1, 1), (-4, 1)])
def test_pad_errors_like_torch(widths):
    same_error(lambda: pad(ember.zeros(2, 3), widths), lambda: F.pad(torch.zeros(2, 3), widths))


# ---- tril / triu -----------------------------------------------------------------------------

@SETTINGS
@given(st.data())
def test_tril_triu(data):
    dtype = data.draw(st.sampled_from(ALL_DTYPES))
    x, a = data.draw(viewed(dtype, min_dims=2, max_dims=4))
    k = data.draw(st.integers(-4, 4))
    check(x.tril(k), np.tril(a, k), dtype=dtype)
    check(ember.triu(x, k), np.triu(a, k), dtype=dtype)


def test_tril_needs_a_matrix():
    same_error(lambda: ember.zeros(3).tril(), lambda: torch.zeros(3).tril())


# ---- every dtype, views of views -------------------------------------------------------------

@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_movement_chain_is_exact_for_every_dtype(dtype):
    a = make((3, 4, 5), dtype, seed=3)
    x = et(a)
    y = x.permute(2, 0, 1)[1:, ::2].flip(-1).reshape(4, -1)
    want = a.transpose(2, 0, 1)[1:, ::2][..., ::-1].reshape(4, -1)
    check(y, want, dtype=dtype)
    z = ember.cat([y, y.repeat(1, 2)[:, :3]], 1).unsqueeze(0).expand(2, -1, -1)
    wz = np.broadcast_to(np.concatenate([want, np.tile(want, (1, 2))[:, :3]], 1)[None], (2, 4, want.shape[1] + 3))
    check(z, wz, dtype=dtype)
    check(pad(z, (1, 1)), np.pad(wz, [(0, 0), (0, 0), (1, 1)]), dtype=dtype)
    check(z.tril(-1), np.tril(wz, -1), dtype=dtype)


def test_views_of_views_transpose_slice_reshape():
    a = make((4, 6, 5), "float64")
    x = et(a)
    y = x.transpose(0, 2)[1:4, ::2].reshape(3, -1).t()[::3]
    want = a.transpose(2, 1, 0)[1:4, ::2].reshape(3, -1).T[::3]
    check(y, want)
    check(y.unsqueeze(1).expand(-1, 2, -1).flatten(0, 1), np.repeat(want, 2, axis=0))


def test_contiguous_is_identity():
    a = make((2, 3))
    x = et(a).T
    assert x.contiguous() is x
    check(x.contiguous(), a.T)


# ---- COMPILER STRESS -------------------------------------------------------------------------

def test_compiler_stress_10000_chained_ops_realize_without_recursion_error():
    """COMPILER STRESS: a lazy chain of 10,000 ops (mul, add, reshape) realizes in one go; no pass
    may recurse once per node."""
    a = make((4, 6), "float32")
    x, want = et(a), a.copy()
    for i in range(3334):
        shape = (6, 4) if i % 2 == 0 else (4, 6)
        x = (x * 1.0001 + 0.5).reshape(shape)
        want = (want * np.float32(1.0001) + np.float32(0.5)).reshape(shape)
    check(x, want, tol=(1e-3, 1e-3))
