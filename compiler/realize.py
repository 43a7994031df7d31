"""realize: graph -> rewrite -> schedule -> lower -> codegen -> compile -> launch.

The whole pipeline runs once per graph *structure*: a plan (kernels plus where each kernel's
buffers come from) is cached under a key that abstracts buffers to their position, dtype and
shape, so the eager-looking training loop, which builds the same graph every step, pays only for
hashing the graph and launching kernels from the second step on.

Devices: a plan belongs to one device and its kernels come from that device's backend (`backend`):
compile, allocate, launch. "cpu" is LLVM (codegen/llvm.py, runtime/cpu.py); "cuda" is Triton
(codegen/triton.py, runtime/cuda.py), loaded on first use.
"""
from __future__ import annotations

import functools
import hashlib
import operator
import time
from dataclasses import dataclass


from . import debug
from .buffer import Buffer
from .ir import Node
from .runtime import cpu, cpu_pool
# rewrite, schedule, kir, templates and codegen are imported where a plan is built: a process that
# finds its plans in the disk cache (a warm start) never needs them and skips their import (~0.1 s)


@dataclass
class Step:
    """One kernel launch of a plan; params name their buffers by source."""
    name: str
    fn: object
    params: list[tuple[str, int]]   # ('leaf', i) graph input | ('tmp', j) buffer made by the plan
    out_tmps: list[int]
    free_after: list[int]           # tmps read for the last time by this step
    work: int
    compiled: "CompiledKernel"
    inplace: list = ()              # (input param, output param) that may share memory (kir.inplace_pairs)


@dataclass
class Plan:
    steps: list[Step]
    tmps: list[tuple]               # (dtype, numel) of every buffer the plan makes
    outputs: list[tuple[str, int]]  # where each requested output ends up: ('tmp'|'leaf', index)
    schedule_text: str
    device: str = "cpu"
    program: list | None = None      # the launch list execute() runs, prepared on first use
    program_outputs: list | None = None
    from_disk: bool = False          # loaded from the disk cache: no kernel IR (see get_plan)


@dataclass
class CompiledKernel:
    name: str
    symbol: str
    kernel: object                  # kir.Kernel
    source: str                     # LLVM IR (cpu) or Triton source (cuda)
    fn: object
    cache_hit: bool
    reasons: list[str]
    backend: str = "llvm"           # "llvm" (cpu) or "triton" (cuda)
    object_key: str = ""            # its object code's disk cache key (cpu)


_plans: dict = {}
_kernels: dict = {}


def structure_key(outputs: list[Node]) -> tuple[tuple, list[Node]]:
    """A key equal for graphs of equal structure, and the buffer leaves in key order.

    The key lists the nodes sources first, each as (op, arg, dtype, shape, positions of its
    sources) or ("B", dtype, shape) for a buffer, then the outputs' positions. The eager loop pays
    this on every realize, so it is one depth-first walk (as ir.toposort) that writes the key as
    it goes; a node's arg comes hashable from its interning key."""
    pos: dict = {}          # id(node) -> its position in the key
    parts: list = []
    leaves: list[Node] = []
    for root in outputs:
        if id(root) in pos:
            continue
        if root.op == "buffer":
            pos[id(root)] = len(parts)
            parts.append(("B", root.dtype, root.shape))
            leaves.append(root)
            continue
        stack = [(root, iter(root.srcs))]   # the path from the root: (node, its sources to visit)
        while stack:
            n, srcs = stack[-1]
            for s in srcs:
                if id(s) not in pos:
                    if s.op != "buffer":
                        stack.append((s, iter(s.srcs)))
                        break
                    pos[id(s)] = len(parts)
                    parts.append(("B", s.dtype, s.shape))
                    leaves.append(s)
            else:   # its sources are placed (a DAG: no node is on the path twice)
                stack.pop()
                pos[id(n)] = len(parts)
                srcs = n.srcs
                if len(srcs) == 1:   # one or two sources nearly always: spelled out (2x faster)
                    at = (pos[id(srcs[0])],)
                elif len(srcs) == 2:
                    at = (pos[id(srcs[0])], pos[id(srcs[1])])
                else:
                    at = tuple([pos[id(s)] for s in srcs])
                parts.append((n.op, n.key[2], n.dtype, n.shape, at))   # key[2]: the arg, hashable
    parts.append(tuple([pos[id(o)] for o in outputs]))
    return tuple(parts), leaves   # hashed and compared in C: no repr of the whole graph


def compile_kernel(kernel, reasons, device: str = "cpu") -> CompiledKernel:
    """Generate and compile one kernel; identical kernels are compiled once per process."""
    return compile_kernels([(kernel, reasons)], device)[0]


def compile_kernels(items: list, device: str = "cpu") -> list[CompiledKernel]:
    """compile_kernel for each (kernel, reasons) of a plan: all sources are generated first, so the
    CPU backend compiles those missing from its caches in parallel (runtime/cpu_compile.py)."""
    if device != "cpu":
        return [backend(device).compile(kernel, reasons) for kernel, reasons in items]
    probes = [_render(kernel) for kernel, _ in items]
    todo = {}   # probe -> (symbol, source) of kernels new to this process
    for probe in probes:
        if probe not in _kernels and probe not in todo:
            symbol = "ember_" + hashlib.sha256(probe.encode()).hexdigest()[:16]
            todo[probe] = symbol, probe.replace("@KERNEL(", f"@{symbol}(", 1)
    if todo:
        c = cpu.compiler()
        built = dict(zip(todo, c.object_codes([src for _, src in todo.values()])))
        for (kernel, reasons), probe in zip(items, probes):
            if probe in built and probe not in _kernels:
                (symbol, src), (obj, hit) = todo[probe], built[probe]
                fn = _loaded.get(symbol) or c.load(obj, symbol, len(kernel.params))
                _loaded[symbol] = fn
                _kernels[probe] = CompiledKernel(kernel.name, symbol, kernel, src, fn, hit, reasons,
                                                 object_key=c.object_key(src))
    return [_kernels[probe] for probe in probes]


def _render(kernel) -> str:
    """A kernel's LLVM IR, its function named @KERNEL (a template picks its own LLVM pipeline with
    a first-line marker, runtime/cpu_compile.py)."""
    if not hasattr(kernel, "render"):
        from .codegen import llvm as llvm_codegen
        return llvm_codegen.render(kernel, "KERNEL")
    return kernel.render("KERNEL")


_loaded: dict = {}   # symbol -> callable: a kernel is loaded into the JIT once per process


# -- plans on disk ----------------------------------------------------------------------------------
# A CPU plan is also stored in the disk cache, keyed by the graph structure and a fingerprint of
# the compiler's own source, so a new process running the same program (a warm start) skips
# rewriting, scheduling, lowering and code generation: it loads the plan and its kernels' object
# code. A plan from disk has no kernel IR: while debugging (ember.debug.capture, EMBER_DEBUG) plans
# are built in full instead. Corrupt entries are reported and rebuilt (cache.get).

PLAN_FORMAT = "ember-plan-2"


@functools.lru_cache(maxsize=1)
def _compiler_fingerprint() -> str:
    import pathlib
    h = hashlib.sha256(cpu.compiler().fingerprint.encode())
    root = pathlib.Path(__file__).parent
    for path in sorted([*root.rglob("*.py"), *(root.parent / "kernels").rglob("*.py")]):
        h.update(path.read_bytes())
    return h.hexdigest()


def _disk_key(key) -> str:
    from . import cache
    return cache.key(PLAN_FORMAT, _compiler_fingerprint(), repr(key))


def _save_plan(key, plan: Plan) -> None:
    import json
    from . import cache
    if not cache.enabled() or any(not st.compiled.object_key for st in plan.steps):
        return
    doc = {"steps": [{"name": st.name, "symbol": st.compiled.symbol, "object": st.compiled.object_key,
                      "nparams": len(st.params), "params": st.params, "out_tmps": st.out_tmps,
                      "free_after": st.free_after, "work": st.work, "reasons": st.compiled.reasons,
                      "inplace": st.inplace}
                     for st in plan.steps],
           "tmps": [(dt.name, n) for dt, n in plan.tmps], "outputs": plan.outputs, "text": plan.schedule_text}
    cache.put(_disk_key(key), json.dumps(doc).encode(), ".plan")


def _load_plan(key) -> Plan | None:
    import json
    from . import cache
    from .dtypes import by_name
    if not cache.enabled():
        return None
    raw = cache.get(_disk_key(key), ".plan")
    if raw is None:
        return None
    doc = json.loads(raw)
    c = cpu.compiler()
    steps = []
    for d in doc["steps"]:
        fn = _loaded.get(d["symbol"])
        if fn is None:
            obj = cache.get(d["object"])
            if obj is None:   # the kernel's object code is gone: build the plan again
                return None
            fn = _loaded[d["symbol"]] = c.load(obj, d["symbol"], d["nparams"])
        ck = CompiledKernel(d["name"], d["symbol"], None, None, fn, True, d["reasons"], object_key=d["object"])
        steps.append(Step(d["name"], fn, [tuple(p) for p in d["params"]], d["out_tmps"], d["free_after"],
                          d["work"], ck, [tuple(p) for p in d["inplace"]]))
    return Plan(steps, [(by_name(n), k) for n, k in doc["tmps"]], [tuple(o) for o in doc["outputs"]],
                doc["text"], "cpu", from_disk=True)


def get_plan(key, outputs: list[Node], leaves: list[Node], device: str = "cpu") -> tuple[Plan, bool]:
    """The plan for a graph structure: from memory, from disk (cpu), or built. (plan, was cached)"""
    pkey = key if device == "cpu" else (device, key)
    plan = _plans.get(pkey)
    debugging = debug.active()
    if plan is not None and not (plan.from_disk and debugging):
        return plan, True
    if device == "cpu" and not debugging:
        plan = _load_plan(key)
        if plan is not None:
            _plans[pkey] = plan
            return plan, True
    plan = _plans[pkey] = build_plan(outputs, leaves, device)
    if device == "cpu":
        _save_plan(key, plan)
    return plan, False


class _CPU:
    """The CPU backend: LLVM kernels, numpy-backed buffers, launches split across cores."""
    name = "cpu"
    compile = staticmethod(compile_kernel)
    alloc = functools.partial(Buffer, "cpu")
    launch = staticmethod(cpu.launch)

    @staticmethod
    def upload(buf):
        return buf.to("cpu")

    @staticmethod
    def synchronize() -> None:
        pass


_backends: dict = {"cpu": _CPU}


def backend(device: str):
    """The backend object of a device (compile, alloc, launch, upload, synchronize)."""
    be = _backends.get(device)
    if be is None:
        if device != "cuda":
            raise RuntimeError(f"no backend for device {device!r}")
        from .runtime import cuda
        be = _backends[device] = cuda.CudaBackend()
    return be


def device_buffers(leaves: list[Node], device: str) -> list:
    """The leaves' buffers on `device`. A buffer living elsewhere (data created on the host for a
    cuda tensor, say) is copied there once: the leaf keeps the copy, since its value never changes."""
    bufs = [n.arg for n in leaves]
    for k, b in enumerate(bufs):
        if b.device != device:
            bufs[k] = leaves[k].arg = b.to(device)
    return bufs


def build_plan(outputs: list[Node], leaves: list[Node], device: str = "cpu") -> Plan:
    from .kir import Kernel, inplace_pairs
    from .rewrite import rewrite
    from .schedule import schedule
    # an output that only reshapes another value shares that value's buffer (contiguous storage
    # is the same in any shape of the same size): no copy kernel
    rewritten = [_strip_reshapes(r) for r in rewrite(outputs)]
    sched = schedule([r for r in dict.fromkeys(rewritten) if not r.realized], device)
    leaf_pos = {id(n): k for k, n in enumerate(leaves)}
    tmp_of: dict = {}
    tmps: list = []
    steps = []
    compiled = compile_kernels([(sk.kernel, sk.reasons) for sk in sched], device)
    for sk, ck in zip(sched, compiled):
        for o in sk.outputs:
            tmp_of[id(o)] = len(tmps)
            tmps.append((o.dtype, o.numel))
        params = []
        for n in sk.inputs:
            if id(n) in tmp_of:
                params.append(("tmp", tmp_of[id(n)]))
            elif id(n) in leaf_pos:
                params.append(("leaf", leaf_pos[id(n)]))
            else:
                raise AssertionError(f"kernel input {n} is neither a leaf nor computed earlier")
        steps.append(Step(sk.kernel.name, ck.fn, params, [tmp_of[id(o)] for o in sk.outputs], [],
                          sk.kernel.work, ck, inplace_pairs(sk.kernel) if isinstance(sk.kernel, Kernel) else []))
    # an output may have simplified to an input buffer: values are immutable, so it is shared
    outs = [("tmp", tmp_of[id(r)]) if id(r) in tmp_of else ("leaf", leaf_pos[id(r)]) for r in rewritten]
    # liveness: a buffer that is not a result is released right after the last kernel reading it
    last_read = {}
    for k, st in enumerate(steps):
        for src, i in st.params:
            if src == "tmp":
                last_read[i] = k
    kept = {i for src, i in outs if src == "tmp"}
    for i, k in last_read.items():
        if i not in kept:
            steps[k].free_after.append(i)
    text = "\n".join(f"kernel {k}: {s.kernel.name}  outputs={[str(o) for o in s.outputs]}  why={s.reasons}"
                     for k, s in enumerate(sched))
    plan = Plan(steps, tmps, outs, text, device)
    if debug.active():  # described now: realizing turns the graph's nodes into buffers
        debug.record_plan(plan, outputs, rewritten, sched)
    return plan


def _strip_reshapes(n: Node) -> Node:
    while n.op == "reshape":
        n = n.srcs[0]
    return n


def prepare(outputs: list[Node], device: str = "cpu") -> tuple[Plan, list[Node], list, bool]:
    """The plan computing `outputs`, the graph's buffer leaves in the plan's order, their buffers
    on `device`, and whether the plan was cached. Everything before `execute`; realize.run and
    ember.compile's traced calls share it."""
    key, leaves = structure_key(outputs)
    plan, cached = get_plan(key, outputs, leaves, device)
    return plan, leaves, device_buffers(leaves, device), cached


def run(outputs: list[Node], device: str = "cpu") -> None:
    """Compute `outputs` on `device`; each becomes a buffer leaf."""
    t0 = time.perf_counter()
    plan, _, leaf_bufs, cached = prepare(outputs, device)
    results = execute(plan, leaf_bufs)
    for node, buf in zip(outputs, results):
        node.become_buffer(buf)
    debug.record_realize(plan, cached, time.perf_counter() - t0)


def execute(plan: Plan, leaf_bufs: list, arena: "Arena | None" = None, inplace: dict | None = None) -> list:
    """Run a plan's kernels on the given input buffers; returns the buffers of its outputs.

    This is all a replay costs: no graph, no scheduling (ember.compile calls it directly), and a
    launch list prepared once per plan (`_program`), so each kernel costs a few list lookups,
    its output allocations and the call. With an `arena` (a compiled program's memory plan), the
    intermediate buffers are fixed places in one block and only the results are allocated, except
    those `inplace` maps (slot -> leaf index) to a leaf buffer they overwrite (`Arena.inplace_slots`
    says which may). The leaf buffers must live on the plan's device (see `device_buffers`)."""
    be = _backends.get(plan.device) or backend(plan.device)
    if debug.active():
        return _execute_recorded(plan, leaf_bufs, be)
    prog = plan.program if plan.program is not None else _program(plan, len(leaf_bufs))
    alloc, launch = be.alloc, be.launch
    bufs = list(leaf_bufs)
    bufs += [None] * len(plan.tmps)
    if arena is None:
        ptrs = [b.ptr() for b in leaf_bufs]
        ptrs += [0] * len(plan.tmps)
        for fn, args, outs, frees, work, empty in prog:
            for slot, dtype, numel in outs:   # allocated when first written, released after the last read
                b = bufs[slot] = alloc(dtype, numel)
                ptrs[slot] = b.ptr()
            if not empty:
                launch(fn, [ptrs[i] for i in args], work)
            for slot in frees:
                bufs[slot] = None
    else:
        ptrs = arena.ptrs.copy()             # intermediates: fixed addresses in the arena
        ptrs[:len(leaf_bufs)] = [b.ptr() for b in leaf_bufs]
        inplace = inplace or {}
        for slot, dtype, numel in arena.results:   # only the results are allocated
            k = inplace.get(slot)
            b = bufs[slot] = alloc(dtype, numel) if k is None else leaf_bufs[k]
            ptrs[slot] = b.ptr()
        if arena.launch_list is not None:      # the whole list in one native call
            arena.launch_list.run(cpu.pool(), ptrs, cpu.num_threads())
        else:
            for fn, get_args, work in arena.program:
                if work < cpu.PARALLEL_MIN_WORK:   # one call on this thread (what launch would do)
                    fn(*get_args(ptrs), 0, 1)
                else:
                    launch(fn, get_args(ptrs), work)
    return [bufs[i] for i in plan.program_outputs]


def _program(plan: Plan, n_leaves: int) -> list:
    """The plan as a launch list over one slot array: leaves first, then the plan's buffers."""
    slot = lambda src, i: i if src == "leaf" else n_leaves + i   # noqa: E731
    plan.program = [(st.fn, [slot(src, i) for src, i in st.params],
                     [(n_leaves + t, *plan.tmps[t]) for t in st.out_tmps],
                     [n_leaves + t for t in st.free_after], st.work,
                     all(plan.tmps[t][1] == 0 for t in st.out_tmps))
                    for st in plan.steps]
    plan.program_outputs = [slot(src, i) for src, i in plan.outputs]
    return plan.program


class Arena:
    """A compiled program's memory plan: every intermediate buffer of a plan (one that is not a
    result) gets a fixed offset in one 64-byte aligned block, and buffers whose lifetimes do not
    overlap share bytes (greedy first-fit over the launch order). Made once per ember.compile
    variant on the CPU; replays then allocate only the buffers they hand back."""

    def __init__(self, plan: Plan, n_leaves: int):
        import numpy as np
        if plan.device != "cpu":   # execute() calls small kernels directly, as cpu.launch would
            raise ValueError(f"an Arena is a CPU memory plan, not one for {plan.device!r}")
        if plan.program is None:
            _program(plan, n_leaves)
        results = {i for src, i in plan.outputs if src == "tmp"}
        first, last = {}, {}
        for k, st in enumerate(plan.steps):
            for t in st.out_tmps:
                first.setdefault(t, k)
            for src, i in st.params:
                if src == "tmp":
                    last[i] = k
        offsets, placed = {}, []      # placed: (start step, end step, offset, size)
        for t in sorted((t for t in first if t not in results), key=lambda t: first[t]):
            dtype, numel = plan.tmps[t]
            size = -(-max(numel * dtype.itemsize, 1) // 64) * 64
            lo, hi = first[t], last.get(t, first[t])
            busy = sorted((o, o + n) for a, b, o, n in placed if a <= hi and lo <= b)
            off = 0
            for o, e in busy:
                if off + size <= o:
                    break
                off = max(off, e)
            offsets[t] = off
            placed.append((lo, hi, off, size))
        self.nbytes = max((o + n for _, _, o, n in placed), default=0)
        self.block = np.empty(self.nbytes + 64, dtype=np.uint8)
        base = self.block.ctypes.data
        base += -base % 64
        self.ptrs = [0] * (n_leaves + len(plan.tmps))
        for t, off in offsets.items():
            self.ptrs[n_leaves + t] = base + off
        # the launch list of a replay: (kernel, its pointers picked from the slot array by one C
        # call, work); kernels with nothing to compute are left out. The results are allocated first.
        self.results = [o for _, _, outs, _, _, _ in plan.program for o in outs if o[0] - n_leaves in results]
        live = [(fn, args, work) for fn, args, outs, frees, work, empty in plan.program if not empty]
        self.program = [(fn, _picker(args), work) for fn, args, work in live]
        self.launch_list = None
        if cpu.pool() is not None and all(len(args) <= cpu_pool.MAX_ARGS for _, args, _ in live):
            variable = set(range(n_leaves)) | {slot for slot, _, _ in self.results}
            fixed = {k: p for k, p in enumerate(self.ptrs) if k not in variable}
            self.launch_list = cpu_pool.LaunchList([(fn, args, work >= cpu.PARALLEL_MIN_WORK) for fn, args, work in live],
                                                   fixed, variable)
        # results that may overwrite a leaf (a parameter's new value written over the old one): the
        # kernel allows it (Step.inplace), no later kernel reads the leaf, neither value is an
        # output twice. The caller picks which, each leaf overwritten by one result at most.
        last_read = {}
        for k, st in enumerate(plan.steps):
            for src, i in st.params:
                if src == "leaf":
                    last_read[i] = k
        times = {}
        for o in plan.outputs:
            times[o] = times.get(o, 0) + 1
        self.inplace_slots = {}       # result slot -> the leaves it may overwrite (one of them)
        for k, st in enumerate(plan.steps):
            for pi, pj in st.inplace:
                (s1, leaf), (s2, t) = st.params[pi], st.params[pj]
                if (s1 == "leaf" and s2 == "tmp" and last_read[leaf] == k and ("leaf", leaf) not in times
                        and times.get(("tmp", t)) == 1):
                    self.inplace_slots.setdefault(n_leaves + t, set()).add(leaf)


def _picker(idx: list):
    """slots -> tuple(slots[i] for i in idx), in C."""
    if len(idx) == 1:
        i = idx[0]
        return lambda slots: (slots[i],)
    return operator.itemgetter(*idx)


def _execute_recorded(plan: Plan, leaf_bufs: list, be) -> list:
    """execute(), timing every launch for ember.debug / EMBER_DEBUG."""
    bufs: list = [None] * len(plan.tmps)
    for st in plan.steps:
        for t in st.out_tmps:
            bufs[t] = be.alloc(*plan.tmps[t])
        ptrs = [(leaf_bufs[i] if src == "leaf" else bufs[i]).ptr() for src, i in st.params]
        if all(plan.tmps[t][1] == 0 for t in st.out_tmps):
            continue
        t = time.perf_counter()
        be.launch(st.fn, ptrs, st.work)
        be.synchronize()  # GPU launches are asynchronous: time the kernel, not the launch
        debug.record_launch(st.compiled, time.perf_counter() - t, [bufs[i] for i in st.out_tmps])
        for t in st.free_after:
            bufs[t] = None
    return [bufs[i] if src == "tmp" else leaf_bufs[i] for src, i in plan.outputs]


__all__ = ["run", "prepare", "execute", "Arena", "build_plan", "get_plan", "structure_key", "compile_kernel", "compile_kernels", "backend", "device_buffers"]
