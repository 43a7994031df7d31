"""Sliding windows as a pure view: the building block of convolution, pooling and unfold.

`windows(x, kernel, stride, dilation)` turns (N, C, *spatial) into (N, C, *out, *kernel) without
copying: per spatial axis of length n it tiles the axis, and re-reads the tiled sequence as rows
of length n + dilation, so that row j starts dilation * j further along; a strided slice of each
row then picks the windows' positions. Windows that do not overlap (stride >= dilated kernel, as in
2x2 max-pooling) are simply rows of a reshape. Every step is a movement primitive (expand, reshape,
slice), so the window indexing becomes index arithmetic inside whichever kernel reads it (a
convolution is then one fused reduction), and autograd's movement rules give the backward pass.
"""
from __future__ import annotations

import math

from ..errors import ShapeError
from ..tensor import Tensor


def ntuple(value, n: int, name: str = "argument") -> tuple:
    """An int or a sequence of n ints as a tuple of n ints."""
    if isinstance(value, (list, tuple)):
        if len(value) == 1 and n > 1:
            return tuple(value) * n
        if len(value) != n:
            raise RuntimeError(f"expected {name} to be a single integer value or a list of {n} values, "
                               f"but got {list(value)}")
        return tuple(int(v) for v in value)
    return (int(value),) * n


def batched(input: Tensor, nsp: int, error: str) -> tuple[Tensor, bool]:
    """(input with a batch dim, whether one was added) for (C, *spatial) or (N, C, *spatial) input
    with nsp spatial dims; `error` (formatted with `shape`) is raised for any other rank."""
    if input.ndim == nsp + 1:
        return input.unsqueeze(0), True
    if input.ndim != nsp + 2:
        raise RuntimeError(error.format(shape=list(input.shape)))
    return input, False


def _slice(x: Tensor, axis: int, start: int, size: int, step: int = 1) -> Tensor:
    arg = tuple((start, step, size) if i == axis else (0, 1, n) for i, n in enumerate(x.shape))
    return x._apply("slice", arg=arg)


def _windows_last(x: Tensor, k: int, s: int, d: int, o: int) -> Tensor:
    """(..., n) -> (..., o, k): element [i, j] = x[i * s + j * d]."""
    *lead, n = x.shape
    lead, nd = tuple(lead), len(lead)
    if k == 1 or o == 0:  # a plain strided slice
        w = _slice(x, nd, 0, o, s)._apply("reshape", arg=lead + (o, 1))
        return w if k == 1 else w._apply("expand", arg=lead + (o, k))
    if s >= d * (k - 1) + 1:
        # windows do not overlap (e.g. 2x2 pooling with stride 2): rows of s elements, the first
        # d*(k-1)+1 of each read with step d. No tiling, so the gradient is a reshape, not a sum.
        if n < o * s:
            x = x._apply("pad", arg=tuple((0, 0) for _ in lead) + ((0, o * s - n),))
        t = _slice(x, nd, 0, o * s)._apply("reshape", arg=lead + (o, s))
        return _slice(t, nd + 1, 0, k, d)
    # pad so each row of the tiled sequence (length n2 + d) holds o * s elements
    n2 = max(n, o * s - d)
    if n2 > n:
        x = x._apply("pad", arg=tuple((0, 0) for _ in lead) + ((0, n2 - n),))
    row = n2 + d
    reps = math.ceil(k * row / n2)
    t = x._apply("reshape", arg=lead + (1, n2))._apply("expand", arg=lead + (reps, n2))
    t = t._apply("reshape", arg=lead + (reps * n2,))
    t = _slice(t, len(lead), 0, k * row)._apply("reshape", arg=lead + (k, row))
    t = _slice(t, len(lead) + 1, 0, o * s)._apply("reshape", arg=lead + (k, o, s))
    t = _slice(t, len(lead) + 2, 0, 1)._apply("reshape", arg=lead + (k, o))
    return t._apply("permute", arg=tuple(range(nd)) + (nd + 1, nd))


def out_size(n: int, k: int, s: int, d: int, pad_total: int = 0, ceil_mode: bool = False, pad_before: int = 0) -> int:
    """Number of windows along an axis (PyTorch's formula, including ceil_mode's last-window rule)."""
    span = n + pad_total - d * (k - 1) - 1
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    o = -(-span // s) + 1
    if (o - 1) * s >= n + pad_before:  # the last window must start inside the input or left padding
        o -= 1
    return o


def windows(x: Tensor, kernel: tuple, stride: tuple, dilation: tuple, out: tuple | None = None) -> Tensor:
    """(N, C, *spatial) -> (N, C, *out, *kernel) sliding-window view (x already padded)."""
    nsp = len(kernel)
    lead = x.ndim - nsp
    if out is None:
        out = tuple(out_size(n, k, s, d) for n, k, s, d in zip(x.shape[lead:], kernel, stride, dilation))
    for i, (n, k, s, d) in enumerate(zip(x.shape[lead:], kernel, stride, dilation)):
        if d * (k - 1) + 1 > n and out[i] > 0:
            raise ShapeError(f"Kernel size can't be greater than actual input size: input {list(x.shape)}, "
                             f"kernel {list(kernel)}, dilation {list(dilation)}")
    # the next unprocessed axis is always at position `lead`: move it last and window it, giving
    # (N, C, <unprocessed>, o_0, k_0, ..., o_i, k_i)
    for i in range(nsp):
        x = x._apply("permute", arg=tuple(a for a in range(x.ndim) if a != lead) + (lead,))
        x = _windows_last(x, kernel[i], stride[i], dilation[i], out[i])
    pairs = [(lead + 2 * i, lead + 2 * i + 1) for i in range(nsp)]
    order = tuple(range(lead)) + tuple(p[0] for p in pairs) + tuple(p[1] for p in pairs)
    return x._apply("permute", arg=order)
