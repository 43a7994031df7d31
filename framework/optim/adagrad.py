"""Adagrad (torch.optim.Adagrad): learning-rate decay, initial accumulator value, weight decay."""
from __future__ import annotations

from ember.compiler import dtypes as D
from ember.compiler.ir import const

from ..tensor import Tensor
from .optimizer import Optimizer, _check_nonneg, _scalar_tensor, _step_dtype


class Adagrad(Optimizer):
    """Adagrad with PyTorch's update:

        clr = lr / (1 + (t - 1) * lr_decay);  s = s + g * g;  p = p - clr * g / (sqrt(s) + eps)

    Its state (step 0 and the accumulator filled with `initial_accumulator_value`) exists from
    construction on, as in PyTorch.

    >>> opt = ember.optim.Adagrad(model.parameters(), lr=1e-2)
    """

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, foreach=None, *, maximize: bool = False,
                 differentiable: bool = False, fused=None):
        _check_nonneg(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                      initial_accumulator_value=initial_accumulator_value, epsilon=eps)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable, fused=fused))

    def _init_group_state(self, group):
        from ..creation import full_like
        for p in group["params"]:
            state = self.state[p]
            state["step"] = _scalar_tensor(0.0, _step_dtype(), p.device)
            state["sum"] = full_like(p, group["initial_accumulator_value"])

    def _update(self, group, p, grad, state, sc):
        g = -grad if group["maximize"] else grad
        step_t = self._next_step(state, p)
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p
        # clr = lr / (1 + (step - 1) * lr_decay), in float64 in the graph, from the stored step count
        # (step - 1) rather than the new one this kernel writes
        s64 = state["step"]._apply("cast", arg=D.float64)
        decay = sc.host(group, "lr_decay", lambda gr: gr["lr_decay"], p, D.float64)
        one = Tensor._wrap(const(1.0, D.float64), s64.device)
        den = one._apply("add", s64._apply("mul", decay))
        clr = sc.host(group, "lr", lambda gr: gr["lr"], p, D.float64)._apply("div", den)._apply("neg")
        s = sc.wrap(state["sum"]) + 1.0 * g * g
        return p + sc.expand(clr, p) * g / (s.sqrt() + group["eps"]), {"step": step_t, "sum": s}
