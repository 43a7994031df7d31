"""Lowering: one fusion group of graph nodes -> a Kernel (kir.py).

Lowering evaluates the group "at a symbolic index": `value(node, idx)` returns the SSA value of
`node` at the index expressions `idx`. Movement ops only rewrite `idx` (so views cost nothing),
reductions open a loop over their reduced axes, and nodes outside the group become loads. Then
values are placed into the loop nest (each in the shallowest loop that has its inputs), and
adjacent output loops are merged when every index stays linear in the merged variable.

If a reduction would be recomputed inside a loop it does not depend on, lowering raises
`NeedsRealize` naming it, and the scheduler gives it a kernel of its own.
"""
from __future__ import annotations

import math

import numpy as np

from . import dtypes as D
from .ir import Node
from .kir import Kernel, KVal, Loop, Param
from .ops import BINARY, GATHER, MOVEMENT, REDUCE, REDUCE_COMBINE, TERNARY, UNARY
from .symbolic import Expr, Var, const, var

I64 = D.int64


class NeedsRealize(Exception):
    def __init__(self, node: Node, reason: str):
        super().__init__(reason)
        self.node, self.reason = node, reason


def contiguous_strides(shape) -> list[int]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return strides[::-1]


def linear(idx, shape) -> Expr:
    out = const(0)
    for e, s in zip(idx, contiguous_strides(shape)):
        out = out + e * s
    return out


def _reshape_index(idx: tuple, old: tuple, new: tuple) -> tuple:
    """Index into `old` from an index into `new` (same numel), group by group so that
    expressions stay small: dims are split into runs whose products match."""
    if 0 in old:  # an empty tensor is never indexed
        return tuple(const(0) for _ in old)
    out, i, j = [], 0, 0
    while i < len(old) or j < len(new):
        gi, gj, po, pn = [i], [j], old[i] if i < len(old) else 1, new[j] if j < len(new) else 1
        i, j = i + 1, j + 1
        while po != pn:
            if po < pn:
                gi.append(i); po *= old[i]; i += 1
            else:
                gj.append(j); pn *= new[j]; j += 1
        # absorb trailing size-1 dims into this group
        while i < len(old) and old[i] == 1 and (j >= len(new) or new[j] != 1):
            gi.append(i); i += 1
        while j < len(new) and new[j] == 1 and (i >= len(old) or old[i] != 1):
            gj.append(j); j += 1
        gi = [k for k in gi if k < len(old)]
        gj = [k for k in gj if k < len(new)]
        flat = linear([idx[k] for k in gj], [new[k] for k in gj])
        for k, s in zip(gi, contiguous_strides([old[k] for k in gi])):
            out.append((flat // s) % old[k] if old[k] > 1 else const(0))
    return tuple(out)


def _simplify_guard(guard) -> tuple | None:
    """Drop constraints that always hold; None if one never holds."""
    out = []
    for e, lo, hi in guard:
        if e.lo >= lo and e.hi <= hi:
            continue
        if e.hi < lo or e.lo > hi:
            return None
        out.append((e, lo, hi))
    return tuple(sorted(set(out), key=repr))


class _Params:
    """A kernel's buffer parameters, shared by all its loop nests."""

    def __init__(self):
        self.index: dict = {}         # id(node) -> param index
        self.nodes: list[Node] = []
        self.info: list[Param] = []


class _Builder:
    def __init__(self, is_input, out_loops: list[tuple[Var, int]], params: _Params, prefix: str = "", id_base: int = 0):
        self.is_input = is_input
        self.vals: dict = {}          # hash-consing of KVals
        self.order: list[KVal] = []   # creation order == a topological order
        self.memo: dict = {}
        self.p = params
        self.prefix, self.id_base = prefix, id_base
        self.bindings: dict = {}      # data Var -> KVal
        self.reduce_node: dict = {}   # id(reduce KVal) -> graph node
        self.reduce_loops: dict = {}  # reduce Var -> reduce KVal
        self.ops: list[str] = []
        self.nred = 0
        self.out_loops = out_loops

    # -- value construction ---------------------------------------------------------------
    def val(self, op, dtype, srcs=(), arg=None, extra_deps=frozenset()) -> KVal:
        key = (op, dtype.name if dtype else None, tuple(s.id for s in srcs), arg)
        v = self.vals.get(key)
        if v is None:
            deps = frozenset().union(extra_deps, *(s.deps for s in srcs))
            if op == "reduce":
                deps = deps - {lv for lv, _ in arg[1]}
            v = KVal(op, dtype, tuple(srcs), arg, deps, self.id_base + len(self.order))
            self.vals[key] = v
            self.order.append(v)
        return v

    def expr_val(self, op, dtype, exprs, arg, srcs=()) -> KVal:
        """A value whose arg holds index expressions: depends on their variables."""
        deps, bound = set(), []
        for e in exprs:
            for v in e.vars():
                if v in self.bindings:
                    bound.append(self.bindings[v])
                else:
                    deps.add(v)
        return self.val(op, dtype, tuple(srcs) + tuple(dict.fromkeys(bound)), arg, frozenset(deps))

    def const(self, value, dt: D.DType) -> KVal:
        return self.val("const", D.compute_dtype(dt), (), _const_value(value, dt))

    def param(self, node: Node, role: str) -> int:
        p = self.p
        k = p.index.get(id(node))
        if k is None:
            k = p.index[id(node)] = len(p.nodes)
            p.nodes.append(node)
            p.info.append(Param(node.dtype, node.numel, role))
        return k

    # -- evaluation of a node at a symbolic index -----------------------------------------
    def value(self, node: Node, idx: tuple, guard: tuple = ()) -> KVal:
        key = (id(node), idx, guard)
        v = self.memo.get(key)
        if v is None:
            v = self.memo[key] = self._value(node, idx, guard)
        return v

    def _value(self, node: Node, idx: tuple, guard: tuple) -> KVal:
        cdt = D.compute_dtype(node.dtype)
        if self.is_input(node):
            p = self.param(node, "in")
            li = linear(idx, node.shape)
            return self.expr_val("load", cdt, [li] + [g[0] for g in guard], (p, li, guard))
        op, kind = node.op, node.kind
        if kind not in (MOVEMENT,):
            self.ops.append(op)
        if op == "const":
            return self.const(node.arg, node.dtype)
        if op == "iota":
            iv = self.expr_val("index", I64, [idx[0]], idx[0])
            return iv if node.dtype is I64 else self.val("cast", cdt, (iv,), (I64, node.dtype))
        if op == "contiguous":
            return self.value(node.srcs[0], idx, guard)
        if kind in (UNARY, BINARY, TERNARY):
            srcs = tuple(self.value(s, idx, guard) for s in node.srcs)
            arg = (node.srcs[0].dtype, node.arg) if op in ("cast", "bitcast") else None
            return self.val(op, cdt, srcs, arg)
        if kind == MOVEMENT:
            return self._movement(node, idx, guard)
        if kind == REDUCE:
            return self._reduce(node, idx, guard)
        if kind == GATHER:
            return self._gather(node, idx, guard)
        raise AssertionError(f"cannot lower {node}")

    def _movement(self, node: Node, idx: tuple, guard: tuple) -> KVal:
        src, op, arg = node.srcs[0], node.op, node.arg
        if op == "reshape":
            return self.value(src, _reshape_index(idx, src.shape, node.shape), guard)
        if op == "permute":
            inv = [0] * len(arg)
            for k, a in enumerate(arg):
                inv[a] = idx[k]
            return self.value(src, tuple(inv), guard)
        if op == "expand":
            return self.value(src, tuple(const(0) if n == 1 else e for e, n in zip(idx, src.shape)), guard)
        if op == "slice":
            return self.value(src, tuple(e * step + start for e, (start, step, _) in zip(idx, arg)), guard)
        if op == "pad":
            cons = tuple((e, b, b + n - 1) for e, (b, _), n in zip(idx, arg, src.shape))
            cons = _simplify_guard(cons)
            if cons is None:
                return self.const(0, node.dtype)
            inner = tuple(e - b for e, (b, _) in zip(idx, arg))
            v = self.value(src, inner, _simplify_guard(guard + cons) or ())
            if not cons:
                return v
            c = self.expr_val("cond", D.bool_, [e for e, _, _ in cons], cons)
            return self.val("where", v.dtype, (c, v, self.const(0, node.dtype)))
        raise AssertionError(op)

    def _reduce(self, node: Node, idx: tuple, guard: tuple) -> KVal:
        src = node.srcs[0]
        loops, body_idx = [], list(idx)
        for a in node.arg:
            n = src.shape[a]
            rv = Var(f"{self.prefix}r{self.nred}", 0, max(n - 1, 0))
            self.nred += 1
            loops.append((rv, n))
            body_idx[a] = var(rv.name, 0, n - 1) if n > 1 else const(0)
        if any(n == 0 for _, n in loops):
            return self.const(_identity(node.op, node.dtype), node.dtype)
        start = len(self.order)
        body = self.value(src, tuple(body_idx), guard)
        loops = _contiguous_last(tuple((v, n) for v, n in loops if n > 1), self.order[start:])
        if not loops:
            return body
        r = self.val("reduce", body.dtype, (body,), (node.op, loops))
        self.reduce_node[r.id] = node
        for lv, _ in loops:
            self.reduce_loops[lv] = r
        return r

    def _gather(self, node: Node, idx: tuple, guard: tuple) -> KVal:
        src, index = node.srcs
        n = src.shape[node.arg]
        iv = self.value(index, idx, guard)
        if iv.dtype is not I64:
            iv = self.val("cast", I64, (iv,), (index.dtype, I64))
        iv = self.val("min", I64, (self.val("max", I64, (iv, self.const(0, I64))), self.const(max(n - 1, 0), I64)))
        sidx = list(idx)
        if n > 1:
            g = Var(f"{self.prefix}g{len(self.bindings)}", 0, n - 1)
            self.bindings[g] = iv
            sidx[node.arg] = Expr({g: 1}, 0)
        else:
            sidx[node.arg] = const(0)
        return self.value(src, tuple(sidx), guard)

    def store(self, node: Node, idx: tuple) -> None:
        p = self.param(node, "out")
        v = self.value(node, idx)
        li = linear(idx, node.shape)
        self.expr_val("store", None, [li], (p, li), srcs=(v,))

    def exprs(self):
        for v in self.order:
            if v.op in ("load", "store"):
                yield v.arg[1]
            if v.op == "index":
                yield v.arg
            if v.op == "cond" or (v.op == "load" and v.arg[2]):
                yield from (e for e, _, _ in (v.arg if v.op == "cond" else v.arg[2]))


def _contiguous_last(loops: tuple, vals: list) -> tuple:
    """The reduce loops with one that reads memory contiguously innermost: the reduced axes come in
    logical order, and a sum over (seq, batch) of a batch-major array would otherwise step by a
    whole sequence in its inner loop and never vectorize. Only a loop that some load steps through
    by 1 moves, and only when the innermost one does not (any order sums the same elements)."""
    if len(loops) < 2:
        return loops
    unit: set = set()
    for v in vals:
        if v.op == "load":
            unit |= {a for a, c in v.arg[1].terms if c in (1, -1)}
    if loops[-1][0] in unit:
        return loops
    for k in range(len(loops) - 2, -1, -1):
        if loops[k][0] in unit:
            return loops[:k] + loops[k + 1:] + (loops[k],)
    return loops


def _identity(op: str, dt: D.DType):
    if op == "sum":
        return 0
    if op == "prod":
        return 1
    hi = op == "rmin"
    if dt.is_float:
        return math.inf if hi else -math.inf
    if dt is D.bool_:
        return hi
    info = np.iinfo(dt.np)
    return int(info.max if hi else info.min)


def _const_value(value, dt: D.DType):
    if dt.is_float:
        return float(np.array(value, dtype=dt.np).astype(np.float64))  # rounded to the storage type
    if dt is D.bool_:
        return bool(value)
    return int(np.array(value).astype(dt.np))


# ---- the driver -----------------------------------------------------------------------------

def lower(nests: list[list[Node]], is_input, name: str = "", tolerate=frozenset(),
          cpu: bool = True) -> tuple[Kernel, list[Node]]:
    """Lower a fusion group into one kernel: one loop nest per list of same-shape outputs.
    `cpu`: reductions over outer axes accumulate into their output (`_lower_outer_reduction`),
    a loop order for caches and vector units; GPU programs read such columns coalesced as they are.

    The nests are independent (the scheduler guarantees it), so every nest's outermost loop is
    split across threads on its own. Returns the kernel and the graph node bound to each param.
    """
    if cpu:
        _padded_reductions([o for ns in nests for o in ns], is_input, tolerate)
    params = _Params()
    body, ops, work, bindings, nid, cpu_only = [], [], 0, {}, 0, False
    for k, outputs in enumerate(nests):
        prefix = f"n{k}_" if len(nests) > 1 else ""
        parts = _outer_reductions(outputs, is_input, params, prefix, nid) if cpu else None
        if parts is not None:
            cpu_only = True
        else:
            b = _lower_nest(outputs, is_input, params, prefix, nid)
            parts = [(b, *_place(b, tolerate))]
        for b, stmts, w in parts:
            body += stmts
            work += w
            ops += b.ops
            bindings.update(b.bindings)
            nid += len(b.order)
    ops = list(dict.fromkeys(ops))
    shape = nests[0][0].shape
    kind = "r" if any(op in ("sum", "prod", "rmax", "rmin") for op in ops) else "e"
    shapes = "_".join("x".join(map(str, n[0].shape)) or "scalar" for n in nests[:3]) + ("_etc" if len(nests) > 3 else "")
    kname = name or f"{kind}_{'_'.join(ops[:4]) or 'copy'}_{shapes}"
    return Kernel(kname, params.info, body, ops, shape, work, bindings, cpu_only), params.nodes


def element_program(outputs, is_input, first: Node, index: tuple):
    """The values computing `outputs` (same shape) at one element `index` — index expressions in
    variables the caller binds — as (KVals in a topological order, params, their nodes), or None
    if a reduction or a gather is inlined, or if `first` (param 0) is read anywhere but at the
    element written. A GEMM epilogue applies it to each vector of the product's accumulators."""
    params = _Params()
    b = _Builder(is_input, [], params)
    b.param(first, "in")
    for o in outputs:
        b.store(o, index)
    if b.bindings or any(v.op == "reduce" for v in b.order):
        return None
    at = [v.arg[1] for v in b.order if v.op == "store"]
    if any(v.op == "load" and v.arg[0] == 0 and (v.arg[2] or v.arg[1] != at[0]) for v in b.order):
        return None
    return b.order, params.info, params.nodes


PAD_REDUCE_GROWTH = 2          # a reduction read through a pad this many times its size ...
PAD_REDUCE_MIN_READS = 1 << 16  # ... that reads at least this many elements gets its own buffer


def _padded_reductions(outputs, is_input, tolerate) -> None:
    """A pad is lowered as loads guarded by its bounds, so a reduction read through a pad runs its
    loops at every position of the padded shape, the padding included (masked loads, result
    discarded). Concatenated gradients are such pads: the in-projection bias gradient of a
    MultiheadAttention is cat(sum(dq), sum(dk), sum(dv)), three token sums over 384 outputs where
    each has 128. When a pad at least PAD_REDUCE_GROWTH times its source reads a computed source
    with a large reduction, ask for that source to be buffered (NeedsRealize: the scheduler
    retries): the reduction then runs once per element of its own shape."""
    reads: dict = {}   # id(node) -> elements read by the reductions inlined under it
    seen: set = set()
    order, stack = [], [(o, False) for o in outputs]
    while stack:       # iterative post-order over the group (inputs are leaves)
        n, done = stack.pop()
        if done:
            order.append(n)
        elif id(n) not in seen:
            seen.add(id(n))
            stack.append((n, True))
            if not is_input(n):
                stack.extend((x, False) for x in n.srcs)
    for n in order:
        if is_input(n):
            reads[id(n)] = 0
            continue
        reads[id(n)] = sum(reads[id(x)] for x in n.srcs) + (n.srcs[0].numel if n.kind == REDUCE else 0)
        if n.op != "pad" or reads[id(n)] < PAD_REDUCE_MIN_READS or n.numel < PAD_REDUCE_GROWTH * n.srcs[0].numel:
            continue
        target = n.srcs[0]
        while target.kind == MOVEMENT and not is_input(target) and target.op != "pad":
            target = target.srcs[0]
        if not is_input(target) and reads[id(target)] and id(target) not in tolerate:
            raise NeedsRealize(target, f"{target.op} of {list(target.shape)} with a reduction, read through a pad "
                                       f"to {list(n.shape)}: it would run at every padded position")


def _lower_nest(outputs, is_input, params, prefix, id_base) -> _Builder:
    shape = outputs[0].shape
    dims = [k for k, n in enumerate(shape) if n > 1]
    # loops: list of (dims covered, size); start with one loop per non-trivial dim
    loops = [([k], shape[k]) for k in dims]
    trial = _Params()
    b = _build(outputs, is_input, shape, loops, trial, prefix, id_base)
    # merge adjacent loops (innermost first) while every index stays linear in the merged variable
    exprs = list(b.exprs())
    merged = [(lv, n) for lv, n in b.out_loops]
    k = len(loops) - 1
    while k > 0:
        (va, na), (vb, nb) = merged[k - 1], merged[k]
        m = Var(f"{prefix}m{k}", 0, na * nb - 1)
        me = Expr({m: 1}, 0)
        sub = {va: me // nb, vb: me % nb}
        new_exprs = [e.substitute(sub) for e in exprs]
        if not any(e.nonlinear_in(m) for e in new_exprs):
            exprs = new_exprs
            merged[k - 1:k + 1] = [(m, na * nb)]
            loops[k - 1:k + 1] = [(loops[k - 1][0] + loops[k][0], na * nb)]
        k -= 1
    return _build(outputs, is_input, shape, loops, params, prefix, id_base)


def _outer_reductions(outputs, is_input, params, prefix, id_base):
    """`_lower_outer_reduction` for each group of a nest's outputs that reduce alike (same source
    shape and axes), or None unless every group can. A nest's outputs share their output shape,
    not their sources: a bias gradient summed over a (seq, batch, d) view sits next to LayerNorm's
    weight gradient summed over (batch, seq, d), and one strided nest for both cost 10x the two
    accumulating nests (tiny-GPT step). Params are only added when all groups succeed."""
    groups: dict = {}
    for o in outputs:
        if o.kind != REDUCE:
            return None
        groups.setdefault((o.srcs[0].shape, o.arg), []).append(o)
    saved = dict(params.index), list(params.nodes), list(params.info)
    parts = []
    for j, group in enumerate(groups.values()):
        part = _lower_outer_reduction(group, is_input, params, prefix + (f"g{j}_" if len(groups) > 1 else ""),
                                      id_base)
        if part is None:
            params.index, params.nodes, params.info = saved
            return None
        parts.append(part)
        id_base += len(part[0].order)
    return parts


def _lower_outer_reduction(outputs, is_input, params, prefix, id_base):
    """Reductions over outer axes, e.g. bias gradients (sums over the batch of a (B, C) tensor):
    the usual nest (for each output element: for each reduced element) reads with a large stride
    and cannot vectorize. Instead each output is its own accumulator and the reduced axes go
    outside:

        for c (parallel):   out[c] = identity
        for r:
            for c (parallel):   out[c] = combine(out[c], x[r, c])     # contiguous, vectorized

    Both `c` loops are split across threads identically, so each thread owns its part of the
    outputs and no synchronisation is needed. For outputs that all reduce the same axes of
    same-shape sources (e.g. a LayerNorm's weight and bias gradients), each with an elementwise
    source (no nested reduction or gather) and a storage type equal to its compute type (partial
    sums are stored). Returns (builder, statements, work) or None."""
    o0 = outputs[0]
    if o0.kind != REDUCE:
        return None
    shape, axes = o0.srcs[0].shape, o0.arg
    if any(o.kind != REDUCE or o.srcs[0].shape != shape or o.arg != axes or
           D.compute_dtype(o.dtype) is not o.dtype for o in outputs) or 0 in shape:
        return None
    kept = [a for a in range(len(shape)) if a not in axes and shape[a] > 1]
    red = [a for a in axes if shape[a] > 1]
    if not kept or not red or max(red) > max(kept) or math.prod(shape[a] for a in red) < 16:
        return None
    ivars = {a: Var(f"{prefix}z{a}", 0, shape[a] - 1) for a in kept}   # the init loops
    kvars = {a: Var(f"{prefix}c{a}", 0, shape[a] - 1) for a in kept}   # the accumulating loops
    rvars = {a: Var(f"{prefix}r{a}", 0, shape[a] - 1) for a in red}
    b = _Builder(is_input, [], params, prefix, id_base)

    def out_index(vs):
        return tuple(Expr({vs[a]: 1}, 0) if a in vs else const(0) for a in range(len(shape)))
    out_idx = out_index(kvars)
    src_idx = tuple(Expr({rvars[a]: 1}, 0) if a in rvars else e for a, e in enumerate(out_idx))
    li, li0 = linear(out_idx, o0.shape), linear(out_index(ivars), o0.shape)
    inits, accs = [], []
    for o in outputs:
        p = b.param(o, "out")
        inits.append(b.expr_val("store", None, [li0], (p, li0), srcs=(b.const(_identity(o.op, o.dtype), o.dtype),)))
        start = len(b.order)
        body = b.value(o.srcs[0], src_idx)
        if any(v.op == "reduce" for v in b.order[start:]) or b.bindings:
            return None   # nested reductions and gathers keep the usual placement
        cur = b.expr_val("load", o.dtype, [li], (p, li, ()))
        accs.append(b.expr_val("store", None, [li], (p, li), srcs=(b.val(REDUCE_COMBINE[o.op], o.dtype, (cur, body)),)))
        b.ops.append(o.op)

    if not _kept_axis_contiguous(b, kvars[kept[-1]], set(rvars.values()), params, outputs):
        return None

    def nest(vs, stmts, split=True):   # with `split`, the first variable's loop is split across threads
        for k, v in reversed(list(enumerate(vs))):
            stmts = [Loop(v, v.hi + 1, "parallel" if k == 0 and split else "serial", stmts)]
        return stmts
    kv, rv, iv = [kvars[a] for a in kept], [rvars[a] for a in red], [ivars[a] for a in kept]
    kset, rset, skip = set(kv), set(rv), {id(v) for v in inits + accs}
    top, outer, inner = [], [], []   # each value where its variables are bound (b.order is topological)
    for v in b.order:
        if id(v) not in skip:
            (inner if v.deps & kset else outer if v.deps & rset else top).append(v)
    work = math.prod(shape[a] for a in kept) * (math.prod(shape[a] for a in red) + 1)   # innermost iterations
    return b, top + nest(iv, inits) + nest(rv, outer + nest(kv, inner + accs), split=False), work


def _kept_axis_contiguous(b: _Builder, inner: Var, rvs: set, params: _Params, outputs) -> bool:
    """Whether accumulating into the outputs reads the sources along their memory: False when some
    source load steps by 1 along a reduced axis but not along the innermost kept one (a sum over
    the sequence of a (batch, head, feature, seq) array viewed as (seq, batch, head*feature)): the
    usual nest then reads contiguously in its reduce loop, and this one would gather."""
    outs = {params.index[id(o)] for o in outputs}
    for v in b.order:
        if v.op != "load" or v.arg[0] in outs:
            continue
        unit = {a for a, c in v.arg[1].terms if c == 1 and isinstance(a, Var)}
        if inner not in unit and unit & rvs:
            return False
    return True


def _build(outputs, is_input, shape, loops, params, prefix, id_base) -> _Builder:
    out_loops = [(Var(f"{prefix}i{k}", 0, n - 1), n) for k, (_, n) in enumerate(loops)]
    idx = [const(0)] * len(shape)
    for (dims, _), (lv, n) in zip(loops, out_loops):
        sizes = [shape[d] for d in dims]
        flat = Expr({lv: 1}, 0)
        for d, s in zip(dims, contiguous_strides(sizes)):
            idx[d] = (flat // s) % shape[d]
    b = _Builder(is_input, out_loops, params, prefix, id_base)
    for o in outputs:
        b.store(o, tuple(idx))
    return b


def _place(b: _Builder, tolerate=frozenset()) -> tuple[list, int]:
    """Put each value into the shallowest loop that has all its inputs (loop-invariant code
    motion by construction), and nest every reduction's loops where its result is needed.
    Returns the nest's top-level statements and its work (innermost iterations)."""
    top: list = []
    depth: dict = {}
    block: dict = {}
    path: dict = {}            # loop var -> list of enclosing loop vars (itself included)
    for k, (lv, n) in enumerate(b.out_loops):
        lp = Loop(lv, n, "parallel" if k == 0 else "serial")
        depth[lv], block[lv] = k + 1, lp
        path[lv] = [v for v, _ in b.out_loops[:k + 1]]
    reduces = [v for v in b.order if v.op == "reduce"]
    red_loops = {}
    for r in reversed(reduces):  # outer reductions first: inner ones hang in their loops
        home = _home(r.deps, depth)
        hdepth = depth.get(home, 0)
        enclosing = path.get(home, [])
        waste = math.prod(block[v].size for v in enclosing if v not in r.deps)
        if waste > 1 and id(b.reduce_node[r.id]) not in tolerate:
            node = b.reduce_node[r.id]
            raise NeedsRealize(node, f"reduction {node.op}{list(node.arg)} of {list(node.srcs[0].shape)} "
                                     f"would be recomputed {waste}x inside loops it does not depend on")
        chain = []
        for j, (lv, n) in enumerate(r.arg[1]):
            lp = Loop(lv, n, "reduce", reduce=r)
            depth[lv], block[lv] = hdepth + j + 1, lp
            path[lv] = enclosing + [v for v, _ in r.arg[1][:j + 1]]
            chain.append(lp)
        red_loops[r.id] = chain
    work = 0
    for v in b.order:
        home = _home(v.deps, depth)
        body = block[home].body if home is not None else top
        if v.op == "reduce":
            body.append(red_loops[v.id][0])
            work += math.prod(block[x].size for x in path[v.arg[1][-1][0]])
        body.append(v)
    # inner loops go after everything they depend on in their parent
    for chain in red_loops.values():
        for outer, inner in zip(chain, chain[1:]):
            outer.body.append(inner)
    for k in range(len(b.out_loops) - 1, -1, -1):
        lv = b.out_loops[k][0]
        (block[b.out_loops[k - 1][0]].body if k else top).append(block[lv])
    work += math.prod(n for _, n in b.out_loops)
    if not b.out_loops:  # a scalar result: one iteration, so exactly one thread runs it
        top = [Loop(Var(f"{b.prefix}i0", 0, 0), 1, "parallel", top)]
    return top, work


def _home(deps, depth) -> Var | None:
    best, bd = None, 0
    for v in deps:
        d = depth[v]
        if d > bd:
            best, bd = v, d
    return best
