"""Adam and AdamW (torch.optim.Adam, torch.optim.AdamW), with amsgrad and maximize."""
from __future__ import annotations

from .optimizer import Optimizer, _bias_correction, _check_nonneg, _lerp


class Adam(Optimizer):
    """Adam with PyTorch's update (the step count and bias corrections are computed in the graph, the
    learning rate and betas enter it as 0-dim host inputs, so every step reuses one compiled plan):

        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g   (amsgrad: vmax = max(vmax, v))
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    `weight_decay` adds `weight_decay * p` to the gradient (L2); with `decoupled_weight_decay=True`
    (AdamW) it scales p by `1 - lr * weight_decay` instead.

    >>> opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, foreach=None, maximize: bool = False,
                 capturable: bool = False, differentiable: bool = False, fused=None,
                 decoupled_weight_decay: bool = False):
        _check_nonneg(lr=lr, epsilon=eps, weight_decay=weight_decay)
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach, capturable=capturable,
                                      differentiable=differentiable, fused=fused,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _update(self, group, p, grad, state, sc):
        g = -grad if group["maximize"] else grad
        wd = group["weight_decay"]
        step = self._next_step(state, p)
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p = p * sc.scalar(group, "1-lr*wd", lambda gr: 1 - gr["lr"] * gr["weight_decay"], p)
            else:
                g = g + wd * p
        m = _lerp(self._state(state, "exp_avg", p, sc), g, group, "1-beta1", lambda gr: 1 - gr["betas"][0], sc)
        v = self._state(state, "exp_avg_sq", p, sc) * sc.scalar(group, "beta2", lambda gr: gr["betas"][1], p) \
            + sc.scalar(group, "1-beta2", lambda gr: 1 - gr["betas"][1], p) * g * g
        new_state = {"step": step, "exp_avg": m, "exp_avg_sq": v}
        if group["amsgrad"]:
            v = new_state["max_exp_avg_sq"] = self._state(state, "max_exp_avg_sq", p, sc).maximum(v)
        # the scalars depend on the group, the old step count and p's dtype only: parameters that
        # share a count node (all of a group, normally) share them, built once per step
        old = state.get("step")
        step_size, bc2_sqrt = sc.memo(("adam", id(group), None if old is None else old.node, p.t.dtype, p.t.device),
                                      lambda: self._corrections(group, state, p, sc))
        denom = v.sqrt() / sc.expand(bc2_sqrt, p) + group["eps"]
        return p + sc.expand(step_size, p) * m / denom, new_state

    @staticmethod
    def _corrections(group, state, p, sc):
        """-lr / (1 - beta1**t) and sqrt(1 - beta2**t), computed in float64, in p's dtype."""
        from ember.compiler import dtypes as D
        bc1 = _bias_correction(group, "beta1", lambda gr: gr["betas"][0], state, p, sc)
        bc2 = _bias_correction(group, "beta2", lambda gr: gr["betas"][1], state, p, sc)
        lr = sc.host(group, "lr", lambda gr: gr["lr"], p, D.float64)
        step_size = lr._apply("div", bc1)._apply("neg")
        return sc.cast(step_size, p), sc.cast(bc2._apply("sqrt"), p)


class AdamW(Adam):
    """Adam with decoupled weight decay (default 1e-2): p is scaled by 1 - lr * weight_decay.

    >>> opt = ember.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False, foreach=None,
                 capturable: bool = False, differentiable: bool = False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

