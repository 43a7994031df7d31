"""Activation functions and their modules.

Piecewise functions are written as `where(condition, branch, other)` so that their gradients at the
kinks are PyTorch's (leaky_relu'(0) = slope, hardtanh' = 0 at the bounds). The exponential branches see their
input clamped to the side they are used on: `where` sends a zero cotangent to the branch it did not
pick, and exp of a large unused input would turn that zero into 0 * inf = NaN.
"""
from __future__ import annotations

import math

from ..ops_reduce import log_softmax as _log_softmax, softmax as _softmax
from ..tensor import Tensor
from .module import Module
from .parameter import Parameter


def _maybe_inplace(input: Tensor, out: Tensor, inplace: bool) -> Tensor:
    return input._rebind(out) if inplace else out


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(x, 0); the gradient at 0 is 0.

    >>> F.relu(ember.tensor([-1.0, 2.0])).tolist()
    [0.0, 2.0]
    """
    return _maybe_inplace(input, input.relu(), inplace)


def relu_(input: Tensor) -> Tensor:
    return relu(input, inplace=True)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x for x > 0, negative_slope * x otherwise."""
    return _maybe_inplace(input, input.where(input > 0, input * negative_slope), inplace)


def _expm1_neg(x: Tensor) -> Tensor:
    return Tensor.expm1(x.clamp(max=0))


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return _maybe_inplace(input, input.where(input > 0, _expm1_neg(input) * alpha), inplace)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x for x > 0, alpha * (exp(x / alpha) - 1) otherwise."""
    return _maybe_inplace(input, input.where(input > 0, _expm1_neg(input / alpha) * alpha), inplace)


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    """scale * elu(x, alpha) with SELU's self-normalising constants."""
    return _maybe_inplace(input, elu(input, _SELU_ALPHA) * _SELU_SCALE, inplace)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (exact, with erf) or its tanh approximation (approximate='tanh')."""
    if approximate == "none":
        return input * 0.5 * (1.0 + Tensor.erf(input * (1.0 / math.sqrt(2.0))))
    if approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * math.sqrt(2.0 / math.pi)
        return input * 0.5 * (1.0 + inner.tanh())
    raise RuntimeError(f"approximate argument must be either none or tanh, got {approximate!r}")


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    """x * sigmoid(x) (also called swish)."""
    return _maybe_inplace(input, input * input.sigmoid(), inplace)


def _softplus(z: Tensor) -> Tensor:
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), overflow-free, written with `where` so that the
    gradient is sigmoid(z) everywhere, including z = 0 (no max/abs kink to split)."""
    pos = z > 0
    return z.where(pos, 0.0) + Tensor.log1p(Tensor.exp((-z).where(pos, z)))


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (for stability)."""
    bx = input * beta
    return input.where(bx > threshold, _softplus(bx) / beta)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * tanh(softplus(x))."""
    return _maybe_inplace(input, input * Tensor.tanh(softplus(input)), inplace)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    """clamp(x, min_val, max_val); the gradient is 1 strictly inside the bounds, 0 elsewhere."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    inside = (input > min_val) & (input < max_val)
    return _maybe_inplace(input, input.where(inside, input.detach().clamp(min_val, max_val)), inplace)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    """relu6(x + 3) / 6."""
    return _maybe_inplace(input, relu6(input + 3.0) / 6.0, inplace)


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    """x * relu6(x + 3) / 6."""
    return _maybe_inplace(input, input * relu6(input + 3.0) / 6.0, inplace)


def logsigmoid(input: Tensor) -> Tensor:
    """log(sigmoid(x)) = -softplus(-x), computed stably."""
    return -_softplus(-input)


def softsign(input: Tensor) -> Tensor:
    """x / (1 + |x|)."""
    return input / (input.abs() + 1.0)


def tanhshrink(input: Tensor) -> Tensor:
    """x - tanh(x)."""
    return input - input.tanh()


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    """x where x > threshold, else value."""
    return _maybe_inplace(input, input.where(input > threshold, value), inplace)


def hardshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x where |x| > lambd, else 0."""
    return input.where(input.abs() > lambd, 0.0)


def softshrink(input: Tensor, lambd: float = 0.5) -> Tensor:
    """x - lambd above lambd, x + lambd below -lambd, 0 between."""
    return (input - lambd).where(input > lambd, (input + lambd).where(input < -lambd, 0.0))


def prelu(input: Tensor, weight: Tensor) -> Tensor:
    """x for x > 0, weight * x otherwise; weight has 1 or C (= input.shape[1]) entries."""
    if weight.numel() != 1 and input.ndim >= 2:
        weight = weight.reshape((1, -1) + (1,) * (input.ndim - 2))
    return input.where(input > 0, input * weight)


def glu(input: Tensor, dim: int = -1) -> Tensor:
    """a * sigmoid(b), where a and b are the two halves of input along dim."""
    if input.shape[dim] % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {input._dim(dim)} is size "
                           f"{input.shape[dim]}")
    a, b = input.chunk(2, dim)
    return a * b.sigmoid()


def _softmax_dim(ndim: int) -> int:
    return 0 if ndim in (0, 1, 3) else 1  # PyTorch's legacy choice when dim is not given


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """exp(x) / sum(exp(x)) along dim."""
    return _softmax(input, _softmax_dim(input.ndim) if dim is None else dim, dtype=dtype)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """softmax(-x) along dim."""
    return softmax(-input, dim, dtype=dtype)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype=None) -> Tensor:
    """log(softmax(x)) along dim, computed stably."""
    return _log_softmax(input, _softmax_dim(input.ndim) if dim is None else dim, dtype=dtype)


# ---- modules ----------------------------------------------------------------------------------

def _activation(name: str, fn, params: dict, doc: str, inplace: bool = False, bare: bool = False):
    """A Module class that calls fn(input, **params) with constructor arguments as attributes."""
    names = list(params)

    def __init__(self, *args, **kwargs):
        Module.__init__(self)
        values = dict(params)
        if inplace:
            values["inplace"] = False
        keys = list(values)
        if len(args) > len(keys):
            raise TypeError(f"{name}() takes at most {len(keys)} arguments ({len(args)} given)")
        values.update(zip(keys, args))
        for k, v in kwargs.items():
            if k not in values:
                raise TypeError(f"{name}() got an unexpected keyword argument '{k}'")
            values[k] = v
        for k, v in values.items():
            setattr(self, k, v)

    def forward(self, input: Tensor) -> Tensor:
        kw = {k: getattr(self, k) for k in names}
        if inplace and self.inplace:
            kw["inplace"] = True
        return fn(input, **kw)

    def extra_repr(self) -> str:
        if bare:
            return str(getattr(self, names[0]))
        parts = [f"{k}={getattr(self, k)!r}" for k in names]
        if inplace and self.inplace:
            parts.append("inplace=True")
        return ", ".join(parts)
    return type(name, (Module,), {"__init__": __init__, "forward": forward, "extra_repr": extra_repr,
                                  "__doc__": doc, "__module__": __name__})


ReLU = _activation("ReLU", relu, {}, "max(x, 0) elementwise.", inplace=True)
ReLU6 = _activation("ReLU6", relu6, {}, "min(max(x, 0), 6) elementwise.", inplace=True)
LeakyReLU = _activation("LeakyReLU", leaky_relu, {"negative_slope": 0.01}, "x if x > 0 else slope * x.",
                        inplace=True)
ELU = _activation("ELU", elu, {"alpha": 1.0}, "x if x > 0 else alpha * (exp(x) - 1).", inplace=True)
CELU = _activation("CELU", celu, {"alpha": 1.0}, "x if x > 0 else alpha * (exp(x / alpha) - 1).", inplace=True)
SELU = _activation("SELU", selu, {}, "Scaled ELU with self-normalising constants.", inplace=True)
GELU = _activation("GELU", gelu, {"approximate": "none"}, "x * Phi(x); approximate='tanh' for the tanh form.")
SiLU = _activation("SiLU", silu, {}, "x * sigmoid(x).", inplace=True)
Mish = _activation("Mish", mish, {}, "x * tanh(softplus(x)).", inplace=True)
Sigmoid = _activation("Sigmoid", sigmoid, {}, "1 / (1 + exp(-x)).")
Tanh = _activation("Tanh", tanh, {}, "Hyperbolic tangent.")
Softplus = _activation("Softplus", softplus, {"beta": 1.0, "threshold": 20.0}, "log(1 + exp(beta x)) / beta.")
Hardtanh = _activation("Hardtanh", hardtanh, {"min_val": -1.0, "max_val": 1.0}, "clamp(x, min_val, max_val).",
                       inplace=True)
Hardsigmoid = _activation("Hardsigmoid", hardsigmoid, {}, "relu6(x + 3) / 6.", inplace=True)
Hardswish = _activation("Hardswish", hardswish, {}, "x * relu6(x + 3) / 6.", inplace=True)
LogSigmoid = _activation("LogSigmoid", logsigmoid, {}, "log(sigmoid(x)).")
Softsign = _activation("Softsign", softsign, {}, "x / (1 + |x|).")
Tanhshrink = _activation("Tanhshrink", tanhshrink, {}, "x - tanh(x).")
Threshold = _activation("Threshold", threshold, {"threshold": 0.0, "value": 0.0}, "x if x > threshold else value.",
                        inplace=True)
Hardshrink = _activation("Hardshrink", hardshrink, {"lambd": 0.5}, "x if |x| > lambd else 0.", bare=True)
Softshrink = _activation("Softshrink", softshrink, {"lambd": 0.5}, "Shrink x toward 0 by lambd.", bare=True)
GLU = _activation("GLU", glu, {"dim": -1}, "First half times sigmoid of the second half along dim.")
Softmax = _activation("Softmax", softmax, {"dim": None}, "softmax along dim.")
Softmin = _activation("Softmin", softmin, {"dim": None}, "softmax(-x) along dim.")
LogSoftmax = _activation("LogSoftmax", log_softmax, {"dim": None}, "log(softmax(x)) along dim.")


class Softmax2d(Module):
    """softmax over the channel dim of (N, C, H, W) or (C, H, W) input."""

    def forward(self, input: Tensor) -> Tensor:
        return softmax(input, -3)


class PReLU(Module):
    """x if x > 0 else a * x, with a learnable a (one, or one per channel), initialised to `init`."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25, device=None, dtype=None):
        super().__init__()
        from ..creation import full
        self.num_parameters, self.init = num_parameters, init
        self.weight = Parameter(full((num_parameters,), init, dtype=dtype, device=device))

    def forward(self, input: Tensor) -> Tensor:
        return prelu(input, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"
