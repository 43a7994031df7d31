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

Kernels whose outputs have one shape and do not depend on each other are merged horizontally
into one multi-output kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Node, toposort
from .kir import Kernel
from .lower import NeedsRealize, lower
from .ops import GATHER, MOVEMENT, REDUCE

MAX_KERNEL_OPS = 400
MAX_GROUP_OUTPUTS = 8


@dataclass
class ScheduledKernel:
    outputs: list[Node]
    kernel: Kernel
    inputs: list[Node]          # graph node bound to each kernel param ('out' params included)
    reasons: list[str] = field(default_factory=list)


def _roots(outputs: list[Node], extra: dict) -> dict:
    """id(node) -> (node, reason) for every node that gets a buffer."""
    order = toposort(outputs)
    roots = {id(n): (n, "output") for n in outputs}
    roots.update(extra)
    for n in order:
        if n.op == "contiguous" and id(n) not in roots:
            roots[id(n)] = (n, "contiguous")
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
    while True:
        roots = _roots(outputs, extra)
        try:
            return _group(outputs, roots)
        except NeedsRealize as e:
            extra[id(e.node)] = (e.node, "recompute")


def _group(outputs: list[Node], roots: dict) -> list[ScheduledKernel]:
    order = [n for n in toposort(outputs) if id(n) in roots]

    def is_input_for(group_ids):
        return lambda n: n.realized or (id(n) in roots and id(n) not in group_ids)

    # which roots each root reads, transitively (bitmask), to keep merged kernels independent
    pos = {id(n): k for k, n in enumerate(order)}
    reads: dict = {}
    for n in order:
        m, stack, seen = 0, list(n.srcs), set()
        while stack:
            s = stack.pop()
            if id(s) in seen or s.realized:
                continue
            seen.add(id(s))
            if id(s) in roots:
                m |= (1 << pos[id(s)]) | reads[id(s)]
            else:
                stack.extend(s.srcs)
        reads[id(n)] = m
    groups: list[list[Node]] = []
    for n in order:
        g = groups[-1] if groups else None
        if (g and len(g) < MAX_GROUP_OUTPUTS and g[0].shape == n.shape and n.numel > 0
                and not any(reads[id(n)] >> pos[id(x)] & 1 for x in g)):
            g.append(n)
        else:
            groups.append([n])
    out = []
    for g in groups:
        ids = {id(n) for n in g}
        kernel, inputs = lower(g, is_input_for(ids))
        out.append(ScheduledKernel(g, kernel, inputs, [roots[id(n)][1] for n in g]))
    return out
