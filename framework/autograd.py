"""Autograd as a graph transformation: backward() builds gradient nodes, it runs nothing.

Each value that requires grad carries a record (`Record`): the primitive that made it, that
primitive's argument, the graph nodes of its inputs and output, and its inputs' records. Records
belong to values, not to Tensor objects, so an in-place update (which gives the tensor a new
value) leaves earlier uses pointing at the old one — PyTorch's version semantics without counters.

`backward` walks records from the output in reverse topological order and applies each
primitive's VJP rule (compiler/autodiff.py). The rules build ordinary lazy tensors, so forward,
backward and whatever consumes the gradients are scheduled and fused together when something is
realized; with `create_graph=True` the rules are themselves recorded, giving higher derivatives.

    x = ember.tensor([1.0, 2.0], requires_grad=True)
    (x.exp() * 3).sum().backward()
    x.grad          # lazy until printed: 3*exp(x)
"""
from __future__ import annotations

import weakref

from ember.compiler import Node
from ember.compiler.autodiff import VJP
from ember.compiler.ir import const, toposort

from . import tensor as _tensor   # circular (tensor imports this module): used at call time only
from .autograd_mode import is_grad_enabled, no_grad, set_grad_enabled
from .errors import ShapeError


class Record:
    """The autograd history of one value."""
    __slots__ = ("op", "arg", "in_nodes", "in_recs", "out_node", "leaf", "hooks", "rule", "freed", "__weakref__")

    def __init__(self, op=None, arg=None, in_nodes=(), in_recs=(), out_node=None, leaf=None, rule=None):
        self.op, self.arg, self.in_nodes, self.in_recs, self.out_node = op, arg, in_nodes, in_recs, out_node
        self.leaf, self.hooks, self.rule, self.freed = leaf, [], rule, False

    @staticmethod
    def for_leaf(tensor) -> "Record":
        return Record(leaf=weakref.ref(tensor))


def record(op: str, arg, inputs, out) -> None:
    """Called by Tensor._apply: attach history to `out` if any input needs gradients."""
    if not is_grad_enabled():   # first: the backward pass and optimizer steps run without grad
        return
    rule = VJP.get(op)
    if rule is None or out.node.dtype.kind != "f":
        return
    recs = tuple([t._ctx for t in inputs])
    if recs.count(None) == len(recs):
        return
    out._ctx = Record(op, arg, tuple([t.node for t in inputs]), recs, out.node, None, rule)


class _Builder:
    """What the VJP rules build with: primitives applied to tensors (recorded when create_graph)."""

    def __init__(self, device):
        self.device = device

    def ap(self, op, x, *others, arg=None):
        return x._apply(op, *others, arg=arg)

    def _wrap(self, node):
        return _tensor.Tensor._wrap(node, self.device)

    def const(self, value, like):
        return self._wrap(const(value, like.dtype, tuple(like.shape)))

    def zeros(self, shape, like):
        return self._wrap(const(0, like.dtype, tuple(shape)))

    def iota(self, n, like):
        return self._wrap(Node.make("iota", arg=n, dtype=like.dtype))


def _view(node, rec, device):
    t = _tensor.Tensor._wrap(node, device)
    t._ctx = rec
    return t


def _toposort(roots: list[Record]) -> list[Record]:
    return toposort(roots, lambda r: [s for s in r.in_recs if s is not None])


def _run(outputs, grad_outputs, create_graph: bool, retain_graph: bool, targets=None):
    """Propagate cotangents from outputs. Accumulates into leaves' .grad unless `targets`
    (records whose cotangents to return) is given."""
    roots = [t._ctx for t in outputs]
    grads: dict = {}
    for r, g in zip(roots, grad_outputs):
        grads[id(r)] = g if id(r) not in grads else grads[id(r)] + g
    results: dict = {}
    device = outputs[0].device
    builder = _Builder(device)
    want = None if targets is None else {id(t) for t in targets}
    with set_grad_enabled(create_graph):
        for r in reversed(_toposort(roots)):
            g = grads.pop(id(r), None)
            if g is None:
                continue
            for hook in r.hooks:
                new = hook(g)
                if new is not None:
                    g = new
            if want is not None and id(r) in want:
                results[id(r)] = g
            if r.leaf is not None:
                t = r.leaf()
                if want is None and t is not None:
                    g = g if create_graph else g.detach()
                    if g.device != t.device:   # a leaf used on another device through .to()
                        g = g.to(t.device)
                    t.grad = g if t.grad is None else t.grad + g
                continue
            if r.freed:
                raise RuntimeError("Trying to backward through the graph a second time (or directly access saved "
                                   "tensors after they have already been freed). Specify retain_graph=True if you "
                                   "need to backward through the graph a second time.")
            xs = [_view(n, rec, device) for n, rec in zip(r.in_nodes, r.in_recs)]
            out = _view(r.out_node, r, device)
            in_grads = r.rule(builder, g, out, xs, r.arg)
            for rec, ig in zip(r.in_recs, in_grads):
                if rec is None or ig is None:
                    continue
                grads[id(rec)] = ig if id(rec) not in grads else grads[id(rec)] + ig
            if not retain_graph:
                r.freed = True
    return results


def _check_outputs(outputs, grad_outputs):
    from .tensor import Tensor
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    gs = []
    for k, (o, g) in enumerate(zip(outputs, grad_outputs)):
        if o._ctx is None:
            raise RuntimeError(f"element {k} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if o.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = _Builder(o.device).const(1.0, o)
        elif tuple(g.shape) != tuple(o.shape):
            raise ShapeError(f"Mismatch in shape: grad_output[{k}] has a shape of {g.shape} and output[{k}] "
                             f"has a shape of {o.shape}.")
        elif g.dtype is not o.dtype:
            g = g.to(o.dtype)
        gs.append(g)
    return outputs, gs


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None) -> None:
    """Accumulate d(tensors)/d(leaf) into each leaf's `.grad` (lazily: nothing runs here)."""
    outputs, gs = _check_outputs(tensors, grad_tensors)
    retain = create_graph if retain_graph is None else retain_graph
    from . import pending   # the loss is computed with the step that uses these gradients
    pending.defer(*outputs)
    if inputs is not None:
        inputs = [inputs] if not isinstance(inputs, (list, tuple)) else list(inputs)
        res = _run(outputs, gs, create_graph, retain, targets=[t._ctx for t in inputs])
        for t in inputs:
            g = res.get(id(t._ctx))
            if g is not None:
                g = g if create_graph else g.detach()
                if g.device != t.device:
                    g = g.to(t.device)
                t.grad = g if t.grad is None else t.grad + g
        return
    _run(outputs, gs, create_graph, retain)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False,
         materialize_grads=False):
    """Gradients of `outputs` with respect to `inputs`, returned (not accumulated)."""
    from .tensor import Tensor
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    for t in inputs:
        if t._ctx is None:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    outputs, gs = _check_outputs(outputs, grad_outputs)
    retain = create_graph if retain_graph is None else retain_graph
    res = _run(outputs, gs, create_graph, retain, targets=[t._ctx for t in inputs])
    out = []
    for t in inputs:
        g = res.get(id(t._ctx))
        if g is None:
            if not (allow_unused or materialize_grads):
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the graph. "
                                   "Set allow_unused=True if this is the desired behavior.")
            if materialize_grads:
                g = _Builder(t.device).zeros(tuple(t.shape), like=t)
        elif not create_graph:
            g = g.detach()
        out.append(g)
    return tuple(out)


class _Handle:
    def __init__(self, hooks, fn):
        self.hooks, self.fn = hooks, fn

    def remove(self):
        if self.fn in self.hooks:
            self.hooks.remove(self.fn)


def register_hook(tensor, fn) -> _Handle:
    if tensor._ctx is None:
        raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
    tensor._ctx.hooks.append(fn)
    return _Handle(tensor._ctx.hooks, fn)


class GradFn:
    """What `Tensor.grad_fn` shows: the primitive that made a value."""

    def __init__(self, rec: Record):
        self._rec = rec

    def name(self) -> str:
        op = self._rec.op or "Function"
        return "".join(p.capitalize() for p in op.split("_")) + "Backward0"

    @property
    def next_functions(self):
        return tuple((GradFn(r) if r is not None and r.leaf is None else None, 0) for r in self._rec.in_recs)

    def __repr__(self):
        return f"<{self.name()}>"


def zero_grad(params, set_to_none: bool = True) -> None:
    """Reset the gradients of `params`: drop them (PyTorch's default) or set them to zeros.
    Module.zero_grad and Optimizer.zero_grad."""
    for p in params:
        if p.grad is not None:
            if set_to_none:
                p.grad = None
            else:
                from .creation import zeros_like
                p.grad = zeros_like(p.grad)


# ---- user-defined ops with custom gradients -------------------------------------------------

def with_rule(out, inputs: tuple, name: str, rule):
    """`out` (computed from `inputs`) with its gradient given by `rule(b, g, out, xs, arg)` instead
    of the rules of the primitives that computed it: e.g. ReLU's gradient from its output, so the
    backward pass keeps the output (which the next layer keeps anyway), not also the input."""
    if not is_grad_enabled() or all(t._ctx is None for t in inputs):
        return out
    out = out.detach()
    out._ctx = Record(name, None, tuple(t.node for t in inputs), tuple(t._ctx for t in inputs), out.node, rule=rule)
    return out


class FunctionCtx:
    def __init__(self):
        self.saved_tensors = ()
        self.needs_input_grad = ()

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


class Function:
    """Subclass with static `forward(ctx, *args)` and `backward(ctx, grad_output)`; call `.apply`."""

    @classmethod
    def apply(cls, *args):
        from .tensor import Tensor
        ctx = FunctionCtx()
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        with no_grad():
            out = cls.forward(ctx, *args)
        tensors = [a for a in args if isinstance(a, Tensor)]
        if is_grad_enabled() and any(t._ctx is not None for t in tensors) and out.dtype.is_float:
            positions = [k for k, a in enumerate(args) if isinstance(a, Tensor)]

            def rule(b, g, o, xs, arg):
                gs = cls.backward(ctx, g)
                gs = gs if isinstance(gs, tuple) else (gs,)
                return [gs[k] if k < len(gs) else None for k in positions]
            out = out.detach()
            out._ctx = Record(cls.__name__.lower(), None, tuple(t.node for t in tensors),
                              tuple(t._ctx for t in tensors), out.node, rule=rule)
        return out
