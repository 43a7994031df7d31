"""Dropout, Dropout1d/2d/3d and AlphaDropout: zero elements (or whole channels) at random while
training, scaling the kept ones by 1/(1-p) so the expected value is unchanged; identity in eval.

The mask comes from ember's counter-based generator inside the fused kernel: the same seed drops the
same elements, and the gradient is zero exactly where the output was zeroed.
"""
from __future__ import annotations

from ..creation import rand
from ..tensor import Tensor
from .module import Module


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _masked(input: Tensor, p: float, mask_shape: tuple, inplace: bool) -> Tensor:
    # a buffer of one byte per element: the generator costs ~10 cycles per number, and the forward
    # and backward kernels would each run it again
    keep = (rand(mask_shape, device=input.device) < (1.0 - p))._apply("contiguous")
    if tuple(mask_shape) != tuple(input.shape):
        keep = keep.expand(tuple(input.shape))
    out = (input * (1.0 / (1.0 - p))).where(keep, 0.0) if p < 1.0 else input * 0.0
    if inplace:
        return input._rebind(out)
    return out


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero each element with probability p (training only) and scale the rest by 1/(1-p).

    >>> F.dropout(ember.ones(4), p=0.5, training=False).tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    _check_p(p)
    if not training or p == 0.0:
        return input
    return _masked(input, p, tuple(input.shape), inplace)


def _channel_dropout(input: Tensor, p: float, training: bool, inplace: bool, name: str, ndims: tuple) -> Tensor:
    _check_p(p)
    if input.ndim not in ndims:
        raise RuntimeError(f"{name}: Expected {ndims[0]}D or {ndims[1]}D input, but received a "
                           f"{input.ndim}D input")
    if not training or p == 0.0:
        return input
    batched = input.ndim == ndims[1]
    keep_dims = 2 if batched else 1   # (N, C, ...) or (C, ...): one draw per channel
    mask_shape = tuple(input.shape[:keep_dims]) + (1,) * (input.ndim - keep_dims)
    return _masked(input, p, mask_shape, inplace)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, L) or (C, L) input."""
    return _channel_dropout(input, p, training, inplace, "dropout1d", (2, 3))


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, H, W) input; a 3-D input is taken as (N, C, L) like PyTorch."""
    _check_p(p)
    if input.ndim not in (3, 4):
        raise RuntimeError(f"dropout2d: Expected 3D or 4D input, but received a {input.ndim}D input")
    if not training or p == 0.0:
        return input
    mask_shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2)
    return _masked(input, p, mask_shape, inplace)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) input."""
    return _channel_dropout(input, p, training, inplace, "dropout3d", (4, 5))


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False) -> Tensor:
    """Dropout that keeps SELU's self-normalising mean and variance."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    alpha = -1.7580993408473766  # -scale * alpha of SELU: the value dropped units take
    keep = rand(tuple(input.shape), device=input.device) < (1.0 - p)
    a = ((1 - p) * (1 + p * alpha ** 2)) ** -0.5
    b = -a * alpha * p
    out = input.where(keep, alpha) * a + b
    return input._rebind(out) if inplace else out


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        _check_p(p)
        self.p, self.inplace = p, inplace

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Elementwise dropout while training; identity in eval mode.

    >>> nn.Dropout(0.25).eval()(ember.ones(3)).tolist()
    [1.0, 1.0, 1.0]
    """

    def forward(self, input: Tensor) -> Tensor:
        return dropout(input, self.p, self.training, self.inplace)


class Dropout1d(_DropoutNd):
    def forward(self, input: Tensor) -> Tensor:
        return dropout1d(input, self.p, self.training, self.inplace)


class Dropout2d(_DropoutNd):
    """Channel-wise dropout for (N, C, H, W) feature maps."""

    def forward(self, input: Tensor) -> Tensor:
        return dropout2d(input, self.p, self.training, self.inplace)


class Dropout3d(_DropoutNd):
    def forward(self, input: Tensor) -> Tensor:
        return dropout3d(input, self.p, self.training, self.inplace)


class AlphaDropout(_DropoutNd):
    def forward(self, input: Tensor) -> Tensor:
        return alpha_dropout(input, self.p, self.training)
