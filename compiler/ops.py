"""The primitive operations: ember's whole closed op set, one row each.

Every tensor operation the user sees is a composition of these (framework/). A row says what kind
of primitive it is, how its output dtype follows from its inputs, and how numpy computes it: the
numpy rule is the reference semantics, used by the interpreter (compiler/interpret.py), by constant
folding and by the differential tests. Shapes follow from the kind (see ir.infer_shape). Each
backend renders every elementwise primitive from one table of its own (codegen/llvm.py,
codegen/triton.py), so the core stays importable without any backend; a test checks that the
tables cover this one.

Integer division and remainder truncate toward zero (as C does); division by zero gives 0 for
integers rather than trapping. Floor semantics are composed in framework/.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import dtypes as D

LEAF, UNARY, BINARY, TERNARY, REDUCE, MOVEMENT, GATHER = (
    "leaf", "unary", "binary", "ternary", "reduce", "movement", "gather")


@dataclass(frozen=True)
class Prim:
    name: str
    kind: str
    np: Callable | None = None      # numpy reference on compute-dtype arrays
    out: Callable | None = None     # dtype rule: (srcs' dtypes, arg) -> dtype; default: first src
    accepts: str = "bifu"           # dtype kinds of the operands accepted
    vjp: Callable | None = field(default=None, compare=False)  # filled in by compiler/autodiff.py


def _same(dts, arg):
    return dts[0]


def _bool(dts, arg):
    return D.bool_


def _idiv(a, b):
    return _c_divmod(a, b, remainder=False)


def _mod(a, b):
    if a.dtype.kind == "f":
        with np.errstate(all="ignore"):
            return np.fmod(a, b)
    return _c_divmod(a, b, remainder=True)


def _c_divmod(a: np.ndarray, b: np.ndarray, remainder: bool) -> np.ndarray:
    """C's a / b or a % b on same-dtype integer arrays, as the compiled kernels compute them.

    Works on magnitudes in the unsigned type of the same width, where |MIN| is representable, so
    there is no overflow (numpy's // floors and abs(MIN) is MIN); the sign is applied with
    wrapping arithmetic, which gives MIN / -1 == MIN."""
    with np.errstate(all="ignore"):
        zero = b == 0
        if a.dtype.kind == "u":
            bs = np.where(zero, 1, b).astype(a.dtype)
            return np.where(zero, 0, a % bs if remainder else a // bs).astype(a.dtype)
        u = np.dtype(f"u{a.dtype.itemsize}")
        ua, ub, nil = a.astype(u), b.astype(u), np.zeros((), u)
        ma, mb = np.where(a < 0, nil - ua, ua), np.where(zero, np.ones((), u), np.where(b < 0, nil - ub, ub))
        r = ma % mb if remainder else ma // mb
        negative = (a < 0) if remainder else ((a < 0) != (b < 0))
        r = np.where(negative, nil - r, r).view(a.dtype)
        return np.where(zero, np.zeros((), a.dtype), r).astype(a.dtype)


def _shr(a, b):
    return np.right_shift(a, b.astype(a.dtype))


def _shl(a, b):
    return np.left_shift(a, b.astype(a.dtype))


def _fmax(a, b):
    return np.maximum(a, b)


def _fmin(a, b):
    return np.minimum(a, b)


def _errstate(f):
    def g(*a):
        with np.errstate(all="ignore"):
            return f(*a)
    return g


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[x.dtype])(x) if x.size else x.copy()


PRIMS: dict[str, Prim] = {p.name: p for p in [
    # leaves
    Prim("buffer", LEAF),            # arg: the Buffer
    Prim("const", LEAF),             # arg: Python value; shape ()
    Prim("iota", LEAF),              # arg: n; values 0..n-1, shape (n,)
    # unary
    Prim("neg", UNARY, np.negative, accepts="ifu"),
    Prim("exp", UNARY, _errstate(np.exp), accepts="f"),
    Prim("log", UNARY, _errstate(np.log), accepts="f"),
    Prim("sin", UNARY, _errstate(np.sin), accepts="f"),
    Prim("cos", UNARY, _errstate(np.cos), accepts="f"),
    Prim("sqrt", UNARY, _errstate(np.sqrt), accepts="f"),
    Prim("tanh", UNARY, np.tanh, accepts="f"),
    Prim("erf", UNARY, _erf, accepts="f"),
    Prim("floor", UNARY, np.floor, accepts="f"),
    Prim("ceil", UNARY, np.ceil, accepts="f"),
    Prim("trunc", UNARY, np.trunc, accepts="f"),
    Prim("round", UNARY, np.rint, accepts="f"),   # half to even, like torch.round
    Prim("cast", UNARY, None, lambda dts, arg: arg),      # arg: target DType
    Prim("bitcast", UNARY, None, lambda dts, arg: arg),   # arg: target DType of equal size
    # binary (operands already have one dtype and one shape)
    Prim("add", BINARY, np.add),
    Prim("mul", BINARY, np.multiply),
    Prim("div", BINARY, _errstate(np.divide), accepts="f"),
    Prim("idiv", BINARY, _idiv, accepts="iu"),
    Prim("mod", BINARY, _mod, accepts="ifu"),
    Prim("max", BINARY, _fmax),
    Prim("min", BINARY, _fmin),
    Prim("pow", BINARY, _errstate(np.power), accepts="f"),
    Prim("cmplt", BINARY, np.less, _bool),
    Prim("cmpeq", BINARY, np.equal, _bool),
    Prim("and", BINARY, np.bitwise_and, accepts="biu"),
    Prim("or", BINARY, np.bitwise_or, accepts="biu"),
    Prim("xor", BINARY, np.bitwise_xor, accepts="biu"),
    Prim("shl", BINARY, _shl, accepts="iu"),
    Prim("shr", BINARY, _shr, accepts="iu"),
    # ternary
    Prim("where", TERNARY, np.where, lambda dts, arg: dts[1]),
    # reductions over arg = sorted axes; reduced axes keep size 1
    Prim("sum", REDUCE, np.sum),
    Prim("prod", REDUCE, np.prod),
    Prim("rmax", REDUCE, np.max),
    Prim("rmin", REDUCE, np.min),
    # movement: zero-copy views, lowered to index arithmetic
    Prim("reshape", MOVEMENT),   # arg: new shape
    Prim("permute", MOVEMENT),   # arg: axis order
    Prim("expand", MOVEMENT),    # arg: new shape (size-1 axes broadcast)
    Prim("pad", MOVEMENT),       # arg: ((before, after), ...) zero padding
    Prim("slice", MOVEMENT),     # arg: ((start, step, size), ...) any step, negative flips
    # data-dependent indexing: out[i] = src[i with i[axis] := idx[i]]; arg: axis
    Prim("gather", GATHER),
    # materialization barrier: the value is computed into its own buffer
    Prim("contiguous", UNARY, lambda x: x.copy()),
]}

REDUCE_IDENTITY = {"sum": 0, "prod": 1, "rmax": "-inf", "rmin": "+inf"}
REDUCE_COMBINE = {"sum": "add", "prod": "mul", "rmax": "max", "rmin": "min"}


def out_dtype(op: str, dts: list, arg) -> D.DType:
    p = PRIMS[op]
    return (p.out or _same)(dts, arg)
