"""Indexing and masking: __getitem__, __setitem__, gather, index_select, take_along_dim,
masked_fill, tril/triu.

Basic indices (ints, slices, None, Ellipsis) become one `slice` view plus a reshape. Advanced
indices (integer tensors, lists, numpy arrays) follow numpy's rules: they broadcast together, and
their dims replace the indexed dims in place when those are adjacent, or go first otherwise. They
are lowered to ONE `gather` on a flattened view: the indexed dims are permuted to the front and
merged, and the index tensors are combined into a linear index. Boolean masks have a
data-dependent shape, so (like PyTorch's implicit sync) the mask is realized on the host and turned
into integer indices; `x[mask] = scalar` needs no sync and is a plain `where`.

Index values are validated on the host (index tensors are realized if lazy) because the gather
primitive clamps out-of-range indices instead of trapping.

`__setitem__` is functional: it builds the updated value and rebinds the tensor to it. A basic-index
box is embedded into the full shape by padding (strided slices interleave zeros with pad+reshape)
and selected with `where`. Advanced assignment finds, for every target position, the LAST index
entry that writes it (a masked max over an equality matrix), then gathers the value: O(N*M) work for
N target positions and M index entries, fine for the moderate sizes indexing assignment sees.
Tensors obtained by indexing are values, not aliases: writing into `x[0]` does not change `x`.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import numpy as np

from ember.compiler import Buffer, Node, dtypes as D

from . import tracing
from .errors import IndexRangeError, ShapeError
from .ops_movement import _cast, _full, _iota, _slice_axis, _where, expand, permute, reshape
from .tensor import Tensor, broadcast_shapes

__all__ = ["gather", "index_select", "take_along_dim", "masked_fill", "tril", "triu"]


def _from_numpy(arr: np.ndarray, device: str) -> Tensor:
    buf = Buffer.from_array(arr)
    return Tensor._wrap(Node.make("buffer", arg=buf, dtype=buf.dtype, shape=arr.shape), device)


def _host(t: Tensor) -> np.ndarray:
    return t._value()  # realizes a lazy index tensor: its values decide validity (and mask shapes)


def _host_for_check(t: Tensor) -> np.ndarray | None:
    """Index values for a validity check, or None inside an ember.compile trace where they are not
    known yet: the check is skipped (the gather primitive clamps) and both signs are handled."""
    if tracing.current is not None and not t.node.realized:
        return None
    return _host(t)


def _check_range(vals: np.ndarray | None, n: int, dim: int, negative_ok: bool = True, err=IndexError) -> None:
    if vals is None:
        return


    lo = -n if negative_ok else 0
    bad = (vals < lo) | (vals >= n)
    if bad.any():
        raise err(f"index {vals[bad].flat[0]} is out of bounds for dimension {dim} with size {n}")


# ---- parsing an index into a slice view plus advanced indices -------------------------------

@dataclass
class _Plan:
    """x[index] == gather_adv(reshape(slice(x, arg), shape), adv)."""
    arg: list = field(default_factory=list)      # (start, step, size) for every dim of x
    shape: list = field(default_factory=list)    # shape after dropping int dims, adding None dims
    adv: list = field(default_factory=list)      # (position in `shape`, int Tensor, has negatives)


def _as_index_tensor(item, device: str):
    """Lists, numpy arrays and tensors used as indices: ('mask', np bool array) or ('int', Tensor)."""
    if isinstance(item, Tensor):
        if item.dtype in (D.bool_, D.uint8):
            return "mask", _host(item).astype(bool)
        if not item.dtype.is_int:
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        return "int", item
    arr = np.asarray(item)
    if arr.dtype == np.bool_:
        return "mask", arr
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    return "int", _from_numpy(arr.astype(np.int64), device)


def _plan(x: Tensor, index) -> _Plan:
    items = list(index) if isinstance(index, tuple) else [index]
    parsed = []  # (kind, payload)
    for it in items:
        if it is None or it is Ellipsis:
            parsed.append(("none" if it is None else "ellipsis", None))
        elif isinstance(it, (bool, np.bool_)):
            parsed.append(("bool", bool(it)))
        elif isinstance(it, (int, np.integer)):
            parsed.append(("int", int(it)))
        elif isinstance(it, slice):
            parsed.append(("slice", it))
        elif isinstance(it, (Tensor, list, tuple, np.ndarray)):
            kind, val = _as_index_tensor(it, x.device)
            if kind == "mask" and val.ndim == 0:
                parsed.append(("bool", bool(val)))
            elif kind == "int" and val.ndim == 0:  # PyTorch treats a 0-d index tensor as an int
                parsed.append(("int", int(_host(val))))
            else:
                parsed.append(("mask" if kind == "mask" else "tensor", val))
        else:
            raise IndexError("only integers, slices (`:`), ellipsis (`...`), None and long or byte "
                             f"Variables are valid indices (got {type(it).__name__})")
    used = sum(v.ndim if k == "mask" else 1 for k, v in parsed if k in ("int", "slice", "tensor", "mask"))
    if used > x.ndim:
        raise IndexError(f"too many indices for tensor of dimension {x.ndim}")
    n_ell = sum(k == "ellipsis" for k, _ in parsed)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    fill = [("slice", slice(None))] * (x.ndim - used)
    if n_ell:
        i = next(i for i, (k, _) in enumerate(parsed) if k == "ellipsis")
        parsed[i:i + 1] = fill
    else:
        parsed += fill

    plan, d = _Plan(), 0
    shape = x.node.shape
    for kind, val in parsed:
        if kind in ("none", "bool"):
            # a 0-d bool index adds a dim of size 1 (True) or 0 (False), as numpy does
            if kind == "bool" and not val:
                plan.adv.append((len(plan.shape), _from_numpy(np.zeros(0, np.int64), x.device), False))
            plan.shape.append(1)
        elif kind == "int":
            n = shape[d]
            if not -n <= val < n:
                raise IndexError(f"index {val} is out of bounds for dimension {d} with size {n}")
            plan.arg.append((val % n, 1, 1))
            d += 1
        elif kind == "slice":
            if val.step is not None and operator.index(val.step) <= 0:
                raise ValueError("step must be greater than zero")
            start, stop, step = val.indices(shape[d])
            size = len(range(start, stop, step))
            plan.arg.append((start if size else 0, step, size))
            plan.shape.append(size)
            d += 1
        elif kind == "tensor":
            vals = _host_for_check(val)
            _check_range(vals, shape[d], d)
            plan.arg.append((0, 1, shape[d]))
            plan.adv.append((len(plan.shape), val, vals is None or bool((vals < 0).any())))
            plan.shape.append(shape[d])
            d += 1
        else:  # mask over val.ndim dims: its nonzero positions index them
            k = val.ndim
            if val.shape != shape[d:d + k]:
                raise IndexError(f"The shape of the mask {list(val.shape)} at index {d} does not match the "
                                 f"shape of the indexed tensor {list(shape)} at index {d}")
            for j, pos in enumerate(np.nonzero(val)):
                plan.arg.append((0, 1, shape[d + j]))
                plan.adv.append((len(plan.shape), _from_numpy(pos.astype(np.int64), x.device), False))
                plan.shape.append(shape[d + j])
            d += k
    return plan


def _basic_view(x: Tensor, plan: _Plan) -> Tensor:
    if any(a != (0, 1, n) for a, n in zip(plan.arg, x.node.shape)):
        x = x._apply("slice", arg=tuple(plan.arg))
    return reshape(x, tuple(plan.shape))


# ---- advanced indices: one gather on a flattened view ----------------------------------------

@dataclass
class _Adv:
    flat: Tensor      # the indexed view with indexed dims first and merged: (N, *rest)
    linear: Tensor    # int64 linear index into dim 0 of `flat`: (M,)
    bshape: tuple     # broadcast shape of the index tensors
    front: int        # where the broadcast dims go in the result (0 unless adjacent)
    order: tuple      # the permutation applied to the view
    sizes: tuple      # the indexed dims' sizes


def _advanced(y: Tensor, adv: list) -> _Adv:
    pos = [p for p, _, _ in adv]
    try:
        bshape = broadcast_shapes(*[t.shape for _, t, _ in adv])
    except ShapeError:
        raise IndexError("shape mismatch: indexing tensors could not be broadcast together with shapes "
                         + ", ".join(str(list(t.shape)) for _, t, _ in adv)) from None
    adjacent = pos == list(range(pos[0], pos[0] + len(pos)))
    rest = [i for i in range(y.ndim) if i not in pos]
    order = tuple(pos + rest)
    sizes = tuple(y.node.shape[p] for p in pos)
    flat = reshape(permute(y, order), (math.prod(sizes),) + tuple(y.node.shape[i] for i in rest))
    linear, stride = None, 1
    for p, idx, negative in reversed(adv):
        n = y.node.shape[p]
        i = expand(_cast(idx, D.int64), bshape)
        if negative:  # they count from the end
            i = _where(i._apply("cmplt", _full(0, D.int64, bshape, y.device)),
                       i._apply("add", _full(n, D.int64, bshape, y.device)), i)
        if stride != 1:
            i = i._apply("mul", _full(stride, D.int64, bshape, y.device))
        linear = i if linear is None else linear._apply("add", i)
        stride *= n
    linear = reshape(linear, (math.prod(bshape),))
    return _Adv(flat, linear, bshape, pos[0] if adjacent else 0, order, sizes)


def _broadcast_dims_to(a: _Adv, rest_ndim: int) -> tuple:
    """Permutation taking (*bshape, *rest) to the result layout (bshape dims at `a.front`)."""
    nb = len(a.bshape)
    r = list(range(nb, nb + rest_ndim))
    return tuple(r[:a.front] + list(range(nb)) + r[a.front:])


def _inverse(order: tuple) -> tuple:
    return tuple(sorted(range(len(order)), key=order.__getitem__))


def _gather_rows(flat: Tensor, rows: Tensor) -> Tensor:
    """flat[rows] for an int64 (K,) tensor of row indices into dim 0."""
    rest = flat.node.shape[1:]
    idx = expand(reshape(rows, rows.node.shape + (1,) * len(rest)), rows.node.shape + rest)
    return flat._apply("gather", idx, arg=0)


def getitem(x: Tensor, index) -> Tensor:
    """x[index] with PyTorch/numpy semantics (see the module docstring).

    >>> ember.arange(12).reshape(3, 4)[1:, [0, 3]].tolist()
    [[4, 7], [8, 11]]
    """
    plan = _plan(x, index)
    y = _basic_view(x, plan)
    if not plan.adv:
        return y
    a = _advanced(y, plan.adv)
    rest = a.flat.node.shape[1:]
    out = reshape(_gather_rows(a.flat, a.linear), a.bshape + rest)
    return permute(out, _broadcast_dims_to(a, len(rest)))


# ---- assignment ------------------------------------------------------------------------------

def _scalar_for(dtype: D.DType, value):
    """A Python scalar converted to `dtype` as PyTorch does: unsigned types wrap negative values,
    other integer overflow raises."""
    if isinstance(value, np.generic):
        value = value.item()
    if not dtype.is_int or isinstance(value, (bool, float)):
        return value
    info = np.iinfo(dtype.np)
    if not min(info.min, -2 ** (dtype.bits - 1)) <= value <= info.max:
        raise RuntimeError(f"value cannot be converted to type {dtype.name} without overflow")
    return value % 2 ** dtype.bits if value < 0 and dtype.kind == "u" else value


def _value_tensor(x: Tensor, value) -> Tensor:
    if isinstance(value, Tensor):
        return _cast(value, x.dtype)
    if isinstance(value, (bool, int, float, np.number, np.bool_)):
        return _full(_scalar_for(x.dtype, value), x.dtype, (), x.device)
    raise TypeError(f"can't assign a {type(value).__name__} to a {x.dtype!r} tensor")


def _broadcast_value(v: Tensor, shape: tuple) -> Tensor:
    vshape = v.node.shape
    while len(vshape) > len(shape) and vshape[0] == 1:  # PyTorch drops leading unit dims of the value
        vshape = vshape[1:]
    try:
        if len(vshape) > len(shape) or broadcast_shapes(vshape, shape) != tuple(shape):
            raise ShapeError
    except ShapeError:
        raise ShapeError(f"shape mismatch: value tensor of shape {list(v.shape)} cannot be broadcast to "
                         f"indexing result of shape {list(shape)}") from None
    return expand(reshape(v, vshape), shape)


def _embed(v: Tensor, arg: list, shape: tuple) -> Tensor:
    """Place `v` (the shape of slice(arg)) at its positions in a zero tensor of `shape`."""
    widths = []
    for d, (start, step, size) in enumerate(arg):
        if step > 1 and size > 1:  # interleave step-1 zeros after each element, drop the tail
            s = v.node.shape
            v = v._apply("reshape", arg=s[:d] + (size, 1) + s[d + 1:])
            v = v._apply("pad", arg=tuple((0, step - 1) if k == d + 1 else (0, 0) for k in range(len(s) + 1)))
            v = v._apply("reshape", arg=s[:d] + (size * step,) + s[d + 1:])
            v = _slice_axis(v, d, 0, (size - 1) * step + 1)
        span = v.node.shape[d]
        widths.append((start, shape[d] - start - span))
    return v._apply("pad", arg=tuple(widths)) if any(b or a for b, a in widths) else v


def _assign_advanced(y: Tensor, a: _Adv, value: Tensor) -> Tensor:
    """y with y[adv] = value (value already broadcast to the indexing result's shape)."""
    n, m = a.flat.node.shape[0], a.linear.node.shape[0]
    if n == 0 or m == 0:
        return y
    rest = a.flat.node.shape[1:]
    dev = y.device
    # writer[t] = the last index entry that targets row t, or -1
    hits = reshape(a.linear, (1, m))._apply("expand", arg=(n, m))._apply(
        "cmpeq", reshape(_iota(n, dev), (n, 1))._apply("expand", arg=(n, m)))
    entry = reshape(_iota(m, dev), (1, m))._apply("expand", arg=(n, m))
    writer = _where(hits, entry, _full(-1, D.int64, (n, m), dev))._apply("rmax", arg=(1,))
    writer = reshape(writer, (n,))
    written = _full(-1, D.int64, (n,), dev)._apply("cmplt", writer)
    if value.numel() == 1:
        rows = expand(reshape(value, ()), (n,) + rest)
    else:
        vflat = permute(value, _inverse(_broadcast_dims_to(a, len(rest))))
        vflat = reshape(vflat, (m,) + rest)
        rows = _gather_rows(vflat, writer._apply("max", _full(0, D.int64, (n,), dev)))
    mask = expand(reshape(written, (n,) + (1,) * len(rest)), (n,) + rest)
    flat = _where(mask, rows, a.flat)
    return permute(reshape(flat, a.sizes + rest), _inverse(a.order))


def _setitem_mask_fast(x: Tensor, mask: Tensor, value: Tensor) -> Tensor:
    """x[mask] = scalar without a host sync: where(mask, value, x)."""
    k = mask.ndim
    if mask.node.shape != x.node.shape[:k]:
        raise IndexError(f"The shape of the mask {list(mask.shape)} at index 0 does not match the shape "
                         f"of the indexed tensor {list(x.shape)} at index 0")
    cond = expand(reshape(_cast(mask, D.bool_), mask.node.shape + (1,) * (x.ndim - k)), x.node.shape)
    return _where(cond, expand(reshape(value, ()), x.node.shape), x)


def assigned(x: Tensor, index, value) -> Tensor:
    """The value of `x` after `x[index] = value`, as a new lazy tensor."""
    value = _value_tensor(x, value)
    if (isinstance(index, Tensor) and index.dtype in (D.bool_, D.uint8) and index.ndim > 0
            and value.numel() == 1):
        return _setitem_mask_fast(x, index, value)
    plan = _plan(x, index)
    y = _basic_view(x, plan)
    if plan.adv:
        a = _advanced(y, plan.adv)
        rest = a.flat.node.shape[1:]
        shape = a.bshape + rest
        result_shape = tuple(shape[i] for i in _broadcast_dims_to(a, len(rest)))
        new = _assign_advanced(y, a, _broadcast_value(value, result_shape))
    else:
        new = _broadcast_value(value, y.node.shape)
    box = tuple(size for _, _, size in plan.arg)
    if math.prod(box) == 0:
        return x
    new = reshape(new, box)
    if box == x.node.shape:
        return new
    inside = _embed(_full(True, D.bool_, box, x.device), plan.arg, x.node.shape)
    return _where(inside, _embed(new, plan.arg, x.node.shape), x)


def setitem(x: Tensor, index, value) -> None:
    """x[index] = value: PyTorch's in-place write, done by rebinding x to the updated value."""
    x._rebind(assigned(x, index, value))


# ---- gather-style functions ------------------------------------------------------------------

def _index_dtype(index: Tensor, name: str) -> None:
    if not isinstance(index, Tensor):
        raise TypeError(f"{name}(): index must be a Tensor, got {type(index).__name__}")
    if index.dtype not in (D.int64, D.int32):
        raise RuntimeError(f"{name}(): Expected dtype int32 or int64 for index")


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """out[i][j][k] = input[i][index[i][j][k]][k] for dim=1; index.shape <= input.shape off `dim`.

    >>> ember.gather(ember.tensor([[1, 2], [3, 4]]), 1, ember.tensor([[0, 0], [1, 0]])).tolist()
    [[1, 1], [4, 3]]
    """
    _index_dtype(index, "gather")
    d = input._dim(dim)
    if index.ndim != input.ndim and not (index.ndim <= 1 and input.ndim <= 1):
        raise ShapeError("Index tensor must have the same number of dimensions as input tensor")
    if input.ndim == 0 or index.ndim == 0:
        return reshape(gather(reshape(input, (-1,)), 0, reshape(index, (-1,))), index.shape)
    for k, (a, b) in enumerate(zip(index.node.shape, input.node.shape)):
        if k != d and a > b:
            raise ShapeError(f"Size does not match at dimension {k} expected index {list(index.shape)} to be "
                             f"no larger than self {list(input.shape)} apart from dimension {d}")
    if index.numel():
        _check_range(_host_for_check(index), input.node.shape[d], d, negative_ok=False, err=IndexRangeError)
    src = input
    for k, n in enumerate(index.node.shape):
        if k != d:
            src = _slice_axis(src, k, 0, n)
    return src._apply("gather", index, arg=d)


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The entries `index` (1-D) of `input` along `dim`.

    >>> ember.arange(6).reshape(2, 3).index_select(1, ember.tensor([2, 0])).tolist()
    [[2, 0], [5, 3]]
    """
    _index_dtype(index, "index_select")
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    d = input._dim(dim)
    if input.ndim == 0:  # a 0-d input gives a 0-d result
        return reshape(index_select(reshape(input, (1,)), 0, index), ())
    index = reshape(index, (-1,))
    n, k = input.node.shape[d], index.node.shape[0]
    if k:
        _check_range(_host_for_check(index), n, d, negative_ok=False, err=IndexRangeError)
    shape = input.node.shape[:d] + (k,) + input.node.shape[d + 1:]
    if n == 0 or k == 0:
        return _full(0, input.dtype, shape, input.device)
    idx = expand(reshape(index, tuple(k if i == d else 1 for i in range(input.ndim))), shape)
    return input._apply("gather", idx, arg=d)


def take_along_dim(input: Tensor, indices: Tensor, dim: int | None = None) -> Tensor:
    """numpy.take_along_axis with broadcasting; dim=None indexes the flattened input."""
    _index_dtype(indices, "take_along_dim")
    if dim is None:
        return gather(reshape(input, (-1,)), 0, reshape(indices, (-1,)))
    d = input._dim(dim)
    if input.ndim != indices.ndim:
        raise ShapeError(f"torch.take_along_dim(): input and indices should have the same number of "
                         f"dimensions, but got {input.ndim} dimensions for input, and {indices.ndim} "
                         f"dimensions for indices")
    ishape, jshape = list(input.node.shape), list(indices.node.shape)
    ishape[d] = jshape[d] = 1
    common = broadcast_shapes(ishape, jshape)
    n = input.node.shape[d]
    vals = _host_for_check(indices)
    _check_range(vals, n, d, err=IndexRangeError)
    src = expand(input, tuple(n if i == d else s for i, s in enumerate(common)))
    idx = expand(indices, tuple(indices.node.shape[d] if i == d else s for i, s in enumerate(common)))
    idx = _cast(idx, D.int64)
    if vals is None or (vals < 0).any():
        zero = _full(0, D.int64, idx.shape, idx.device)
        idx = _where(idx._apply("cmplt", zero), idx._apply("add", _full(n, D.int64, idx.shape, idx.device)), idx)
    return src._apply("gather", idx, arg=d)


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    """`value` where `mask` is True, else `input` (mask broadcasts; the dtype stays input's).

    >>> ember.zeros(3).masked_fill(ember.tensor([True, False, True]), 5.0).tolist()
    [5.0, 0.0, 5.0]
    """
    if not isinstance(mask, Tensor) or mask.dtype is not D.bool_:
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{getattr(mask, 'dtype', type(mask).__name__)!r}")
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                           f"{value.ndim} dimension(s).")
    shape = broadcast_shapes(input.node.shape, mask.node.shape)
    v = _value_tensor(input, value)
    return _where(expand(mask, shape), expand(v, shape), expand(input, shape))


# ---- triangular masks ------------------------------------------------------------------------

def _tri(input: Tensor, diagonal: int, lower: bool, name: str) -> Tensor:
    if input.ndim < 2:
        raise RuntimeError(f"{name}: input tensor must have at least 2 dimensions")
    rows, cols = input.node.shape[-2:]
    i = _iota(rows, input.device)._apply("reshape", arg=(rows, 1))._apply("expand", arg=(rows, cols))
    j = _iota(cols, input.device)._apply("reshape", arg=(1, cols))._apply("expand", arg=(rows, cols))
    # lower keeps j - i <= diagonal, i.e. j < i + diagonal + 1; upper keeps i + diagonal - 1 < j
    if lower:
        keep = j._apply("cmplt", i._apply("add", _full(diagonal + 1, D.int64, (rows, cols), input.device)))
    else:
        keep = i._apply("add", _full(diagonal - 1, D.int64, (rows, cols), input.device))._apply("cmplt", j)
    keep = expand(keep, input.shape)
    return _where(keep, input, _full(0, input.dtype, input.shape, input.device))


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """Zero the elements above the `diagonal`-th diagonal of the last two dims."""
    return _tri(input, diagonal, True, "tril")


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """Zero the elements below the `diagonal`-th diagonal of the last two dims."""
    return _tri(input, diagonal, False, "triu")


Tensor.__getitem__ = getitem
Tensor.__setitem__ = setitem
Tensor.gather = gather
Tensor.index_select = index_select
Tensor.take_along_dim = take_along_dim
Tensor.masked_fill = masked_fill
Tensor.tril = tril
Tensor.triu = triu


def _masked_fill_(self: Tensor, mask: Tensor, value) -> Tensor:
    out = masked_fill(self, mask, value)
    if out.node.shape != self.node.shape:
        raise ShapeError(f"masked_fill_: mask of shape {list(mask.shape)} does not broadcast to the "
                         f"tensor's shape {list(self.shape)}")
    self._rebind(out)
    return self


Tensor.masked_fill_ = _masked_fill_
