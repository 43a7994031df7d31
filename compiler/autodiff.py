"""Vector-Jacobian products of the primitives, written with primitives.

`VJP[op](b, g, out, xs, arg)` returns one cotangent per input (None where the input gets no
gradient). `g` is the cotangent of the output `out`, `xs` the inputs. Everything is built through
the builder `b` (`b.ap(op, *xs, arg=)`, `b.const(value, like)`), so the same rules serve
first-order gradients and, when the framework records them, gradients of gradients. Rules see
graph values only through `b`, so this module needs nothing from the framework.

Composites (softmax, layernorm, conv, losses...) need no rules: they are built from these.
"""
from __future__ import annotations

import math

from .ops import PRIMS


def _shape(x):
    return tuple(x.node.shape)


def sum_to(b, g, shape):
    """Reduce a broadcast cotangent back to `shape` (the VJP of expand)."""
    gs = _shape(g)
    if gs == tuple(shape):
        return g
    axes = tuple(i for i, (a, s) in enumerate(zip(gs, shape)) if s == 1 and a != 1)
    return b.ap("sum", g, arg=axes) if axes else g


def _unslice(b, g, src_shape, arg):
    """Place g (a slice of a tensor of src_shape) back at its positions, zeros elsewhere."""
    for d, (start, step, size) in enumerate(arg):
        n = src_shape[d]
        if (start, step, size) == (0, 1, n):
            continue
        shape = list(_shape(g))
        if size == 0:  # nothing was read: the whole source gets zeros (every axis, not just this one)
            return b.zeros(tuple(src_shape), like=g)
        if step < 0:  # read backwards: flip the cotangent and treat as a forward slice
            flip = tuple((0, 1, m) if k != d else (m - 1, -1, m) for k, m in enumerate(shape))
            g = b.ap("slice", g, arg=flip)
            start, step = start + step * (size - 1), -step
        if step > 1:  # interleave step-1 zeros after each element
            g = b.ap("reshape", g, arg=tuple(shape[:d + 1]) + (1,) + tuple(shape[d + 1:]))
            pad = [(0, 0)] * (len(shape) + 1)
            pad[d + 1] = (0, step - 1)
            g = b.ap("pad", g, arg=tuple(pad))
            shape[d] = size * step
            g = b.ap("reshape", g, arg=tuple(shape))
            keep = tuple((0, 1, m) if k != d else (0, 1, (size - 1) * step + 1) for k, m in enumerate(shape))
            g = b.ap("slice", g, arg=keep)
            shape[d] = (size - 1) * step + 1
        pad = [(0, 0)] * len(shape)
        pad[d] = (start, n - start - shape[d])
        g = b.ap("pad", g, arg=tuple(pad))
    return g


def _gather_vjp(b, g, out, xs, axis):
    """Scatter-add of g into the source's shape, as a one-hot reduction (no atomics needed)."""
    src, idx = xs
    n = _shape(src)[axis]
    gshape = _shape(g)
    # wide shape: index axis `axis` of g stays, a new axis axis+1 runs over the source positions
    wide = gshape[:axis + 1] + (n,) + gshape[axis + 1:]
    iota = b.ap("reshape", b.iota(n, like=idx), arg=(1,) * (axis + 1) + (n,) + (1,) * (len(gshape) - axis - 1))
    iota = b.ap("expand", iota, arg=wide)
    ix = b.ap("expand", b.ap("reshape", idx, arg=gshape[:axis + 1] + (1,) + gshape[axis + 1:]), arg=wide)
    gw = b.ap("expand", b.ap("reshape", g, arg=gshape[:axis + 1] + (1,) + gshape[axis + 1:]), arg=wide)
    ix = b.ap("min", b.ap("max", ix, b.const(0, ix)), b.const(n - 1, ix))  # the primitive clamps
    # one_hot * g summed over the index axis: a matrix product (the GEMM template, once the
    # one-hot's broadcast axes are hoisted by the rewrite) rather than a where-select per element.
    # Unlike a scatter, a NaN/inf in g reaches every row through 0 * NaN.
    hit = b.ap("cast", b.ap("cmpeq", ix, iota), arg=g.dtype)
    summed = b.ap("sum", b.ap("mul", hit, gw), arg=(axis,))
    return [b.ap("reshape", summed, arg=_shape(src)), None]


def _minmax_vjp(b, g, out, xs, which):
    a, c = xs
    half = b.ap("mul", g, b.const(0.5, g))
    zero = b.zeros(_shape(g), like=g)
    pick_a = b.ap("cmplt", c, a) if which == "max" else b.ap("cmplt", a, c)
    pick_c = b.ap("cmplt", a, c) if which == "max" else b.ap("cmplt", c, a)
    tie = b.ap("cmpeq", a, c)
    ga = b.ap("where", pick_a, g, b.ap("where", tie, half, zero))
    gc = b.ap("where", pick_c, g, b.ap("where", tie, half, zero))
    return [ga, gc]


def _reduce_extreme_vjp(b, g, out, xs, axes):
    """Ties share the gradient evenly (torch.amax's rule)."""
    x = xs[0]
    hit = b.ap("cmpeq", x, b.ap("expand", out, arg=_shape(x)))
    mask = b.ap("cast", hit, arg=g.node.dtype)
    count = b.ap("sum", mask, arg=axes)
    share = b.ap("div", g, count)
    return [b.ap("mul", mask, b.ap("expand", share, arg=_shape(x)))]


def _pow_vjp(b, g, out, xs, arg):
    a, e = xs
    # x ** 0 is constant: its derivative is 0 even at x = 0, where e * a^(e-1) is 0 * inf; the base
    # is 1 in that unused branch so it stays finite when differentiated again
    e0 = b.ap("cmpeq", e, b.zeros(_shape(e), like=e))
    base = b.ap("where", e0, b.const(1.0, a), a)
    ga = b.ap("mul", g, b.ap("mul", e, b.ap("pow", base, b.ap("add", e, b.const(-1.0, e)))))
    ga = b.ap("where", e0, b.zeros(_shape(a), like=a), ga)
    safe = b.ap("where", b.ap("cmpeq", a, b.const(0.0, a)), b.const(1.0, a), a)
    ge = b.ap("mul", g, b.ap("mul", out, b.ap("log", safe)))
    ge = b.ap("where", b.ap("cmpeq", a, b.const(0.0, a)), b.zeros(_shape(a), like=a), ge)
    return [ga, ge]


def _mod_vjp(b, g, out, xs, arg):
    a, c = xs
    if not g.node.dtype.is_float:
        return [None, None]
    q = b.ap("trunc", b.ap("div", a, c))
    return [g, b.ap("neg", b.ap("mul", g, q))]


def _prod_vjp(b, g, out, xs, axes):
    """d prod / dx_i = the product of the other entries, exact with zeros (no 0/0): a non-zero x_i
    gets out / x_i; a zero x_i gets P (the product of the non-zero entries) times the product of
    the OTHER zeros: 1 with one zero, the other zero's value with two (0, but written as
    sum(zeros) - x_i so that its derivative is right), 0 with three or more. Every piece is a graph
    of x (out included), so second derivatives are exact too."""
    x = xs[0]
    shape = _shape(x)

    def red(op, v):
        return b.ap("expand", b.ap(op, v, arg=axes), arg=shape)
    zero = b.ap("cmpeq", x, b.zeros(shape, like=x))
    one, nil = b.const(1.0, x), b.zeros(shape, like=x)
    nonzero = b.ap("where", zero, one, x)
    count = red("sum", b.ap("cast", zero, arg=x.node.dtype))
    others = b.ap("add", red("sum", b.ap("where", zero, x, nil)), _neg(b, x))
    others = b.ap("where", b.ap("cmpeq", count, one), one,
                  b.ap("where", b.ap("cmpeq", count, b.const(2.0, x)), others, nil))
    d = b.ap("where", zero, b.ap("mul", red("prod", nonzero), others),
             b.ap("div", b.ap("expand", out, arg=shape), nonzero))
    return [b.ap("mul", b.ap("expand", g, arg=shape), d)]


def _zero_grad(b, g, out, xs, arg):
    """Piecewise-constant ops: the gradient is zero (not absent, so grad() still reaches x)."""
    return [b.zeros(_shape(g), like=g)]


def _neg(b, x):
    return b.ap("neg", x)


VJP = {
    "neg": lambda b, g, out, xs, arg: [_neg(b, g)],
    "exp": lambda b, g, out, xs, arg: [b.ap("mul", g, out)],
    "log": lambda b, g, out, xs, arg: [b.ap("div", g, xs[0])],
    "sin": lambda b, g, out, xs, arg: [b.ap("mul", g, b.ap("cos", xs[0]))],
    "cos": lambda b, g, out, xs, arg: [_neg(b, b.ap("mul", g, b.ap("sin", xs[0])))],
    "sqrt": lambda b, g, out, xs, arg: [b.ap("div", g, b.ap("mul", out, b.const(2.0, out)))],
    "tanh": lambda b, g, out, xs, arg: [
        b.ap("mul", g, b.ap("add", b.const(1.0, out), _neg(b, b.ap("mul", out, out))))],
    "erf": lambda b, g, out, xs, arg: [b.ap("mul", g, b.ap("mul", b.const(2 / math.sqrt(math.pi), out),
                                                         b.ap("exp", _neg(b, b.ap("mul", xs[0], xs[0])))))],
    "floor": _zero_grad,
    "ceil": _zero_grad,
    "trunc": _zero_grad,
    "round": _zero_grad,
    "cast": lambda b, g, out, xs, arg: [b.ap("cast", g, arg=xs[0].node.dtype) if xs[0].node.dtype.is_float else None],
    "contiguous": lambda b, g, out, xs, arg: [g],
    "add": lambda b, g, out, xs, arg: [g, g],
    "mul": lambda b, g, out, xs, arg: [b.ap("mul", g, xs[1]), b.ap("mul", g, xs[0])],
    "div": lambda b, g, out, xs, arg: [b.ap("div", g, xs[1]), _neg(b, b.ap("div", b.ap("mul", g, out), xs[1]))],
    "mod": _mod_vjp,
    "max": lambda b, g, out, xs, arg: _minmax_vjp(b, g, out, xs, "max"),
    "min": lambda b, g, out, xs, arg: _minmax_vjp(b, g, out, xs, "min"),
    "pow": _pow_vjp,
    "where": lambda b, g, out, xs, arg: [None, b.ap("where", xs[0], g, b.zeros(_shape(g), like=g)),
                                          b.ap("where", xs[0], b.zeros(_shape(g), like=g), g)],
    "sum": lambda b, g, out, xs, arg: [b.ap("expand", g, arg=_shape(xs[0]))],
    "prod": _prod_vjp,
    "rmax": lambda b, g, out, xs, arg: _reduce_extreme_vjp(b, g, out, xs, arg),
    "rmin": lambda b, g, out, xs, arg: _reduce_extreme_vjp(b, g, out, xs, arg),
    "reshape": lambda b, g, out, xs, arg: [b.ap("reshape", g, arg=_shape(xs[0]))],
    "permute": lambda b, g, out, xs, arg: [b.ap("permute", g, arg=tuple(sorted(range(len(arg)), key=lambda k: arg[k])))],
    "expand": lambda b, g, out, xs, arg: [sum_to(b, g, _shape(xs[0]))],
    "pad": lambda b, g, out, xs, arg: [b.ap("slice", g, arg=tuple((bef, 1, n) for (bef, _), n in zip(arg, _shape(xs[0]))))],
    "slice": lambda b, g, out, xs, arg: [_unslice(b, g, _shape(xs[0]), arg)],
    "gather": _gather_vjp,
}

# Primitives with no derivative (integer/boolean results, leaves) are simply absent.
NONDIFFERENTIABLE = {p for p in PRIMS if p not in VJP}
