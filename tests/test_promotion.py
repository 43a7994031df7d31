"""Type promotion: for every pair of dtypes, as dimensioned tensors, zero-dim tensors and Python
scalars, each op's result dtype (or the exception class it raises) equals PyTorch's.

Result dtypes are known when the op is recorded, so nothing here is computed; the tables are
exhaustive rather than sampled.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import ember
from strategies import ALL, ember_dtype, torch_dtype

OPS = {
    "add": (ember.add, torch.add), "sub": (ember.sub, torch.sub), "mul": (ember.mul, torch.mul),
    "true_divide": (ember.true_divide, torch.true_divide), "floor_divide": (ember.floor_divide, torch.floor_divide),
    "remainder": (ember.remainder, torch.remainder), "fmod": (ember.fmod, torch.fmod),
    "pow": (ember.pow, torch.pow), "maximum": (ember.maximum, torch.maximum),
    "eq": (ember.eq, torch.eq), "lt": (ember.lt, torch.lt),
    "logical_and": (ember.logical_and, torch.logical_and),
    "bitwise_and": (ember.bitwise_and, torch.bitwise_and),
    "bitwise_left_shift": (ember.bitwise_left_shift, torch.bitwise_left_shift),
    "where": (lambda a, b: ember.where(ember.tensor([True, False]), a, b),
              lambda a, b: torch.where(torch.tensor([True, False]), a, b)),
}

# a value of each kind: a dimensioned tensor, a zero-dim tensor, or a Python scalar
KINDS = ["dim", "zero_dim"]
SCALARS = [True, 3, 2.5]


def _pair(dt, kind):
    shape = (2,) if kind == "dim" else ()
    arr = np.ones(shape, dtype=dt.np)
    return ember.tensor(arr), torch.ones(shape, dtype=torch_dtype(dt))


def _check(op, a, b):
    fe, ft = OPS[op]
    try:
        want = ft(a[1], b[1]).dtype
    except (RuntimeError, TypeError) as e:
        if isinstance(e, TypeError) and not all(isinstance(v[1], torch.Tensor) for v in (a, b)):
            return  # torch lacks this (Tensor, Number) overload; ember accepts scalars everywhere
        with pytest.raises(type(e)):
            fe(a[0], b[0])
        return
    assert fe(a[0], b[0]).dtype is ember_dtype(want), (op, a[1], b[1])


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("kinds", list(itertools.product(KINDS, KINDS)))
def test_tensor_tensor_promotion(op, kinds):
    for d1, d2 in itertools.product(ALL, ALL):
        _check(op, _pair(d1, kinds[0]), _pair(d2, kinds[1]))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("kind", KINDS)
def test_tensor_scalar_promotion(op, kind):
    for dt, s in itertools.product(ALL, SCALARS):
        _check(op, _pair(dt, kind), (s, s))
        if op in ("add", "sub", "mul", "true_divide", "pow", "remainder", "where", "bitwise_and"):
            _check(op, (s, s), _pair(dt, kind))  # torch only has the (Number, Tensor) form for these


@pytest.mark.parametrize("name", ["exp", "sqrt", "sigmoid", "log1p", "reciprocal", "erf", "tanh",
                                  "abs", "sign", "neg", "square", "floor", "round", "relu", "isnan",
                                  "bitwise_not", "logical_not"])
def test_unary_result_dtypes(name):
    for dt in ALL:
        e, t = _pair(dt, "dim")
        try:
            want = getattr(torch, name)(t).dtype
        except (RuntimeError, TypeError) as err:
            with pytest.raises(type(err)):
                getattr(ember, name)(e)
            continue
        assert getattr(ember, name)(e).dtype is ember_dtype(want), (name, dt)


def test_default_dtype_drives_float_results():
    ember.set_default_dtype(ember.float64)
    torch.set_default_dtype(torch.float64)
    try:
        i = ember.tensor([1, 2])
        assert (i / 2).dtype is ember.float64 and ember.exp(i).dtype is ember.float64
        assert (i + 0.5).dtype is ember.float64 and ember.tensor([0.5]).dtype is ember.float64
        assert (ember.ones(2, dtype=ember.float32) + 0.5).dtype is ember.float32  # tensors outrank scalars
        assert ember.arange(0.0, 1.0, 0.5).dtype is ember.float64
    finally:
        ember.set_default_dtype(ember.float32)
        torch.set_default_dtype(torch.float32)


def test_in_place_result_casting_table():
    """x.add_(y) is allowed exactly when PyTorch's canCast(result, x.dtype) holds."""
    for d1, d2 in itertools.product(ALL, ALL):
        (e1, t1), (e2, t2) = _pair(d1, "dim"), _pair(d2, "dim")
        try:
            t1.mul_(t2)
        except RuntimeError as err:
            with pytest.raises(RuntimeError, match="can't be cast to the desired output type"):
                e1.mul_(e2)
            assert "can't be cast" in str(err)
            continue
        assert e1.mul_(e2).dtype is d1
