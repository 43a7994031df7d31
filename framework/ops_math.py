"""Elementwise math of one tensor: exp/log families, trigonometry, sigmoid, rounding, abs/sign/relu
and the float classification tests.

Integer inputs of float functions become the default float dtype (torch.exp(int tensor) is float32);
composites on float16/bfloat16 run in float32 and round once. Compositions are chosen for accuracy
(log1p/expm1 cancel the rounding of 1 + x and exp(x); sigmoid never overflows) and so that their
gradients follow PyTorch's conventions (relu and abs have derivative 0 at 0; sign has a zero one).
"""
from __future__ import annotations

import builtins
import math

from ember.compiler import dtypes as D

from .compose import _cast, _eq, _float_in, _in_work, _k, _lt, _not, _require, _sub, _where
from .autograd import with_rule
from .tensor import Tensor

__all__ = [
    "neg", "negative", "positive", "abs", "absolute", "sign", "reciprocal", "exp", "exp2", "expm1",
    "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu",
    "erf", "floor", "ceil", "round", "trunc", "isnan", "isinf", "isfinite",
]


def _guarded(x: Tensor, use: Tensor, fn) -> Tensor:
    """fn(x) where `use`, evaluated on a benign 1.0 elsewhere: the branch a `where` drops must
    stay finite, or its (zero) share of the gradient becomes 0 * inf = NaN."""
    return fn(_where(use, x, _k(1.0, x)))


def _log1p(x):
    # u = 1 + x rounds; log(u) * x / (u - 1) cancels that rounding (Goldberg / HP-15C trick).
    # Where u is 1, inf, <= 0 or NaN the plain forms are exact: x, or log(u)
    u = x._apply("add", _k(1.0, x))
    mid = _not(_eq(u, _k(1.0, x)))._apply("and", _lt(_k(0.0, x), u))._apply("and", _lt(u, _k(math.inf, x)))

    def corrected(v):
        w = v._apply("add", _k(1.0, v))
        return w._apply("log")._apply("mul", v._apply("div", _sub(w, _k(1.0, v))))
    return _where(mid, _guarded(x, mid, corrected), _where(_eq(u, _k(1.0, x)), x, u._apply("log")))


def _expm1(x):
    # Kahan: (u - 1) * x / log(u) with u = exp(x) cancels the rounding of u. Where u is 1 the
    # answer is x; where u - 1 is -1 or u is inf (or NaN), u - 1 itself
    u = x._apply("exp")
    um1 = _sub(u, _k(1.0, x))
    mid = _not(_eq(u, _k(1.0, x)))._apply("and", _not(_eq(um1, _k(-1.0, x))))._apply("and", _lt(u, _k(math.inf, x)))

    def corrected(v):
        w = v._apply("exp")
        return _sub(w, _k(1.0, v))._apply("mul", v._apply("div", w._apply("log")))
    return _where(mid, _guarded(x, mid, corrected), _where(_eq(u, _k(1.0, x)), x, um1))


def _sigmoid(x):
    # e = exp(-|x|) never overflows; both branches are then accurate
    e = _where(_lt(x, _k(0.0, x)), x, x._apply("neg"))._apply("exp")
    d = _k(1.0, x)._apply("add", e)
    return _where(_lt(x, _k(0.0, x)), e._apply("div", d), _k(1.0, x)._apply("div", d))


def _scaled_log(scale):
    # log2/log10 of float32 computed in float64 so exact powers come out exact
    def f(x):
        w = _cast(x, D.float64)
        return _cast(w._apply("log")._apply("mul", _k(scale, w)), x.dtype)
    return f


_FLOAT_UNARY = {
    "exp": lambda x: x._apply("exp"),
    "exp2": lambda x: _k(2.0, x)._apply("pow", x),
    "expm1": _expm1,
    "log": lambda x: x._apply("log"),
    "log1p": _log1p,
    "log2": _scaled_log(1 / math.log(2)),
    "log10": _scaled_log(1 / math.log(10)),
    "sqrt": lambda x: x._apply("sqrt"),
    "rsqrt": lambda x: _k(1.0, x)._apply("div", x._apply("sqrt")),
    "sin": lambda x: x._apply("sin"),
    "cos": lambda x: x._apply("cos"),
    "tan": lambda x: x._apply("sin")._apply("div", x._apply("cos")),
    "tanh": lambda x: x._apply("tanh"),
    "sigmoid": _sigmoid,
    "erf": lambda x: x._apply("erf"),
    "reciprocal": lambda x: _k(1.0, x)._apply("div", x),
}


def _make_float_unary(name, body):
    def op(input: Tensor) -> Tensor:
        return _in_work(body, _float_in(input))
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name}; integer inputs give the default float dtype.\n\n" \
                 f"    >>> ember.{name}(ember.tensor([0.5]))"
    return op


globals().update({name: _make_float_unary(name, body) for name, body in _FLOAT_UNARY.items()})


def _rounding(prim):
    def op(input: Tensor) -> Tensor:
        _require(input, "iuf", f"{prim}_cpu")
        return input._apply(prim) if input.dtype.is_float else Tensor._wrap(input.node, input.device)
    op.__name__ = op.__qualname__ = prim
    op.__doc__ = f"Elementwise {prim} (integers are returned unchanged).\n\n    >>> ember.{prim}(ember.tensor([-1.5]))"
    return op


floor, ceil, trunc = _rounding("floor"), _rounding("ceil"), _rounding("trunc")


def round(input: Tensor, *, decimals: int = 0) -> Tensor:
    """Round half to even, optionally to `decimals` places: `ember.round(x, decimals=2)`."""
    _require(input, "iuf" if decimals == 0 else "f", "round_cpu")
    if not input.dtype.is_float:
        return Tensor._wrap(input.node, input.device)
    if decimals == 0:
        return input._apply("round")
    ten = 10.0 ** builtins.abs(decimals)
    if decimals > 0:  # PyTorch: nearbyint(x * 10^d) / 10^d, the other way round for d < 0
        return _in_work(lambda x: x._apply("mul", _k(ten, x))._apply("round")._apply("div", _k(ten, x)), input)
    return _in_work(lambda x: x._apply("div", _k(ten, x))._apply("round")._apply("mul", _k(ten, x)), input)


def neg(input: Tensor) -> Tensor:
    """-input (not defined for bool: use `~` / logical_not)."""
    if input.dtype is D.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If you are trying "
                           "to invert a mask, use the `~` or `logical_not()` operator instead.")
    return input._apply("neg")


def positive(input: Tensor) -> Tensor:
    """+input."""
    if input.dtype is D.bool_:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return input  # PyTorch returns self too


def abs(input: Tensor) -> Tensor:
    """|input|; integers stay integers (abs of the most negative value wraps, as in PyTorch)."""
    _require(input, "iuf", "abs_cpu")
    zero = _k(0, input)
    # the explicit zero makes abs(-0.0) = +0.0 and gives the gradient 0 at 0, as in PyTorch
    return _where(_lt(input, zero), input._apply("neg"), _where(_eq(input, zero), zero, input))


def _with_zero_grad(x: Tensor, value: Tensor) -> Tensor:
    """`value` (built from comparisons of x) with x's history and a zero gradient, like PyTorch's
    piecewise-constant ops: a never-taken `where` branch through floor, whose derivative is 0."""
    if not x.dtype.is_float:
        return value
    return _where(_k(False, x, D.bool_), _cast(x._apply("floor"), value.dtype), value)


def sign(input: Tensor) -> Tensor:
    """-1, 0 or 1 by the sign of input (0 for NaN), in input's dtype."""
    if input.dtype is D.bool_:
        return Tensor._wrap(input.node, input.device)
    zero = _k(0, input)
    return _with_zero_grad(input, _sub(_cast(_lt(zero, input), input.dtype), _cast(_lt(input, zero), input.dtype)))


def relu(input: Tensor) -> Tensor:
    """max(input, 0); NaN stays NaN and the gradient at 0 is 0 (PyTorch's conventions)."""
    if input.dtype is D.bool_:
        raise RuntimeError("Boolean inputs not supported for relu")
    zero = _k(0, input)
    return with_rule(_where(_not_positive(input), zero, input), (input,), "relu", _relu_vjp)


def _not_positive(x: Tensor) -> Tensor:
    zero = _k(0, x)
    return _lt(x, zero)._apply("or", _eq(x, zero))   # false for NaN: its gradient passes, as in PyTorch


def _relu_vjp(b, g, out, xs, arg):
    # from the output: relu(x) <= 0 exactly where x <= 0 (NaN stays NaN in both)
    return [_where(_not_positive(out), _k(0, g), g)]


negative, absolute = neg, abs


def isnan(input: Tensor) -> Tensor:
    """True where input is NaN."""
    if not input.dtype.is_float:
        return _k(False, input, D.bool_)
    return _not(_eq(input, input))


def isinf(input: Tensor) -> Tensor:
    """True where input is +inf or -inf."""
    if not input.dtype.is_float:
        return _k(False, input, D.bool_)
    return _eq(abs(input), _k(math.inf, input))


def isfinite(input: Tensor) -> Tensor:
    """True where input is neither inf nor NaN."""
    if not input.dtype.is_float:
        return _k(True, input, D.bool_)
    return _lt(abs(input), _k(math.inf, input))
