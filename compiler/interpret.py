"""A plain numpy interpreter of the graph: the reference semantics of every primitive.

It is deliberately naive (one numpy call per node, full intermediate arrays): the differential
tests compare compiled kernels against it, and constant folding uses it for tiny subgraphs.

Integer semantics are the compiled code's (two's complement, as LLVM computes): a constant outside
its dtype's range wraps (int8 200 -> -56), and integer division and remainder truncate toward zero
with C's signs, never trap (x / 0 -> 0, x % 0 -> 0) and wrap at MIN / -1 (-> MIN, remainder 0).
"""
from __future__ import annotations

import numpy as np

from . import dtypes as D
from .ir import Node, toposort
from .ops import BINARY, PRIMS, REDUCE, TERNARY, UNARY


def evaluate(node: Node, srcs: list[np.ndarray]) -> np.ndarray:
    op, arg, out = node.op, node.arg, node.dtype
    if op == "buffer":
        return arg.numpy().reshape(node.shape)
    if op == "const":
        return np.array(_wrap_int(arg, out) if out.is_int else arg, dtype=out.np)
    if op == "iota":
        return np.arange(arg, dtype=out.np)
    if op == "cast":
        x = srcs[0]
        if out is D.bool_:
            return (x != 0)
        with np.errstate(all="ignore"):
            if x.dtype.kind == "f" and out.is_int:  # float->int truncates; out-of-range is unspecified
                x = np.trunc(x.astype(np.float64))
            return x.astype(out.np)
    if op == "bitcast":
        return np.ascontiguousarray(srcs[0]).view(out.np)
    if op == "reshape":
        return srcs[0].reshape(arg)
    if op == "permute":
        return srcs[0].transpose(arg)
    if op == "expand":
        return np.broadcast_to(srcs[0], arg)
    if op == "pad":
        return np.pad(srcs[0], arg)
    if op == "slice":
        x = srcs[0]
        for d, (start, step, size) in enumerate(arg):
            x = np.take(x, start + step * np.arange(size, dtype=np.int64), axis=d)
        return x
    if op == "gather":
        src, idx = srcs
        n = src.shape[arg]
        idx = np.clip(idx.astype(np.int64), 0, max(n - 1, 0))
        if src.size == 0 or idx.size == 0:
            return np.zeros(node.shape, out.np)
        return np.take_along_axis(src, idx, axis=arg)
    kind = PRIMS[op].kind
    args = [s.astype(D.compute_dtype(n.dtype).np) for s, n in zip(srcs, node.srcs)]
    if kind == REDUCE:
        x = args[0]
        kw = {}
        if op in ("rmax", "rmin"):
            ident = _extreme(node.dtype, op == "rmin")
            kw["initial"] = ident
        elif x.dtype != np.bool_:
            kw["dtype"] = x.dtype
        res = PRIMS[op].np(x, axis=tuple(arg), keepdims=True, **kw)
    elif kind in (UNARY, BINARY, TERNARY):
        with np.errstate(all="ignore"):
            res = PRIMS[op].np(*args)
    else:
        raise AssertionError(op)
    return np.asarray(res).astype(out.np)


def _wrap_int(value: int, dt: D.DType) -> int:
    """`value` modulo 2**bits, read as dt (two's complement for signed types)."""
    bits = 8 * dt.itemsize
    v = int(value) & ((1 << bits) - 1)
    return v - (1 << bits) if dt.kind == "i" and v >> (bits - 1) else v


def _extreme(dt: D.DType, high: bool):
    if dt.is_float:
        return np.inf if high else -np.inf
    if dt is D.bool_:
        return high
    info = np.iinfo(dt.np)
    return info.max if high else info.min


def interpret(roots: list[Node]) -> list[np.ndarray]:
    """Evaluate `roots` with numpy; returns one array per root, in the roots' shapes."""
    vals: dict[int, np.ndarray] = {}
    for n in toposort(roots):
        vals[id(n)] = evaluate(n, [vals[id(s)] for s in n.srcs])
    return [vals[id(r)] for r in roots]
