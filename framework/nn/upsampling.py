"""interpolate / Upsample (nearest, nearest-exact, linear, bilinear, trilinear, area) and pixel shuffle.

Resampling is separable: each spatial axis is resampled in turn by gathering source rows
(index_select with indices computed on the host from the sizes alone) and, for the linear modes,
mixing the two neighbours with host-computed weights. Source coordinates are computed in float32
exactly as PyTorch's CPU kernels do, so the picked rows agree.
"""
from __future__ import annotations

import math

import numpy as np

from ..creation import tensor as _tensor
from ..tensor import Tensor
from .module import Module

_LINEAR = {"linear": 1, "bilinear": 2, "trilinear": 3}


def _out_sizes(x: Tensor, nsp: int, size, scale_factor, recompute) -> tuple[tuple, tuple]:
    """Output sizes, and the scale (input/output) each axis maps coordinates with."""
    ins = tuple(x.shape[2:])
    if (size is None) == (scale_factor is None):
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        outs = (size,) * nsp if isinstance(size, int) else tuple(size)
        if len(outs) != nsp:
            raise ValueError(f"Input and output must have the same number of spatial dimensions, but got input with "
                             f"spatial dimensions of {list(ins)} and output size of {list(outs)}. Please provide "
                             f"input tensor in (N, C, d1, d2, ...,dK) format and output size in (o1, o2, ...,oK) "
                             f"format.")
        return outs, tuple(n / o if o else 0.0 for n, o in zip(ins, outs))
    sf = (scale_factor,) * nsp if not isinstance(scale_factor, (list, tuple)) else tuple(scale_factor)
    if len(sf) != nsp:
        raise ValueError(f"Input and scale_factor must have the same number of spatial dimensions, but got input "
                         f"with spatial dimensions of {list(ins)} and scale_factor of shape {list(sf)}.")
    outs = tuple(int(math.floor(float(n) * float(s))) for n, s in zip(ins, sf))
    if recompute:
        return outs, tuple(n / o if o else 0.0 for n, o in zip(ins, outs))
    return outs, tuple(1.0 / float(s) for s in sf)


def _nearest_index(n: int, o: int, scale: float, exact: bool) -> np.ndarray:
    i = np.arange(o, dtype=np.float32)
    src = np.floor(((i + np.float32(0.5)) if exact else i) * np.float32(scale))
    return np.minimum(src.astype(np.int64), n - 1)


def _linear_weights(n: int, o: int, scale: float, align_corners: bool):
    i = np.arange(o, dtype=np.float32)
    if align_corners:
        s = np.float32((n - 1) / (o - 1)) if o > 1 else np.float32(0)
        src = i * s
    else:
        src = np.maximum(np.float32(scale) * (i + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    lam = (src - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, lam


def interpolate(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                recompute_scale_factor=None, antialias: bool = False) -> Tensor:
    """Resize the spatial dims of (N, C, *spatial) input to `size` or by `scale_factor`.

    >>> F.interpolate(ember.ones(1, 1, 2, 2), scale_factor=2, mode='bilinear').shape
    ember.Size([1, 1, 4, 4])
    """
    nsp = input.ndim - 2
    if nsp < 1:
        raise ValueError(f"interpolate expects an (N, C, *spatial) input, got {input.ndim}D")
    if mode in ("nearest", "nearest-exact", "area") and align_corners is not None:
        raise ValueError("align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported")
    outs, scales = _out_sizes(input, nsp, size, scale_factor, recompute_scale_factor)
    if mode == "area":
        from .pooling import _adaptive
        return _adaptive(input, outs, nsp, "interpolate", "mean")
    if mode in _LINEAR:
        if _LINEAR[mode] != nsp:
            raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs {_LINEAR[mode] + 2}D input")
        if align_corners is None:
            align_corners = False
    elif mode not in ("nearest", "nearest-exact"):
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
                                  f"the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
                                  f"nearest-exact (got {mode})")
    x = input
    for i, (o, scale) in enumerate(zip(outs, scales)):
        axis, n = 2 + i, x.shape[2 + i]
        if mode in ("nearest", "nearest-exact"):
            if o == n and scale == 1.0:
                continue
            x = x.index_select(axis, _tensor(_nearest_index(n, o, scale, mode == "nearest-exact"), device=x.device))
            continue
        i0, i1, lam = _linear_weights(n, o, scale, align_corners)
        shape = tuple(o if a == axis else 1 for a in range(x.ndim))
        w1 = _tensor(lam.reshape(shape), device=x.device).to(x.dtype)
        lo = x.index_select(axis, _tensor(i0, device=x.device))
        hi = x.index_select(axis, _tensor(i1, device=x.device))
        x = lo * (1 - w1) + hi * w1
    return x


def upsample(input: Tensor, size=None, scale_factor=None, mode: str = "nearest", align_corners=None) -> Tensor:
    return interpolate(input, size, scale_factor, mode, align_corners)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    r = upscale_factor
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square of "
                           f"upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    lead = tuple(lead)
    x = input.reshape(lead + (c // (r * r), r, r, h, w))
    k = len(lead)
    x = x.permute(tuple(range(k)) + (k, k + 3, k + 1, k + 4, k + 2))
    return x.reshape(lead + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""
    r = downscale_factor
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError(f"pixel_unshuffle expects height and width to be divisible by downscale_factor, got "
                           f"{h}x{w} and {r}")
    lead = tuple(lead)
    x = input.reshape(lead + (c, h // r, r, w // r, r))
    k = len(lead)
    x = x.permute(tuple(range(k)) + (k, k + 2, k + 4, k + 1, k + 3))
    return x.reshape(lead + (c * r * r, h // r, w // r))


class Upsample(Module):
    """Resize by size or scale_factor with interpolate's modes."""

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.size, self.mode, self.align_corners = size, mode, align_corners
        self.scale_factor = float(scale_factor) if isinstance(scale_factor, (int, float)) else scale_factor
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input: Tensor) -> Tensor:
        return interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)

    def extra_repr(self) -> str:
        info = f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None else f"size={self.size!r}"
        return info + f", mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class PixelShuffle(Module):
    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, input: Tensor) -> Tensor:
        return pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, input: Tensor) -> Tensor:
        return pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"
