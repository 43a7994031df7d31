"""Movement ops: reshape, permute, expand, slices, cat/stack/split, pad, flip, repeat.

Each is a composition of the zero-copy movement primitives (reshape, permute, expand, pad, slice),
so nothing here moves data by itself: the scheduler turns a chain of views into index arithmetic
inside whichever kernel reads it. `cat` is a `where` over zero-padded pieces, which fuses into a
single kernel with its consumers. Shape errors follow PyTorch's wording and raise at the call.

Unlike PyTorch, `view` never fails on a non-contiguous tensor (views are lazy index arithmetic, there
are no strides to be incompatible with) and `contiguous()` is a no-op for the same reason.
"""
from __future__ import annotations

import math
import operator
from typing import Sequence

from ember.compiler import dtypes as D

from .compose import _cast, _full, _iota, _where  # noqa: F401  (ops_reduce and indexing import them from here)
from .errors import ShapeError
from .tensor import Tensor

__all__ = ["reshape", "permute", "transpose", "swapaxes", "swapdims", "t", "adjoint", "broadcast_to",
           "squeeze", "unsqueeze", "flatten", "ravel", "unflatten", "cat", "concat", "concatenate",
           "stack", "hstack", "vstack", "split", "chunk", "tensor_split", "unbind", "flip", "fliplr",
           "flipud", "constant_pad_nd", "tile", "narrow", "select", "roll", "movedim", "moveaxis",
           "tril", "triu", "gather", "index_select", "take_along_dim", "masked_fill"]


# ---- small building blocks shared by the movement, reduce and indexing modules ---------------
# (constants, iota, cast and where come from compose.py, the one home of such helpers)

def _sizes(args, name: str = "size") -> tuple:
    """Accept f(2, 3), f((2, 3)), f([2, 3]) and f(ember.Size(...)) like PyTorch."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    try:
        return tuple(operator.index(a) for a in args)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of ints, got {list(args)!r}") from None


def _dims(x: Tensor, dims, ndim: int | None = None) -> tuple:
    """Normalise an int or a sequence of dims; repeated dims raise like PyTorch."""
    dims = (dims,) if isinstance(dims, int) or not isinstance(dims, (tuple, list)) else dims
    out = tuple(x._dim(d, ndim) for d in dims)
    for d in out:
        if out.count(d) > 1:
            raise RuntimeError(f"dim {d} appears multiple times in the list of dims")
    return out


def _needs_dims(input: Tensor, name: str, error=RuntimeError) -> None:
    if input.ndim == 0:
        raise error(f"{name} expects at least a 1-dimensional tensor")


def _slice_axis(x: Tensor, dim: int, start: int, size: int, step: int = 1) -> Tensor:
    """The view x[..., start:start+size*step:step, ...] on axis `dim` (already normalised)."""
    if start == 0 and step == 1 and size == x.shape[dim]:
        return x
    arg = tuple((start if i == dim else 0, step if i == dim else 1, size if i == dim else n)
                for i, n in enumerate(x.shape))
    return x._apply("slice", arg=arg)


# ---- shape changes ---------------------------------------------------------------------------

def _infer_shape(shape: tuple, numel: int) -> tuple:
    """Resolve one -1 in `shape` for a tensor of `numel` elements, with PyTorch's errors."""
    shape = tuple(shape)
    for i, n in enumerate(shape):
        if n < -1:
            raise ShapeError(f"invalid shape dimension {n} at index {i} of shape {list(shape)}")
    if shape.count(-1) > 1:
        raise ShapeError("only one dimension can be inferred")
    known = math.prod(n for n in shape if n != -1)
    if -1 in shape:
        if known == 0:
            if numel == 0:
                raise ShapeError(f"cannot reshape tensor of 0 elements into shape {list(shape)} because "
                                 f"the unspecified dimension size -1 can be any value and is ambiguous")
            raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        if numel % known:
            raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if n == -1 else n for n in shape)
    elif known != numel:
        raise ShapeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def reshape(input: Tensor, *shape) -> Tensor:
    """The same elements in a new shape; one dimension may be -1 (inferred).

    >>> ember.arange(6).reshape(2, -1).shape
    ember.Size([2, 3])
    """
    shape = _infer_shape(_sizes(shape, "shape"), input.numel())
    return input if shape == input.node.shape else input._apply("reshape", arg=shape)


def view(input: Tensor, *shape) -> Tensor:
    """reshape(), or with a dtype argument a bitcast to a dtype of equal item size."""
    if len(shape) == 1 and isinstance(shape[0], D.DType):
        dt = shape[0]
        if dt is input.dtype:
            return input
        if dt.itemsize != input.dtype.itemsize:
            raise TypeError(f"ember: view({dt!r}) of a {input.dtype!r} tensor needs equal item sizes")
        return input._apply("bitcast", arg=dt)
    return reshape(input, *shape)


def permute(input: Tensor, *dims) -> Tensor:
    """Reorder the dimensions: out.shape[i] == input.shape[dims[i]].

    >>> ember.zeros(2, 3, 4).permute(2, 0, 1).shape
    ember.Size([4, 2, 3])
    """
    dims = _sizes(dims, "dims")
    if len(dims) != input.ndim:
        raise ShapeError(f"permute(): number of dimensions in the tensor input does not match the length of "
                         f"the desired ordering of dimensions i.e. input.dim() = {input.ndim} is not equal "
                         f"to len(dims) = {len(dims)}")
    dims = tuple(input._dim(d) for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return input if dims == tuple(range(input.ndim)) else input._apply("permute", arg=dims)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions. >>> ember.zeros(2, 3).transpose(0, 1).shape == (3, 2)"""
    d0, d1 = input._dim(dim0), input._dim(dim1)
    if input.ndim == 0:
        return input
    order = list(range(input.ndim))
    order[d0], order[d1] = order[d1], order[d0]
    return permute(input, order)


swapaxes = swapdims = transpose


def t(input: Tensor) -> Tensor:
    """Transpose of a matrix; 0-D and 1-D tensors are returned as is."""
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def _mT(input: Tensor) -> Tensor:
    if input.ndim < 2:
        raise RuntimeError(f"tensor.mT is only supported on matrices or batches of matrices. "
                           f"Got {input.ndim}-D tensor.")
    return transpose(input, -2, -1)


adjoint = _mT  # real dtypes only, so the conjugate is the identity


def expand(input: Tensor, *sizes) -> Tensor:
    """Broadcast size-1 dims (and new leading dims) to `sizes`; -1 keeps a size. No copy.

    >>> ember.ones(3, 1).expand(-1, 4).shape
    ember.Size([3, 4])
    """
    sizes = _sizes(sizes)
    shape = input.node.shape
    if len(sizes) < len(shape):
        raise ShapeError(f"expand({list(shape)}, size={list(sizes)}): the number of sizes provided "
                         f"({len(sizes)}) must be greater or equal to the number of dimensions in the "
                         f"tensor ({len(shape)})")
    lead = len(sizes) - len(shape)
    out = []
    for i, n in enumerate(sizes):
        old = shape[i - lead] if i >= lead else None
        if n == -1 and old is not None:
            n = old
        if n < 0 or (old is not None and old != 1 and old != n):
            why = ("the existing size" if old is not None else "a new leading dimension")
            raise ShapeError(f"The expanded size of the tensor ({n}) must match {why} ({old}) at "
                             f"non-singleton dimension {i}.  Target sizes: {list(sizes)}.  "
                             f"Tensor sizes: {list(shape)}")
        out.append(n)
    out = tuple(out)
    if out == shape:
        return input
    if lead:
        input = input._apply("reshape", arg=(1,) * lead + shape)
    return input._apply("expand", arg=out)


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    return expand(input, other.shape)


def broadcast_to(input: Tensor, shape) -> Tensor:
    """numpy-style alias of expand(). >>> ember.ones(3).broadcast_to((2, 3)).shape == (2, 3)"""
    return expand(input, tuple(shape))


def squeeze(input: Tensor, dim=None) -> Tensor:
    """Remove size-1 dims (all, or those listed in `dim`; dims that are not size 1 are kept)."""
    dims = range(input.ndim) if dim is None else _dims(input, dim)
    if input.ndim == 0:
        return input
    drop = {d for d in dims if input.node.shape[d] == 1}
    return reshape(input, tuple(n for i, n in enumerate(input.node.shape) if i not in drop))


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a size-1 dim at `dim` (in [-ndim-1, ndim]). >>> ember.ones(3).unsqueeze(-1).shape == (3, 1)"""
    d = input._dim(dim, input.ndim + 1)
    shape = input.node.shape
    return input._apply("reshape", arg=shape[:d] + (1,) + shape[d:])


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one. >>> ember.ones(2, 3, 4).flatten(1).shape == (2, 12)"""
    if input.ndim == 0:
        return reshape(input, (1,))
    s, e = input._dim(start_dim), input._dim(end_dim)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input.node.shape
    return reshape(input, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def ravel(input: Tensor) -> Tensor:
    return reshape(input, (-1,))


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    """Split dim `dim` into `sizes` (one may be -1). >>> ember.ones(2, 6).unflatten(1, (3, -1)).shape == (2, 3, 2)"""
    _needs_dims(input, "unflatten")
    d = input._dim(dim)
    sizes = tuple(sizes)
    if not sizes:
        raise RuntimeError("unflatten: sizes must be non-empty")
    n = input.node.shape[d]
    try:
        sizes = _infer_shape(sizes, n)
    except ShapeError:
        raise ShapeError(f"unflatten: Provided sizes {list(sizes)} don't multiply up to the size of dim {d} "
                         f"({n}) in the input tensor") from None
    shape = input.node.shape
    return reshape(input, shape[:d] + sizes + shape[d + 1:])


def movedim(input: Tensor, source, destination) -> Tensor:
    """Move dims `source` to positions `destination`; the others keep their order."""
    src, dst = _dims(input, source), _dims(input, destination)
    if input.ndim == 0:
        return input
    if len(src) != len(dst):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({list(src)} dims) should "
                           f"contain the same number of dims as destination ({list(dst)} dims)")
    order = [None] * input.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(i for i in range(input.ndim) if i not in src)
    return permute(input, [o if o is not None else next(rest) for o in order])


moveaxis = movedim


# ---- joining and splitting ------------------------------------------------------------------

_CAT_FANIN = 16


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along `dim`, promoting dtypes like PyTorch.

    Each piece is zero-padded to the output shape and selected where its region lies, so the
    result is one fused elementwise kernel rather than a copy per piece.

    >>> ember.cat([ember.zeros(2, 3), ember.ones(1, 3)]).shape
    ember.Size([3, 3])
    """
    tensors = list(tensors)
    if not tensors:
        raise ValueError("torch.cat(): expected a non-empty list of Tensors")
    for i, x in enumerate(tensors):
        if not isinstance(x, Tensor):
            raise TypeError(f"cat(): expected a sequence of Tensors, but element {i} is "
                            f"{type(x).__name__}")
        if x.ndim == 0:
            raise ShapeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    dtype = tensors[0].dtype
    for x in tensors[1:]:
        dtype = D.result_type((dtype, 1), (x.dtype, 1))
    # PyTorch's legacy rule: 1-D empty tensors are skipped whatever the other shapes are
    pieces = [x for x in tensors if x.node.shape != (0,)] or tensors[:1]
    ref = pieces[0]
    d = ref._dim(dim)
    for i, x in enumerate(tensors):
        if x.node.shape == (0,) and x is not ref:
            continue
        if x.ndim != ref.ndim:
            raise ShapeError(f"Tensors must have same number of dimensions: got {ref.ndim} and {x.ndim}")
        for k, (a, b) in enumerate(zip(ref.node.shape, x.node.shape)):
            if k != d and a != b:
                raise ShapeError(f"Sizes of tensors must match except in dimension {d}. Expected size {a} "
                                 f"but got size {b} for tensor number {i} in the list.")
    pieces = [_cast(x, dtype) for x in pieces]
    if len(pieces) > _CAT_FANIN:
        # every output element evaluates each piece's select, so many pieces are joined as a tree
        # of materialized groups: O(fan-in * depth) work per element instead of O(pieces)
        groups = [cat(pieces[i:i + _CAT_FANIN], d) for i in range(0, len(pieces), _CAT_FANIN)]
        return cat([g._apply("contiguous") for g in groups], d)
    total = sum(x.node.shape[d] for x in pieces)
    out, off = None, 0
    for x in pieces:
        n = x.node.shape[d]
        if n == 0 and out is not None:
            continue
        widths = tuple((off, total - off - n) if k == d else (0, 0) for k in range(ref.ndim))
        placed = x._apply("pad", arg=widths)
        if out is None:
            out = placed
        else:
            inside = _full(True, D.bool_, x.shape, x.device)._apply("pad", arg=widths)
            out = _where(inside, placed, out)
        off += n
    return out


concat = concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join equal-shaped tensors along a new dim. >>> ember.stack([ember.ones(3)] * 2, 1).shape == (3, 2)"""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, x in enumerate(tensors):
        if x.node.shape != tensors[0].node.shape:
            raise ShapeError(f"stack expects each tensor to be equal size, but got {list(tensors[0].shape)} "
                             f"at entry 0 and {list(x.shape)} at entry {i}")
    d = tensors[0]._dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(x, d) for x in tensors], d)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    tensors = [x if x.ndim else reshape(x, (1,)) for x in tensors]
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([x if x.ndim >= 2 else reshape(x, (1, -1)) for x in tensors], 0)


def split(tensor: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Views of consecutive pieces: of equal size (the last may be smaller) or of the listed sizes.

    >>> [p.shape[0] for p in ember.arange(5).split(2)]
    [2, 2, 1]
    """
    _needs_dims(tensor, "split")
    d = tensor._dim(dim)
    n = tensor.node.shape[d]
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [operator.index(s) for s in split_size_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != n:
            raise ShapeError(f"split_with_sizes expects split_sizes to sum exactly to {n} (input tensor's "
                             f"size at dimension {d}), but got split_sizes={sizes}")
    else:
        size = operator.index(split_size_or_sections)
        if size < 0:
            raise RuntimeError(f"split expects split_size be non-negative, but got split_size={size}")
        if size == 0:
            if n:
                raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension "
                                   f"size of {n}")
            return (tensor,)
        sizes = [min(size, n - s) for s in range(0, n, size)] or [0]
    out, off = [], 0
    for s in sizes:
        out.append(_slice_axis(tensor, d, off, s))
        off += s
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    """split() into `chunks` pieces of ceil(n / chunks) (fewer if that covers the dim)."""
    _needs_dims(input, "chunk")
    if chunks <= 0:
        raise RuntimeError(f"chunk expects `chunks` to be greater than 0, got: {chunks}")
    n = input.shape[input._dim(dim)]
    if n == 0:
        return split(input, [0] * chunks, dim)
    return split(input, -(-n // chunks), dim)


def tensor_split(input: Tensor, indices_or_sections, dim: int = 0) -> tuple:
    """numpy.array_split: n near-equal pieces, or pieces cut at the given indices."""
    _needs_dims(input, "tensor_split")
    d = input._dim(dim)
    n = input.node.shape[d]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {k}")
        cuts = [i * (n // k) + min(i, n % k) for i in range(1, k)]
    else:
        cuts = list(indices_or_sections)
    bounds = [0] + [min(max(c, 0), n) for c in cuts] + [n]
    return tuple(_slice_axis(input, d, a, max(b - a, 0)) for a, b in zip(bounds, bounds[1:]))


def unbind(input: Tensor, dim: int = 0) -> tuple:
    """The slices along `dim`, each without that dim."""
    _needs_dims(input, "unbind", IndexError)
    d = input._dim(dim)
    return tuple(select(input, d, i) for i in range(input.node.shape[d]))


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """The view of `length` elements from `start` on `dim`. >>> ember.arange(5).narrow(0, 1, 3).tolist() == [1, 2, 3]"""
    _needs_dims(input, "narrow()")
    d = input._dim(dim)
    n = input.node.shape[d]
    if not -n <= start <= n:
        raise IndexError(f"start out of range (expected to be in range of [{-n}, {n}], but got {start})")
    start %= max(n, 1) if start < 0 else n + 1
    if length < 0:
        raise RuntimeError("narrow(): length must be non-negative.")
    if start + length > n:
        raise ShapeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    return _slice_axis(input, d, start, length)


def select(input: Tensor, dim: int, index: int) -> Tensor:
    """input[..., index, ...] on `dim`, which is removed."""
    _needs_dims(input, "select()", IndexError)
    d = input._dim(dim)
    n = input.node.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select(): index {index} out of range for tensor of size {list(input.shape)} at "
                         f"dimension {d}")
    out = _slice_axis(input, d, index % n, 1)
    return out._apply("reshape", arg=input.node.shape[:d] + input.node.shape[d + 1:])


# ---- reordering and repeating ----------------------------------------------------------------

def flip(input: Tensor, *dims) -> Tensor:
    """Reverse the order along `dims` (a negative-step slice, no copy)."""
    dims = _dims(input, _sizes(dims, "dims"))
    arg = tuple((n - 1, -1, n) if i in dims and n > 1 else (0, 1, n) for i, n in enumerate(input.node.shape))
    return input if all(s == 1 for _, s, _ in arg) else input._apply("slice", arg=arg)


def fliplr(input: Tensor) -> Tensor:
    return flip(input, 1)


def flipud(input: Tensor) -> Tensor:
    return flip(input, 0)


def roll(input: Tensor, shifts, dims=None) -> Tensor:
    """Rotate elements along `dims` (the flattened tensor if None) by `shifts`."""
    if dims is None:
        return reshape(roll(flatten(input), shifts, 0), input.node.shape)
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    _needs_dims(input, "roll with dims", IndexError)
    for s, d in zip(shifts, dims):
        d = input._dim(d)
        n = input.node.shape[d]
        k = s % n if n else 0
        if k:
            input = cat([_slice_axis(input, d, n - k, k), _slice_axis(input, d, 0, n - k)], d)
    return input


def repeat(input: Tensor, *sizes) -> Tensor:
    """Tile the tensor `sizes[i]` times along dim i (sizes may add leading dims).

    >>> ember.tensor([1, 2]).repeat(2, 2).tolist()
    [[1, 2, 1, 2], [1, 2, 1, 2]]
    """
    reps = _sizes(sizes, "repeats")
    if len(reps) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                           "dimensions of tensor")
    if any(r < 0 for r in reps):
        raise RuntimeError(f"Trying to create tensor with negative dimension: repeats {list(reps)}")
    shape = (1,) * (len(reps) - input.ndim) + input.node.shape
    # (r0, s0, r1, s1, ...) broadcast, then merge each (r, s) pair
    inter = tuple(v for r, s in zip(reps, shape) for v in (1, s))
    wide = tuple(v for r, s in zip(reps, shape) for v in (r, s))
    x = input._apply("reshape", arg=inter)
    x = x if wide == inter else x._apply("expand", arg=wide)
    return reshape(x, tuple(r * s for r, s in zip(reps, shape)))


def tile(input: Tensor, dims) -> Tensor:
    """numpy.tile: repeat() with `dims` padded by leading ones to the tensor's rank."""
    dims = _sizes((dims,) if isinstance(dims, int) else dims, "dims")
    return repeat(input, (1,) * (input.ndim - len(dims)) + dims)


# ---- padding ---------------------------------------------------------------------------------

def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value=None) -> Tensor:
    """torch.nn.functional.pad: `pad` lists (before, after) pairs starting from the LAST dim.

    Negative amounts crop. Modes: constant (with `value`), reflect, replicate, circular.

    >>> pad(ember.ones(2, 2), (1, 0, 0, 1)).shape   # last dim +1 before, first dim +1 after
    ember.Size([3, 3])
    """
    pad = _sizes(pad, "pad")
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) > 2 * input.ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension "
                           f"but got padding length {len(pad)} and input of dimension {input.ndim}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    if mode == "constant":
        return _pad_constant(input, widths, 0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"padding mode '{mode}' is not supported")
    for d, (b, a) in enumerate(widths):
        if b or a:
            input = _pad_edge(input, d, b, a, mode)
    return input


def _pad_constant(input: Tensor, widths, value) -> Tensor:
    # negative widths crop first, then the zero pad; a non-zero value fills outside a padded mask
    crop = tuple((-min(b, 0), 1, n + min(b, 0) + min(a, 0)) for n, (b, a) in zip(input.node.shape, widths))
    for n, (b, a) in zip(input.node.shape, widths):
        if n + min(b, 0) + min(a, 0) < 0:
            raise RuntimeError(f"The input size {n}, plus negative padding {b} and {a} resulted in a "
                               f"negative output size, which is invalid. Check dimension of your input.")
    if any(b < 0 or a < 0 for b, a in widths):
        input = input._apply("slice", arg=crop)
    grow = tuple((max(b, 0), max(a, 0)) for b, a in widths)
    if not any(b or a for b, a in grow):
        return input
    out = input._apply("pad", arg=grow)
    if value == 0:
        return out
    inside = _full(True, D.bool_, input.shape, input.device)._apply("pad", arg=grow)
    return _where(inside, out, _full(value, input.dtype, out.shape, input.device))


def constant_pad_nd(input: Tensor, padding: Sequence[int], value=0) -> Tensor:
    """torch.constant_pad_nd: pad() in constant mode."""
    return pad(input, padding, "constant", value)


def _pad_edge(x: Tensor, d: int, b: int, a: int, mode: str) -> Tensor:
    n = x.node.shape[d]
    if mode == "circular":
        if b > n or a > n:
            raise RuntimeError("Padding value causes wrapping around more than once.")
        parts = [_slice_axis(x, d, n - b, b), x, _slice_axis(x, d, 0, a)]
    elif mode == "replicate":
        if n == 0:
            raise RuntimeError("padding with replicate needs a non-empty input dimension")
        edge = lambda i, k: expand(_slice_axis(x, d, i, 1),
                                   tuple(k if j == d else s for j, s in enumerate(x.node.shape)))
        parts = [edge(0, b), x, edge(n - 1, a)]
    else:  # reflect: mirror without repeating the edge element
        if b >= n or a >= n:
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input "
                               f"dimension, but got: padding ({b}, {a}) at dimension {d} of input "
                               f"{list(x.shape)}")
        parts = [flip(_slice_axis(x, d, 1, b), d), x, flip(_slice_axis(x, d, n - 1 - a, a), d)]
    return cat([p for p in parts if p.node.shape[d]] or [x], d)


def _contiguous(input: Tensor, memory_format=None) -> Tensor:
    return input


# ---- methods ---------------------------------------------------------------------------------

for _name in ["reshape", "view", "permute", "transpose", "swapaxes", "swapdims", "t", "adjoint", "expand",
              "expand_as", "broadcast_to", "squeeze", "unsqueeze", "flatten", "ravel", "unflatten",
              "split", "chunk", "tensor_split", "unbind", "flip", "fliplr", "flipud", "roll", "repeat",
              "tile", "narrow", "select", "movedim", "moveaxis"]:
    setattr(Tensor, _name, globals()[_name])
Tensor.contiguous = _contiguous
Tensor.view_as = lambda self, other: reshape(self, other.shape)
Tensor.reshape_as = lambda self, other: reshape(self, other.shape)
Tensor.T = property(lambda self: permute(self, tuple(reversed(range(self.ndim)))))
Tensor.mT = property(_mT)
Tensor.mH = property(_mT)
Tensor.H = property(lambda self: t(self))
del _name

# indexing builds on the helpers above; importing it here attaches __getitem__/__setitem__ and
# exports gather & co. with this module's names
from .indexing import gather, index_select, masked_fill, take_along_dim, tril, triu  # noqa: E402
