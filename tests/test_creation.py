"""Creation functions against PyTorch (dtype inference, shapes, errors) and numpy (values)."""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import ember
from ember.compiler import dtypes as D
from strategies import ALL, assert_matches, ember_dtype, torch_dtype

SETTINGS = settings(max_examples=25, deadline=None)

DATA = [
    1, 2.5, True, -0.0, [], [[]], [1, 2, 3], [1.0, 2], [True, False], [True, 2], [[1, 2], [3, 4]],
    ((1, 2), (3, 4)), [[[1.5]], [[2.5]]], [np.float64(1.5)], [np.int32(3), np.int32(4)], np.float64(2.0),
    np.int16(7), [np.array([1, 2], dtype=np.int8), np.array([3, 4], dtype=np.int8)],
]


@pytest.mark.parametrize("data", DATA, ids=repr)
def test_tensor_infers_dtype_like_torch(data):
    assert_matches(ember.tensor(data), torch.tensor(data))


@pytest.mark.parametrize("dt", ALL)
def test_tensor_from_numpy_keeps_dtype(dt):
    arr = np.arange(-3, 3).reshape(2, 3).astype(dt.np)
    t = ember.tensor(arr)
    assert t.dtype is dt
    np.testing.assert_array_equal(t.numpy(), arr)


@pytest.mark.parametrize("dt", ALL)
def test_tensor_dtype_argument(dt):
    data = [[0.0, 1.5, 2.0], [3.25, 0.0, 7.0]]
    assert_matches(ember.tensor(data, dtype=dt), torch.tensor(data, dtype=torch_dtype(dt)), rtol=0, atol=0)


def test_tensor_from_tensors_and_copies():
    x = ember.tensor([1.0, 2.0])
    y = ember.tensor(x)
    x += 1
    assert y.tolist() == [1.0, 2.0] and x.tolist() == [2.0, 3.0]
    assert ember.tensor([ember.tensor(1), ember.tensor(2)]).tolist() == [1, 2]
    assert ember.tensor(x, dtype=ember.int64).dtype is ember.int64
    arr = np.array([1.0, 2.0])
    z = ember.tensor(arr)
    arr[0] = 9
    assert z.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("bad", [[[1, 2], [3]], [[1], 2], [1, [2]], [[[1, 2]], [[3]]], [[[1, 2]], [3]]], ids=repr)
def test_ragged_data_raises_like_torch(bad):
    with pytest.raises((TypeError, ValueError)) as want:
        torch.tensor(bad)
    with pytest.raises(want.type, match="expected sequence of length" if want.type is ValueError else None):
        ember.tensor(bad)


@pytest.mark.parametrize("bad", ["abc", [1, "a"], {1: 2}, None, [1 + 2j]], ids=repr)
def test_invalid_data_raises_typeerror(bad):
    with pytest.raises(TypeError):
        ember.tensor(bad)


def test_requires_grad_and_device():
    assert ember.tensor([1.0], requires_grad=True).requires_grad
    with pytest.raises(RuntimeError, match="floating point"):
        ember.tensor([1], requires_grad=True)
    assert ember.tensor([1.0], device="cpu").device == "cpu"
    with pytest.raises(RuntimeError, match="cuda"):
        ember.tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match="cuda"):
        ember.zeros(2, device="cuda:0")


def test_tensor_constructor_uses_tensor():
    assert ember.Tensor([1, 2]).tolist() == [1, 2]


# ---- from_numpy / as_tensor ----------------------------------------------------------------------

@pytest.mark.parametrize("dt", ALL)
def test_from_numpy_shares_memory(dt):
    arr = np.zeros((2, 3), dtype=dt.np)
    t = ember.from_numpy(arr)
    arr[1, 2] = 1
    assert t.dtype is dt and t.numpy()[1, 2] == 1
    assert t.node.arg.numpy().ctypes.data == arr.ctypes.data


def test_from_numpy_noncontiguous_copies_and_bad_dtypes():
    base = np.arange(12.0).reshape(3, 4)
    view = base.T[::2]
    t = ember.from_numpy(view)
    np.testing.assert_array_equal(t.numpy(), view)
    for bad in (np.zeros(2, np.uint16), np.zeros(2, np.complex64), np.array(["a"])):
        with pytest.raises(TypeError):
            ember.from_numpy(bad)
    with pytest.raises(TypeError):
        ember.from_numpy([1, 2])


def test_as_tensor():
    arr = np.ones(3, dtype=np.float32)
    t = ember.as_tensor(arr)
    arr[0] = 5
    assert t.tolist() == [5.0, 1.0, 1.0]
    u = ember.as_tensor(arr, dtype=ember.float64)
    arr[0] = 7
    assert u.dtype is ember.float64 and u.tolist()[0] == 5.0
    assert ember.as_tensor(t) is t and ember.as_tensor(t, dtype=ember.int32).dtype is ember.int32
    assert ember.as_tensor([1, 2]).dtype is ember.int64


# ---- fills ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["zeros", "ones", "empty"])
@pytest.mark.parametrize("size", [(), (0,), (3,), (2, 3), (2, 0, 4)])
def test_fill_sizes_and_laziness(name, size):
    fe = getattr(ember, name)
    for t in (fe(*size), fe(size), fe(list(size)), fe(ember.Size(size))):
        assert tuple(t.shape) == size and t.dtype is ember.float32
        assert t.node.op != "buffer"  # no storage until a kernel needs it
    if name != "empty":
        np.testing.assert_array_equal(fe(size).numpy(), getattr(np, name)(size, np.float32))
    assert fe(size, dtype=ember.int8).dtype is ember.int8


@pytest.mark.parametrize("value", [True, 3, -2.5, math.inf, 0])
@pytest.mark.parametrize("dtype", [None, ember.float64, ember.int16, ember.bool])
def test_full_matches_torch(value, dtype):
    if dtype is not None and not dtype.is_float and isinstance(value, float):
        value = 2
    want = torch.full((2, 3), value, dtype=None if dtype is None else torch_dtype(dtype))
    assert_matches(ember.full((2, 3), value, dtype=dtype), want)
    assert ember.full([2], value).node.op != "buffer"


def test_fill_errors():
    with pytest.raises(RuntimeError, match="non-negative"):
        ember.zeros(-1, 2)
    with pytest.raises(TypeError):
        ember.ones(2.5)
    with pytest.raises(TypeError):
        ember.zeros(2, dtype="float32")


@pytest.mark.parametrize("dt", [ember.float32, ember.int32, ember.bool, ember.float16])
def test_like_functions(dt):
    x = ember.tensor(np.zeros((2, 3), dtype=dt.np))
    for name in ["zeros_like", "ones_like", "empty_like"]:
        t = getattr(ember, name)(x)
        assert t.shape == x.shape and t.dtype is dt
    assert_matches(ember.full_like(x, 1), torch.full_like(torch.zeros((2, 3), dtype=torch_dtype(dt)), 1))
    assert ember.zeros_like(x, dtype=ember.float64).dtype is ember.float64
    assert ember.ones_like(x).numpy().astype(np.float64).sum() == 6


# ---- ranges ----------------------------------------------------------------------------------------

numbers = st.one_of(st.integers(-50, 50), st.floats(-50, 50, allow_nan=False).map(lambda v: round(v, 3)))


@SETTINGS
@given(start=numbers, end=numbers, step=numbers.filter(lambda v: abs(v) > 0.05),
       dtype=st.sampled_from([None, ember.float64, ember.int64, ember.int32, ember.float32]))
def test_arange_matches_torch(start, end, step, dtype):
    tdt = None if dtype is None else torch_dtype(dtype)
    # torch.arange(0, 5, 0.4, dtype=int32) steps by int(0.4) = 0 without complaint; ember raises
    assume(not (dtype is ember.int32 and int(step) == 0))
    try:
        want = torch.arange(start, end, step, dtype=tdt)
    except (RuntimeError, ValueError) as e:
        with pytest.raises(type(e)):
            ember.arange(start, end, step, dtype=dtype)
        return
    assume(want.numel() < 5000)
    got = ember.arange(start, end, step, dtype=dtype)
    assert got.dtype is ember_dtype(want.dtype) and tuple(got.shape) == tuple(want.shape)
    if got.dtype.is_float:  # numpy in float64 is the value reference
        ref = (start + step * np.arange(want.numel(), dtype=np.float64)).astype(got.dtype.np)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-6, atol=1e-5)
    else:
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_arange_forms_and_errors():
    assert ember.arange(5).tolist() == list(range(5)) and ember.arange(5).dtype is ember.int64
    assert ember.arange(2, 8, 3).tolist() == [2, 5]
    assert ember.arange(5.0).dtype is ember.float32
    assert ember.arange(0, 1, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75]
    assert ember.arange(0).shape == (0,)
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        ember.arange(0, 5, 0)
    with pytest.raises(RuntimeError, match="inconsistent with step sign"):
        ember.arange(0, 5, -1)


@SETTINGS
@given(start=numbers, end=numbers, steps=st.integers(0, 40),
       dtype=st.sampled_from([None, ember.float64, ember.int64, ember.float16]))
def test_linspace_matches_torch(start, end, steps, dtype):
    want = torch.linspace(start, end, steps, dtype=None if dtype is None else torch_dtype(dtype))
    got = ember.linspace(start, end, steps, dtype=dtype)
    if got.dtype.is_int:  # truncation of a float ramp: allow the one-off at exact integer crossings
        assert got.dtype is ember_dtype(want.dtype)
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1)
    else:
        # PyTorch steps float16 in half precision; ember steps in float32 and rounds once
        scale = 4e-3 if dtype is ember.float16 else 1e-4
        assert_matches(got, want, atol=scale * (abs(start) + abs(end)) + 1e-6)
    if steps >= 2 and (dtype is None or dtype.is_float):
        assert got.numpy()[0] == np.asarray(start, dtype=got.dtype.np) and \
            got.numpy()[-1] == np.asarray(end, dtype=got.dtype.np)


def test_linspace_errors():
    with pytest.raises(RuntimeError, match="non-negative"):
        ember.linspace(0, 1, -1)


@pytest.mark.parametrize("n,m", [(0, None), (1, None), (3, None), (2, 4), (4, 2), (3, 0)])
@pytest.mark.parametrize("dtype", [None, ember.int32, ember.bool])
def test_eye(n, m, dtype):
    want = np.eye(n, m, dtype=(dtype or ember.float32).np)
    got = ember.eye(n, m, dtype=dtype)
    assert got.dtype is (dtype or ember.float32)
    np.testing.assert_array_equal(got.numpy(), want)


def test_eye_errors():
    with pytest.raises(RuntimeError):
        ember.eye(-1)
    with pytest.raises(TypeError):
        ember.eye(2.0)


def test_bfloat16_data():
    arr = np.array([1.5, -2.25], dtype=ml_dtypes.bfloat16)
    t = ember.tensor(arr)
    assert t.dtype is D.bfloat16 and t.numpy().tolist() == arr.tolist()
