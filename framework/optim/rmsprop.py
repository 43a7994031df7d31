"""RMSprop (torch.optim.RMSprop): centered variant, momentum, weight decay, maximize."""
from __future__ import annotations

from .optimizer import Optimizer, _check_nonneg, _lerp


class RMSprop(Optimizer):
    """RMSprop with PyTorch's update:

        s = alpha * s + (1 - alpha) * g * g;  avg = sqrt(s) + eps   (centered: sqrt(s - ga**2) + eps,
        ga = lerp(ga, g, 1 - alpha));  p = p - lr * g / avg   (momentum: buf = momentum * buf + g / avg;
        p = p - lr * buf)

    >>> opt = ember.optim.RMSprop(model.parameters(), lr=1e-2, alpha=0.99)
    """

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0,
                 momentum: float = 0, centered: bool = False, capturable: bool = False, foreach=None,
                 maximize: bool = False, differentiable: bool = False):
        _check_nonneg(lr=lr, epsilon=eps, momentum=momentum, weight_decay=weight_decay, alpha=alpha)
        super().__init__(params, dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                                      weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                                      maximize=maximize, differentiable=differentiable))

    def _update(self, group, p, grad, state, sc):
        g = -grad if group["maximize"] else grad
        step_t = self._next_step(state, p)
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p
        alpha = group["alpha"]
        sq = self._state(state, "square_avg", p, sc) * alpha + (1 - alpha) * g * g
        new_state = {"step": step_t, "square_avg": sq}
        if group["centered"]:
            ga = new_state["grad_avg"] = _lerp(self._state(state, "grad_avg", p, sc), g, group, "1-alpha", lambda gr: 1 - gr["alpha"], sc)
            avg = (sq + -1.0 * ga * ga).sqrt()
        else:
            avg = sq.sqrt()
        avg = avg + group["eps"]
        lr = sc.scalar(group, "-lr", lambda gr: -gr["lr"], p)
        if group["momentum"] > 0:
            buf = self._state(state, "momentum_buffer", p, sc) * sc.scalar(group, "momentum", lambda gr: gr["momentum"], p) + g / avg
            new_state["momentum_buffer"] = buf
            return p + lr * buf, new_state
        return p + lr * g / avg, new_state
