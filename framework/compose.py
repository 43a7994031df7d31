"""Building blocks for composing primitives: constants shaped like a tensor, casts, the few
derived comparisons, and PyTorch's dtype-error conventions. The elementwise modules are written
with these, so each op reads as its formula."""
from __future__ import annotations

import numpy as np

from ember.compiler import Node, dtypes as D
from ember.compiler.ir import const

from .errors import DTypeError
from .tensor import Tensor, get_default_dtype


# PyTorch's ScalarType names, which its error messages use
TORCH_NAME = {D.bool_: "Bool", D.uint8: "Byte", D.int8: "Char", D.int16: "Short", D.int32: "Int",
              D.int64: "Long", D.float16: "Half", D.bfloat16: "BFloat16", D.float32: "Float",
              D.float64: "Double", D.uint32: "UInt32", D.uint64: "UInt64"}


def _require(x: Tensor, kinds: str, name: str) -> None:
    if x.dtype.kind not in kinds:
        raise DTypeError(f"\"{name}\" not implemented for '{TORCH_NAME[x.dtype]}'")


def _full(value, dtype: D.DType, shape, device: str = "cpu") -> Tensor:
    """A broadcast constant (no memory: a const leaf expanded)."""
    return Tensor._wrap(const(value, dtype, tuple(shape)), device)


def _k(value, like: Tensor, dtype: D.DType | None = None) -> Tensor:
    """A constant with like's shape (and dtype unless given)."""
    return _full(value, dtype or like.dtype, like.shape, like.device)


def _iota(n: int, device: str = "cpu", dtype: D.DType = D.int64) -> Tensor:
    """0, 1, ..., n-1 (the iota leaf)."""
    return Tensor._wrap(Node.make("iota", arg=n, dtype=dtype), device)


def _cast(x: Tensor, dt: D.DType) -> Tensor:
    return x if x.dtype is dt else x._apply("cast", arg=dt)


def _sub(a: Tensor, b: Tensor) -> Tensor:
    return a._apply("add", b._apply("neg"))


def _not(b: Tensor) -> Tensor:
    return b._apply("xor", _k(True, b))


def _lt(a, b):
    return a._apply("cmplt", b)


def _eq(a, b):
    return a._apply("cmpeq", b)


def _where(c, a, b):
    """where() on operands that already share shape and dtype (no promotion)."""
    return c._apply("where", a, b)


def _operand(x):
    """Numpy arrays in arithmetic become tensors (PyTorch accepts them too)."""
    if isinstance(x, np.ndarray):
        from .creation import as_tensor
        return as_tensor(x)
    return x


def _expand(x: Tensor, shape: tuple) -> Tensor:
    if tuple(x.shape) == shape:
        return x
    x = x._apply("reshape", arg=(1,) * (len(shape) - x.ndim) + tuple(x.shape))
    return x._apply("expand", arg=shape)


def _float_in(x: Tensor) -> Tensor:
    """Integer and bool inputs of float functions become the default float dtype."""
    return x if x.dtype.is_float else _cast(x, get_default_dtype())


def _in_work(fn, *xs: Tensor) -> Tensor:
    """Run `fn` on same-dtype tensors in their compute dtype (float32 for the half types) and round
    the result back once."""
    dt = xs[0].dtype
    work = D.compute_dtype(dt)
    return _cast(fn(*[_cast(x, work) for x in xs]), dt)
