"""ember.compile: trace a step once, then replay its kernels with no per-op Python work.

How a call runs:

1. A guard key is built from the arguments (tensor shapes, dtypes, devices, requires_grad; Python
   scalars by value; other objects by identity). Each key has its own variant.
2. Tracing: the function runs normally but nothing is realized (ember is lazy anyway; realize calls
   are deferred while `tracing.current` is set). When it returns, the trace's *results* are every
   tensor whose value the call changed and that is still alive: parameters and optimizer state
   rebound in place, new `.grad`s, BatchNorm statistics, the returned tensors. Their graphs become one
   plan (compiler.realize.build_plan): forward, backward and update scheduled and fused together.
   Each buffer the graph reads is traced back to where a replay will find it: an argument, a tensor
   that held it when the call began (a parameter, a state tensor, a gradient), a host input (the
   random generator's counter, a learning rate; see framework/tracing.py), or a constant.
3. A trace is trusted once two consecutive calls with the same key traced to the same program
   (same plan, same sources, same targets): the first call of a step often differs (optimizer state
   does not exist yet), and a Python value that changes every call (a host-computed scalar nobody
   declared) shows up here instead of being silently frozen.
4. Replay: resolve the sources, `compiler.realize.execute` the plan (a prepared launch list; on a GPU
   the same list is what a CUDA graph would capture), point the targets at the new buffers, rebuild
   the returned structure.

Limits (documented in docs/compile.md): Python side effects and control flow inside the function
happen at trace time only; values cannot be read into Python inside it (a clear TraceError);
returned tensors carry no autograd history.
"""
from __future__ import annotations

import functools
import gc
import hashlib
import time
import warnings
import weakref
from sys import getrefcount

from ember.compiler import Node, debug as cdebug
from ember.compiler.buffer import exported

from . import tracing
from .tensor import Tensor, realize

__all__ = ["compile"]

_MAX_TRACES = 8        # unconfirmed traces in a row before giving up and running eagerly
_MAX_PROGRAMS = 4      # trusted programs kept per guard key (one per train/eval state, say)


def compile(fn=None, *, fullgraph: bool = False, dynamic=None, mode=None, backend=None, disable: bool = False):
    """Compile `fn` (a training step, an inference function or a Module) for replay.

    Usable as `ember.compile(step)`, `@ember.compile`, `@ember.compile(fullgraph=True)` or
    `ember.compile(model)`.

    >>> @ember.compile
    ... def step(x, y):
    ...     opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step()
    ...     return loss
    """
    if fn is None:
        return lambda f: compile(f, fullgraph=fullgraph, dynamic=dynamic, mode=mode, backend=backend,
                                 disable=disable)
    if disable:
        return fn
    if isinstance(fn, CompiledFunction):
        return fn
    if dynamic:
        warnings.warn("ember.compile(dynamic=True): symbolic shapes are not supported yet; each new batch size "
                      "compiles its own variant once (then cached in memory and on disk)", stacklevel=2)
    return CompiledFunction(fn, dynamic=dynamic)


class CompiledFunction:
    """The callable `ember.compile` returns; `cache_info()` tells hits, misses and variants."""

    def __init__(self, fn, dynamic=None):
        from .nn.module import Module
        self._fn = fn
        self._module = fn if isinstance(fn, Module) else None
        self._variants: dict = {}
        self.hits = self.misses = 0
        self.dynamic = dynamic
        functools.update_wrapper(self, fn if not isinstance(fn, Module) else type(fn).forward, updated=())

    def __getattr__(self, name):  # a compiled module still looks like the module
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["_fn"], name)

    def cache_info(self) -> dict:
        return {"hits": self.hits, "misses": self.misses,
                "variants": sum(len(v.programs) for v in self._variants.values())}

    def __call__(self, *args, **kwargs):
        if tracing.current is not None:   # called from inside another trace: just inline it
            return self._fn(*args, **kwargs)
        key = _guard_key(args, kwargs)
        var = self._variants.get(key)
        if var is None:
            var = self._variants[key] = _Variant()
            _log(self.__name__, f"new variant: {_describe_miss(key, self._variants)}")
        for prog in var.programs:          # e.g. one program per train/eval mode
            if prog.guard_failure() is None:
                self.hits += 1
                return prog.replay(args, kwargs)
        if var.programs and var.last is None:
            _log(self.__name__, f"retrace: {var.programs[-1].guard_failure()}")
            var.traces = 0
        self.misses += 1
        if var.traces >= _MAX_TRACES:
            return self._fn(*args, **kwargs)
        var.traces += 1
        prog = _trace(self._fn, args, kwargs)
        if var.last is not None and var.last.signature == prog.signature:
            var.programs = var.programs[-(_MAX_PROGRAMS - 1):] + [prog]
            var.last = None                 # trusted: replay from the next call
            return prog.result
        if var.last is not None:
            _log(self.__name__, f"traced to a different program than its previous call "
                                f"({_diff(var.last.signature, prog.signature)}); tracing again")
        if var.traces >= _MAX_TRACES:
            _log(self.__name__, "traces differently every call; running it eagerly from now on")
        var.last = prog
        return prog.result


class _Variant:
    """The programs traced for one guard key: trusted ones (`programs`, each with its own guards,
    e.g. train and eval mode) and the latest untrusted trace (`last`) awaiting confirmation."""

    def __init__(self):
        self.programs, self.last, self.traces = [], None, 0


def _log(name: str, msg: str) -> None:
    cdebug.record_recompile(name, msg)   # EMBER_DEBUG=1 prints it; `ember explain` lists it


# -- guards ---------------------------------------------------------------------------------------

def _guard_key(args, kwargs) -> tuple:
    return tuple(_guard_of(a) for a in args) + tuple((k, _guard_of(v)) for k, v in sorted(kwargs.items()))


def _guard_of(a):
    if isinstance(a, Tensor):
        return ("tensor", a.shape, a.dtype.name, a.device, a.requires_grad)
    if isinstance(a, (bool, int, float, str, type(None))):
        return (type(a).__name__, a)
    if isinstance(a, (tuple, list)):
        return (type(a).__name__,) + tuple(_guard_of(x) for x in a)
    if isinstance(a, dict):
        return ("dict",) + tuple((k, _guard_of(v)) for k, v in sorted(a.items()))
    return ("object", id(a))


_SIG_PARTS = ("the kernels' graph or where input buffers come from", "the host steps (collectives)",
              "which tensors are updated", "which gradients are set", "what is returned",
              "which modules ran in which mode")


def _diff(a: tuple, b: tuple) -> str:
    return ", ".join(name for name, x, y in zip(_SIG_PARTS, a, b) if x != y) or "same"


def _describe_miss(key, variants) -> str:
    others = [k for k in variants if k != key]
    if not others:
        return "first call"
    prev = others[-1]
    if len(prev) != len(key):
        return f"{len(key)} arguments instead of {len(prev)}"
    for i, (a, b) in enumerate(zip(prev, key)):
        if a != b:
            return f"argument {i} changed: {_fmt_guard(a)} -> {_fmt_guard(b)}"
    return "guards differ"


def _fmt_guard(g) -> str:
    if g[0] == "tensor":
        return f"tensor{list(g[1])} {g[2]} on {g[3]}" + (" requires_grad" if g[4] else "")
    if g[0] == "object":
        return "another object"
    return repr(g[1]) if len(g) == 2 else repr(g)


# -- tracing --------------------------------------------------------------------------------------

class _Trace:
    """What a traced call did to tensors, recorded by hooks installed on Tensor for the duration of
    the trace only (no cost outside it), plus what the framework reports (framework/tracing.py)."""

    def __init__(self, arg_tensors: list):
        self.arg_tensors = arg_tensors
        self.host: list = []       # (node, role, fn) in call order
        self.modules: dict = {}    # id -> module that ran
        self.created: set = set()  # ids of tensors made during the call
        self.made: list = []       # their weakrefs, in creation order (deterministic target order)
        self.changed: dict = {}    # id -> (tensor, node, grad) when the call first rebinds it / sets .grad
        self.holders: dict = {}    # id(buffer node) -> an existing tensor that held it when read
        self.requested: list = []  # tensors realize() was asked for (computed at the next boundary)
        self.segments: list = []   # _Segments ended by host steps (boundary), in call order
        self.calls: list = []      # (name, fn, input refs) of each host step
        self.produced: dict = {}   # id(buffer) -> ("seg" | "call", k, j): computed during the call
        self.device_of: dict = {}  # id(node) -> device of a tensor holding it
        self.keep: list = []       # every produced buffer, alive until the trace ends (unique ids)

    def ref_of(self, node):
        """Where a replay finds this node's value if the call computed it before its end."""
        return self.produced.get(id(node.arg)) if node.realized else None

    def boundary(self, name: str, fn, inputs: list) -> list:
        """Host work on values in the middle of the call (tracing.host_call): compute `inputs`
        (and whatever realize() was asked for so far) as one segment, run `fn` on their buffers,
        and remember both, so that a replay runs segment, host step, next segment. Returns fn's
        output buffers."""
        # an input the call did not compute (an argument, a parameter) passes through an identity
        # node, so that it is a segment output too and a replay finds it in the same place
        inputs = [t if not t.node.realized or self.ref_of(t.node) else
                  Tensor._wrap(Node.make("contiguous", (t.node,)), t.device) for t in inputs]
        wanted = list(dict.fromkeys(inputs + self.requested))
        lazy = list(dict.fromkeys(t.node for t in wanted if not t.node.realized))
        for t in wanted:
            self.device_of.setdefault(id(t.node), t.device)
        self.requested = []
        seg = _Segment(self, lazy, len(self.segments))
        self.segments.append(seg)
        refs = [self.ref_of(t.node) for t in inputs]
        outs = fn([t.node.arg for t in inputs])
        k = len(self.calls)
        self.calls.append((name, fn, refs))
        for j, b in enumerate(outs):
            self.produced[id(b)] = ("call", k, j)
        self.keep += outs
        return outs

    def request(self, tensors) -> None:
        self.requested += [t for t in tensors if not t.node.realized]

    def touch(self, t) -> None:
        if id(t) not in self.created and id(t) not in self.changed:
            self.changed[id(t)] = (t, t.node, _GRAD_SLOT.__get__(t))

    def read(self, t) -> None:
        if t.node.op == "buffer" and id(t) not in self.created:
            self.holders.setdefault(id(t.node), t)

    def install(self):
        orig_init, orig_rebind, orig_apply = Tensor._init, Tensor._rebind, Tensor._apply
        trace = self

        def _init(t, node, device, requires_grad=False):
            trace.created.add(id(t))
            trace.made.append(weakref.ref(t))
            orig_init(t, node, device, requires_grad)

        def _rebind(t, out):
            trace.touch(t)
            return orig_rebind(t, out)

        def _apply(t, op, *others, arg=None):
            trace.read(t)
            for o in others:
                trace.read(o)
            return orig_apply(t, op, *others, arg=arg)

        def _set_grad(t, value):
            trace.touch(t)
            _GRAD_SLOT.__set__(t, value)

        Tensor._init, Tensor._rebind, Tensor._apply = _init, _rebind, _apply
        Tensor.grad = property(_GRAD_SLOT.__get__, _set_grad)
        return lambda: _restore(orig_init, orig_rebind, orig_apply)


_GRAD_SLOT = Tensor.__dict__["grad"]


def _restore(init, rebind, apply) -> None:
    Tensor._init, Tensor._rebind, Tensor._apply = init, rebind, apply
    Tensor.grad = _GRAD_SLOT


def _sole_owner(t) -> bool:
    """Nothing but `t` holds its current value, so a replay may overwrite it: no other tensor
    (a detach(), a view, a state_dict() snapshot), no lazy graph and no DLPack consumer can see it
    change, and ember's values stay immutable for everyone else. The counts are exact: t.node,
    the local name and getrefcount's argument for the node; node.arg, the replay's leaf list and
    the argument for the buffer."""
    node = t.node
    return getrefcount(node) == 3 and getrefcount(node.arg) == 3 and not exported(node.arg)


def _live_tensors() -> list:
    return [o for o in gc.get_objects() if issubclass(type(o), Tensor)]  # type(): no __class__ lookups


def _flatten(obj, out: list):
    """The structure of a returned value with tensors replaced by their index in `out`."""
    if isinstance(obj, Tensor):
        out.append(obj)
        return ("T", len(out) - 1)
    if isinstance(obj, (tuple, list)):
        return (type(obj), [_flatten(x, out) for x in obj])
    if isinstance(obj, dict):
        return (dict, [(k, _flatten(v, out)) for k, v in obj.items()])
    return ("V", obj)


def _unflatten(spec, tensors: list):
    kind, body = spec
    if kind == "T":
        return tensors[body]
    if kind == "V":
        return body
    if kind is dict:
        return {k: _unflatten(v, tensors) for k, v in body}
    items = [_unflatten(x, tensors) for x in body]
    return items if kind is list else kind(items) if kind is tuple else kind(*items)


def _trace(fn, args, kwargs) -> "_Program":
    arg_tensors: list = []
    _flatten((args, kwargs), arg_tensors)
    realize(*[t for t in arg_tensors if not t.node.realized])
    trace = _Trace(arg_tensors)
    for t in arg_tensors:
        trace.read(t)
    restore = trace.install()
    tracing.current = trace
    try:
        result = fn(*args, **kwargs)
    finally:
        tracing.current = None
        restore()
    returned: list = []
    spec = _flatten(result, returned)
    # the trace's results: every tensor the call changed, and every tensor it made that is still
    # alive (stored somewhere: a new .grad, new optimizer state) apart from the returned ones
    new_returned = {id(t) for t in returned}
    targets = [t for t, node, _ in trace.changed.values() if t.node is not node]
    grad_sets = [t for t, _, grad in trace.changed.values() if _GRAD_SLOT.__get__(t) is not grad]
    for ref in trace.made:
        t = ref()
        if t is not None and id(t) not in new_returned and (not t.node.realized or trace.ref_of(t.node)):
            targets.append(t)
    return _Program(trace, targets, grad_sets, returned, spec)


class _Segment:
    """One plan of a traced call and where each of its input buffers comes from. A call is one
    segment, or several when host work (a collective) must see values in the middle of it: each
    segment then ends where the host work needs its inputs (see _Trace.boundary)."""

    def __init__(self, trace, lazy: list, k: int):
        from ember.compiler.realize import execute, prepare
        devices = {trace.device_of.get(id(n), "cpu") for n in lazy}
        if len(devices) > 1:
            raise tracing.TraceError(f"a compiled function must compute on one device, this one used {sorted(devices)}")
        device = devices.pop() if devices else "cpu"
        # the plan cache is shared with eager realize; host data moves to the device once, in the leaf
        t0 = time.perf_counter()
        plan, leaves, leaf_bufs, cached = prepare(lazy, device) if lazy else (None, [], [], True)
        self.device, self.plan, self.arena, self.inplace = device, plan, None, []
        self.rebinds: list = []   # (tensor, output index) rebound to outputs, for in-place (set by _Program)
        host = {id(n): (role, fn) for n, role, fn in trace.host}
        arg_of = {id(t.node): i for i, t in enumerate(trace.arg_tensors)}
        holder = dict(trace.holders)
        grad_holder = {}
        for t, node, grad in trace.changed.values():
            if node.realized:
                holder[id(node)] = t       # a tensor the call rebound holds state: preferred
            if grad is not None and grad.node.realized:
                grad_holder[id(grad.node)] = t
        unresolved = {id(n) for n in leaves} - set(host) - set(arg_of) - set(holder) - set(grad_holder)
        if unresolved:   # read without going through Tensor._apply: find who holds them (slow, rare)
            for t in _live_tensors():
                if id(t.node) in unresolved and id(t) not in trace.created:
                    holder.setdefault(id(t.node), t)
        self.sources, sig = [], []
        for leaf in leaves:
            ref = trace.ref_of(leaf)
            if ref is not None:          # computed earlier in this call: an earlier segment or host step
                src = sig_src = ("env", ref)
            elif id(leaf) in host:
                src, sig_src = ("host", id(leaf)), ("host", host[id(leaf)][0])
            elif id(leaf) in arg_of:
                src = sig_src = ("arg", arg_of[id(leaf)])
            elif id(leaf) in holder:
                src, sig_src = ("owner", holder[id(leaf)]), ("owner", id(holder[id(leaf)]))
            elif id(leaf) in grad_holder:
                src, sig_src = ("grad", grad_holder[id(leaf)]), ("grad", id(grad_holder[id(leaf)]))
            else:   # made inside the function from Python data: frozen at trace time
                src = ("const", leaf.arg)
                sig_src = ("const", hashlib.sha256(leaf.arg.numpy().tobytes()).hexdigest())
            self.sources.append(src)
            sig.append(sig_src)
        self.leaf_meta = [(leaf.dtype, leaf.shape) for leaf in leaves]
        self.out_meta = [(n.dtype, n.shape) for n in lazy]
        # what guards check, prepared once: (is owner (else grad), tensor, dtype, shape) of the
        # tensors whose buffers are read
        self.captured = [(kind == "owner", src, dtype, tuple(shape)) for (kind, src), (dtype, shape)
                         in zip(self.sources, self.leaf_meta) if kind in ("owner", "grad")]
        self.signature = (id(plan), tuple(sig))   # plans are cached per graph structure
        # run this part of the traced call: its lazy nodes become the computed buffers
        bufs = execute(plan, leaf_bufs) if lazy else []
        if lazy:   # the debug surface (ember explain, EMBER_DEBUG) lists it like any realize
            cdebug.record_realize(plan, cached, time.perf_counter() - t0)
        for j, (n, buf) in enumerate(zip(lazy, bufs)):
            n.become_buffer(buf)
            trace.produced.setdefault(id(buf), ("seg", k, j))   # (an output may be a leaf's buffer)
        trace.keep += bufs

    def run(self, args: list, hosts: dict, env: dict) -> list:
        """Replay: the segment's output buffers, from this call's arguments, host inputs and the
        buffers computed earlier in the call (`env`)."""
        from ember.compiler.realize import execute
        leaf_bufs, pending = [], []
        for kind, src in self.sources:
            if kind == "owner":              # a tensor's buffer: the common case first
                t = src
            elif kind == "arg":
                t = args[src]
            elif kind == "grad":
                t = src.grad
            elif kind == "env":
                leaf_bufs.append(env[src])
                continue
            elif kind == "host":
                dtype, shape = self.leaf_meta[len(leaf_bufs)]
                leaf_bufs.append(tracing.host_buffer(hosts[src], dtype, shape).to(self.device))
                continue
            else:                            # const
                leaf_bufs.append(src)
                continue
            if t.node.op != "buffer":
                pending.append(t)
            leaf_bufs.append(t)
        if pending:
            realize(*pending)
        leaf_bufs = [b.node.arg if isinstance(b, Tensor) else b for b in leaf_bufs]
        if self.plan is None:
            return []
        if self.arena is None and self.device == "cpu":
            self._make_memory_plan(len(leaf_bufs))
        inplace = {slot: k for t, slot, k in self.inplace if _sole_owner(t)}
        return execute(self.plan, leaf_bufs, self.arena, inplace)

    def _make_memory_plan(self, n_leaves: int) -> None:
        """The arena of the replays, and which tensors' new values may be written over their old
        ones: a tensor the call rebinds (parameter, optimizer state, BatchNorm statistic) whose own
        buffer is the leaf the plan lets its new value overwrite (Arena.inplace_slots)."""
        from ember.compiler.realize import Arena
        self.arena = Arena(self.plan, n_leaves)
        leaf_of = {id(src): i for i, (kind, src) in enumerate(self.sources) if kind == "owner"}
        self.inplace = []
        for t, j in self.rebinds:
            src, i = self.plan.outputs[j]
            slot, leaf = n_leaves + i, leaf_of.get(id(t))
            if src == "tmp" and leaf in self.arena.inplace_slots.get(slot, ()):
                self.inplace.append((t, slot, leaf))
                del leaf_of[id(t)]


class _Program:
    """One traced call: its segments, the host steps between them, and where each result goes."""

    def __init__(self, trace, targets, grad_sets, returned, spec):
        lazy = list(dict.fromkeys([t.node for t in targets + returned if not t.node.realized]))
        for t in targets + returned:
            trace.device_of.setdefault(id(t.node), t.device)
        final = _Segment(trace, lazy, len(trace.segments))   # computes the trace's results
        self.segments, self.calls = trace.segments + [final], trace.calls
        self.host_fns = [(id(n), fn) for n, _, fn in trace.host]
        # where each result is found at a replay: ("seg", k, j) | ("call", k, j), or None for a
        # value the call did not compute (kept as it is)
        self.rebinds = [(t, trace.ref_of(t.node)) for t in targets]   # no node kept: see _sole_owner
        final.rebinds = [(t, ref[2]) for t, ref in self.rebinds if ref and ref[:2] == ("seg", len(trace.segments))]
        self.grad_sets = [(p, p.grad) for p in grad_sets]
        self.returned = [(trace.ref_of(t.node), t.node, t.device) for t in returned]
        self.spec = spec
        self.modules = [(m, m.training) for m in trace.modules.values()]
        self.grad_guards = [(t, t.grad is None) for seg in self.segments for kind, t in seg.sources if kind == "grad"] + \
                           [(p, trace.changed[id(p)][2] is None) for p in grad_sets]
        self.signature = (tuple(seg.signature for seg in self.segments), tuple(name for name, _, _ in self.calls),
                          tuple((id(t) if id(t) not in trace.created else "new", r) for t, r in self.rebinds),
                          tuple(id(p) for p in grad_sets), tuple(r for r, _, _ in self.returned),
                          tuple((id(m), tr) for m, tr in self.modules))
        self.result = _unflatten(spec, returned)

    @property
    def final(self) -> _Segment:
        return self.segments[-1]

    def guard_failure(self) -> str | None:
        """Why this program does not fit the current state of the world (None: it fits)."""
        for m, training in self.modules:
            if m.training != training:
                return f"{type(m).__name__}.training changed to {m.training}"
        for t, was_none in self.grad_guards:
            if (t.grad is None) != was_none:
                return f".grad of a tensor{list(t.shape)} is {'None' if t.grad is None else 'set'} now"
        for seg in self.segments:
            for owner, t, dtype, shape in seg.captured:
                n = (t if owner else t.grad).node
                if n.dtype is not dtype or tuple(n.shape) != shape:
                    return f"a captured tensor changed to {n.dtype.name}{list(n.shape)}"
        return None

    def replay(self, args, kwargs):
        arg_tensors: list = []
        _flatten((args, kwargs), arg_tensors)
        hosts = {nid: fn() for nid, fn in self.host_fns}   # in call order: the RNG advances as eagerly
        env: dict = {}
        for k, seg in enumerate(self.segments):
            for j, b in enumerate(seg.run(arg_tensors, hosts, env)):
                env["seg", k, j] = b
            if k < len(self.calls):         # the host step between segment k and k + 1
                _, fn, inputs = self.calls[k]
                for j, b in enumerate(fn([env[r] for r in inputs])):
                    env["call", k, j] = b
        nodes = {}

        def node(ref, dtype, shape):
            n = nodes.get(ref)
            if n is None:
                n = nodes[ref] = Node.make("buffer", arg=env[ref], dtype=dtype, shape=shape)
            return n
        for t, ref in self.rebinds:
            if ref is not None:
                t.node = node(ref, t.dtype, t.shape)
        for p, g in self.grad_sets:
            p.grad = g
        out = [Tensor._wrap(n if ref is None else node(ref, n.dtype, n.shape), device) for ref, n, device in self.returned]
        return _unflatten(self.spec, out)
