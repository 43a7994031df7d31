"""Kernel IR: the backend-neutral description of one kernel.

A kernel is one or more independent loop nests. Output loops walk an output shape (each nest's
outermost loop is split across threads); reduce loops hang inside the loop whose variables their result depends on. Values are
SSA and hash-consed per kernel; each sits in the shallowest loop that has all its inputs, so a row
reduction used by every element of that row is computed once per row. Both code generators
(codegen/llvm.py, codegen/triton.py) consume exactly this.

Values (`KVal.op`):
  const(value)                    index(Expr) -> int64
  cond((Expr, lo, hi)...) -> bool  load(param, Expr, guard)      guard: constraints, () if none
  <primitive>(srcs)               reduce(op, loops)(body)        store(param, Expr)(value)
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import dtypes as D
from .symbolic import Expr, Var


class KVal:
    __slots__ = ("op", "dtype", "srcs", "arg", "deps", "id")

    def __init__(self, op: str, dtype: D.DType | None, srcs: tuple, arg, deps: frozenset, id: int):
        self.op, self.dtype, self.srcs, self.arg, self.deps, self.id = op, dtype, srcs, arg, deps, id

    def __repr__(self):
        srcs = ", ".join(f"%{s.id}" for s in self.srcs)
        arg = _fmt_arg(self.op, self.arg)
        ty = self.dtype.name if self.dtype else "void"
        return f"%{self.id}: {ty} = {self.op}({srcs}{', ' if srcs and arg else ''}{arg})"


def _fmt_arg(op, arg):
    if arg is None:
        return ""
    if op == "load":
        p, idx, guard = arg
        return f"p{p}[{idx!r}]" + (f" if {fmt_guard(guard)}" if guard else "")
    if op == "store":
        return f"p{arg[0]}[{arg[1]!r}]"
    if op == "cond":
        return fmt_guard(arg)
    if op == "reduce":
        return f"{arg[0]} over {', '.join(f'{v.name}<{n}' for v, n in arg[1])}"
    if isinstance(arg, D.DType):
        return arg.name
    return repr(arg)


def fmt_guard(guard) -> str:
    return " and ".join(f"{lo} <= {e!r} <= {hi}" for e, lo, hi in guard)


@dataclass
class Loop:
    var: Var
    size: int
    kind: str               # 'parallel' (split across threads), 'serial', 'reduce'
    body: list = field(default_factory=list)   # KVal | Loop, in execution order
    reduce: KVal | None = None                 # for reduce loops: the reduction they compute


@dataclass
class Param:
    dtype: D.DType          # storage dtype
    numel: int
    role: str               # 'in' | 'out'


@dataclass
class Kernel:
    name: str
    params: list[Param]
    body: list              # top-level statements (KVal | Loop)
    ops: list[str]          # primitives fused into it, for the debug surface
    shape: tuple            # output shape
    work: int               # iterations of the innermost statements, for the threading cost model
    bindings: dict = field(default_factory=dict)   # data-dependent Var -> KVal holding its value
    cpu_only: bool = False  # uses a CPU-only loop order (lower._lower_outer_reduction)

    def loops(self):
        stack = list(self.body)
        while stack:
            s = stack.pop()
            if isinstance(s, Loop):
                yield s
                stack.extend(s.body)

    def __str__(self) -> str:
        lines = [f"kernel {self.name}(" + ", ".join(f"p{i}: {p.role} {p.dtype.name}[{p.numel}]"
                                                      for i, p in enumerate(self.params)) + ")"]

        def walk(stmts, ind):
            for s in stmts:
                if isinstance(s, Loop):
                    lines.append(f"{ind}for {s.var.name} in 0..{s.size}  # {s.kind}")
                    walk(s.body, ind + "  ")
                else:
                    lines.append(ind + repr(s))
        walk(self.body, "  ")
        return "\n".join(lines)


def expr_deps(e: Expr) -> frozenset:
    return frozenset(e.vars())


def inplace_pairs(k: Kernel) -> list[tuple[int, int]]:
    """(input param, output param) pairs that may be the same memory: writing the output over the
    input gives the same result. Holds when the output is stored once, at an index equal to that of
    every load of the input, and the stored value depends on each of those loads: element x is then
    read before x is written, by the same thread, and no other element is ever touched, an order the
    data dependence fixes whatever the code generator or LLVM reorders (so the `noalias` the
    parameters carry stays truthful in every way that matters). ember.compile uses it to update
    parameters and optimizer state in place (realize.execute's `inplace`)."""
    loads: dict = {}    # param -> [load KVal]
    stores: dict = {}   # param -> [store KVal]
    stack = list(k.body)
    while stack:
        s = stack.pop()
        if isinstance(s, Loop):
            stack.extend(s.body)
        elif s.op == "load":
            loads.setdefault(s.arg[0], []).append(s)
        elif s.op == "store":
            stores.setdefault(s.arg[0], []).append(s)
    pairs = []
    for j, st in stores.items():
        if len(st) != 1:
            continue
        store, deps = st[0], None
        for i, ls in loads.items():
            pi, pj = k.params[i], k.params[j]
            if pi.role != "in" or pi.dtype is not pj.dtype or pi.numel != pj.numel:
                continue
            if any(ld.arg[2] or ld.arg[1] != store.arg[1] for ld in ls):
                continue
            if deps is None:
                deps = _ancestors(store)
            if all(ld.id in deps for ld in ls):
                pairs.append((i, j))
    return sorted(pairs)


def _ancestors(v: KVal) -> set:
    seen, stack = set(), [v]
    while stack:
        for s in stack.pop().srcs:
            if s.id not in seen:
                seen.add(s.id)
                stack.append(s)
    return seen
