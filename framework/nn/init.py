"""nn.init: fill tensors in place with PyTorch's initialisation schemes.

Each function replaces the tensor's value under no_grad (so it works on parameters) and draws from
ember's global generator: the same `ember.manual_seed` gives the same initialisation. The values are
lazy like everything else; they are computed with the first kernel that reads them.

    w = nn.Parameter(ember.empty(128, 784))
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))
"""
from __future__ import annotations

import math

from ..autograd_mode import no_grad
from ..creation import full, rand, randn
from ..tensor import Tensor

__all__ = ["calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
           "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]


def _set(tensor: Tensor, value: Tensor) -> Tensor:
    with no_grad():
        return tensor._rebind(value if value.dtype is tensor.dtype else value.to(tensor.dtype))


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (e.g. sqrt(2) for 'relu', 5/3 for 'tanh').

    >>> nn.init.calculate_gain('leaky_relu', 0.2)
    1.3867504905630728
    """
    linear = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid"]
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, (int, float)):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _layer_default_(weight: Tensor, bias: Tensor | None, zero_fan_in_bias: bool = True) -> None:
    """PyTorch's default initialisation of Linear and convolution layers: kaiming_uniform_ with
    a=sqrt(5) for the weight, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias. With fan_in 0 the
    bound is 0: Linear still draws the (all-zero) bias, convolutions skip it
    (zero_fan_in_bias=False), as PyTorch's layers do."""
    kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in, _ = _calculate_fan_in_and_fan_out(weight)
        if fan_in > 0 or zero_fan_in_bias:
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            uniform_(bias, -bound, bound)


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _uniform(tensor: Tensor, a: float, b: float) -> Tensor:
    return rand(tuple(tensor.shape), dtype=tensor.dtype, device=tensor.device) * (b - a) + a


def _normal(tensor: Tensor, mean: float, std: float) -> Tensor:
    return randn(tuple(tensor.shape), dtype=tensor.dtype, device=tensor.device) * std + mean


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill with samples from U(a, b)."""
    return _set(tensor, _uniform(tensor, a, b))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with samples from N(mean, std^2)."""
    return _set(tensor, _normal(tensor, mean, std))


def _erfinv(y: Tensor) -> Tensor:
    """Inverse error function on (-1, 1) (M. Giles, "Approximating the erfinv function", 2010:
    the single-precision polynomials, relative error below 4e-7)."""
    w = -((1 - y) * (1 + y)).log()
    central = [2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087,
               -0.00125372503, -0.00417768164, 0.246640727, 1.50140941]
    tail = [-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773,
            -0.0076224613, 0.00943887047, 1.00167406, 2.83297682]

    def poly(coeffs, t):
        p = coeffs[0] + t * 0
        for c in coeffs[1:]:
            p = p * t + c
        return p
    small = w < 5.0
    p = poly(central, w - 2.5).where(small, poly(tail, w.clamp(min=5.0).sqrt() - 3.0))
    return p * y


def trunc_normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator=None) -> Tensor:
    """Fill with N(mean, std^2) samples restricted to [a, b], by inverting the normal CDF of a
    uniform sample between CDF(a) and CDF(b) (PyTorch's method)."""
    def cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0
    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    work = tensor.dtype if tensor.dtype.itemsize >= 4 else None
    u = rand(tuple(tensor.shape), dtype=work, device=tensor.device)
    y = (u * (2 * hi - 2 * lo) + (2 * lo - 1)).clamp(-1 + 1e-7, 1 - 1e-7)
    x = _erfinv(y) * (std * math.sqrt(2.0)) + mean
    return _set(tensor, x.clamp(min=a, max=b))


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with the value `val`."""
    return _set(tensor, full(tuple(tensor.shape), val, dtype=tensor.dtype, device=tensor.device))


def ones_(tensor: Tensor) -> Tensor:
    """Fill with ones."""
    return constant_(tensor, 1.0)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with zeros."""
    return constant_(tensor, 0.0)


def eye_(tensor: Tensor) -> Tensor:
    """Fill a 2-D tensor with the identity matrix."""
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    from ..creation import eye
    return _set(tensor, eye(*tensor.shape, dtype=tensor.dtype, device=tensor.device))


def dirac_(tensor: Tensor, groups: int = 1) -> Tensor:
    """Fill a {3,4,5}-D conv weight with the Dirac delta (identity convolution), per group."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    out_per = tensor.shape[0] // groups
    if tensor.shape[0] % groups:
        raise ValueError("dim 0 must be divisible by groups")
    from ..creation import arange
    o = arange(tensor.shape[0], device=tensor.device).reshape((-1,) + (1,) * (tensor.ndim - 1))
    i = arange(tensor.shape[1], device=tensor.device).reshape((1, -1) + (1,) * (tensor.ndim - 2))
    hit = (o % out_per).eq(i) & (o % out_per < tensor.shape[1])
    for d in range(2, tensor.ndim):
        k = arange(tensor.shape[d], device=tensor.device).reshape((1,) * d + (-1,) + (1,) * (tensor.ndim - d - 1))
        hit = hit & k.eq(tensor.shape[d] // 2)
    return _set(tensor, hit.to(tensor.dtype))


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot uniform: U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return uniform_(tensor, -a, a)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot normal: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None) -> Tensor:
    """He uniform: U(-bound, bound) with bound = gain * sqrt(3 / fan). nn.Linear and nn.Conv use
    a=sqrt(5), which gives bound = 1 / sqrt(fan_in)."""
    if tensor.numel() == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator=None) -> Tensor:
    """He normal: N(0, std^2) with std = gain / sqrt(fan)."""
    if tensor.numel() == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_calculate_correct_fan(tensor, mode))
    return normal_(tensor, 0.0, std)


# Tensor methods: like any in-place op they refuse a leaf that requires grad outside no_grad
_METHODS = {
    "uniform_": lambda self, a=0.0, b=1.0, *, generator=None: self._rebind(_uniform(self, a, b)),
    "normal_": lambda self, mean=0.0, std=1.0, *, generator=None: self._rebind(_normal(self, mean, std)),
}
for _name, _fn in _METHODS.items():
    if not hasattr(Tensor, _name):
        _fn.__name__ = _name
        setattr(Tensor, _name, _fn)
