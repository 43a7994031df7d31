"""Graph rewrites run before scheduling: constant folding, algebraic identities, view collapsing.

Rules are data: `RULES[op]` lists functions `rule(node) -> Node | None`. `rewrite` rebuilds the
graph bottom-up and applies the rules of each rebuilt node until none fires. Common
subexpressions need no pass: nodes are hash-consed, so equal subgraphs are already one node.
"""
from __future__ import annotations

import math

from .interpret import evaluate
from .ir import Node, const, expand_to, toposort
from .ops import BINARY, TERNARY, UNARY


def _scalar_const(n: Node):
    """The constant a node broadcasts everywhere, or None."""
    while n.op in ("expand", "reshape", "permute"):
        n = n.srcs[0]
    return n if n.op == "const" else None


def fold_constants(n: Node):
    """op(const, const, ...) -> const, also for broadcast constants."""
    if n.kind not in (UNARY, BINARY, TERNARY) or n.op == "contiguous":
        return None
    cs = [_scalar_const(s) for s in n.srcs]
    if any(c is None for c in cs):
        return None
    scalar = Node.make(n.op, cs, n.arg)
    value = evaluate(scalar, [evaluate(c, []) for c in cs])
    return const(value.item(), n.dtype, n.shape)


def movement_of_const(n: Node):
    """Any view of a broadcast constant (except padding) is that constant in the new shape."""
    c = _scalar_const(n.srcs[0]) if n.op != "pad" else None
    return None if c is None else const(c.arg, n.dtype, n.shape)


def identity_view(n: Node):
    src = n.srcs[0]
    if n.op in ("reshape", "expand") and n.shape == src.shape:
        return src
    if n.op == "permute" and list(n.arg) == sorted(n.arg):
        return src
    if n.op == "pad" and all(b == 0 and a == 0 for b, a in n.arg):
        return src
    if n.op == "slice" and all(st == 0 and sp == 1 and sz == m for (st, sp, sz), m in zip(n.arg, src.shape)):
        return src
    return None


def collapse_views(n: Node):
    src = n.srcs[0]
    if n.op == "reshape" and src.op == "reshape":
        return Node.make("reshape", [src.srcs[0]], n.arg)
    if n.op == "permute" and src.op == "permute":
        return Node.make("permute", [src.srcs[0]], tuple(src.arg[a] for a in n.arg))
    if n.op == "expand" and src.op == "expand":
        return Node.make("expand", [src.srcs[0]], n.arg)
    return None


def hoist_expand(n: Node):
    """op(expand(a), expand(b), ...) -> expand(op(a', b', ...)) over the axes every operand
    broadcasts: the op runs once per distinct value instead of once per copy (an embedding's
    gradient compares token ids with the vocabulary once, not once per feature)."""
    if n.op == "contiguous" or not n.shape:
        return None
    srcs = []
    for s in n.srcs:
        if _scalar_const(s) is not None:
            srcs.append(None)
        elif s.op == "expand":
            srcs.append(s.srcs[0].shape)
        else:
            return None
    shapes = [sh for sh in srcs if sh is not None]
    if not shapes:
        return None
    pre = tuple(1 if all(sh[a] == 1 for sh in shapes) else d for a, d in enumerate(n.shape))
    if pre == n.shape:
        return None
    new = [const(_scalar_const(s).arg, s.dtype, pre) if sh is None else expand_to(s.srcs[0], pre)
           for s, sh in zip(n.srcs, srcs)]
    return Node.make("expand", [Node.make(n.op, new, n.arg)], n.shape)


def reshape_of_expand(n: Node):
    """reshape(expand(x)) -> expand(reshape(x)) when the reshape only inserts or drops size-1 axes,
    so broadcasts stay visible to hoist_expand and to the GEMM matcher."""
    src = n.srcs[0]
    if n.op != "reshape" or src.op != "expand":
        return None
    if [d for d in n.shape if d != 1] != [d for d in src.shape if d != 1]:
        return None
    inner = iter([d0 for d0, d in zip(src.srcs[0].shape, src.shape) if d != 1])
    pre = tuple(next(inner) if d != 1 else 1 for d in n.shape)
    return expand_to(Node.make("reshape", [src.srcs[0]], pre), n.shape)


def one_plus_tanh(n: Node):
    """1 + tanh(u) -> 2 / (1 + exp(-2u)): the same value (2·sigmoid(2u)) with one exp and one
    division instead of tanh's, and no cancellation where tanh(u) is near -1. The tanh-form GELU
    0.5·y·(1 + tanh(...)) is written this way everywhere."""
    if n.op != "add" or not n.dtype.is_float:
        return None
    for t, one in ((n.srcs[0], n.srcs[1]), (n.srcs[1], n.srcs[0])):
        if t.op == "tanh" and _is_const(one, 1.0):
            u = t.srcs[0]
            e = Node.make("exp", [Node.make("mul", [u, const(-2.0, u.dtype, u.shape)])])
            return Node.make("div", [const(2.0, u.dtype, u.shape), Node.make("add", [const(1.0, u.dtype, u.shape), e])])
    return None


def _is_const(n: Node, value) -> bool:
    c = _scalar_const(n)
    return c is not None and c.arg == value and not (isinstance(c.arg, float) and math.isnan(c.arg))


def identities(n: Node):
    a = n.srcs[0]
    if n.op == "mul" and n.dtype.is_float:
        for x, y in ((a, n.srcs[1]), (n.srcs[1], a)):
            if _is_const(y, 1.0):
                return x
    if n.op == "add" and n.dtype.kind != "b":
        for x, y in ((a, n.srcs[1]), (n.srcs[1], a)):
            if _is_const(y, 0):
                return x
    if n.op == "neg" and a.op == "neg":
        return a.srcs[0]
    if n.op == "cast" and n.arg is a.dtype:
        return a
    if n.op == "where":
        c = _scalar_const(a)
        if c is not None:
            return n.srcs[1] if c.arg else n.srcs[2]
    return None


RULES: dict = {}
for _op in ("reshape", "permute", "expand", "pad", "slice"):
    RULES[_op] = [identity_view, collapse_views, movement_of_const, reshape_of_expand]
for _op in ("neg", "exp", "log", "sin", "cos", "sqrt", "tanh", "erf", "floor", "ceil", "trunc", "round",
            "cast", "bitcast", "add", "mul", "div", "idiv", "mod", "max", "min", "pow", "cmplt", "cmpeq",
            "and", "or", "xor", "shl", "shr", "where"):
    RULES[_op] = [fold_constants, identities, hoist_expand]
RULES["add"] = RULES["add"] + [one_plus_tanh]


def rewrite(outputs: list[Node]) -> list[Node]:
    """The outputs of an equivalent, simplified graph (leaves are kept as they are)."""
    new: dict = {}
    for n in toposort(outputs):
        if not n.srcs:
            new[id(n)] = n
            continue
        srcs = [new[id(s)] for s in n.srcs]
        m = n if all(a is b for a, b in zip(srcs, n.srcs)) else Node.make(n.op, srcs, n.arg)
        for _ in range(16):
            for rule in RULES.get(m.op, ()):
                r = rule(m)
                if r is not None and r is not m:
                    m = r
                    break
            else:
                break
        new[id(n)] = m
    return [new[id(o)] for o in outputs]
