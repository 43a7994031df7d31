"""Elementwise operations: arithmetic, comparisons, logic, where/clamp/lerp, and Python's operators.

Each op is a short composition of primitives. Operands go through `promote` (PyTorch's type
promotion plus broadcasting), so the primitives always see one dtype and one shape. Composites on
float16/bfloat16 compute in float32 and round once at the end, as PyTorch's CPU kernels do.
In-place forms (`x += y`, `x.add_(y)`) compute the out-of-place result, check that it can be cast
to x's dtype and shape exactly as PyTorch does, and rebind x to the new graph node.
The one-tensor math functions live in ops_math.py and conversions in conversions.py; this module
re-exports the former and attaches every method and operator to Tensor.
"""
from __future__ import annotations

import numpy as np

from ember.compiler import dtypes as D

from . import conversions  # noqa: F401  (attaches to(), float(), clone(), ... to Tensor)
from .compose import (TORCH_NAME, _cast, _eq, _expand, _in_work, _k, _lt, _not, _operand, _require, _sub,
                      _where)
from .errors import DTypeError, ShapeError
from .ops_math import *  # noqa: F401,F403
from .ops_math import __all__ as _MATH
from .ops_math import abs, isnan
from .tensor import Tensor, broadcast_shapes, get_default_dtype, promote

__all__ = [
    "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "floor_divide",
    "remainder", "fmod", "pow", "square", "clamp", "clip", "clamp_min", "clamp_max", "maximum",
    "minimum", "where", "lerp", "addcmul", "addcdiv", "eq", "ne", "lt", "le", "gt", "ge", "greater",
    "greater_equal", "less", "less_equal", "not_equal", "logical_and", "logical_or", "logical_xor",
    "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "bitwise_left_shift",
    "bitwise_right_shift",
] + _MATH


# ---- binary arithmetic ----------------------------------------------------------------------------

def _binary(a, b, kinds: str, name: str, float_result: bool = False) -> tuple[Tensor, Tensor]:
    a, b = _operand(a), _operand(b)
    dt = None
    if float_result:  # integer operands convert straight to float, not via their common int type
        dt = D.result_type(*[_info(v) for v in (a, b)], default_float=get_default_dtype())
        dt = dt if dt.is_float else get_default_dtype()
    x, y = promote(a, b, dtype=dt)
    _require(x, kinds, name)
    return x, y


def _info(v):
    if isinstance(v, Tensor):
        return (v.dtype, v.ndim)
    return v.item() if isinstance(v, (np.number, np.bool_)) else v


def add(input, other, *, alpha=1) -> Tensor:
    """input + alpha * other.

    >>> ember.add(ember.tensor([1, 2]), 3).tolist()
    [4, 5]
    """
    if alpha != 1:
        other = mul(other, _alpha(input, other, alpha))
    x, y = _binary(input, other, "bifu", "add")
    return x._apply("add", y)


def sub(input, other, *, alpha=1) -> Tensor:
    """input - alpha * other (not defined for two bools: use `^`)."""
    bools = [isinstance(v, bool) or (isinstance(v, Tensor) and v.dtype is D.bool_) for v in (input, other)]
    if all(bools):
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if any(bools):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
                           "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    if alpha != 1:
        other = mul(other, _alpha(input, other, alpha))
    x, y = _binary(input, other, "bifu", "sub")
    return _sub(x, y)


def _alpha(input, other, alpha):
    ints = all(not isinstance(v, Tensor) or not v.dtype.is_float for v in (input, other))
    if ints and isinstance(alpha, float):
        raise RuntimeError("For integral input tensors, argument alpha must not be a floating point number.")
    return alpha


def mul(input, other) -> Tensor:
    """input * other (logical and for two bools)."""
    x, y = _binary(input, other, "bifu", "mul")
    return x._apply("mul", y)


def true_divide(input, other) -> Tensor:
    """input / other; integers divide as floats."""
    x, y = _binary(input, other, "bifu", "div", float_result=True)
    return x._apply("div", y)


def _floor_div(x: Tensor, y: Tensor) -> Tensor:
    if x.dtype.is_float:  # PyTorch's div_floor: floor of the exact quotient, not of the rounded one
        def body(a, b):
            mod = a._apply("mod", b)
            q = _sub(a, mod)._apply("div", b)
            fix = _lt(b, _k(0.0, b))._apply("xor", _lt(mod, _k(0.0, mod)))
            q = _where(_not(_eq(mod, _k(0.0, mod)))._apply("and", fix), _sub(q, _k(1.0, q)), q)
            f = q._apply("floor")
            f = _where(_lt(_k(0.5, q), _sub(q, f)), f._apply("add", _k(1.0, f)), f)
            exact = a._apply("div", b)
            f = _where(_eq(q, _k(0.0, q)), _k(0.0, q)._apply("mul", exact), f)  # signed zero
            return _where(_eq(b, _k(0.0, b)), exact, f)
        return _in_work(body, x, y)
    q = x._apply("idiv", y)
    r = x._apply("mod", y)
    zero = _k(0, r)
    adjust = _not(_eq(r, zero))._apply("and", _lt(r, zero)._apply("xor", _lt(y, zero)))
    return _sub(q, _cast(adjust, q.dtype))


def floor_divide(input, other) -> Tensor:
    """Division rounded toward minus infinity (Python's //)."""
    x, y = _binary(input, other, "iuf", "div_floor_cpu")
    return _floor_div(x, y)


def div(input, other, *, rounding_mode: str | None = None) -> Tensor:
    """input / other; rounding_mode None (true division), 'trunc' or 'floor'.

    >>> ember.div(ember.tensor([-7]), 2, rounding_mode='floor').tolist()
    [-4]
    """
    if rounding_mode is None:
        return true_divide(input, other)
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode != "trunc":
        raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                           f"'{rounding_mode}'")
    x, y = _binary(input, other, "iuf", "div_trunc_cpu")
    if x.dtype.is_float:
        return _in_work(lambda a, b: a._apply("div", b)._apply("trunc"), x, y)
    return x._apply("idiv", y)


subtract, multiply, divide = sub, mul, div


def fmod(input, other) -> Tensor:
    """C's fmod: the remainder has the sign of the dividend."""
    x, y = _binary(input, other, "iuf", "fmod_cpu")
    return x._apply("mod", y)


def remainder(input, other) -> Tensor:
    """Python's %: the remainder has the sign of the divisor."""
    x, y = _binary(input, other, "iuf", "remainder_cpu")
    r = x._apply("mod", y)
    zero = _k(0, r)
    fix = _not(_eq(r, zero))._apply("and", _lt(r, zero)._apply("xor", _lt(y, zero)))
    return _where(fix, r._apply("add", y), r)


# torch special-cases these exponents (sqrt, x*x, ...); matching them matches its rounding
_POW_SPECIAL = {
    0.5: lambda x: x._apply("sqrt"),
    2.0: lambda x: x._apply("mul", x),
    3.0: lambda x: x._apply("mul", x)._apply("mul", x),
    -0.5: lambda x: _k(1.0, x)._apply("div", x._apply("sqrt")),
    -1.0: lambda x: _k(1.0, x)._apply("div", x),
    -2.0: lambda x: _k(1.0, x)._apply("div", x._apply("mul", x)),
}


def _int_pow_scalar(base: Tensor, e: int) -> Tensor:
    """Square-and-multiply over the bits of a known exponent."""
    result = None
    while e:
        if e & 1:
            result = base if result is None else result._apply("mul", base)
        e >>= 1
        if e:
            base = base._apply("mul", base)
    return _k(1, base) if result is None else result


def _int_pow(base: Tensor, exp: Tensor) -> Tensor:
    """Integer power by binary exponentiation over every bit of the exponent (wrapping like C);
    negative exponents give 0 except for bases 1 and -1, as in PyTorch."""
    one = _k(1, base)
    result, b = one, base
    for i in range(exp.dtype.bits - exp.dtype.is_signed):
        bit = exp._apply("shr", _k(i, exp))._apply("and", _k(1, exp))
        result = _where(_eq(bit, _k(1, exp)), result._apply("mul", b), result)
        b = b._apply("mul", b)
    if not exp.dtype.is_signed:
        return result
    odd = _eq(exp._apply("and", _k(1, exp)), _k(1, exp))
    at_neg = _where(_eq(base, one), one, _where(_eq(base, _k(-1, base)), _where(odd, _k(-1, base), one),
                                                 _k(0, base)))
    return _where(_lt(exp, _k(0, exp)), at_neg, result)


def pow(input, exponent) -> Tensor:
    """input ** exponent; integer tensors raised to integers stay integers.

    >>> ember.pow(ember.tensor([2, 3]), 2).tolist()
    [4, 9]
    """
    input, exponent = _operand(input), _operand(exponent)
    x, y = promote(input, exponent)
    if x.dtype is D.bool_ and isinstance(exponent, (bool, np.bool_)):  # the one bool case PyTorch has
        return x if exponent else _k(True, x)
    _require(x, "iuf", "pow")
    if not x.dtype.is_float:
        if isinstance(exponent, (int, np.integer)) and not isinstance(exponent, Tensor) and exponent < 0:
            raise RuntimeError("Integers to negative integer powers are not allowed.")
        if isinstance(exponent, (int, np.integer)):
            return _int_pow_scalar(x, int(exponent))
        return _int_pow(x, y)
    if not isinstance(exponent, Tensor) and float(exponent) in _POW_SPECIAL:
        return _in_work(_POW_SPECIAL[float(exponent)], x)
    return _in_work(lambda a, b: a._apply("pow", b), x, y)


def square(input: Tensor) -> Tensor:
    """input * input (bool becomes int64, as in PyTorch)."""
    return pow(input, 2)


def maximum(input, other) -> Tensor:
    """Elementwise maximum, NaN-propagating."""
    x, y = _binary(input, other, "bifu", "maximum")
    return x._apply("max", y)


def minimum(input, other) -> Tensor:
    """Elementwise minimum, NaN-propagating."""
    x, y = _binary(input, other, "bifu", "minimum")
    return x._apply("min", y)


def clamp(input, min=None, max=None) -> Tensor:
    """Limit values to [min, max] (either may be None; scalars or tensors; NaN propagates).

    >>> ember.clamp(ember.tensor([-2., 0.5, 3.]), min=0, max=1).tolist()
    [0.0, 0.5, 1.0]
    """
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    bounds = [_operand(b) for b in (min, max) if b is not None]
    x, *bs = promote(input, *bounds)
    if x.dtype is D.bool_:
        raise DTypeError("\"clamp_cpu\" not implemented for 'Bool'")
    # where-based (not max/min) so the gradient reaches x at x == bound, as in PyTorch; a NaN
    # bound makes the result NaN
    if min is not None:
        lo = bs.pop(0)
        x = _where(_lt(x, lo)._apply("or", isnan(lo)), lo, x)
    if max is not None:
        hi = bs.pop(0)
        x = _where(_lt(hi, x)._apply("or", isnan(hi)), hi, x)
    return x


def clamp_min(input, min) -> Tensor:
    """clamp(input, min=min)."""
    return clamp(input, min=min)


def clamp_max(input, max) -> Tensor:
    """clamp(input, max=max)."""
    return clamp(input, max=max)


clip = clamp


def where(condition: Tensor, input, other) -> Tensor:
    """input where condition else other (scalars allowed; all three broadcast).

    >>> ember.where(ember.tensor([True, False]), 1.0, 0.0).tolist()
    [1.0, 0.0]
    """
    if not isinstance(condition, Tensor) or condition.dtype is not D.bool_:
        got = TORCH_NAME.get(getattr(condition, "dtype", None), type(condition).__name__)
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor with dtype {got}")
    input, other = _operand(input), _operand(other)
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        from .creation import tensor
        input = tensor(input)  # two scalars: as a 0-dim tensor it promotes the same way
    x, y = promote(input, other)
    shape = broadcast_shapes(condition.shape, x.shape)
    return _where(_expand(condition, shape), _expand(x, shape), _expand(y, shape))


def lerp(input: Tensor, end: Tensor, weight) -> Tensor:
    """input + weight * (end - input), computed as PyTorch does for accuracy near weight = 1."""
    for name, v in (("end", end), ("weight", weight)):
        if isinstance(v, Tensor) and v.dtype is not input.dtype:
            raise RuntimeError(f"expected dtype {input.dtype.name} for `{name}` but got dtype {v.dtype.name}")
    _require(input, "f", "lerp_kernel_scalar")
    scalar = not isinstance(weight, Tensor)
    x, e, w = promote(input, end, 0.0 if scalar else weight)

    def body(a, b, t):
        if scalar:   # a Python weight keeps its precision in the compute type (PyTorch's opmath)
            t = _k(float(weight), a)
        diff = _sub(b, a)
        lo = a._apply("add", t._apply("mul", diff))
        hi = _sub(b, diff._apply("mul", _sub(_k(1.0, t), t)))
        return _where(_lt(abs(t), _k(0.5, t)), lo, hi)
    return _in_work(body, x, e, w)


def addcmul(input, tensor1, tensor2, *, value=1) -> Tensor:
    """input + value * tensor1 * tensor2."""
    x, a, b = promote(input, tensor1, tensor2)
    return _in_work(lambda s, p, q: s._apply("add", p._apply("mul", _k(value, p))._apply("mul", q)), x, a, b)


def addcdiv(input, tensor1, tensor2, *, value=1) -> Tensor:
    """input + value * tensor1 / tensor2 (float tensors only)."""
    if not (tensor1.dtype.is_float or tensor2.dtype.is_float):
        raise RuntimeError("Integer division with addcdiv is no longer supported, and in a future release "
                           "addcdiv will perform a true division of tensor1 and tensor2.")
    x, a, b = promote(input, tensor1, tensor2)
    return _in_work(lambda s, p, q: s._apply("add", p._apply("mul", _k(value, p))._apply("div", q)), x, a, b)


# ---- comparisons and logic ------------------------------------------------------------------------

def _compare(name: str, body):
    def op(input, other) -> Tensor:
        x, y = _binary(input, other, "bifu", name)
        return body(x, y)
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise `{name}` comparison after type promotion; returns bool.\n\n" \
                 f"    >>> ember.{name}(ember.tensor([1, 2]), 2)"
    return op


# NaN compares unequal and unordered: `le` is (a < b) | (a == b), never not(b < a)
eq = _compare("eq", _eq)
ne = _compare("ne", lambda a, b: _not(_eq(a, b)))
lt = _compare("lt", _lt)
gt = _compare("gt", lambda a, b: _lt(b, a))
le = _compare("le", lambda a, b: _lt(a, b)._apply("or", _eq(a, b)))
ge = _compare("ge", lambda a, b: _lt(b, a)._apply("or", _eq(a, b)))
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def _truth(x: Tensor) -> Tensor:
    return _cast(x, D.bool_)  # cast to bool is x != 0


def _logical(prim: str):
    def op(input, other) -> Tensor:
        x, y = promote(_operand(input), _operand(other))  # PyTorch tests truth in the common dtype
        return _truth(x)._apply(prim, _truth(y))
    op.__name__ = op.__qualname__ = f"logical_{prim}"
    op.__doc__ = f"Elementwise logical {prim} of the inputs' truth values; returns bool."
    return op


logical_and, logical_or, logical_xor = _logical("and"), _logical("or"), _logical("xor")


def logical_not(input: Tensor) -> Tensor:
    """True where input == 0."""
    return _not(_truth(input))


def _bitwise(prim: str):
    def op(input, other) -> Tensor:
        x, y = _binary(input, other, "biu", f"bitwise_{prim}_cpu")
        return x._apply(prim, y)
    op.__name__ = op.__qualname__ = f"bitwise_{prim}"
    op.__doc__ = f"Elementwise bitwise {prim} of integer or bool tensors."
    return op


bitwise_and, bitwise_or, bitwise_xor = _bitwise("and"), _bitwise("or"), _bitwise("xor")


def bitwise_not(input: Tensor) -> Tensor:
    """~input: bitwise complement (logical not for bool)."""
    _require(input, "biu", "bitwise_not_cpu")
    if input.dtype is D.bool_:
        return _not(input)
    return input._apply("xor", _k(-1 if input.dtype.is_signed else (1 << input.dtype.bits) - 1, input))


def bitwise_left_shift(input, other) -> Tensor:
    """input << other; shifting by a negative amount or by >= the bit width gives 0 (PyTorch)."""
    x, y = _binary(input, other, "iu", "lshift_cpu")
    ok = _valid_shift(y)
    return _where(ok, x._apply("shl", _where(ok, y, _k(0, y))), _k(0, x))


def bitwise_right_shift(input, other) -> Tensor:
    """input >> other (arithmetic for signed types); over-long shifts fill with the sign (PyTorch)."""
    x, y = _binary(input, other, "iu", "rshift_cpu")
    ok = _valid_shift(y)
    if not x.dtype.is_signed:
        return _where(ok, x._apply("shr", _where(ok, y, _k(0, y))), _k(0, x))
    return x._apply("shr", _where(ok, y, _k(x.dtype.bits - 1, y)))


def _valid_shift(y: Tensor) -> Tensor:
    ok = _lt(y, _k(y.dtype.bits, y))
    return ok._apply("and", _not(_lt(y, _k(0, y)))) if y.dtype.is_signed else ok


# ---- attaching to Tensor ------------------------------------------------------------------------

def _can_cast(src: D.DType, dst: D.DType) -> bool:
    """PyTorch's canCast: no float -> integral and no non-bool -> bool in in-place results."""
    if src.is_float and not dst.is_float:
        return False
    return not (src is not D.bool_ and dst is D.bool_)


def _assign(self: Tensor, out: Tensor) -> Tensor:
    """The in-place half: check out fits self like PyTorch, then rebind self to it."""
    if not _can_cast(out.dtype, self.dtype):
        raise RuntimeError(f"result type {TORCH_NAME[out.dtype]} can't be cast to the desired output type "
                           f"{TORCH_NAME[self.dtype]}")
    if tuple(out.shape) != tuple(self.shape):
        raise ShapeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                         f"{list(out.shape)}")
    self._rebind(_cast(out, self.dtype))
    return self


def _inplace(fn):
    def method(self, *args, **kwargs):
        return _assign(self, fn(self, *args, **kwargs))
    method.__name__ = method.__qualname__ = fn.__name__ + "_"
    method.__doc__ = f"In-place {fn.__name__}."
    return method


def _dunder(fn, reflected: bool = False):
    """An operator: NotImplemented for operands it cannot take, so Python tries the other side."""
    def method(self, other):
        if not isinstance(other, (Tensor, bool, int, float, np.number, np.bool_, np.ndarray)):
            return NotImplemented
        return fn(other, self) if reflected else fn(self, other)
    return method


for _name in __all__:
    setattr(Tensor, _name, globals()[_name])
Tensor.where = lambda self, condition, other: where(condition, self, other)

# in-place methods: x.add_(y), x.exp_(), x.clamp_(0, 1), ...
for _name in ("add sub subtract mul multiply div divide true_divide floor_divide remainder fmod pow neg "
              "negative abs absolute sign reciprocal square exp exp2 expm1 log log1p log2 log10 sqrt rsqrt "
              "sin cos tan tanh sigmoid relu erf floor ceil round trunc clamp clip clamp_min clamp_max "
              "lerp addcmul addcdiv eq ne lt le gt ge logical_and logical_or logical_xor logical_not "
              "bitwise_and bitwise_or bitwise_xor bitwise_not bitwise_left_shift bitwise_right_shift").split():
    setattr(Tensor, _name + "_", _inplace(globals()[_name]))

_OPERATORS = {"add": add, "sub": sub, "mul": mul, "truediv": true_divide, "floordiv": floor_divide,
              "mod": remainder, "pow": pow, "and": bitwise_and, "or": bitwise_or, "xor": bitwise_xor,
              "lshift": bitwise_left_shift, "rshift": bitwise_right_shift}
for _name, _fn in _OPERATORS.items():
    setattr(Tensor, f"__{_name}__", _dunder(_fn))
    setattr(Tensor, f"__r{_name}__", _dunder(_fn, reflected=True))
    setattr(Tensor, f"__i{_name}__", _dunder(_inplace(_fn)))
for _name, _fn in {"eq": eq, "ne": ne, "lt": lt, "le": le, "gt": gt, "ge": ge}.items():
    setattr(Tensor, f"__{_name}__", _dunder(_fn))
Tensor.__neg__, Tensor.__pos__, Tensor.__abs__, Tensor.__invert__ = neg, positive, abs, bitwise_not
