"""Pooling: MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool/AdaptiveMaxPool 1d/2d/3d.

Max and average pooling reduce the sliding-window view (see _sliding.py) over its kernel axes.
Max pooling pads with -inf, so padding never wins. Gradients come from the max reduction's rule,
which shares a tie's gradient between the tied elements (PyTorch gives it all to the first one);
the two agree whenever a window's maximum is unique. For windows that do not overlap (the usual
2x2 stride 2) the same gradient is written out window by window (`_DisjointMax`).
"""
from __future__ import annotations

import math

import numpy as np

from ember.compiler import dtypes as D

from ..autograd import Function, grad as _grad
from ..autograd_mode import enable_grad, is_grad_enabled
from ..creation import arange, ones, tensor as _tensor
from ..ops_elementwise import where as _where
from ..ops_movement import pad as _pad
from ..tensor import Tensor
from ._sliding import batched, ntuple, out_size, windows
from .module import Module


def _batched(input: Tensor, nsp: int, name: str) -> tuple[Tensor, bool]:
    return batched(input, nsp, f"{name}: Expected {nsp + 1}D or {nsp + 2}D input tensor, but got input of size "
                               "{shape}")


class _Geometry:
    """Kernel, stride, padding, dilation and output size of one pooling call, PyTorch's checks."""

    def __init__(self, x: Tensor, nsp: int, kernel_size, stride, padding, dilation, ceil_mode: bool, name: str):
        self.kernel = ntuple(kernel_size, nsp, "kernel_size")
        self.stride = self.kernel if stride is None or stride == [] or stride == () else ntuple(stride, nsp, "stride")
        self.padding, self.dilation = ntuple(padding, nsp, "padding"), ntuple(dilation, nsp, "dilation")
        for k, p, d in zip(self.kernel, self.padding, self.dilation):
            if p > (d * (k - 1) + 1) // 2:
                raise RuntimeError(f"{name}: pad should be at most half of effective kernel size, but got "
                                   f"pad={p}, kernel_size={k} and dilation={d}")
        sizes = tuple(x.shape[2:])
        self.out = tuple(out_size(n, k, s, d, 2 * p, ceil_mode, p)
                         for n, k, s, d, p in zip(sizes, self.kernel, self.stride, self.dilation, self.padding))
        if any(o <= 0 for o in self.out):
            raise RuntimeError(f"Given input size: ({'x'.join(map(str, x.shape[1:]))}). Calculated output size: "
                               f"({'x'.join(map(str, (x.shape[1],) + self.out))}). Output size is too small")
        # right padding: enough for the last window (ceil_mode may need more than `padding`)
        self.widths = [(p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)) for n, k, s, d, p, o in
                       zip(sizes, self.kernel, self.stride, self.dilation, self.padding, self.out)]

    def pad(self, x: Tensor, value) -> Tensor:
        if not any(b or a for b, a in self.widths):
            return x
        return _pad(x, [w for b, a in reversed(self.widths) for w in (b, a)], value=value)

    def windows(self, x: Tensor) -> Tensor:
        return windows(x, self.kernel, self.stride, self.dilation, self.out)

    @property
    def disjoint(self) -> bool:
        """Whether no two windows share an element (stride >= dilated kernel, e.g. 2x2 stride 2)."""
        return all(s >= d * (k - 1) + 1 for k, s, d in zip(self.kernel, self.stride, self.dilation))


def _lowest(x: Tensor):
    return -math.inf if x.dtype.is_float else int(np.iinfo(x.dtype.np).min)


def _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nsp, name):
    x, unbatched = _batched(input, nsp, name)
    geo = _Geometry(x, nsp, kernel_size, stride, padding, dilation, ceil_mode, name)
    kaxes = tuple(range(2 + nsp, 2 + 2 * nsp))
    if geo.disjoint and not return_indices:
        out = _DisjointMax.apply(x, geo, kaxes)
        return out.squeeze(0) if unbatched else out
    win = geo.windows(geo.pad(x, _lowest(x)))
    out = win.amax(kaxes)
    if not return_indices:
        return out.squeeze(0) if unbatched else out
    idx = _argmax_indices(win, geo, tuple(x.shape[2:]), nsp)
    return (out.squeeze(0), idx.squeeze(0)) if unbatched else (out, idx)


class _DisjointMax(Function):
    """Max pooling over windows that do not overlap, its gradient computed window by window.

    amax's own gradient, g * (x == max) / (number of maxima in the window), would be computed per
    input element, each recounting its window's maxima. Here the forward counts each window's
    maxima next to its maximum (the same loop nest, while the window is in cache; one byte per
    window), so the backward reads the input once: each window's share of g is a small kernel at
    the pooled size, handed to the elements through the window view, whose gradient for disjoint
    windows is a reshape: one elementwise kernel. Ties split the gradient, as amax's rule does."""

    @staticmethod
    def forward(ctx, x, geo, kaxes):
        win = geo.windows(geo.pad(x, _lowest(x)))
        out = win.amax(kaxes, keepdim=True)
        # summed in its own small type: the same reduction as amax's, so the same nest computes both
        ties = (win == out).sum(kaxes, keepdim=True, dtype=D.uint8 if math.prod(geo.kernel) < 256 else D.int32)
        ctx.save_for_backward(x, out, ties)
        ctx.geo, ctx.kaxes = geo, kaxes
        return out.reshape(tuple(out.shape[:len(out.shape) - len(kaxes)]))

    @staticmethod
    def backward(ctx, g):
        x, out, ties = ctx.saved_tensors
        with enable_grad():
            leaf = x.detach().requires_grad_()
            win = ctx.geo.windows(ctx.geo.pad(leaf, _lowest(x)))
        share = g.reshape(tuple(out.shape)) / ties.to(g.dtype)
        share = share._apply("contiguous")   # per window, not per element (whose loads would gather)
        gwin = _where(win.detach() == out, share, 0.0)
        return _grad(win, leaf, gwin, create_graph=is_grad_enabled())[0], None, None


def _argmax_indices(win: Tensor, geo: _Geometry, sizes: tuple, nsp: int) -> Tensor:
    """Flat index into each input plane of every window's (first) maximum, as PyTorch returns."""
    lead = tuple(win.shape[:2 + nsp])
    ksize = math.prod(geo.kernel)
    a = win.reshape(lead + (ksize,)).argmax(-1)                   # position inside the window
    flat = None
    rest = ksize
    for i in range(nsp):
        rest //= geo.kernel[i]
        kj = (a // rest) % geo.kernel[i]
        o = arange(geo.out[i], device=win.device).reshape((1, 1) + tuple(-1 if j == i else 1 for j in range(nsp)))
        coord = o * geo.stride[i] - geo.padding[i] + kj * geo.dilation[i]
        flat = coord if flat is None else flat * sizes[i] + coord
    return flat


def max_pool1d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max over sliding windows of (N, C, L) input."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1, "max_pool1d")


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max over sliding windows of (N, C, H, W) input; stride defaults to kernel_size.

    >>> F.max_pool2d(ember.randn(1, 1, 4, 4), 2).shape
    ember.Size([1, 1, 2, 2])
    """
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 2, "max_pool2d")


def max_pool3d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max over sliding windows of (N, C, D, H, W) input."""
    return _max_pool(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 3, "max_pool3d")


def _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nsp, name):
    x, unbatched = _batched(input, nsp, name)
    geo = _Geometry(x, nsp, kernel_size, stride, padding, 1, ceil_mode, name)
    kaxes = tuple(range(2 + nsp, 2 + 2 * nsp))
    total = geo.windows(geo.pad(x, 0)).sum(kaxes)
    if divisor_override:
        out = total / divisor_override
    elif count_include_pad and all(a == p for (_, a), p in zip(geo.widths, geo.padding)):
        out = total / math.prod(geo.kernel)
    else:
        # count what each window covers: the input (and, with count_include_pad, its padding)
        mask = ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device)
        if count_include_pad:
            mask = _pad(mask, [w for p in reversed(geo.padding) for w in (p, p)], value=1)
            mask = _pad(mask, [w for (b, a), p in zip(reversed(geo.widths), reversed(geo.padding))
                               for w in (0, a - p)])
            count = windows(mask, geo.kernel, geo.stride, geo.dilation, geo.out).sum(kaxes)
        else:
            count = geo.windows(geo.pad(mask, 0)).sum(kaxes)
        out = total / count
    return out.squeeze(0) if unbatched else out


def avg_pool1d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    """Mean over sliding windows of (N, C, L) input."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1, "avg_pool1d")


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over sliding windows of (N, C, H, W) input; count_include_pad=False leaves the zero
    padding out of each window's divisor."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 2,
                     "avg_pool2d")


def avg_pool3d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over sliding windows of (N, C, D, H, W) input."""
    return _avg_pool(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, 3,
                     "avg_pool3d")


def _adaptive_bounds(n: int, o: int) -> list[tuple[int, int]]:
    return [((i * n) // o, -(-((i + 1) * n) // o)) for i in range(o)]


def _adaptive(input: Tensor, output_size, nsp: int, name: str, reduce: str) -> Tensor:
    x, unbatched = _batched(input, nsp, name)
    sizes = (output_size,) * nsp if not isinstance(output_size, (list, tuple)) else tuple(output_size)
    if len(sizes) != nsp:
        raise ValueError(f"{name}: output_size must be an int or {nsp} values, got {output_size}")
    for i, o in enumerate(sizes):
        axis = 2 + i
        n = x.shape[axis]
        o = n if o is None else o
        if o == n:
            continue
        if n % o == 0:  # equal, non-overlapping windows
            y = x.unflatten(axis, (o, n // o))
            x = y.mean(axis + 1) if reduce == "mean" else y.amax(axis + 1)
            continue
        bounds = _adaptive_bounds(n, o)
        member = np.zeros((o, n), dtype=bool)
        for j, (lo, hi) in enumerate(bounds):
            member[j, lo:hi] = True
        xl = x.movedim(axis, -1)
        if reduce == "mean":  # a (n, o) averaging matrix
            avg = (member / member.sum(1, keepdims=True)).T.astype(x.dtype.np)
            y = xl.matmul(_tensor(avg, device=x.device))
        else:  # max over each window's members: (..., o, n) masked, then reduced
            mask = _tensor(member, device=x.device)
            y = xl.unsqueeze(-2).where(mask, _lowest(x)).amax(-1)
        x = y.movedim(-1, axis)
    return x.squeeze(0) if unbatched else x


def adaptive_avg_pool1d(input: Tensor, output_size) -> Tensor:
    return _adaptive(input, output_size, 1, "adaptive_avg_pool1d", "mean")


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """Average pooling to a fixed output size (None keeps an input size); windows span
    [floor(i * n / o), ceil((i + 1) * n / o)) as in PyTorch.

    >>> F.adaptive_avg_pool2d(ember.randn(2, 3, 7, 5), (1, 1)).shape
    ember.Size([2, 3, 1, 1])
    """
    return _adaptive(input, output_size, 2, "adaptive_avg_pool2d", "mean")


def adaptive_avg_pool3d(input: Tensor, output_size) -> Tensor:
    return _adaptive(input, output_size, 3, "adaptive_avg_pool3d", "mean")


def _adaptive_max(input, output_size, return_indices, nsp, name):
    if return_indices:
        raise NotImplementedError(f"{name}: return_indices=True is not supported")
    return _adaptive(input, output_size, nsp, name, "max")


def adaptive_max_pool1d(input: Tensor, output_size, return_indices: bool = False) -> Tensor:
    return _adaptive_max(input, output_size, return_indices, 1, "adaptive_max_pool1d")


def adaptive_max_pool2d(input: Tensor, output_size, return_indices: bool = False) -> Tensor:
    """Max pooling to a fixed output size."""
    return _adaptive_max(input, output_size, return_indices, 2, "adaptive_max_pool2d")


def adaptive_max_pool3d(input: Tensor, output_size, return_indices: bool = False) -> Tensor:
    return _adaptive_max(input, output_size, return_indices, 3, "adaptive_max_pool3d")


# ---- modules ----------------------------------------------------------------------------------

class _PoolNd(Module):
    """A pooling module: its constructor arguments, passed on to its functional form `_fn` in the
    order `_args` names them."""
    _fn = staticmethod(max_pool2d)
    _args: tuple = ()

    def forward(self, input: Tensor):
        return type(self)._fn(input, *(getattr(self, a) for a in self._args))


class _MaxPoolNd(_PoolNd):
    _args = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool1d(_MaxPoolNd):
    _fn = staticmethod(max_pool1d)


class MaxPool2d(_MaxPoolNd):
    """Max pooling over (N, C, H, W) input.

    >>> nn.MaxPool2d(2)
    MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
    """
    _fn = staticmethod(max_pool2d)


class MaxPool3d(_MaxPoolNd):
    _fn = staticmethod(max_pool3d)


class _AvgPoolNd(_PoolNd):
    _fn = staticmethod(avg_pool2d)
    _args = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
                 divisor_override: int | None = None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool1d(_AvgPoolNd):
    """Average pooling over (N, C, L) input (sizes kept as 1-tuples, as PyTorch does)."""
    _fn = staticmethod(avg_pool1d)
    _args = _AvgPoolNd._args[:-1]   # avg_pool1d has no divisor_override

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True):
        super().__init__(ntuple(kernel_size, 1), ntuple(stride if stride is not None else kernel_size, 1),
                         ntuple(padding, 1), ceil_mode, count_include_pad)


class AvgPool2d(_AvgPoolNd):
    """Average pooling over (N, C, H, W) input."""
    _fn = staticmethod(avg_pool2d)


class AvgPool3d(_AvgPoolNd):
    _fn = staticmethod(avg_pool3d)


class _AdaptivePoolNd(_PoolNd):
    _fn = staticmethod(adaptive_avg_pool2d)
    _args = ("output_size",)

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptivePoolNd):
    _fn = staticmethod(adaptive_avg_pool1d)


class AdaptiveAvgPool2d(_AdaptivePoolNd):
    """Average pooling to a fixed output size, e.g. (1, 1) for global average pooling."""
    _fn = staticmethod(adaptive_avg_pool2d)


class AdaptiveAvgPool3d(_AdaptivePoolNd):
    _fn = staticmethod(adaptive_avg_pool3d)


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    _args = ("output_size", "return_indices")

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = return_indices


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    _fn = staticmethod(adaptive_max_pool1d)


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    _fn = staticmethod(adaptive_max_pool2d)


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    _fn = staticmethod(adaptive_max_pool3d)
