"""The Optimizer base: PyTorch's param_groups/state/state_dict protocol over lazy, fused updates.

A subclass only says how ONE parameter's new value and new state are computed (`_update`), as lazy
ember expressions. `step()` builds those expressions for every parameter of every group, rebinds
each parameter and state tensor in place (`_rebind`: parameters stay the same leaf objects), and
then realizes all of them with ONE `ember.realize` call, so the compiler schedules the whole update
together: the update of many parameters becomes a few fused kernels, not one kernel per parameter
per op, and it fuses with the backward pass that produced the gradients.

Step-dependent scalars (learning rate, momentum/betas, bias corrections) enter the graph as 0-dim
buffers, not constants: the compiled plan is keyed by graph structure, with buffers abstracted to
dtype and shape, so a learning-rate schedule or Adam's bias correction reuses one plan every step.
Hyperparameters that rarely change (eps, weight decay, dampening) stay constants, which lets the
compiler fold them.

    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = model(x).sum(); loss.backward()
    opt.step(); opt.zero_grad()
"""
from __future__ import annotations

import copy
import warnings
from collections import defaultdict
from typing import Any, Callable

import numpy as np

from ember.compiler import Buffer, Node
from ember.compiler.ir import const, expand_to

from .. import pending, tracing
from ..autograd_mode import enable_grad, no_grad
from ..tensor import Tensor, realize
from ..tracing import host_input

__all__ = ["Optimizer", "required"]


class _Required:
    """Marks a hyperparameter every param group must give (PyTorch's `optim.optimizer.required`)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


def _scalar_tensor(value: float, dtype, device: str) -> Tensor:
    """A 0-dim buffer holding `value` (rounded to `dtype`, as PyTorch rounds a Python scalar)."""
    arr = np.array(value, dtype=dtype.np)
    buf = Buffer.from_array(arr)
    return Tensor._wrap(Node.make("buffer", arg=buf, dtype=buf.dtype, shape=()), device)


class _Expr:
    """One parameter's lazy value in an update formula. Operands always share the parameter's
    shape and dtype, so operators go straight to primitives (`_apply`), skipping the promotion and
    broadcasting logic of the public operators: the update is rebuilt every step, and this keeps
    the per-step graph-building cost down. Python numbers become constants of the same shape."""
    __slots__ = ("t", "sc")

    def __init__(self, t: Tensor, sc: "_Scalars"):
        self.t, self.sc = t, sc

    def _of(self, other) -> Tensor:
        return other.t if isinstance(other, _Expr) else self.sc.const(other, self.t)

    def _ap(self, op: str, *others) -> "_Expr":
        return _Expr(self.t._apply(op, *[self._of(o) for o in others]), self.sc)

    # the binary operators call _apply directly (no _ap, no list): ~15 of them per parameter per step
    def __add__(self, o):
        return _Expr(self.t._apply("add", o.t if isinstance(o, _Expr) else self.sc.const(o, self.t)), self.sc)

    def __mul__(self, o):
        return _Expr(self.t._apply("mul", o.t if isinstance(o, _Expr) else self.sc.const(o, self.t)), self.sc)

    def __truediv__(self, o):
        return _Expr(self.t._apply("div", o.t if isinstance(o, _Expr) else self.sc.const(o, self.t)), self.sc)

    def __neg__(self):
        return _Expr(self.t._apply("neg"), self.sc)

    def __sub__(self, o):
        return self + (-o)

    def __rsub__(self, o):
        return -self + o

    def __rtruediv__(self, o):
        return _Expr(self._of(o)._apply("div", self.t), self.sc)

    __radd__, __rmul__ = __add__, __mul__

    def sqrt(self):
        return self._ap("sqrt")

    def maximum(self, o):
        return self._ap("max", o)


class _Scalars:
    """Per-step source of the scalars in update formulas, expanded to a parameter's shape.

    `scalar(group, role, fn, like)`: a value the host computes from the param group (lr, momentum,
    betas) as a 0-dim BUFFER, `fn(group)`: the compiled plan is keyed by graph structure with buffers
    abstracted to dtype and shape, so a new learning rate reuses the plan, and under ember.compile it
    is a host input that every replay reads again from the group. One buffer per (group, role, dtype)
    is shared by all parameters. `const(value, like)`: a fixed hyperparameter (eps, weight decay) as
    a constant, which the compiler may fold.

    `cache` (the optimizer's, kept across steps) spares the eager loop rebuilding the same leaves
    every step: a host value equal (bytewise) to the last step's reuses that step's buffer, and the
    expansions of such buffers and of constants to each parameter's shape are kept. Values are
    immutable, so sharing them between steps changes no result. While ember.compile traces there
    is no cache (Optimizer.step) and host inputs are always fresh: the trace must see each made."""

    def __init__(self, cache: dict | None = None):
        cache = {} if cache is None else cache
        self._hosts: dict = cache.setdefault("hosts", {})        # key -> (group, value bytes, tensor)
        self._expanded: dict = cache.setdefault("expanded", {})  # (node, shape, device) -> tensor
        self._buffers: dict = {}
        self._memo: dict = {}

    def memo(self, key, make):
        """`make()`, once per key and step: values every parameter with the same inputs shares
        (the step count, bias corrections), built once rather than looked up again node by node."""
        out = self._memo.get(key)
        if out is None:
            out = self._memo[key] = make()
        return out

    def host(self, group: dict, role: str, fn, like: "_Expr", dtype=None) -> Tensor:
        """The 0-dim tensor `fn(group)` (dtype: the parameter's unless given)."""
        t = like.t
        dtype = dtype or t.dtype
        key = (role, id(group), dtype, t.device)
        out = self._buffers.get(key)
        if out is None:
            out = self._buffers[key] = self._host(key, group, role, fn, dtype, t.device)
        return out

    def _host(self, key, group: dict, role: str, fn, dtype, device: str) -> Tensor:
        if tracing.current is not None:
            return host_input(role, lambda: fn(group), dtype, (), device)
        value = np.asarray(fn(group), dtype=dtype.np).tobytes()   # what the buffer would hold
        last = self._hosts.get(key)
        if last is not None and last[0] is group and last[1] == value:
            return last[2]
        out = host_input(role, lambda: fn(group), dtype, (), device)
        self._hosts[key] = (group, value, out)
        return out

    def scalar(self, group: dict, role: str, fn, like: "_Expr") -> _Expr:
        return self.expand(self.host(group, role, fn, like), like)

    def expand(self, t0: Tensor, like: "_Expr") -> _Expr:
        """A 0-dim tensor as an operand of `like`'s shape (cast to its dtype)."""
        return _Expr(self._expand(self.cast(t0, like).node, like.t), self)

    @staticmethod
    def cast(t0: Tensor, like: "_Expr") -> Tensor:
        """`t0` in `like`'s dtype."""
        return t0 if t0.dtype is like.t.dtype else t0._apply("cast", arg=like.t.dtype)

    def const(self, value, t: Tensor) -> Tensor:
        return self._expand(const(value, t.dtype), t)

    def _expand(self, node: Node, t: Tensor) -> Tensor:
        key = (node, t.node.shape, t.device)   # the node itself, not its id: kept alive while cached
        out = self._expanded.get(key)
        if out is None:
            out = self._expanded[key] = Tensor._wrap(expand_to(node, t.node.shape), t.device)
        return out

    def done(self) -> None:
        """End of the step: keep the expansions the next step may reuse (of constants and of the
        host buffers kept), drop those of this step's own values."""
        kept = {id(t.node) for _, _, t in self._hosts.values()}
        for key in [k for k in self._expanded if k[0].op != "const" and id(k[0]) not in kept]:
            del self._expanded[key]

    def zeros(self, like: _Expr) -> _Expr:
        return _Expr(self.const(0.0, like.t), self)

    def wrap(self, t: Tensor) -> _Expr:
        return _Expr(t, self)


class Optimizer:
    """Base class of all optimizers (PyTorch's `torch.optim.Optimizer`).

    Subclasses give `defaults` and implement `_update(group, p, grad, state, scalars)`, which returns
    the new parameter value and a dict of new state values, all lazy.

    >>> opt = ember.optim.SGD([w], lr=0.1)
    >>> opt.param_groups[0]["lr"]
    0.1
    """

    realize_grads = True   # see step()

    def __init__(self, params, defaults: dict[str, Any]):
        self.defaults = defaults
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {_typename(params)}")
        self.state: defaultdict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        groups = list(params)
        if len(groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    # -- groups --------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones take the defaults).

        >>> opt.add_param_group({"params": [head.weight], "lr": 1e-4})
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering of "
                            "tensors in sets will change between runs. Please use a list instead.")
        params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            param_group["param_names"] = names
        param_group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is " + _typename(p))
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        if len({id(p) for p in params}) != len(params):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; in future, this will "
                          "cause an error; see github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)
        self._init_group_state(param_group)

    def _init_group_state(self, group: dict) -> None:
        """State a subclass creates eagerly when a group is added (Adagrad's accumulators)."""

    # -- gradients -----------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all parameters: drop them (default) or set them to zeros."""
        from ..autograd import zero_grad
        zero_grad((p for g in self.param_groups for p in g["params"]), set_to_none)

    # -- the update ----------------------------------------------------------------------------
    def step(self, closure: Callable | None = None):
        """One optimization step for every parameter that has a gradient, realized together.

        `closure` (optional) re-evaluates the model and returns the loss; it runs with grad enabled.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        targets: list[Tensor] = []
        with no_grad():
            # the scalar cache is not state (never saved); ember.compile's traces get none: a
            # tensor a trace makes and something keeps alive is one of the trace's results
            sc = _Scalars(self.__dict__.setdefault("_scalar_cache", {}) if tracing.current is None else None)
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    grad = p.grad
                    if grad.node.shape != p.node.shape or grad.node.dtype is not p.node.dtype:
                        raise RuntimeError(f"gradient ({grad.dtype.name}{list(grad.shape)}) does not match its "
                                           f"parameter ({p.dtype.name}{list(p.shape)})")
                    known = self.state.get(p)   # (get: the defaultdict makes no entry)
                    state = {} if known is None else known
                    new_p, new_state = self._update(group, sc.wrap(p), sc.wrap(grad), state, sc)
                    if new_state and known is None:   # as in PyTorch: no entry for stateless updates
                        self.state[p] = state
                    p._rebind(new_p.t)
                    targets.append(p)
                    for k, v in new_state.items():
                        v = v.t if isinstance(v, _Expr) else v
                        old = state.get(k)
                        if isinstance(old, Tensor) and old.node.shape == v.node.shape \
                                and old.node.dtype is v.node.dtype:
                            old._rebind(v)   # in place: references to the state tensor see the new value
                        else:  # a new tensor object: never alias the gradient or the caller's tensors
                            state[k] = old = Tensor._wrap(v.node, v.device)
                        targets.append(old)
            sc.done()
        # The gradients are realized too (they are computed anyway; storing them costs one write):
        # a lazy p.grad left behind would keep the step's forward graph alive and be recomputed
        # from it if read again, and gradients accumulated over steps without zero_grad would
        # grow a graph that recomputes every earlier step.
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None] \
            if self.realize_grads else []
        # with the step's other values: the loss backward() started from, BatchNorm statistics
        realize(*targets, *grads, *pending.take())
        return loss

    def _update(self, group: dict, p: _Expr, grad: _Expr, state: dict, sc: _Scalars):
        """The new value of `p` and of its state entries (lazy), from its gradient."""
        raise NotImplementedError

    @staticmethod
    def _state(state: dict, key: str, p: _Expr, sc: _Scalars) -> _Expr:
        """A state tensor as an update operand; zeros before the first step (as PyTorch initialises)."""
        t = state.get(key)
        return sc.wrap(t) if t is not None else sc.zeros(p)

    @staticmethod
    def _next_step(state: dict, p: _Expr) -> Tensor:
        """The advanced per-parameter step count (a 0-dim tensor, as PyTorch keeps it), computed in
        the graph so a compiled step needs no host read of it.

        Parameters whose counts start together share one first buffer, so their counts stay one
        graph node from then on (old + 1 of one node is one node): everything derived from the
        count (bias corrections) is then built once per step for all of them (`_Scalars.memo`).
        Each parameter still has its own state tensor; a count set apart (load_state_dict) is
        simply not shared."""
        old, sc, device = state.get("step"), p.sc, p.t.device
        if old is None:
            dtype = _step_dtype()
            return sc.memo(("step", None, dtype, device), lambda: _scalar_tensor(1.0, dtype, device))
        return sc.memo(("step", old.node, old.device),
                       lambda: old._apply("add", Tensor._wrap(const(1, old.dtype), old.device)))

    # -- state_dict ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """PyTorch's format: parameters replaced by their integer index across all groups.

        >>> opt.state_dict()["param_groups"][0]["params"]
        [0, 1]
        """
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            packed = {k: v for k, v in g.items() if k != "params"}
            for p in g["params"]:
                index.setdefault(id(p), len(index))
            packed["params"] = [index[id(p)] for p in g["params"]]
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore state saved by `state_dict()` (possibly after ember.save/ember.load)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for g, sg in zip(self.param_groups, saved_groups):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        id_map = {old: p for g, sg in zip(self.param_groups, saved_groups) for old, p in zip(sg["params"], g["params"])}
        state: defaultdict = defaultdict(dict)
        for k, v in state_dict["state"].items():
            key = int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k
            if key in id_map:
                p = id_map[key]
                state[p] = {name: _cast_state(name, val, p) for name, val in v.items()}
            else:
                state[key] = copy.deepcopy(v)
        new_groups = []
        for g, sg in zip(self.param_groups, saved_groups):
            ng = {k: copy.deepcopy(v) for k, v in sg.items() if k != "params"}
            if isinstance(g.get("betas"), tuple) and isinstance(ng.get("betas"), list):
                ng["betas"] = tuple(ng["betas"])
            ng["params"] = g["params"]
            if "param_names" in g and "param_names" not in sg:
                ng["param_names"] = g["param_names"]
            new_groups.append(ng)
        self.state, self.param_groups = state, new_groups

    # -- misc ------------------------------------------------------------------------------------
    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        lines = [self.__class__.__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {g[k]}" for k in sorted(g) if k != "params"]
        lines.append(")")
        return "\n".join(lines)


def _check_nonneg(**values) -> None:
    """PyTorch's argument checks: 'Invalid learning rate: -1' etc."""
    names = {"lr": "learning rate", "momentum": "momentum value", "weight_decay": "weight_decay value",
             "epsilon": "epsilon value", "alpha": "alpha value", "lr_decay": "lr_decay value",
             "initial_accumulator_value": "initial_accumulator_value value"}
    for k, v in values.items():
        if not 0.0 <= v:
            raise ValueError(f"Invalid {names[k]}: {v}")


def _lerp(start: _Expr, end: _Expr, group: dict, role: str, weight_fn, sc: _Scalars) -> _Expr:
    """start + weight * (end - start), with PyTorch's two formulas (exact at weight 0 and 1);
    weight = weight_fn(group)."""
    weight = weight_fn(group)
    if abs(weight) < 0.5:
        return start + sc.scalar(group, role, weight_fn, start) * (end - start)
    dt = start.t.dtype.np
    return end - (end - start) * sc.scalar(group, "1-" + role, lambda g: 1 - float(np.array(weight_fn(g), dtype=dt)),
                                           start)


def _bias_correction(group: dict, role: str, beta_fn, state: dict, like: _Expr, sc: _Scalars) -> Tensor:
    """1 - beta ** step for the step being taken, as a 0-dim float64 tensor computed in the graph
    (PyTorch computes it in float64 on the host). Written as 1 - beta * beta ** old_step so it reads
    the stored step count rather than the new one, which this same kernel writes."""
    from ember.compiler import dtypes as D
    beta = sc.host(group, role, beta_fn, like, D.float64)
    one = Tensor._wrap(const(1.0, D.float64), beta.device)
    power = beta
    old = state.get("step")
    if old is not None:
        power = beta._apply("mul", beta._apply("pow", old._apply("cast", arg=D.float64)))
    return one._apply("add", power._apply("neg"))


def _typename(x) -> str:
    if isinstance(x, Tensor):
        return f"ember.{x.dtype.name}Tensor"
    return type(x).__module__ + "." + type(x).__qualname__ if type(x).__module__ != "builtins" else type(x).__name__


def _step_dtype():
    from ember.compiler import dtypes as D
    from ..tensor import get_default_dtype
    return D.float64 if get_default_dtype() is D.float64 else D.float32


def _cast_state(name: str, value, p: Tensor):
    """A loaded state value as PyTorch keeps it: 'step' stays as saved; other floating tensors take
    the parameter's dtype. A new tensor object (values are immutable, so no copy of the data)."""
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    if name != "step" and value.dtype.is_float and p.dtype.is_float:
        value = value.to(dtype=p.dtype) if value.dtype is not p.dtype else value
    if tuple(value.shape) != tuple(p.shape) and name != "step" and value.ndim != 0:
        raise ValueError(f"loaded state '{name}' has shape {list(value.shape)}, but its parameter has shape "
                         f"{list(p.shape)}")
    return Tensor._wrap(value.node, value.device)

