"""The lazy graph: immutable, hash-consed nodes of primitive ops.

`Node.make` is the only constructor. It checks operands, infers shape and dtype from the primitive
table (ops.py), and returns the existing node when an identical one is alive (structural sharing,
so common subexpressions are shared for free). The one mutation a node ever sees is `realize`:
once its value is computed it becomes a `buffer` leaf, which cuts the graph behind it so that
training loops never grow it without bound.
"""
from __future__ import annotations

import math
import weakref
from typing import Iterable

from . import dtypes as D
from .ops import BINARY, GATHER, LEAF, MOVEMENT, PRIMS, REDUCE, TERNARY, UNARY

Shape = tuple


class Node:
    __slots__ = ("op", "srcs", "arg", "dtype", "shape", "key", "__weakref__")

    def __init__(self, op: str, srcs: tuple, arg, dtype: D.DType, shape: Shape, key=None):
        self.op, self.srcs, self.arg, self.dtype, self.shape = op, srcs, arg, dtype, shape
        self.key = key  # interning key while the node is shared

    # -- construction -------------------------------------------------------------------------
    # key -> weakref of the live node with that key. A plain dict of weakrefs whose callbacks drop
    # their own entry: the graph is rebuilt every training step, so this is the hottest dict in
    # ember (WeakValueDictionary builds its references in Python and costs twice as much).
    _interned: dict = {}

    @staticmethod
    def make(op: str, srcs: Iterable["Node"] = (), arg=None, dtype: D.DType | None = None,
             shape: Shape | None = None) -> "Node":
        # the hottest function of eager mode (every op of every step): lookups go to flat dicts
        # (_KIND, _OUT) rather than PRIMS' dataclasses, and common args (None, shape tuples) skip
        # _hashable, which would return them unchanged
        kind = _KIND[op]
        if kind == LEAF:
            assert dtype is not None
            if op == "buffer":
                return Node(op, (), arg, dtype, tuple(shape))  # never shared: identity is the buffer
            shape = () if op == "const" else (arg,)
            key = (op, (), _hashable(arg), dtype.name)
        else:
            if type(srcs) is not tuple:
                srcs = tuple(srcs)
            # ids are safe in the key: the node holds its sources, so they outlive the entry; the
            # dtype and shape follow from (op, sources, arg), so a hit skips inferring them
            key = (op, tuple(map(id, srcs)), arg if arg is None or type(arg) is tuple else _hashable(arg))
        ref = _interned.get(key)
        node = ref() if ref is not None else None
        if node is None:
            if kind != LEAF:
                _check(op, kind, srcs, arg)
                out = _OUT[op]
                dtype = srcs[0].dtype if out is None else out([s.dtype for s in srcs], arg)
                shape = srcs[0].shape if kind in _ELEMENTWISE else infer_shape(op, kind, srcs, arg)
            node = Node(op, srcs, arg, dtype, shape, key)
            ref = _interned[key] = _Ref(node, _forget)
            ref.key = key
        return node

    # -- the single mutation ------------------------------------------------------------------
    def become_buffer(self, buf) -> None:
        """Turn this node into a leaf holding `buf` (its computed value)."""
        if self.key is not None:
            ref = _interned.get(self.key)
            if ref is not None and ref() is self:
                del _interned[self.key]
        self.key = None
        self.op, self.srcs, self.arg = "buffer", (), buf

    # -- introspection ------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return PRIMS[self.op].kind

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def realized(self) -> bool:
        return self.op == "buffer"

    def __repr__(self) -> str:
        arg = "" if self.arg is None or self.op == "buffer" else f" {self.arg}"
        return f"<{self.op}{arg} {self.dtype.name}{list(self.shape)}>"


_interned = Node._interned   # the same dict, without the class attribute lookup


class _Ref(weakref.ref):
    """An interning entry: a weak reference that knows its key, so one shared callback can drop
    it (cheaper than a functools.partial per node)."""
    __slots__ = ("key",)


def _forget(ref: _Ref) -> None:
    """A node died: drop its interning entry (unless the key has been taken by a newer node)."""
    if _interned.get(ref.key) is ref:
        del _interned[ref.key]


def _hashable(arg):
    if isinstance(arg, list):
        return tuple(_hashable(a) for a in arg)
    if isinstance(arg, D.DType):
        return ("dtype", arg.name)
    if isinstance(arg, float) and math.isnan(arg):
        return ("nan",)
    if isinstance(arg, float) and arg == 0.0:   # -0.0 == 0.0, but 1 / -0.0 is not 1 / 0.0
        return ("float", arg, math.copysign(1.0, arg))
    if isinstance(arg, (bool, int, float)):
        return (type(arg).__name__, arg)  # keep 1, 1.0 and True apart
    return arg


_KIND = {name: p.kind for name, p in PRIMS.items()}
_OUT = {name: p.out for name, p in PRIMS.items()}          # None: the first source's dtype
_ACCEPTS = {name: p.accepts for name, p in PRIMS.items()}
_NSRC = {UNARY: 1, BINARY: 2, TERNARY: 3, REDUCE: 1, MOVEMENT: 1, GATHER: 2}
_ELEMENTWISE = (UNARY, BINARY, TERNARY)   # the output has the (common) shape of the operands


def _check(op: str, kind: str, srcs: tuple, arg) -> None:
    """Internal invariants; the framework raises user-facing errors before reaching here."""
    nsrc = _NSRC[kind]
    if len(srcs) != nsrc:
        raise ValueError(f"{op} takes {nsrc} operands, got {len(srcs)}")
    if kind == BINARY:   # the common case, spelled out: no generator per node
        a, b = srcs
        if a.shape != b.shape:
            raise ValueError(f"{op}: operand shapes differ: {[a.shape, b.shape]}")
        if a.dtype is not b.dtype:   # dtypes are singletons
            raise TypeError(f"{op}: operand dtypes differ: {[a.dtype.name, b.dtype.name]}")
    elif kind == TERNARY:
        first = srcs[0]
        if any(s.shape != first.shape for s in srcs):
            raise ValueError(f"{op}: operand shapes differ: {[s.shape for s in srcs]}")
        data = srcs[1:] if op == "where" else srcs
        if any(s.dtype is not data[0].dtype for s in data):
            raise TypeError(f"{op}: operand dtypes differ: {[s.dtype.name for s in data]}")
        if op == "where" and first.dtype is not D.bool_:
            raise TypeError("where: condition must be bool")
    if kind == UNARY or kind == BINARY:
        if srcs[0].dtype.kind not in _ACCEPTS[op]:
            raise TypeError(f"{op} does not support {srcs[0].dtype.name}")
    if op == "bitcast" and arg.itemsize != srcs[0].dtype.itemsize:
        raise TypeError("bitcast needs equal item sizes")


def infer_shape(op: str, kind: str, srcs: tuple, arg) -> Shape:
    # the checks of the common movement ops and reductions are plain loops: a generator per new
    # node costs twice as much, and the training loop makes a hundred of these per step
    s = srcs[0].shape
    if kind in (UNARY, BINARY, TERNARY):
        return s
    if kind == REDUCE:
        if list(arg) != sorted(set(arg)) or (arg and not (0 <= arg[0] and arg[-1] < len(s))):
            raise ValueError(f"bad reduce axes {arg} for shape {s}")
        out = list(s)
        for a in arg:
            out[a] = 1
        return tuple(out)
    if kind == GATHER:
        idx = srcs[1]
        if not idx.dtype.is_int or len(idx.shape) != len(s) or not 0 <= arg < len(s):
            raise ValueError(f"gather: bad index {idx} for source {s} on axis {arg}")
        if any(a != b for i, (a, b) in enumerate(zip(s, idx.shape)) if i != arg):
            raise ValueError(f"gather: index shape {idx.shape} must match source {s} off axis {arg}")
        return idx.shape
    if op == "reshape":
        if math.prod(arg) != math.prod(s) or min(arg, default=0) < 0:
            raise ValueError(f"cannot reshape {s} to {arg}")
        return tuple(arg)
    if op == "permute":
        if sorted(arg) != list(range(len(s))):
            raise ValueError(f"bad permutation {arg} for shape {s}")
        return tuple([s[i] for i in arg])
    if op == "expand":
        if len(arg) != len(s):
            raise ValueError(f"cannot expand {s} to {arg}")
        for a, b in zip(s, arg):
            if a != b and a != 1:
                raise ValueError(f"cannot expand {s} to {arg}")
        return tuple(arg)
    if op == "pad":
        if len(arg) != len(s) or any(b < 0 or a < 0 for b, a in arg):
            raise ValueError(f"bad padding {arg} for shape {s}")
        return tuple(n + b + a for n, (b, a) in zip(s, arg))
    if op == "slice":
        if len(arg) != len(s):
            raise ValueError(f"bad slice {arg} for shape {s}")
        for n, (start, step, size) in zip(s, arg):
            if size < 0 or step == 0 or (size > 0 and not (0 <= start < n and 0 <= start + step * (size - 1) < n)):
                raise ValueError(f"slice {arg} out of range for shape {s}")
        return tuple(size for _, _, size in arg)
    raise AssertionError(op)


def region(starts, is_boundary) -> tuple[set, set]:
    """ids of the nodes computed together with `starts` (walking sources up to boundaries), and of
    the boundary nodes they read: a kernel's members and inputs."""
    inside, edge, stack = set(), set(), list(starts)
    while stack:
        n = stack.pop()
        if id(n) not in inside:
            inside.add(id(n))
            for s in n.srcs:
                if is_boundary(s):
                    edge.add(id(s))
                else:
                    stack.append(s)
    return inside, edge


def toposort(roots: Iterable, srcs=lambda n: n.srcs) -> list:
    """Sources before users; iterative, so graphs of any depth are fine. `srcs` gives a node's
    inputs (graph nodes by default; autograd walks its records with it too). Depth first, the
    last root first and each node's sources in order; a path is a stack of (node, iterator over
    its sources), so each node is pushed and popped once."""
    order, seen = [], set()
    for root in reversed(list(roots)):
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, iter(srcs(root)))]
        while stack:
            node, it = stack[-1]
            for s in it:
                if id(s) not in seen:
                    seen.add(id(s))
                    stack.append((s, iter(srcs(s))))
                    break
            else:   # every source is in order
                stack.pop()
                order.append(node)
    return order


# ---- small constructors used across the compiler ---------------------------------------------

def const(value, dtype: D.DType, shape: Shape = ()) -> Node:
    c = Node.make("const", arg=_canon(value, dtype), dtype=dtype)
    return c if shape == () else expand_to(c, shape)


def _canon(value, dtype: D.DType):
    if dtype.is_float:
        return float(value)
    if dtype is D.bool_:
        return bool(value)
    return int(value)


def expand_to(node: Node, shape: Shape) -> Node:
    if node.shape == tuple(shape):
        return node
    if len(node.shape) < len(shape):
        node = Node.make("reshape", [node], (1,) * (len(shape) - len(node.shape)) + node.shape)
    return node if node.shape == tuple(shape) else Node.make("expand", [node], tuple(shape))
