"""Normalisation layers: BatchNorm1d/2d/3d, LayerNorm, GroupNorm, InstanceNorm1d/2d, RMSNorm.

All are one formula, (x - mean) / sqrt(var + eps) * weight + bias, over different axes, built
from reductions so autograd derives the backward pass. Half-precision inputs are normalised in
float32 and rounded once, as PyTorch's CPU kernels do.
"""
from __future__ import annotations

import numpy as np

from ember.compiler import dtypes as D

from ..autograd_mode import no_grad
from ..creation import ones, tensor as _tensor_from, zeros
from ..errors import ShapeError
from ..tensor import Tensor
from .. import pending as _pending
from .module import Module
from .parameter import Parameter


def _work(x: Tensor) -> Tensor:
    return x.to(D.float32) if x.dtype in (D.float16, D.bfloat16) else x


def _normalize(x: Tensor, dims: tuple, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """(x - mean) * rsqrt(biased var + eps) over dims; returns it with the mean and biased var."""
    mean = x.mean(dims, keepdim=True)
    d = x - mean
    var = (d * d).mean(dims, keepdim=True)
    return d * (var + eps).rsqrt(), mean, var


def _affine(y: Tensor, weight, bias, shape: tuple) -> Tensor:
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def _as_shape(normalized_shape) -> tuple:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)


def _trailing_dims(input: Tensor, normalized_shape) -> tuple[tuple, tuple]:
    """(normalized_shape as a tuple, the trailing dims of input it names), checked like PyTorch."""
    shape = _as_shape(normalized_shape)
    k = len(shape)
    if input.ndim < k or tuple(input.shape[input.ndim - k:]) != shape:
        raise ShapeError(f"Given normalized_shape={list(shape)}, expected input with shape [*, "
                         f"{', '.join(map(str, shape))}], but got input of size{list(input.shape)}")
    return shape, tuple(range(input.ndim - k, input.ndim))


def layer_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing dims given by normalized_shape.

    >>> F.layer_norm(ember.randn(2, 5), (5,)).shape
    ember.Size([2, 5])
    """
    shape, dims = _trailing_dims(input, normalized_shape)
    y, _, _ = _normalize(_work(input), dims, eps)
    return _affine(y, weight, bias, shape).to(input.dtype)


def rms_norm(input: Tensor, normalized_shape, weight: Tensor | None = None, eps: float | None = None) -> Tensor:
    """x / sqrt(mean(x^2) + eps) over the trailing dims (eps defaults to the dtype's epsilon)."""
    shape, dims = _trailing_dims(input, normalized_shape)
    if eps is None:  # the machine epsilon of the input's dtype
        eps = {D.float16: 2.0 ** -10, D.bfloat16: 2.0 ** -7, D.float64: 2.0 ** -52}.get(input.dtype, 2.0 ** -23)
    x = _work(input)
    y = x * ((x * x).mean(dims, keepdim=True) + eps).rsqrt()
    return _affine(y, weight, None, shape).to(input.dtype)


def _update_running(running: Tensor, batch_value: Tensor, factor: float) -> None:
    with no_grad():
        running._rebind((running * (1.0 - factor) + batch_value.detach().to(running.dtype) * factor))


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each channel (dim 1) over the batch and spatial dims.

    training=True uses the batch statistics and updates running_mean/running_var in place
    (running_var with the unbiased batch variance); otherwise the running statistics are used.
    """
    if input.ndim < 2:
        raise ValueError(f"expected 2D or higher input (got {input.ndim}D input)")
    c = input.shape[1]
    dims = (0,) + tuple(range(2, input.ndim))
    shape = (1, c) + (1,) * (input.ndim - 2)
    x = _work(input)
    if training:
        n = input.numel() // max(c, 1)
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                             f"{list(input.shape)}")
        y, mean, var = _normalize(x, dims, eps)
        if running_mean is not None:
            _update_running(running_mean, mean.reshape(c), momentum)
        if running_var is not None:
            _update_running(running_var, var.reshape(c) * (n / (n - 1)), momentum)
    else:
        if running_mean is None or running_var is None:
            raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
        y = (x - running_mean.to(x.dtype).reshape(shape)) * (running_var.to(x.dtype).reshape(shape) + eps).rsqrt()
    return _affine(y, weight, bias, shape).to(input.dtype)


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalise each (sample, channel) over its spatial dims."""
    c = input.shape[1]
    shape = (1, c) + (1,) * (input.ndim - 2)
    x = _work(input)
    if use_input_stats:
        y, mean, var = _normalize(x, tuple(range(2, input.ndim)), eps)
        if running_mean is not None:
            n = input.numel() // (input.shape[0] * c)
            _update_running(running_mean, mean.mean(0).reshape(c), momentum)
            _update_running(running_var, var.mean(0).reshape(c) * (n / max(n - 1, 1)), momentum)
    else:
        y = (x - running_mean.reshape(shape)) * (running_var.reshape(shape) + eps).rsqrt()
    return _affine(y, weight, bias, shape).to(input.dtype)


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Split the channels into num_groups groups and normalise each group of each sample."""
    n, c = input.shape[0], input.shape[1]
    if c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got "
                           f"input of shape {list(input.shape)} and num_groups={num_groups}")
    x = _work(input)
    g = x.reshape((n, num_groups, c // num_groups) + tuple(input.shape[2:]))
    y, _, _ = _normalize(g, tuple(range(2, g.ndim)), eps)
    y = y.reshape(tuple(input.shape))
    return _affine(y, weight, bias, (1, c) + (1,) * (input.ndim - 2)).to(input.dtype)


def _filled_buffer(n: int, value: float, dtype) -> Tensor:
    """A realized buffer (not a lazy fill), so running statistics start out as plain storage."""
    return _tensor_from(np.full(n, value, dtype=(dtype or D.float32).np))


def _affine_parameters(module: Module, shape, weight: bool, bias: bool, device, dtype) -> None:
    """Register `weight` (ones) and `bias` (zeros) of `shape`, or None for each one left out."""
    module.register_parameter("weight", Parameter(ones(shape, dtype=dtype, device=device)) if weight else None)
    module.register_parameter("bias", Parameter(zeros(shape, dtype=dtype, device=device)) if bias else None)


def _reset_affine(module: Module) -> None:
    with no_grad():
        if module.weight is not None:
            module.weight.fill_(1)
        if module.bias is not None:
            module.bias.zero_()


class _NormBase(Module):
    """Shared by BatchNorm and InstanceNorm: affine parameters and running statistics."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        _affine_parameters(self, num_features, affine, affine and bias, device, dtype)
        if track_running_stats:
            self.register_buffer("running_mean", _filled_buffer(num_features, 0.0, dtype))
            self.register_buffer("running_var", _filled_buffer(num_features, 1.0, dtype))
            self.register_buffer("num_batches_tracked", _tensor_from(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            with no_grad():
                self.running_mean.zero_()
                self.running_var.fill_(1)
                self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        _reset_affine(self)

    def _check_input_dim(self, input: Tensor) -> None:
        pass

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if input.ndim >= 2 and input.shape[1] != self.num_features:
            raise ShapeError(f"running_mean should contain {input.shape[1]} elements not {self.num_features}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            _pending.settle(self.running_mean, self.running_var, self.num_batches_tracked)
            with no_grad():
                self.num_batches_tracked._rebind(self.num_batches_tracked + 1)
            if self.momentum is None:  # a cumulative average: this batch weighs 1/num_batches_tracked
                factor = 1.0 / int(self.num_batches_tracked.item())
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = self.training and self.track_running_stats
        out = batch_norm(input, self.running_mean if track or not self.training else None,
                         self.running_var if track or not self.training else None,
                         self.weight, self.bias, use_batch, factor, self.eps)
        if track:
            _pending.defer(self.running_mean, self.running_var, self.num_batches_tracked)
        return out


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) input."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.ndim}D input)")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input.

    >>> bn = nn.BatchNorm2d(3); y = bn(ember.randn(4, 3, 5, 5))
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim != 4:
            raise ValueError(f"expected 4D input (got {input.ndim}D input)")


class BatchNorm3d(_BatchNorm):
    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim != 5:
            raise ValueError(f"expected 5D input (got {input.ndim}D input)")


class _InstanceNorm(_NormBase):
    _nsp = 2  # spatial dims: input is (N, C, *spatial) or unbatched (C, *spatial)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None, *, bias: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, bias=bias)

    def forward(self, input: Tensor) -> Tensor:
        nsp = self._nsp
        if input.ndim not in (nsp + 1, nsp + 2):
            raise ValueError(f"expected {nsp + 1}D or {nsp + 2}D input (got {input.ndim}D input)")
        unbatched = input.ndim == nsp + 1
        x = input.unsqueeze(0) if unbatched else input
        use_stats = self.training or not self.track_running_stats
        out = instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_stats,
                            self.momentum if self.momentum is not None else 0.1, self.eps)
        return out.squeeze(0) if unbatched else out


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) or (C, L) input."""
    _nsp = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, C, H, W) or (C, H, W) input."""
    _nsp = 2


class LayerNorm(Module):
    """Normalise over the last len(normalized_shape) dims, with elementwise weight and bias.

    >>> nn.LayerNorm(10)
    LayerNorm((10,), eps=1e-05, elementwise_affine=True)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        shape = _as_shape(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        _affine_parameters(self, shape, elementwise_affine, elementwise_affine and bias, device, dtype)

    def reset_parameters(self) -> None:
        _reset_affine(self)

    def forward(self, input: Tensor) -> Tensor:
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing dims (no mean subtraction)."""

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True,
                 device=None, dtype=None):
        super().__init__()
        shape = _as_shape(normalized_shape)
        self.normalized_shape, self.eps, self.elementwise_affine = shape, eps, elementwise_affine
        self.register_parameter("weight", Parameter(ones(shape, dtype=dtype, device=device)) if elementwise_affine
                                else None)

    def forward(self, input: Tensor) -> Tensor:
        return rms_norm(input, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class GroupNorm(Module):
    """Group normalisation: channels split into num_groups groups, each normalised per sample."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError("num_channels must be divisible by num_groups")
        self.num_groups, self.num_channels, self.eps, self.affine = num_groups, num_channels, eps, affine
        _affine_parameters(self, num_channels, affine, affine and bias, device, dtype)

    def forward(self, input: Tensor) -> Tensor:
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
                f"bias={self.bias is not None}")
