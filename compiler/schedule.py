"""Scheduler: decide which nodes get a buffer of their own (kernel boundaries) and group the rest
into kernels.

Everything not given a buffer is fused into (recomputed inside) every kernel that reads it. A node
is given a buffer by the first rule that applies, in the table `RULES` order; the reason is kept
for `EMBER_DEBUG=2` and `ember explain`:

  output        the caller asked for its value
  contiguous    an explicit materialization barrier
  shared-reduce it contains a reduction and feeds several kernels (recomputing it would redo
                the reduction in each)
  size-limit    the kernel around it would exceed MAX_KERNEL_OPS primitives (or MAX_KERNEL_DEPTH
                in one chain)
  recompute     lowering found a reduction that would run again inside loops it does not
                depend on (e.g. a column sum broadcast over rows)
  gemm          a matrix product large enough for the GEMM template (compiler/templates.py)
  gemm-operand  a computed value a GEMM reads (the template reads buffers)

(On the CPU a buffered elementwise consumer of a GEMM's product, of the product's shape, may be
computed in the GEMM's epilogue, from the accumulator registers: templates.gemm_epilogue.)
  attention     ("cuda") softmax(Q K^T * scale + mask) @ V whose scores and weights nothing else
                reads: one flash-attention template (templates.find_attention)
  attention-operand  a computed value the attention template reads

Independent kernels are then merged horizontally: one kernel holds one loop nest per output shape
(so e.g. an optimizer updates every parameter in one launch), and outputs of one shape share a
nest, where one reading another is fused rather than loaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .ir import Node, region, toposort
from .kir import Kernel
from .lower import NeedsRealize, lower
from .ops import GATHER, MOVEMENT, REDUCE
from .templates import GemmKernel, find_attention, gemm_epilogue, match_gemm

MAX_KERNEL_OPS = 400
MAX_KERNEL_DEPTH = 150     # nodes on one path through a kernel: lowering recurses along paths
REINDEX = ("slice", "pad", "permute")   # views that read their source at moved indices
MAX_GROUP_OUTPUTS = 64
GEMM_EPILOGUES = os.environ.get("EMBER_GEMM_EPILOGUE", "1") != "0"   # 0: no epilogues (A/B timing)


@dataclass
class ScheduledKernel:
    outputs: list[Node]
    kernel: Kernel
    inputs: list[Node]          # graph node bound to each kernel param ('out' params included)
    reasons: list[str] = field(default_factory=list)


def _roots(outputs: list[Node], extra: dict, templates: dict, gemms: dict | None = None,
           device: str = "cpu") -> dict:
    """id(node) -> (node, reason) for every node that gets a buffer; fills `templates` with
    id(node) -> (template kernel, operand nodes) for nodes a template computes (`gemms` remembers
    match_gemm's answers across the scheduler's retries)."""
    gemms = {} if gemms is None else gemms
    order = toposort(outputs)
    roots = {id(n): (n, "output") for n in outputs}
    roots.update(extra)
    inside: set = set()   # nodes an attention template computes internally (no GEMM of their own)
    if device == "cuda":
        for rid, (r, kern, operands, inner) in find_attention(order, roots, gemms).items():
            templates[rid], roots[rid] = (kern, operands), (r, "attention")
            inside |= inner
            for x in operands:
                if not x.realized and id(x) not in roots:
                    roots[id(x)] = (x, "attention-operand")
    for n in order:
        if n.op == "contiguous" and id(n) not in roots:
            roots[id(n)] = (n, "contiguous")
        if n.op == "sum" and not n.realized and id(n) not in templates and id(n) not in inside:
            if id(n) not in gemms:
                gemms[id(n)] = match_gemm(n)
            m = gemms[id(n)]
            if m is not None:
                kern, a, b = m
                templates[id(n)] = (kern, [a, b])
                roots[id(n)] = (n, "gemm")
                for x in (a, b):
                    if not x.realized and id(x) not in roots:
                        roots[id(x)] = (x, "gemm-operand")
    _size_limit(order, roots)
    _shared_reductions(order, roots)
    return roots


def _size_limit(order: list[Node], roots: dict) -> None:
    """Give a buffer to each node whose kernel would exceed MAX_KERNEL_OPS primitives.

    Lowering computes a node once per index it is read at, so a node shared at one index (Philox's
    rounds reuse each 64-bit product twice) costs once: each node keeps the set of nodes inlined at
    its index (`inl`; at most about MAX_KERNEL_OPS, dropped after its last reader), and sharing
    unions the sets. A view that moves elements (slice, pad, permute) or a gather reads its
    computed source at another index, which recomputes it: its source's ops count again per use
    (`extra`), erring on the side of smaller kernels (a chain of shifted sums doubles per level).
    Broadcasts and reshapes keep the index. Counting every node per use made Philox grow
    2^rounds and cut it into kernels that wrote 32-bit intermediates per random number."""
    readers: dict = {}
    for n in order:
        for s in n.srcs:
            readers[id(s)] = readers.get(id(s), 0) + 1
    inl: dict = {}
    extra: dict = {}
    depth: dict = {}    # longest chain of inlined nodes (lowering recurses along it)
    for n in order:
        own, e, d = {id(n)}, 0, 0
        parts = [own]
        for k, s in enumerate(n.srcs):
            if id(s) in roots or s.realized or n.realized:
                continue
            d = max(d, depth[id(s)])
            if n.op in REINDEX or n.kind == GATHER and k == 0:
                e += len(inl[id(s)]) + extra[id(s)] if s.srcs else 0
            else:
                parts.append(inl[id(s)])
                e += extra[id(s)]
        b = own.union(*parts[1:]) if len(parts) > 1 else own
        if (len(b) + e > MAX_KERNEL_OPS or d >= MAX_KERNEL_DEPTH) and id(n) not in roots and not n.realized:
            roots[id(n)] = (n, "size-limit")
            b, e, d = own, 0, 0
        for s in n.srcs:        # a set no reader needs any more is dropped
            readers[id(s)] -= 1
            if not readers[id(s)]:
                inl.pop(id(s), None)
        if readers.get(id(n)):
            inl[id(n)], extra[id(n)], depth[id(n)] = b, e, d + 1


def _shared_reductions(order: list[Node], roots: dict) -> None:
    """Give a buffer to each node that contains a reduction and is inlined into several kernels,
    the one nearest the outputs first: buffering it takes everything beneath it out of the other
    kernels. (A view is not buffered: the computed value under it is.)

    One reverse topological pass. Buffering a node changes only which kernels the nodes beneath it
    belong to (not yet visited) and whether the nodes above it contain an inlined reduction, which
    only turns true into false — so no visited node becomes a candidate again, and candidates are
    met in the order of the rule above. `member` holds the one kernel a node is inlined into, or
    MANY; `has_red` is memoized and updated incrementally when a view's source gets a buffer."""
    many = object()
    member: dict = {}
    has_red: dict = {}
    users: dict = {}
    for n in order:
        for s in n.srcs:
            users.setdefault(id(s), []).append(n)

    def inlined(n: Node):
        return [s for s in n.srcs if id(s) not in roots and not s.realized]

    def red(n: Node) -> bool:
        stack = [n]
        while stack:
            x = stack[-1]
            if id(x) in has_red:
                stack.pop()
                continue
            if x.kind in (REDUCE, GATHER):
                has_red[id(x)] = True
                stack.pop()
                continue
            todo = [s for s in inlined(x) if id(s) not in has_red]
            if todo:
                stack.extend(todo)
                continue
            has_red[id(x)] = any(has_red[id(s)] for s in inlined(x))
            stack.pop()
        return has_red[id(n)]

    def buffered(s: Node) -> None:  # s became a root: its users may no longer inline a reduction
        stack = [u for u in users.get(id(s), []) if has_red.get(id(u))]
        while stack:
            u = stack.pop()
            if has_red.get(id(u)) and u.kind not in (REDUCE, GATHER) and not any(has_red[id(x)] for x in inlined(u)):
                has_red[id(u)] = False
                stack.extend(users.get(id(u), []))

    for n in reversed(order):
        if n.realized:
            continue
        if id(n) not in roots and member.get(id(n)) is many and red(n):
            s = n
            while s.kind == MOVEMENT:
                s = s.srcs[0]
            roots[id(s)] = (s, "shared-reduce")
            if s is not n:
                buffered(s)
        tag = id(n) if id(n) in roots else member.get(id(n))
        for s in n.srcs:
            if not s.realized:
                cur = member.get(id(s))
                member[id(s)] = tag if cur is None or cur == tag else many


def schedule(outputs: list[Node], device: str = "cpu") -> list[ScheduledKernel]:
    """Kernels computing `outputs` on `device`, in an order that respects their dependencies."""
    extra: dict = {}
    merge_dependent = True
    tolerate: set = set()   # reductions that are roots already: recomputing them is unavoidable
    lowered: dict = {}      # lowering results kept across retries (one retry changes few kernels)
    gemms: dict = {}
    while True:
        templates: dict = {}
        roots = _roots(outputs, extra, templates, gemms, device)
        try:
            return _group(outputs, roots, templates, merge_dependent, tolerate, lowered, device)
        except NeedsRealize as e:
            if id(e.node) in roots:
                if merge_dependent:  # a merged root recomputed at another index: stop merging
                    merge_dependent = False
                else:                # e.g. a sum of a broadcast value, broadcast again: accept it
                    tolerate.add(id(e.node))
                continue
            extra[id(e.node)] = (e.node, "recompute")


def _group(outputs: list[Node], roots: dict, templates: dict, merge_dependent: bool = True,
           tolerate: set = frozenset(), lowered: dict | None = None, device: str = "cpu") -> list[ScheduledKernel]:
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
    masks: list[int] = []     # each group's members, as bits of `order`
    group_of: dict = {}       # position in `order` -> its group

    def joins(j: int, n: Node) -> bool:
        g = groups[j]
        return (len(g) < MAX_GROUP_OUTPUTS and id(n) not in templates and id(g[0]) not in templates
                and _can_join(n, masks[j], direct, reach, order, merge_dependent))

    def epilogue(j: int, n: Node) -> bool:
        """Whether n joins GEMM group j's epilogue (on the CPU). Only whole epilogues: every value
        reading the product (none an output of the product's own) must fit templates.gemm_epilogue
        together, so the product itself is never stored; they then join as they come."""
        g = groups[j]
        kern = templates.get(id(g[0]), (None,))[0]
        if not GEMM_EPILOGUES or device != "cpu" or not isinstance(kern, GemmKernel) or id(n) in templates:
            return False
        r = g[0]
        if id(r) not in epilogues:
            readers = [x for x in order if direct[id(x)] >> pos[id(r)] & 1]
            ids = {id(x) for x in readers}
            fused = None
            if id(r) not in wanted and len(readers) < MAX_GROUP_OUTPUTS:
                fused = gemm_epilogue(kern, r, readers, lambda x: x.realized or (id(x) in roots and id(x) not in ids))
            epilogues[id(r)] = (fused, ids)
        fused, ids = epilogues[id(r)]
        return (fused is not None and id(n) in ids
                and _can_join(n, masks[j], direct, reach, order, merge_dependent, same_shape=False))
    epilogues: dict = {}    # id(product) -> (the GEMM with its epilogue, the epilogue's buffers)
    wanted = {id(o) for o in outputs}   # (a product asked for is stored: its reason reads "gemm")
    for n in order:
        j = len(groups) - 1
        deps = [group_of[k] for k in _bits(direct[id(n)])]
        if deps and epilogue(max(deps), n):
            groups[max(deps)].append(n)
            masks[max(deps)] |= 1 << pos[id(n)]
            group_of[pos[id(n)]] = max(deps)
            continue
        # A root reading a same-shape root of an earlier kernel joins that kernel (one nest: the
        # value is used while computed, e.g. a max-pool's tie count next to its max) when all it
        # reads is computed by then; else it joins the last kernel or starts one.
        deps = [group_of[k] for k in _bits(direct[id(n)])]
        same = [group_of[k] for k in _bits(direct[id(n)]) if order[k].shape == n.shape]
        if same and max(deps) == max(same) < j and joins(max(same), n):
            j = max(same)
        elif not groups or not joins(j, n):
            groups.append([])
            masks.append(0)
            j += 1
        groups[j].append(n)
        masks[j] |= 1 << pos[id(n)]
        group_of[pos[id(n)]] = j
    out = []
    for g in groups:
        if id(g[0]) in templates:
            kern, operands = templates[id(g[0])]
            fused, ids = epilogues.get(id(g[0]), (None, ()))
            if len(g) > 1 and len(g) == len(ids) + 1:   # the whole epilogue joined
                out.append(ScheduledKernel(g, fused[0], [g[0]] + operands + fused[1], [roots[id(n)][1] for n in g]))
                continue
            out.append(ScheduledKernel(g[:1], kern, [g[0]] + operands, [roots[id(g[0])][1]]))
            if len(g) == 1:
                continue
            g = g[1:]   # some reader could not join: the others are a kernel after the product
        kernel, inputs = _lower_group(g, roots, tolerate, {} if lowered is None else lowered, device)
        out.append(ScheduledKernel(g, kernel, inputs, [roots[id(n)][1] for n in g]))
    return out


def _lower_group(g: list[Node], roots: dict, tolerate: set, lowered: dict, device: str = "cpu"):
    """lower() of one group, remembered under what it depends on: the outputs, the buffers it reads
    and the tolerated reductions inside it (so a retry of the schedule re-lowers only the kernels
    its new buffer touches). A NeedsRealize is remembered and raised again too."""
    ids = {id(n) for n in g}

    def is_input(n):
        return n.realized or (id(n) in roots and id(n) not in ids)
    seen, reads = region(g, is_input)
    key = (tuple(id(n) for n in g), frozenset(reads), frozenset(seen & tolerate))
    hit = lowered.get(key)
    if hit is None:
        nests: dict = {}
        for n in g:
            nests.setdefault(n.shape, []).append(n)
        try:
            hit = lower(list(nests.values()), is_input, tolerate=tolerate, cpu=device == "cpu")
        except NeedsRealize as e:
            hit = e
        lowered[key] = hit
    if isinstance(hit, NeedsRealize):
        raise hit
    return hit


def _bits(m: int):
    """Positions of the set bits of m (cost per set bit, not per bit: masks are as wide as the
    number of kernels)."""
    while m:
        low = m & -m
        yield low.bit_length() - 1
        m ^= low


def _can_join(n: Node, members: int, direct: dict, reach: dict, order, merge_dependent: bool,
              same_shape: bool = True) -> bool:
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
    return not same_shape or all(order[k].shape == n.shape for k in _bits(deps))
