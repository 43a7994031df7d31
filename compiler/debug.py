"""The compiler's debug surface: EMBER_DEBUG levels, and the records behind ember.debug.capture()
and the `ember` CLI.

EMBER_DEBUG=1 kernel count and time per realize; 2 the schedule and why each kernel boundary
exists; 3 kernel IR; 4 generated LLVM IR; 5 assembly. Output goes to stderr.

While a capture is open (or EMBER_DEBUG >= 1), every new plan is described when it is built — its
graph as text and Graphviz dot, and each kernel with the rule that gave each of its outputs a
buffer — because realizing turns the graph's nodes into buffers and the structure is gone after.
Every launch is a `KernelRecord`; its code at each stage comes from the `STAGES` table, one
handler per stage, so a new backend adds rows (its stages), not new control flow.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

_captures: list = []


def level() -> int:
    try:
        return int(os.environ.get("EMBER_DEBUG", "0"))
    except ValueError:
        return 0


def active() -> bool:
    return bool(_captures) or level() >= 1


# -- why a node got a buffer (the scheduler's rules, see schedule.py) ---------------------------
RULES = {
    "output": "the program asked for this value",
    "contiguous": "explicit .contiguous(): a materialization barrier",
    "shared-reduce": "contains a reduction and feeds several buffered values; recomputing it "
                     "would redo the reduction for each",
    "size-limit": "the kernel around it would exceed the primitive limit (schedule.MAX_KERNEL_OPS) "
                  "or the depth of one chain (MAX_KERNEL_DEPTH)",
    "recompute": "a reduction that would otherwise be recomputed inside loops it does not depend on",
    "gemm": "a matrix product large enough for the GEMM template (compiler/templates.py)",
    "gemm-operand": "a computed value a GEMM template reads (templates read buffers)",
    "attention": "softmax(Q K^T * scale + mask) @ V computed by the flash-attention template (\"cuda\"; "
                 "scores and weights are never stored)",
    "attention-operand": "a computed value the attention template reads (templates read buffers)",
}


@dataclass
class KernelPlan:
    """One kernel of a plan: what it computes, why each output has a buffer, what it reads."""
    index: int                   # position in the plan
    name: str
    symbol: str
    outputs: list                # (node label, reason, [(reader node "%n", its kernel)])
    inputs: list                 # node labels of what it loads
    after: list                  # kernels of this plan whose outputs it reads
    shapes: list                 # distinct output shapes (one loop nest each)
    graph_text: str              # the nodes it computes and the nodes it loads

    def explain(self) -> str:
        lines = [f"kernel {self.index}: {self.name}"]
        for label, reason, readers in self.outputs:
            by_kernel: dict = {}
            for node, k in readers:
                by_kernel.setdefault(k, []).append(node)
            used = "; read by " + "; ".join(f"{', '.join(ns)} in kernel {k}" for k, ns in by_kernel.items()) \
                if readers else ""
            lines.append(f"  {label}")
            lines.append(f"    buffer because [{reason}] {RULES.get(reason, reason)}{used}")
        if self.after:
            lines.append(f"  separate from kernel{'s' if len(self.after) > 1 else ''} "
                         f"{', '.join(map(str, self.after))}: reads {'their' if len(self.after) > 1 else 'its'} "
                         "output, which must be complete first")
        lines.append(f"  inputs: {', '.join(self.inputs) or 'none'}")
        return "\n".join(lines)


@dataclass
class PlanRecord:
    """A compiled graph structure: its graph (after rewrites), in text and dot, and its kernels."""
    nodes_before: int            # graph size as built by the program
    nodes_after: int             # after rewrites (what was scheduled)
    graph_text: str
    graph_dot: str
    kernels: list

    def schedule_text(self) -> str:
        return "\n".join(k.explain() for k in self.kernels)


def _arg_text(n) -> str:
    from .dtypes import DType
    if n.arg is None:
        return ""
    return n.arg.name if isinstance(n.arg, DType) else repr(n.arg)



def record_plan(plan, outputs, rewritten, sched) -> None:
    """Describe a freshly built plan (called by realize.build_plan while the graph still exists)."""
    from .ir import region, toposort
    nodes = toposort(list(dict.fromkeys(rewritten)))
    num = {id(n): k for k, n in enumerate(nodes)}
    root_of = {id(o): (k, r) for k, sk in enumerate(sched) for o, r in zip(sk.outputs, sk.reasons)}
    members: dict = {}           # id(node) -> kernels it is computed in (roots and fused nodes)
    reads: dict = {}             # kernel -> ids of the nodes it loads
    for k, sk in enumerate(sched):
        inside, reads[k] = region(sk.outputs, lambda s: s.realized or (id(s) in root_of and root_of[id(s)][0] != k))
        for i in inside:
            members.setdefault(i, []).append(k)
    readers: dict = {}           # id(buffered node) -> [(buffered node reading it directly, its kernel)]
    for k, sk in enumerate(sched):
        for o in sk.outputs:
            for i in region([o], lambda s: s.realized or id(s) in root_of)[1]:
                if i in root_of:
                    readers.setdefault(i, []).append((o, k))

    def label(n) -> str:
        srcs = ", ".join(f"%{num[id(s)]}" for s in n.srcs)
        arg = _arg_text(n)
        body = "input" if n.realized else f"{n.op}({srcs}{', ' if srcs and arg else ''}{arg})"
        return f"%{num[id(n)]} = {body} : {n.dtype.name}{list(n.shape)}"

    def note(n, k=None) -> str:
        if n.realized:
            return ""
        if id(n) in root_of:
            j, r = root_of[id(n)]
            return f"kernel {j} output [{r}]" if k in (None, j) else f"loaded: kernel {j} output [{r}]"
        ks = members.get(id(n), [])
        if len(ks) > 1:
            return f"kernels {', '.join(map(str, ks))} (recomputed in each)"
        return f"kernel {ks[0]}" if ks else "folded"

    lines = {id(n): label(n) for n in nodes}
    width = min(max(map(len, lines.values()), default=0), 100) + 2

    def text(ns, k=None) -> str:
        rows = ((lines[id(n)], note(n, k)) for n in ns)
        return "\n".join(f"{ln:<{width}}# {nt}" if nt else ln for ln, nt in rows)

    def read_by(o) -> list:
        return [(f"%{num[id(x)]}", j) for x, j in sorted(readers.get(id(o), []), key=lambda xj: num[id(xj[0])])]

    kernels = []
    for k, sk in enumerate(sched):
        own = [n for n in nodes if k in members.get(id(n), ()) or id(n) in reads[k]]
        after = sorted({root_of[i][0] for i in reads[k] if i in root_of})
        kernels.append(KernelPlan(
            k, sk.kernel.name, plan.steps[k].compiled.symbol,
            [(lines[id(o)], r, read_by(o)) for o, r in zip(sk.outputs, sk.reasons)],
            [lines[i] for i in sorted(reads[k], key=num.get)], after,
            list(dict.fromkeys(o.shape for o in sk.outputs)), text(own, k)))
    plan.debug_record = PlanRecord(len(toposort(outputs)), len(nodes), text(nodes),
                                   _dot(nodes, num, root_of, members, sched), kernels)


def _dot(nodes, num, root_of, members, sched) -> str:
    """Graphviz: one cluster per kernel; nodes recomputed in several kernels sit outside, dashed."""
    def q(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    def decl(n) -> str:
        arg = _arg_text(n)
        head = "input" if n.realized else n.op + (f" {arg}" if arg and len(arg) <= 40 else "")
        lab = f"%{num[id(n)]} {head}\n{n.dtype.name}{list(n.shape)}"
        attrs = ""
        if n.realized:
            attrs = ", shape=ellipse, style=filled, fillcolor=lightgray"
        elif id(n) in root_of:
            lab += f"\nbuffer: {root_of[id(n)][1]}"
            attrs = ", peripheries=2"
        elif len(members.get(id(n), ())) > 1:
            attrs = ", style=dashed"
        return f"n{num[id(n)]} [label={q(lab)}{attrs}];"

    out = ["digraph ember {", "  rankdir=TB;", '  node [shape=box, fontname="monospace", fontsize=10];']
    for k, sk in enumerate(sched):
        out.append(f"  subgraph cluster_k{k} {{")
        out.append(f"    label={q(f'kernel {k}: {sk.kernel.name}')}; style=rounded; color=blue;")
        out += ["    " + decl(n) for n in nodes if members.get(id(n)) == [k]]
        out.append("  }")
    out += ["  " + decl(n) for n in nodes if len(members.get(id(n), ())) != 1]
    out += [f"  n{num[id(s)]} -> n{num[id(n)]};" for n in nodes for s in n.srcs]
    out.append("}")
    return "\n".join(out)


# -- per-launch records and their stages ---------------------------------------------------------
class StageUnavailable(Exception):
    """A stage that cannot be produced for this kernel (e.g. its backend is not built)."""


def _llvm(f):
    def stage(rec):
        if rec.backend != "llvm":
            raise StageUnavailable(f"{rec.name} ran on the {rec.backend} backend: its stages are "
                                   "triton, ttir, ttgir, llir and ptx")
        from .runtime import cpu
        return f(cpu.compiler(), rec.compiled.source)
    return stage


def _triton(name):
    """Any kernel compiled by Triton for sm_90: no GPU needed, so CPU-run programs have these too."""
    def stage(rec):
        try:
            from .codegen import triton as triton_codegen
        except ImportError as e:   # the package, not the backend, is missing
            raise StageUnavailable(f"the {name} stage needs the 'triton' package ({e})") from None
        if getattr(rec.compiled.kernel, "cpu_only", False):
            raise StageUnavailable(f"{rec.name} uses a CPU-only loop order (a reduction over outer axes "
                                   "accumulating into its output); on 'cuda' the same graph lowers to "
                                   "the usual form, whose Triton stages this is not")
        return triton_codegen.stage(rec.compiled.kernel, name)
    return stage


def _plan_stage(what, f):
    def stage(rec):
        if rec.scheduled is None:
            raise StageUnavailable(f"no {what} recorded for {rec.name}: its plan was built before "
                                   "the capture started")
        return f(rec.scheduled)
    return stage


# stage -> handler(KernelRecord) -> text. Every stage works from the backend-neutral kernel IR or
# the kernel's own code; the Triton stages compile any kernel for sm_90, so they work for CPU-run
# programs too.
STAGES = {
    "graph": _plan_stage("graph", lambda kp: kp.graph_text),
    "schedule": _plan_stage("schedule", KernelPlan.explain),
    "ir": lambda rec: str(rec.compiled.kernel),
    "llvm": lambda rec: rec.compiled.source,
    "llvm_opt": _llvm(lambda c, src: c.optimized_ir(src)),
    "asm": _llvm(lambda c, src: c.assembly(src)),
    **{s: _triton(s) for s in ("triton", "ttir", "ttgir", "llir", "ptx")},
}


def _is_flop(v) -> bool:
    from .ops import BINARY, PRIMS, REDUCE, TERNARY, UNARY
    p = PRIMS.get(v.op)
    if v.op == "reduce":
        return v.dtype.is_float
    if p is None or p.kind not in (UNARY, BINARY, TERNARY, REDUCE) or v.op in ("cast", "bitcast", "where", "contiguous"):
        return False
    return v.dtype.is_float or any(s.dtype is not None and s.dtype.is_float for s in v.srcs)


def count_flops(kernel) -> int:
    """Floating-point operations one launch performs: each float ALU value (arithmetic,
    comparison, transcendental: 1 each) times the trip counts of the loops around it; a reduction
    adds one operation per element it accumulates. A GEMM template: 2*M*N*K per matrix."""
    from .kir import Loop
    from .templates import GemmKernel, gemm_flops
    if isinstance(kernel, GemmKernel):  # templates have no kernel IR to walk
        return gemm_flops(kernel)
    if not hasattr(kernel, "body"):     # other templates count their own
        return kernel.flops
    total = 0
    stack = [(s, 1) for s in kernel.body]
    while stack:
        s, trips = stack.pop()
        if isinstance(s, Loop):
            stack.extend((b, trips * s.size) for b in s.body)
        elif _is_flop(s):
            total += trips * (math.prod(n for _, n in s.arg[1]) if s.op == "reduce" else 1)
    return total


@dataclass
class KernelRecord:
    """One kernel launch: what ran, what it fused, and its code at each stage (`STAGES`)."""
    name: str
    backend: str
    ops: list
    shape: tuple
    time_s: float
    bytes: int
    compiled: object = field(repr=False)
    scheduled: KernelPlan | None = field(default=None, repr=False)   # its place in its plan

    @property
    def symbol(self) -> str:
        return self.compiled.symbol

    @property
    def flops(self) -> int:
        c = self.compiled
        if getattr(c, "_flops", None) is None:
            c._flops = count_flops(c.kernel)
        return c._flops

    def source(self, stage: str) -> str:
        """The kernel at `stage` (see STAGES), e.g. rec.source('llvm')."""
        if stage not in STAGES:
            raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        return STAGES[stage](self)


def record_launch(compiled, seconds: float, outs) -> None:
    k = compiled.kernel
    nbytes = sum(p.numel * p.dtype.itemsize for p in k.params)
    rec = KernelRecord(k.name, getattr(compiled, "backend", "llvm"), list(k.ops), tuple(k.shape), seconds, nbytes,
                       compiled)
    for c in _captures:
        c.kernels.append(rec)
    lv = level()
    if lv >= 1:
        print(f"[ember] kernel {k.name:<48} {seconds * 1e6:9.1f} us  {nbytes / max(seconds, 1e-12) / 1e9:7.2f} GB/s",
              file=sys.stderr)
    if lv >= 3 and not getattr(compiled, "_printed", False):
        compiled._printed = True
        print(str(k), file=sys.stderr)
        if lv >= 4:
            print(compiled.source, file=sys.stderr)
        if lv >= 5:
            print(rec.source("asm" if rec.backend == "llvm" else "ptx"), file=sys.stderr)


def record_realize(plan, cached: bool, seconds: float) -> None:
    prec = getattr(plan, "debug_record", None)
    for c in _captures:
        c._realized(prec, cached, seconds)
    lv = level()
    if lv >= 1:
        print(f"[ember] realize: {len(plan.steps)} kernels, {seconds * 1e3:.3f} ms"
              f"{' (cached plan)' if cached else ''}", file=sys.stderr)
    if lv >= 2 and not cached:
        print(prec.schedule_text() if prec else plan.schedule_text, file=sys.stderr)


def record_recompile(function: str, reason: str) -> None:
    """ember.compile traced a function again; `reason` names the guard or the difference."""
    for c in _captures:
        c.recompiles.append((function, reason))
    if level() >= 1:
        print(f"[ember] compile: {function}: {reason}", file=sys.stderr)


@dataclass
class RealizeRecord:
    plan: PlanRecord | None      # None: the plan was built before any capture or debug level
    cached: bool
    time_s: float


class Capture:
    """Records of everything realized while open: `kernels` (one KernelRecord per launch),
    `plans` (each distinct graph structure, in first-seen order), `log` (one per realize) and
    `recompiles` ((function, reason) for each trace ember.compile made)."""

    def __init__(self):
        self.recompiles: list[tuple[str, str]] = []
        self.kernels: list[KernelRecord] = []
        self.plans: list[PlanRecord] = []
        self.log: list[RealizeRecord] = []
        self._mark = 0

    @property
    def realizes(self) -> int:
        return len(self.log)

    def _realized(self, prec, cached, seconds):
        self.log.append(RealizeRecord(prec, cached, seconds))
        new, self._mark = self.kernels[self._mark:], len(self.kernels)
        if prec is None:
            return
        if not any(p is prec for p in self.plans):
            self.plans.append(prec)
        by_symbol = {k.symbol: k for k in prec.kernels}
        for rec in new:
            if rec.scheduled is None:
                rec.scheduled = by_symbol.get(rec.symbol)

    def __enter__(self):
        _captures.append(self)
        self._mark = len(self.kernels)
        return self

    def __exit__(self, *exc):
        _captures.remove(self)
        return False
