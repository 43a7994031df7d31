"""Reductions (sum, mean, max, argmax, var, softmax, cumsum, ...) and matrix products.

All reductions go through `_reduce`, which normalises `dim` like PyTorch (int, tuple, None; an
empty tuple means every dim), merges runs of adjacent reduced axes into one axis (fewer loops in
the generated kernel), skips size-1 axes (reducing them is the identity) and applies one reduce
primitive (sum, prod, rmax, rmin; they keep reduced axes as size 1, which `keepdim` keeps or drops).

Composites follow their math: argmax is the smallest index where x equals its max (or is NaN, since
NaN is the max as in PyTorch); softmax subtracts the row max before exp; cumsum is a masked sum over
a triangular mask, O(n^2) work along the scanned dim (fine for the moderate sizes it is used at).

matmul is a broadcast multiply followed by a sum over the contracted axis, which is put LAST so the
generated loop reads the left operand contiguously; the scheduler may hand the pattern to a GEMM
template.
"""
from __future__ import annotations

import builtins
import math
from collections import namedtuple

from ember.compiler import dtypes as D

from .errors import ShapeError
from .autograd import with_rule
from .compose import _eq
from .ops_movement import _cast, _full, _iota, _where, expand, reshape, transpose, unsqueeze
from .tensor import Tensor, broadcast_shapes, get_default_dtype

from .ops_elementwise import DTypeError, maximum, minimum

__all__ = ["sum", "mean", "nansum", "max", "min", "amax", "amin", "aminmax", "argmax", "argmin", "var",
           "std", "var_mean", "std_mean", "prod", "logsumexp", "all", "any", "count_nonzero", "softmax",
           "log_softmax", "cumsum", "cumprod", "norm", "matmul", "mm", "bmm", "dot", "inner", "mv",
           "outer", "ger"]

# builtins this module shadows with PyTorch's names
_any, _max = builtins.any, builtins.max

values_indices = {name: namedtuple(name, ["values", "indices"]) for name in ("max", "min")}
minmax = namedtuple("aminmax", ["min", "max"])


# ---- elementwise pieces on operands of one shape and dtype (no promotion needed here) --------

def _ew(op: str, x: Tensor, *others) -> Tensor:
    """Primitive `op` on x and others (tensors broadcast to x, scalars become x-typed constants)."""
    ts = [expand(o, x.shape) if isinstance(o, Tensor) else _full(o, x.dtype, x.shape, x.device)
          for o in others]
    return x._apply(op, *ts)


def _sub(a: Tensor, b: Tensor) -> Tensor:
    return _ew("add", a, expand(b, a.shape)._apply("neg"))


def _isnan(x: Tensor) -> Tensor:
    return _ew("cmpeq", x, x)._apply("xor", _full(True, D.bool_, x.shape, x.device))


def _abs(x: Tensor) -> Tensor:
    return x if x.dtype.kind in "bu" else _ew("max", x, x._apply("neg"))


# ---- the one reduction mechanism -------------------------------------------------------------

def _reduce_dims(x: Tensor, dim) -> tuple:
    """Sorted, normalised dims; None or () means all; repeats raise like PyTorch."""
    if dim is None or (isinstance(dim, (tuple, list)) and len(dim) == 0):
        return tuple(range(x.ndim))
    dims = (dim,) if not isinstance(dim, (tuple, list)) else dim
    out = [x._dim(d) for d in dims]
    for d in out:
        if out.count(d) > 1:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
    return tuple(sorted(out)) if x.ndim else ()


def _reduce(x: Tensor, op: str, dims: tuple, keepdim: bool) -> Tensor:
    """Reduce primitive `op` over normalised `dims`, then keep or drop them."""
    shape = x.node.shape
    kept = tuple(1 if i in dims else n for i, n in enumerate(shape))
    out_shape = kept if keepdim else tuple(n for i, n in enumerate(shape) if i not in dims)
    live = [i for i in dims if shape[i] != 1]
    if not live:
        return reshape(x, out_shape)
    # merge runs of adjacent reduced axes into one: (a, [b, c], d) -> (a, b*c, d)
    merged, axes = [], []
    for i, n in enumerate(shape):
        if i in live and axes and axes[-1] == len(merged) - 1 and (i - 1) in live:
            merged[-1] *= n
            continue
        if i in live:
            axes.append(len(merged))
        merged.append(n)
    y = reshape(x, tuple(merged))._apply(op, arg=tuple(axes))
    return reshape(y, out_shape)


def _count(x: Tensor, dims: tuple) -> int:
    return math.prod(x.node.shape[d] for d in dims)


def _nonempty(x: Tensor, dims: tuple, name: str, dim, error=RuntimeError) -> None:
    if dim is None and x.numel() == 0:
        raise error(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                           f"Specify the reduction dim with the 'dim' argument.")
    for d in dims:
        if x.node.shape[d] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")


def _float_only(x: Tensor, name: str, what: str = "a floating point") -> None:
    if not x.dtype.is_float:
        raise DTypeError(f"{name}(): could not infer output dtype. Input dtype must be either {what} or "
                         f"complex dtype. Got: {x.dtype.name}")


def _accumulate_dtype(x: Tensor, dtype) -> Tensor:
    """sum/prod/cumsum accumulate bool and integers in int64 (PyTorch), or in `dtype` if given."""
    if dtype is not None:
        return _cast(x, dtype)
    return _cast(x, D.int64) if x.dtype.kind in "biu" else x


# ---- sums and products -----------------------------------------------------------------------

def sum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Sum over `dim` (all dims if None); bool and integer inputs sum in int64.

    >>> ember.tensor([[1, 2], [3, 4]]).sum(0).tolist()
    [4, 6]
    """
    x = _accumulate_dtype(input, dtype)
    return _reduce(x, "sum", _reduce_dims(x, dim), keepdim)


def nansum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """sum() treating NaN as zero."""
    x = input
    if x.dtype.is_float:
        x = _where(_isnan(x), _full(0, x.dtype, x.shape, x.device), x)
    return sum(x, dim, keepdim, dtype=dtype)


def mean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Arithmetic mean over `dim`; needs a floating dtype (or `dtype=`), like PyTorch.

    >>> ember.tensor([1.0, 2.0, 6.0]).mean().item()
    3.0
    """
    x = input if dtype is None else _cast(input, dtype)
    _float_only(x, "mean")
    dims = _reduce_dims(x, dim)
    return _ew("div", _reduce(x, "sum", dims, keepdim), _count(x, dims))


def prod(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Product over one dim (all if None); bool and integer inputs multiply in int64."""
    if isinstance(dim, (tuple, list)):
        raise TypeError("prod(): argument 'dim' must be int, not a sequence")
    x = _accumulate_dtype(input, dtype)
    return _reduce(x, "prod", _reduce_dims(x, dim), keepdim)


def count_nonzero(input: Tensor, dim=None) -> Tensor:
    """Number of non-zero elements over `dim` (int64)."""
    return sum(_cast(input, D.bool_), dim)


# ---- extremes --------------------------------------------------------------------------------

def _arg_extreme(x: Tensor, d: int, keepdim: bool, op: str) -> Tensor:
    """Index of the first max (op=rmax) / min (rmin) along d; NaN counts as the extreme."""
    n = x.node.shape[d]
    m = expand(_reduce(x, op, (d,), True), x.shape)
    hit = _ew("cmpeq", x, m)
    if x.dtype.is_float:
        hit = hit._apply("or", _isnan(x))
    pos = expand(reshape(_iota(n, x.device), tuple(n if i == d else 1 for i in range(x.ndim))), x.shape)
    first = _where(hit, pos, _full(n, D.int64, x.shape, x.device))
    return _reduce(first, "rmin", (d,), keepdim)


def _arg(input: Tensor, dim, keepdim: bool, op: str, name: str) -> Tensor:
    if input.dtype is D.bool_:
        raise DTypeError(f"{name}(): does not support bool input")
    dims = _reduce_dims(input, dim) if dim is not None else None
    _nonempty(input, dims or (), name, dim, IndexError)
    if dim is None:
        out = _arg_extreme(reshape(input, (-1,)), 0, False, op)
        return reshape(out, (1,) * input.ndim) if keepdim else out
    if input.ndim == 0:
        return _full(0, D.int64, (), input.device)
    return _arg_extreme(input, dims[0], keepdim, op)


def argmax(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the (first) maximum, over the flattened tensor if dim is None.

    >>> ember.tensor([1, 5, 5, 2]).argmax().item()
    1
    """
    return _arg(input, dim, keepdim, "rmax", "argmax")


def argmin(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the (first) minimum, over the flattened tensor if dim is None."""
    return _arg(input, dim, keepdim, "rmin", "argmin")


def _extreme(input: Tensor, dim, keepdim: bool, op: str, name: str):
    if isinstance(dim, Tensor):  # torch.max(a, b): elementwise
        return (maximum if name == "max" else minimum)(input, dim)
    if dim is None:
        _nonempty(input, (), name, None)
        return _reduce(input, op, _reduce_dims(input, None), False)
    if isinstance(dim, (tuple, list)):
        raise TypeError(f"{name}(): argument 'dim' must be int, not {type(dim).__name__}")
    dims = _reduce_dims(input, dim)
    _nonempty(input, dims, name, dim)
    values = _reduce(input, op, dims, keepdim)
    if input.ndim == 0:
        return values_indices[name](values, _full(0, D.int64, (), input.device))
    indices = _arg_extreme(input, dims[0], keepdim, op)
    return values_indices[name](_grad_to_index(values, input, indices, dims[0], keepdim), indices)


def _grad_to_index(values: Tensor, input: Tensor, indices: Tensor, d: int, keepdim: bool) -> Tensor:
    """max/min(dim).values whose gradient goes to the returned index only (PyTorch's choice among
    ties; the reduction's own rule shares it between them)."""
    if not input.dtype.is_float:
        return values
    shape = input.node.shape
    kept = shape[:d] + (1,) + shape[d + 1:]

    def rule(b, g, out, xs, arg):
        pos = reshape(_iota(shape[d], input.device), tuple(shape[d] if k == d else 1 for k in range(len(shape))))
        hit = _eq(expand(pos, shape), expand(reshape(indices, kept), shape))
        return [_where(hit, expand(reshape(g, kept), shape), _full(0, g.dtype, shape, g.device))]
    return with_rule(values, (input,), "max_dim", rule)


def _sqrt(x: Tensor) -> Tensor:
    """sqrt whose gradient is 0 where the result is 0 (PyTorch's std and norm at a constant or zero
    input), instead of the 0/0 of d sqrt(v) = dv / (2 sqrt(v))."""
    def rule(b, g, out, xs, arg):
        zero = _full(0, out.dtype, out.shape, out.device)
        return [_where(_eq(out, zero), zero, _ew("div", g, _ew("mul", out, _full(2, out.dtype, out.shape, out.device))))]
    return with_rule(x._apply("sqrt"), (x,), "sqrt", rule)


def max(input: Tensor, dim=None, keepdim: bool = False):
    """The maximum; with `dim`, the namedtuple (values, indices); with a tensor, elementwise.

    >>> ember.tensor([[1, 7], [9, 2]]).max(1).indices.tolist()
    [1, 0]
    """
    return _extreme(input, dim, keepdim, "rmax", "max")


def min(input: Tensor, dim=None, keepdim: bool = False):
    """The minimum; with `dim`, the namedtuple (values, indices); with a tensor, elementwise."""
    return _extreme(input, dim, keepdim, "rmin", "min")


def _amax_amin(input: Tensor, dim, keepdim: bool, op: str, name: str) -> Tensor:
    all_dims = dim is None or (isinstance(dim, (tuple, list)) and not dim)
    dims = _reduce_dims(input, dim)
    _nonempty(input, dims, name, None if all_dims else dims)
    return _reduce(input, op, dims, keepdim)


def amax(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Maximum over one or several dims (all if empty); NaN propagates.

    >>> ember.tensor([[1, 7], [9, 2]]).amax((0, 1)).item()
    9
    """
    return _amax_amin(input, dim, keepdim, "rmax", "amax")


def amin(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Minimum over one or several dims (all if empty); NaN propagates."""
    return _amax_amin(input, dim, keepdim, "rmin", "amin")


def aminmax(input: Tensor, *, dim=None, keepdim: bool = False):
    """The namedtuple (min, max)."""
    dims = _reduce_dims(input, dim)
    if _any(input.node.shape[d] == 0 for d in dims):
        raise RuntimeError("aminmax(): cannot compute aminmax over an empty dimension as the operation "
                           "has no identity.")
    return minmax(_reduce(input, "rmin", dims, keepdim), _reduce(input, "rmax", dims, keepdim))


# ---- boolean reductions ----------------------------------------------------------------------

def _logical(input: Tensor, dim, keepdim: bool, op: str) -> Tensor:
    out = _reduce(_cast(input, D.bool_), op, _reduce_dims(input, dim), keepdim)
    return _cast(out, D.uint8) if input.dtype is D.uint8 else out  # PyTorch keeps uint8


def all(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """True where every element along `dim` is non-zero. >>> ember.tensor([1, 0]).all().item() == False"""
    return _logical(input, dim, keepdim, "rmin")


def any(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """True where some element along `dim` is non-zero. >>> ember.tensor([1, 0]).any().item() == True"""
    return _logical(input, dim, keepdim, "rmax")


# ---- moments ---------------------------------------------------------------------------------

def _moments(input: Tensor, dim, unbiased, keepdim: bool, correction):
    if isinstance(dim, bool):  # legacy var(x, unbiased)
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None else int(bool(unbiased))
    if not input.dtype.is_float:
        raise DTypeError("std and var only support floating point and complex dtypes")
    dims = _reduce_dims(input, dim)
    n = _count(input, dims)
    mu = _ew("div", _reduce(input, "sum", dims, True), n)
    d = _sub(input, mu)
    var = _ew("div", _reduce(_ew("mul", d, d), "sum", dims, keepdim), _max(0, n - correction))
    return var, mu if keepdim else reshape(mu, var.shape)


def var(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Variance over `dim` with Bessel's correction by default (`correction=0` for the population).

    >>> ember.tensor([1.0, 2.0, 3.0]).var().item()
    1.0
    """
    return _moments(input, dim, unbiased, keepdim, correction)[0]


def std(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Standard deviation: sqrt(var(...)). >>> ember.tensor([1.0, 3.0]).std(correction=0).item() == 1.0"""
    return _sqrt(var(input, dim, unbiased, keepdim, correction=correction))


def var_mean(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    return _moments(input, dim, unbiased, keepdim, correction)


def std_mean(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
    v, m = _moments(input, dim, unbiased, keepdim, correction)
    return _sqrt(v), m


# ---- exp-normalisations ----------------------------------------------------------------------

def _to_float(x: Tensor) -> Tensor:
    return x if x.dtype.is_float else _cast(x, get_default_dtype())


def _finite_or_zero(m: Tensor) -> Tensor:
    inf = _ew("cmpeq", _abs(m), math.inf)
    return _where(inf, _full(0, m.dtype, m.shape, m.device), m)


def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) computed stably (the max is factored out; infinite maxima are kept exact).

    >>> round(ember.tensor([0.0, 0.0]).logsumexp(0).item(), 4)
    0.6931
    """
    x = _to_float(input)
    dims = _reduce_dims(x, dim)
    m = _finite_or_zero(_reduce(x, "rmax", dims, True))
    s = _reduce(_sub(x, m)._apply("exp"), "sum", dims, True)._apply("log")
    out = _ew("add", s, m)
    return out if keepdim else reshape(out, tuple(n for i, n in enumerate(x.node.shape) if i not in dims))


def _softmax_input(input: Tensor, dim, dtype, name: str):
    x = input if dtype is None else _cast(input, dtype)
    if not x.dtype.is_float:
        raise DTypeError(f"\"{name}\" not implemented for '{x.dtype.name}'")
    if dim is None:
        raise TypeError(f"{name}() missing required argument 'dim'")
    d = x._dim(dim)
    return x, (d,) if x.ndim else ()


def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim`, with the row max subtracted first (no overflow).

    >>> ember.tensor([0.0, 0.0]).softmax(0).tolist()
    [0.5, 0.5]
    """
    x, dims = _softmax_input(input, dim, dtype, "softmax")
    e = _sub(x, _reduce(x, "rmax", dims, True))._apply("exp")
    return _ew("div", e, _reduce(e, "sum", dims, True))


def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """x - logsumexp(x) along `dim`, stably."""
    x, dims = _softmax_input(input, dim, dtype, "log_softmax")
    shifted = _sub(x, _reduce(x, "rmax", dims, True))
    return _sub(shifted, _reduce(shifted._apply("exp"), "sum", dims, True)._apply("log"))


# ---- scans -----------------------------------------------------------------------------------

def _scan(x: Tensor, dim: int, op: str, identity) -> Tensor:
    """Inclusive scan as a reduction over a triangular mask: out[i] = op over x[j], j <= i. O(n^2)."""
    if x.ndim == 0:
        return x
    d = x._dim(dim)
    n = x.node.shape[d]
    # axis d indexes the output (i), axis d+1 the input (j)
    wide = x.node.shape[:d] + (n, n) + x.node.shape[d + 1:]
    xs = expand(unsqueeze(x, d), wide)
    i = expand(reshape(_iota(n, x.device), (n, 1)), (n, n))
    j = expand(reshape(_iota(n, x.device), (1, n)), (n, n))
    lower = _ew("cmplt", j, _ew("add", i, 1))
    lower = expand(reshape(lower, (1,) * d + (n, n) + (1,) * (x.ndim - d - 1)), wide)
    masked = _where(lower, xs, _full(identity, x.dtype, wide, x.device))
    return reshape(_reduce(masked, op, (d + 1,), True), x.node.shape)


def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running sum along `dim` (bool/int in int64). O(n^2) in the scanned dim's size n.

    >>> ember.tensor([1, 2, 3]).cumsum(0).tolist()
    [1, 3, 6]
    """
    return _scan(_accumulate_dtype(input, dtype), dim, "sum", 0)


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running product along `dim` (bool/int in int64). O(n^2) in the scanned dim's size n."""
    return _scan(_accumulate_dtype(input, dtype), dim, "prod", 1)


# ---- norms -----------------------------------------------------------------------------------

def norm(input: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """Vector p-norm over `dim` (all elements if None): p in {'fro', 2, 1, inf, -inf, 0, any float}.

    >>> ember.tensor([3.0, 4.0]).norm().item()
    5.0
    """
    x = input if dtype is None else _cast(input, dtype)
    if not x.dtype.is_float:
        raise DTypeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                         f"Got {x.dtype.name}")
    if p == "fro":
        p = 2
    if not isinstance(p, (int, float)):
        raise NotImplementedError(f"norm: p={p!r} is not supported")
    dims = _reduce_dims(x, dim)
    a = _abs(x)
    if p == math.inf or p == -math.inf:
        if _any(x.node.shape[d] == 0 for d in dims):
            raise RuntimeError(f"linalg.vector_norm cannot compute the {p} norm on an empty tensor because "
                               f"the operation does not have an identity")
        return _reduce(a, "rmax" if p > 0 else "rmin", dims, keepdim)
    if p == 0:
        return _cast(_reduce(_cast(_cast(x, D.bool_), x.dtype), "sum", dims, keepdim), x.dtype)
    if p == 1:
        return _reduce(a, "sum", dims, keepdim)
    if p == 2:
        return _sqrt(_reduce(_ew("mul", x, x), "sum", dims, keepdim))
    return _ew("pow", _reduce(_ew("pow", a, float(p)), "sum", dims, keepdim), 1.0 / p)


# ---- matrix products -------------------------------------------------------------------------

def _same_dtype(a: Tensor, b: Tensor, name: str) -> None:
    if a.dtype is not b.dtype:
        raise DTypeError(f"{name}: expected both operands to have the same dtype, but got "
                         f"{a.dtype.name} and {b.dtype.name}")
    if a.dtype is D.bool_:
        raise DTypeError(f"\"{name}\" not implemented for 'Bool'")


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with PyTorch's rules: 1-D operands are vectors (their dim is removed from the
    result), leading batch dims broadcast.

    >>> (ember.ones(5, 2, 3) @ ember.ones(3, 4)).shape
    ember.Size([5, 2, 4])
    """
    a, b = input, other
    if not isinstance(b, Tensor):
        raise TypeError(f"matmul(): argument 'other' must be Tensor, not {type(b).__name__}")
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and "
                         f"{b.ndim}D")
    _same_dtype(a, b, "matmul")
    if a.ndim == 1:
        a = unsqueeze(a, 0)
    if b.ndim == 1:
        b = unsqueeze(b, 1)
    (n, k), (k2, m) = a.node.shape[-2:], b.node.shape[-2:]
    if k != k2:
        raise ShapeError(f"matmul: shapes {list(input.shape)} and {list(other.shape)} cannot be multiplied "
                         f"({n}x{k} and {k2}x{m})")
    try:
        batch = broadcast_shapes(a.node.shape[:-2], b.node.shape[:-2])
    except ShapeError:
        raise ShapeError(f"matmul: batch dims of shapes {list(input.shape)} and {list(other.shape)} do not "
                         f"broadcast") from None
    wide = batch + (n, m, k)
    lhs = expand(unsqueeze(a, -2), wide)                                   # (..., n, 1, k)
    rhs = expand(unsqueeze(transpose(b, -1, -2), -3), wide)               # (..., 1, m, k)
    out = _reduce(lhs._apply("mul", rhs), "sum", (len(wide) - 1,), False)  # (..., n, m)
    shape = batch + ((n,) if input.ndim > 1 else ()) + ((m,) if other.ndim > 1 else ())
    return reshape(out, shape)


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """Product of two matrices (2-D only, no broadcasting)."""
    if input.ndim != 2:
        raise ShapeError(f"self must be a matrix, got shape {list(input.shape)}")
    if mat2.ndim != 2:
        raise ShapeError(f"mat2 must be a matrix, got shape {list(mat2.shape)}")
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched product of (b, n, k) and (b, k, m) tensors (no broadcasting)."""
    if input.ndim != 3 or mat2.ndim != 3:
        raise ShapeError(f"bmm: batch1 and batch2 must be 3D tensors, got shapes {list(input.shape)} and "
                         f"{list(mat2.shape)}")
    if input.node.shape[0] != mat2.node.shape[0] or input.node.shape[2] != mat2.node.shape[1]:
        raise ShapeError(f"bmm: shapes {list(input.shape)} and {list(mat2.shape)} cannot be multiplied")
    return matmul(input, mat2)


def dot(input: Tensor, other: Tensor) -> Tensor:
    """Inner product of two 1-D tensors of equal size."""
    if input.ndim != 1 or other.ndim != 1:
        raise ShapeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    if input.node.shape != other.node.shape:
        raise ShapeError(f"inconsistent tensor size, expected tensor {list(input.shape)} and src "
                         f"{list(other.shape)} to have the same number of elements, but got "
                         f"{input.numel()} and {other.numel()} elements respectively")
    return matmul(input, other)


def inner(input: Tensor, other: Tensor) -> Tensor:
    """Sum product over the last dims (a scalar times a tensor for 0-D operands)."""
    if input.ndim == 0 or other.ndim == 0:
        return _ew("mul", *_promote_pair(input, other))
    return matmul(input, transpose(other, -1, -2) if other.ndim > 1 else other)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    """Matrix-vector product."""
    if input.ndim != 2 or vec.ndim != 1:
        raise ShapeError(f"vector + matrix @ vector expected, got shapes {list(input.shape)} and "
                         f"{list(vec.shape)}")
    return matmul(input, vec)


def _promote_pair(a: Tensor, b: Tensor):
    dt = D.result_type((a.dtype, a.ndim), (b.dtype, b.ndim), default_float=get_default_dtype())
    shape = broadcast_shapes(a.node.shape, b.node.shape)
    return expand(_cast(a, dt), shape), expand(_cast(b, dt), shape)


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    """Outer product of two 1-D tensors (dtypes promote). >>> ember.outer(ember.ones(2), ember.ones(3)).shape == (2, 3)"""
    for name, v in (("self", input), ("vec2", vec2)):
        if v.ndim != 1:
            raise ShapeError(f"outer: Expected 1-D argument {name}, but got {v.ndim}-D")
    a, b = _promote_pair(unsqueeze(input, 1), unsqueeze(vec2, 0))
    return a._apply("mul", b)


ger = outer


def _rmatmul(self: Tensor, other) -> Tensor:
    from .creation import tensor
    return matmul(tensor(other, dtype=self.dtype, device=self.device), self)


# ---- methods ---------------------------------------------------------------------------------

for _name in ["sum", "nansum", "mean", "max", "min", "amax", "amin", "aminmax", "argmax", "argmin", "var",
              "std", "prod", "logsumexp", "all", "any", "count_nonzero", "softmax", "log_softmax",
              "cumsum", "cumprod", "norm", "matmul", "mm", "bmm", "dot", "inner", "mv", "outer", "ger"]:
    setattr(Tensor, _name, globals()[_name])
Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = _rmatmul
del _name
