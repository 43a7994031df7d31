"""Creation functions: tensors from data, constant fills, ranges and random tensors.

Fills (`zeros`, `ones`, `full`, `empty`) are lazy: a scalar `const` node expanded to the shape, so
no memory is touched until a kernel needs the value (and usually the constant fuses into it).
Ranges are built on the `iota` primitive. Data from the user (lists, numpy arrays) is the only
place numpy produces values: it becomes a `buffer` leaf.
"""
from __future__ import annotations

import math
from numbers import Number

import numpy as np

from ember.compiler import Buffer, Node, dtypes as D
from ember.compiler.ir import const

from . import random as _random
from .random import initial_seed, manual_seed, seed
from .tensor import Size, Tensor, _canon_device, get_default_dtype

__all__ = ["tensor", "as_tensor", "from_numpy", "from_dlpack", "zeros", "ones", "full", "empty", "arange", "linspace",
           "eye", "zeros_like", "ones_like", "full_like", "empty_like", "rand", "randn", "randint",
           "randperm", "rand_like", "randn_like", "randint_like", "manual_seed", "seed", "initial_seed"]


# ---- helpers --------------------------------------------------------------------------------

def _leaf(arr: np.ndarray, device, requires_grad: bool = False, copy: bool = True) -> Tensor:
    buf = Buffer.from_array(arr, copy=copy)
    t = Tensor._wrap(Node.make("buffer", arg=buf, dtype=buf.dtype, shape=arr.shape), _canon_device(device))
    return _set_grad(t, requires_grad)


def _set_grad(t: Tensor, requires_grad: bool) -> Tensor:
    if requires_grad:
        if not t.dtype.is_float:
            raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
        t.requires_grad = True
    return t


def _dtype(dtype) -> D.DType | None:
    if dtype is None or isinstance(dtype, D.DType):
        return dtype
    raise TypeError(f"dtype must be an ember.dtype, not {type(dtype).__name__}")


def _size(size, fn: str) -> tuple:
    """Sizes given as varargs `zeros(2, 3)` or as one sequence `zeros((2, 3))`."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    out = []
    for n in size:
        if isinstance(n, Tensor):
            n = n.__index__()
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"{fn}(): argument 'size' must be tuple of ints, but found element of type "
                            f"{type(n).__name__}")
        if n < 0:
            raise RuntimeError(f"{fn}: Dimension size must be non-negative; got size {list(size)}")
        out.append(int(n))
    return tuple(out)


def _scalar_dtype(value) -> D.DType:
    """The dtype PyTorch infers for one Python/numpy scalar."""
    if isinstance(value, (bool, np.bool_)):
        return D.bool_
    if isinstance(value, np.generic):
        return D.from_numpy(value.dtype)
    if isinstance(value, int):
        return D.int64
    if isinstance(value, float):
        return get_default_dtype()
    raise TypeError(f"new(): invalid data type '{type(value).__name__}'")


def _fill(shape: tuple, value, dtype: D.DType, device, requires_grad=False) -> Tensor:
    return _set_grad(Tensor._wrap(const(value, dtype, shape), _canon_device(device)), requires_grad)


# ---- from data --------------------------------------------------------------------------------

def _ragged(want: tuple, got: tuple, dim: int):
    """PyTorch's errors: TypeError when scalars and sequences mix, ValueError for unequal lengths."""
    if len(want) != len(got):
        raise TypeError(f"mixed sequences and scalars at dim {dim}: not a sequence")
    k = next(k for k, (a, b) in enumerate(zip(want, got)) if a != b)
    raise ValueError(f"expected sequence of length {want[k]} at dim {dim + k} (got {got[k]})")


def _nested(data) -> tuple[np.ndarray, D.DType]:
    """Nested sequences of scalars -> (array, inferred dtype); ragged input raises like PyTorch."""
    flat: list = []
    dts: list = []

    def walk(x, depth: int, typed: bool = False) -> tuple:  # returns the shape of x
        if isinstance(x, (Tensor, np.ndarray)):  # its elements carry its dtype, not Python's
            dts.append(x.dtype if isinstance(x, Tensor) else D.from_numpy(x.dtype))
            x, typed = (x.tolist() if x.ndim else x.item()), True
        if isinstance(x, (list, tuple)):
            shapes = [walk(v, depth + 1, typed) for v in x]
            for s in shapes[1:]:
                if s != shapes[0]:
                    _ragged(shapes[0], s, depth + 1)
            return (len(x),) + (shapes[0] if shapes else ())
        if not isinstance(x, (Number, np.generic)) or isinstance(x, complex):
            raise TypeError(f"new(): invalid data type '{type(x).__name__}'")
        if not typed:
            dts.append(_scalar_dtype(x))
        flat.append(x.item() if isinstance(x, np.generic) else x)
        return ()

    shape = walk(data, 0)
    dt = dts[0] if dts else get_default_dtype()
    for d in dts[1:]:
        dt = D._promote2(dt, d)
    return np.array(flat, dtype=dt.np).reshape(shape), dt


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of `data` (nested lists, scalars, numpy arrays, Tensors).

    >>> ember.tensor([[1, 2], [3, 4]]).dtype      # ints -> int64, floats -> the default dtype
    ember.int64
    """
    dtype = _dtype(dtype)
    if isinstance(data, Tensor):
        t = data.detach().clone()
        return _set_grad(t.to(dtype) if dtype is not None else t, requires_grad)
    if isinstance(data, np.ndarray):
        D.from_numpy(data.dtype)  # TypeError for dtypes ember has no equivalent of
        arr = data
    elif isinstance(data, (list, tuple)):
        arr, _ = _nested(data)
    elif isinstance(data, (Number, np.generic)):
        arr = np.array(data, dtype=_scalar_dtype(data).np)
    else:
        raise TypeError(f"new(): invalid data type '{type(data).__name__}'")
    if dtype is not None and arr.dtype != dtype.np:
        with np.errstate(all="ignore"):
            arr = arr.astype(dtype.np)
    return _leaf(arr, device, requires_grad)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing memory with a C-contiguous numpy array (otherwise a copy).

    >>> a = np.zeros(3, np.float32); t = ember.from_numpy(a); a[0] = 1; t[0].item()
    1.0
    """
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(arr).__name__})")
    D.from_numpy(arr.dtype)  # TypeError for dtypes ember has no equivalent of
    return _leaf(arr, "cpu", copy=False)


def from_dlpack(ext) -> Tensor:
    """A tensor sharing memory with any DLPack producer on the CPU (a torch tensor, a numpy array,
    a JAX array...): `ember.from_dlpack(torch.arange(3))`. Producers on a GPU are not supported yet.

    >>> t = ember.from_dlpack(np.arange(3.0))
    """
    if hasattr(ext, "__dlpack_device__") and ext.__dlpack_device__()[0] != 1:   # 1: kDLCPU
        raise RuntimeError(f"from_dlpack: only CPU producers are supported yet (device type "
                           f"{ext.__dlpack_device__()[0]})")
    return from_numpy(np.from_dlpack(ext))


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like `tensor`, but shares memory with a numpy array or Tensor when no conversion is needed."""
    dtype = _dtype(dtype)
    if isinstance(data, Tensor):
        return data.to(device=_canon_device(device) if device is not None else data.device,
                       dtype=dtype or data.dtype)
    if isinstance(data, np.ndarray) and (dtype is None or data.dtype == dtype.np):
        _canon_device(device)
        return from_numpy(data)
    return tensor(data, dtype=dtype, device=device)


# ---- constant fills -----------------------------------------------------------------------------

def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A lazy tensor of zeros: `ember.zeros(2, 3)` or `ember.zeros((2, 3))`."""
    return _fill(_size(size, "zeros"), 0, _dtype(dtype) or get_default_dtype(), device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A lazy tensor of ones: `ember.ones(3)`."""
    return _fill(_size(size, "ones"), 1, _dtype(dtype) or get_default_dtype(), device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uninitialised memory in PyTorch; here a lazy fill of zeros (no buffer until it is written)."""
    return _fill(_size(size, "empty"), 0, _dtype(dtype) or get_default_dtype(), device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A lazy tensor filled with `fill_value`; the dtype follows the value (bool, int64 or float).

    >>> ember.full((2,), 7).tolist()
    [7, 7]
    """
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    dt = _dtype(dtype) or _scalar_dtype(fill_value)
    return _fill(_size((size,) if isinstance(size, (tuple, list)) else (size,), "full"),
                 fill_value, dt, device, requires_grad)


def _like(make, name: str, doc: str):
    """`make`'s tensor with the shape and (by default) the dtype and device of `input`."""
    def like(input, dtype=None, device=None, requires_grad=False) -> Tensor:
        return make(tuple(input.shape), dtype=dtype or input.dtype, device=device or input.device,
                    requires_grad=requires_grad)
    like.__name__ = like.__qualname__ = name
    like.__doc__ = doc
    return like


zeros_like = _like(zeros, "zeros_like", "Zeros with the shape (and by default dtype and device) of `input`.")
ones_like = _like(ones, "ones_like", "Ones with the shape (and by default dtype and device) of `input`.")
empty_like = _like(empty, "empty_like", "An (uninitialised, here lazily zero) tensor like `input`.")


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    """`fill_value` everywhere, with the shape and (by default) dtype of `input`."""
    return full(tuple(input.shape), fill_value, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


# ---- ranges -----------------------------------------------------------------------------------

def _iota(n: int, dtype: D.DType, device: str) -> Tensor:
    """0, 1, ..., n-1 in `dtype` (the iota leaf counts in int64, then one cast)."""
    t = Tensor._wrap(Node.make("iota", arg=n, dtype=D.int64), device)
    return t if dtype is D.int64 else t._apply("cast", arg=dtype)


def _affine(i: Tensor, scale, offset, dtype: D.DType) -> Tensor:
    """offset + scale * i in i's dtype, then cast to `dtype`."""
    n = i.shape
    y = i._apply("mul", Tensor._wrap(const(scale, i.dtype, n), i.device))
    y = y._apply("add", Tensor._wrap(const(offset, i.dtype, n), i.device))
    return y if y.dtype is dtype else y._apply("cast", arg=dtype)


def _num(x, name):
    if isinstance(x, Tensor):
        x = x.item()
    if isinstance(x, np.generic):
        x = x.item()
    if not isinstance(x, Number) or isinstance(x, complex):
        raise TypeError(f"arange(): argument '{name}' must be Number, not {type(x).__name__}")
    return x


def arange(start=0, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Values start, start+step, ... below `end`; int64 unless an argument is a float.

    >>> ember.arange(1, 7, 2).tolist()
    [1, 3, 5]
    """
    if end is None:
        start, end = 0, start
    start, end, step = _num(start, "start"), _num(end, "end"), _num(step, "step")
    dtype = _dtype(dtype) or (get_default_dtype() if any(isinstance(v, float) for v in (start, end, step))
                              else D.int64)
    if not all(math.isfinite(v) for v in (start, end, step)):
        raise RuntimeError(f"unsupported range: {start} -> {end}")
    # PyTorch's rules: values are computed in the accumulate type (int64 for integer dtypes, so
    # float bounds truncate first); the length is exact integer arithmetic for int64, else float64
    xs, xe, xst = (int(v) for v in (start, end, step)) if not dtype.is_float else (start, end, step)
    if (step > 0 and end < start) or (step < 0 and end > start):  # PyTorch: on the values as given
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if xst == 0:  # PyTorch: ValueError when a float step truncates to 0 for an integer dtype
        raise (ValueError if step != 0 else RuntimeError)("step must be nonzero")
    if dtype is D.int64:
        n = (xe - xs + xst - (1 if xst > 0 else -1)) // xst  # operands share a sign: exact
    else:
        n = math.ceil((float(end) - float(start)) / float(step))
    device = _canon_device(device)
    # floats are computed in float64 (PyTorch's CPU accumulate type) and rounded once
    work = D.float64 if dtype.is_float else D.int64
    return _set_grad(_affine(_iota(n, work, device), xst, xs, dtype), requires_grad)


def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """`steps` evenly spaced values from `start` to `end` inclusive.

    >>> ember.linspace(0, 1, 5).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    start, end = _num(start, "start"), _num(end, "end")
    if not isinstance(steps, (int, np.integer)):
        raise TypeError(f"linspace(): argument 'steps' must be int, not {type(steps).__name__}")
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    dtype = _dtype(dtype) or get_default_dtype()
    device = _canon_device(device)
    # PyTorch's kernel: the first half counts up from start, the second half down from end, so both
    # endpoints are exact; integer outputs step in float64 and truncate
    work = D.compute_dtype(dtype) if dtype.is_float else D.float64
    if steps <= 1:
        return _fill((steps,), start, dtype, device, requires_grad)
    step = (end - start) / (steps - 1)
    i = _iota(steps, work, device)
    up = _affine(i, step, start, work)
    down = _affine(_affine(i, -1, steps - 1, work), -step, end, work)  # end - step * (steps-1-i)
    first_half = i._apply("cmplt", Tensor._wrap(const(steps // 2, work, (steps,)), device))
    y = first_half._apply("where", up, down)
    return _set_grad(y if y.dtype is dtype else y._apply("cast", arg=dtype), requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """The n x m identity matrix.

    >>> ember.eye(2).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    m = n if m is None else m
    for v, name in ((n, "n"), (m, "m")):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise TypeError(f"eye(): argument '{name}' must be int, not {type(v).__name__}")
        if v < 0:
            raise RuntimeError(f"{name} must be greater or equal to 0, got {v}")
    dtype = _dtype(dtype) or get_default_dtype()
    device = _canon_device(device)
    rows = _iota(n, D.int64, device)._apply("reshape", arg=(n, 1))._apply("expand", arg=(n, m))
    cols = _iota(m, D.int64, device)._apply("reshape", arg=(1, m))._apply("expand", arg=(n, m))
    return _set_grad(rows._apply("cmpeq", cols)._apply("cast", arg=dtype), requires_grad)


# ---- random -----------------------------------------------------------------------------------

def _no_generator(generator) -> None:
    if generator is not None:
        raise NotImplementedError("ember has one global random generator (ember.manual_seed); "
                                  "per-call generator= objects are not supported")


def _float_dtype(dtype, fn: str) -> D.DType:
    dtype = _dtype(dtype) or get_default_dtype()
    if not dtype.is_float:
        from .compose import DTypeError
        raise DTypeError(f"\"{fn}\" not implemented for '{dtype.name}'")
    return dtype


def rand(*size, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Uniform samples in [0, 1), generated inside the kernel by a counter-based RNG (Philox).

    >>> ember.manual_seed(0); x = ember.rand(2, 3)
    """
    _no_generator(generator)
    shape, dtype = _size(size, "rand"), _float_dtype(dtype, "rand")
    return _set_grad(_random.uniform(shape, dtype, _canon_device(device)), requires_grad)


def randn(*size, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Standard normal samples (Box-Muller over Philox bits).

    >>> ember.randn(4).shape
    ember.Size([4])
    """
    _no_generator(generator)
    shape, dtype = _size(size, "randn"), _float_dtype(dtype, "randn")
    return _set_grad(_random.normal(shape, dtype, _canon_device(device)), requires_grad)


def randint(*args, size=None, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """Integers uniform in [low, high): `randint(high, size)` or `randint(low, high, size)`.

    >>> ember.randint(0, 10, (3,)).dtype
    ember.int64
    """
    _no_generator(generator)
    if size is None:
        *args, size = args
    if len(args) == 1:
        low, high = 0, args[0]
    elif len(args) == 2:
        low, high = args
    else:
        raise TypeError("randint() expects (high, size) or (low, high, size)")
    low, high = int(_num(low, "low")), int(_num(high, "high"))
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    shape = _size((size,) if isinstance(size, (tuple, list)) else (size,), "randint")
    dtype = _dtype(dtype) or D.int64
    return _set_grad(_random.integers(shape, low, high, dtype, _canon_device(device)), requires_grad)


def randperm(n: int, dtype=None, device=None, requires_grad: bool = False, generator=None) -> Tensor:
    """A random permutation of 0..n-1 (drawn on the host from ember's RNG state)."""
    _no_generator(generator)
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise RuntimeError(f"randperm: n must be a non-negative int, got {n}")
    perm = _random.host_permutation(int(n))
    return _leaf(perm.astype((_dtype(dtype) or D.int64).np), device, requires_grad, copy=False)


rand_like = _like(rand, "rand_like", "Uniform [0, 1) samples shaped like `input`.")
randn_like = _like(randn, "randn_like", "Standard normal samples shaped like `input`.")


def randint_like(input, low=0, high=None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Integers in [low, high) shaped like `input`; `randint_like(x, high)` or `(x, low, high)`."""
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype,
                   device=device or input.device, requires_grad=requires_grad)
