"""SGD with momentum, dampening, Nesterov momentum, weight decay and maximize (torch.optim.SGD)."""
from __future__ import annotations

from .optimizer import Optimizer, _check_nonneg


class SGD(Optimizer):
    """Stochastic gradient descent, with PyTorch's update:

        g = grad (+ weight_decay * p);  buf = momentum * buf + (1 - dampening) * g  (buf = g at step 1)
        g = g + momentum * buf if nesterov else buf;  p = p - lr * g

    >>> opt = ember.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0, weight_decay: float = 0,
                 nesterov: bool = False, *, maximize: bool = False, foreach=None, differentiable: bool = False,
                 fused=None):
        _check_nonneg(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize, foreach=foreach,
                                      differentiable=differentiable, fused=fused))

    def _update(self, group, p, grad, state, sc):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p
        new_state = {}
        momentum = group["momentum"]
        if momentum != 0:
            m = sc.scalar(group, "momentum", lambda gr: gr["momentum"], p)
            buf = state.get("momentum_buffer")
            buf = g if buf is None else sc.wrap(buf) * m + (1 - group["dampening"]) * g
            new_state["momentum_buffer"] = buf
            g = g + m * buf if group["nesterov"] else buf
        return p + sc.scalar(group, "-lr", lambda gr: -gr["lr"], p) * g, new_state
