"""Scheduler: decide which nodes get a buffer of their own (kernel boundaries) and group the rest
into kernels.

Everything not given a buffer is fused into (recomputed inside) every kernel that reads it. A node
is given a buffer by the first rule that applies, in the table `RULES` order; the reason is kept
for `EMBER_DEBUG=2` and `ember explain`:

  output        the caller asked for its value
  contiguous    an explicit materialization barrier
  shared-reduce it contains a reduction and feeds several kernels (recomputing it would redo
                the reduction in each)
  size-limit    the kernel around it would exceed MAX_KERNEL_OPS primitives
  recompute     lowering found a reduction that would run again inside loops it does not
                depend on (e.g. a column sum broadcast over rows)
  gemm          a matrix product large enough for the GEMM template (compiler/templates.py)
  gemm-operand  a computed value a GEMM reads (the template reads buffers)

Independent kernels are then merged horizontally: one kernel holds one loop nest per output shape
(so e.g. an optimizer updates every parameter in one launch), and outputs of one shape share a
nest, where one reading another is fused rather than loaded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Node, toposort
from .kir import Kernel
from .lower import NeedsRealize, lower
from .ops import GATHER, MOVEMENT, REDUCE
from .templates import match_gemm

MAX_KERNEL_OPS = 400
MAX_GROUP_OUTPUTS = 64


@dataclass
class ScheduledKernel:
    outputs: list[Node]
    kernel: Kernel
    inputs: list[Node]          # graph node bound to each kernel param ('out' params included)
    reasons: list[str] = field(default_factory=list)


def _roots(outputs: list[Node], extra: dict, templates: dict) -> dict:
    """id(node) -> (node, reason) for every node that gets a buffer; fills `templates` with
    id(node) -> (template kernel, operand nodes) for nodes a template computes."""
    order = toposort(outputs)
    roots = {id(n): (n, "output") for n in outputs}
    roots.update(extra)
    for n in order:
        if n.op == "contiguous" and id(n) not in roots:
            roots[id(n)] = (n, "contiguous")
        if n.op == "sum" and not n.realized:
            m = match_gemm(n)
            if m is not None:
                kern, a, b = m
                templates[id(n)] = (kern, [a, b])
                roots[id(n)] = (n, "gemm")
                for x in (a, b):
                    if not x.realized and id(x) not in roots:
                        roots[id(x)] = (x, "gemm-operand")
    # size limit: count primitives inlined into each node's kernel (shared nodes counted per use,
    # which errs on the side of smaller kernels)
    cost: dict = {}
    for n in order:
        c = 0 if n.realized else 1 + sum(cost[id(s)] for s in n.srcs if id(s) not in roots)
        if c > MAX_KERNEL_OPS and id(n) not in roots:
            roots[id(n)] = (n, "size-limit")
            c = 1
        cost[id(n)] = c
    # shared reductions: one at a time, the one nearest the outputs first, since giving it a
    # buffer takes everything beneath it out of the other kernels
    while True:
        n = _latest_shared_reduction(order, roots)
        if n is None:
            return roots
        while n.kind == MOVEMENT:  # buffer the computed value, not a view of it
            n = n.srcs[0]
        roots[id(n)] = (n, "shared-reduce")


def _latest_shared_reduction(order: list[Node], roots: dict) -> Node | None:
    bit = {rid: 1 << k for k, rid in enumerate(roots)}
    member: dict = {}          # id -> bitmask of the kernels a node is inlined into
    for n in reversed(order):
        m = bit[id(n)] if id(n) in roots else member.get(id(n), 0)
        for s in n.srcs:
            if not s.realized:
                member[id(s)] = member.get(id(s), 0) | m
    has_red: dict = {}
    for n in order:
        has_red[id(n)] = n.kind in (REDUCE, GATHER) or any(
            has_red[id(s)] for s in n.srcs if id(s) not in roots and not s.realized)
    for n in reversed(order):
        if id(n) in roots or n.realized:
            continue
        if has_red[id(n)] and bin(member.get(id(n), 0)).count("1") > 1:
            return n
    return None


def schedule(outputs: list[Node]) -> list[ScheduledKernel]:
    """Kernels computing `outputs`, in an order that respects their dependencies."""
    extra: dict = {}
    merge_dependent = True
    tolerate: set = set()   # reductions that are roots already: recomputing them is unavoidable
    while True:
        templates: dict = {}
        roots = _roots(outputs, extra, templates)
        try:
            return _group(outputs, roots, templates, merge_dependent, tolerate)
        except NeedsRealize as e:
            if id(e.node) in roots:
                if merge_dependent:  # a merged root recomputed at another index: stop merging
                    merge_dependent = False
                else:                # e.g. a sum of a broadcast value, broadcast again: accept it
                    tolerate.add(id(e.node))
                continue
            extra[id(e.node)] = (e.node, "recompute")


def _group(outputs: list[Node], roots: dict, templates: dict, merge_dependent: bool = True,
           tolerate: set = frozenset()) -> list[ScheduledKernel]:
    """Merge roots into kernels. A kernel holds one loop nest per output shape; a root joins the
    current kernel unless it reads (through another kernel) something the kernel computes. Roots
    of one shape share a nest, so one of them reading another is simply fused and computed once."""
    order = [n for n in toposort(outputs) if id(n) in roots]
    pos = {id(n): k for k, n in enumerate(order)}
    direct: dict = {}   # roots read directly (first roots below, through inlined nodes)
    reach: dict = {}    # roots read at all
    for n in order:
        d, stack, seen = 0, list(n.srcs), set()
        while stack:
            s = stack.pop()
            if id(s) in seen or s.realized:
                continue
            seen.add(id(s))
            if id(s) in roots:
                d |= 1 << pos[id(s)]
            else:
                stack.extend(s.srcs)
        direct[id(n)] = d
        r = d
        for k in _bits(d):
            r |= reach[id(order[k])]
        reach[id(n)] = r
    groups: list[list[Node]] = []
    members = 0
    for n in order:
        g = groups[-1] if groups else None
        if (g is not None and len(g) < MAX_GROUP_OUTPUTS and id(n) not in templates and id(g[0]) not in templates
                and _can_join(n, members, direct, reach, order, merge_dependent)):
            g.append(n)
            members |= 1 << pos[id(n)]
        else:
            groups.append([n])
            members = 1 << pos[id(n)]
    out = []
    for g in groups:
        if id(g[0]) in templates:
            kern, operands = templates[id(g[0])]
            out.append(ScheduledKernel(g, kern, [g[0]] + operands, [roots[id(g[0])][1]]))
            continue
        ids = {id(n) for n in g}
        nests: dict = {}
        for n in g:
            nests.setdefault(n.shape, []).append(n)
        kernel, inputs = lower(list(nests.values()), lambda n: n.realized or (id(n) in roots and id(n) not in ids),
                               tolerate=tolerate)
        out.append(ScheduledKernel(g, kernel, inputs, [roots[id(n)][1] for n in g]))
    return out


def _bits(m: int):
    k = 0
    while m:
        if m & 1:
            yield k
        m >>= 1
        k += 1


def _can_join(n: Node, members: int, direct: dict, reach: dict, order, merge_dependent: bool) -> bool:
    if n.numel == 0:
        return False
    deps = direct[id(n)] & members
    if deps and not merge_dependent:
        return False
    # through another kernel: that kernel would have to run in between
    via_others = 0
    for k in _bits(direct[id(n)] & ~members):
        via_others |= reach[id(order[k])]
    if via_others & members:
        return False
    # directly: only same-shape members, computed in the same nest (and shared by CSE)
    return all(order[k].shape == n.shape for k in _bits(deps))
