"""Gradient checking against float64 central finite differences (a test helper, like torch.autograd.gradcheck).

`gradcheck(fn, *arrays)` evaluates `fn` on ember float64 tensors made from the numpy `arrays`
and checks the vector-Jacobian product ember's autograd computes for a random cotangent `w`
against central differences of the scalar L(x) = <fn(x), w>, one input element at a time:

    dL/dx_i ~ (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

With `second_order=True` it also checks a Hessian-vector product: the first gradient is built with
`create_graph=True`, projected onto a random `v` (S = sum_k <g_k, v_k>) and differentiated again;
the reference is the central difference of S, evaluated from ember's first-order gradients.

`layouts` makes an input a view: the leaf that requires grad is a storage buffer, and `fn` sees a
permuted, strided (every other element) or flipped view of it, so the gradient has to find its
way back through the view into the storage (zeros where the view does not look).

    gradcheck(lambda x, y: x * y.exp(), np.random.rand(2, 3), np.random.rand(3), second_order=True)
"""
from __future__ import annotations

import numpy as np

import ember

EPS = 1e-6
RTOL, ATOL = 1e-5, 1e-7


def _storage(arr: np.ndarray, layout: str):
    """(storage array, function making the view of a storage tensor that equals `arr`)."""
    if layout == "contiguous" or arr.ndim == 0:
        return arr, lambda t: t
    if layout == "permuted":  # stored transposed, permuted back
        order = tuple(reversed(range(arr.ndim)))
        return np.ascontiguousarray(arr.transpose(order)), lambda t: t.permute(order)
    if layout == "strided":   # every other element on the last axis (odd positions)
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1] + 1,))
        big[..., 1::2] = arr
        return big, lambda t: t[..., 1::2]
    if layout == "flipped":   # stored reversed on axis 0
        return np.ascontiguousarray(arr[::-1]), lambda t: t.flip(0)
    raise ValueError(layout)


def _outputs(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


class _Problem:
    def __init__(self, fn, arrays, layouts):
        layouts = layouts or ["contiguous"] * len(arrays)
        pairs = [_storage(np.asarray(a, dtype=np.float64), lay) for a, lay in zip(arrays, layouts)]
        self.fn, self.stores, self.views = fn, [p[0] for p in pairs], [p[1] for p in pairs]

    def forward(self, stores, requires_grad: bool):
        leaves = [ember.tensor(s, dtype=ember.float64, requires_grad=requires_grad) for s in stores]
        return leaves, _outputs(self.fn(*[v(t) for v, t in zip(self.views, leaves)]))

    def loss(self, stores, w) -> float:
        """L = <fn(x), w>, evaluated without autograd."""
        with ember.no_grad():
            _, outs = self.forward(stores, False)
        return float(sum((o.numpy().astype(np.float64) * wk).sum() for o, wk in zip(outs, w)))

    def grads(self, stores, w, create_graph: bool = False):
        """(leaves, ember's dL/dleaf for each leaf; zeros where an input is unused)."""
        leaves, outs = self.forward(stores, True)
        used = [(o, wk) for o, wk in zip(outs, w) if o.requires_grad]
        if not used:
            return leaves, [None] * len(leaves)
        gs = ember.autograd.grad([o for o, _ in used], leaves,
                                 grad_outputs=[ember.tensor(wk, dtype=o.dtype) for o, wk in used],
                                 create_graph=create_graph, allow_unused=True)
        return leaves, list(gs)


def numeric_grad(f, stores, eps: float = EPS) -> list:
    """Central differences of the scalar function f(list of arrays) for every element of each."""
    out = []
    for k, s in enumerate(stores):
        g = np.zeros_like(s)
        for i in np.ndindex(*s.shape):
            plus = [a.copy() for a in stores]
            minus = [a.copy() for a in stores]
            plus[k][i] += eps
            minus[k][i] -= eps
            g[i] = (f(plus) - f(minus)) / (2 * eps)
        out.append(g)
    return out


def _compare(got, want, what, rtol, atol):
    for k, (g, n) in enumerate(zip(got, want)):
        g = np.zeros_like(n) if g is None else g
        assert g.shape == n.shape, f"{what} of input {k}: shape {g.shape}, expected {n.shape}"
        np.testing.assert_allclose(g, n, rtol=rtol, atol=atol, err_msg=f"{what} of input {k}")


def _numpy(g, like):
    if g is None:
        return None
    assert g.dtype is ember.float64, f"gradient dtype {g.dtype}, expected float64"
    assert tuple(g.shape) == like.shape, f"gradient shape {tuple(g.shape)}, expected {like.shape}"
    return g.detach().numpy()


def gradcheck(fn, *arrays, layouts=None, second_order: bool = False, eps: float = EPS, rtol: float = RTOL,
              atol: float = ATOL, seed: int = 0) -> list:
    """Check ember's gradient of `fn` at float64 `arrays` (see the module docstring); returns the
    first-order gradients as numpy arrays (None for inputs fn does not depend on)."""
    p = _Problem(fn, arrays, layouts)
    rng = np.random.default_rng(seed)
    with ember.no_grad():
        _, outs = p.forward(p.stores, False)
    w = [rng.standard_normal(tuple(o.shape)) for o in outs]
    for o in outs:
        assert o.dtype is ember.float64, f"fn's output has dtype {o.dtype}; float64 inputs should give float64"

    _, gs = p.grads(p.stores, w)
    got = [_numpy(g, s) for g, s in zip(gs, p.stores)]
    _compare(got, numeric_grad(lambda st: p.loss(st, w), p.stores, eps), "gradient", rtol, atol)
    if second_order:
        v = [rng.standard_normal(s.shape) for s in p.stores]

        def s_of(stores) -> float:  # S = sum_k <dL/dx_k, v_k>
            _, g1 = p.grads(stores, w)
            return float(sum((g.detach().numpy() * vk).sum() for g, vk in zip(g1, v) if g is not None))

        leaves, g1 = p.grads(p.stores, w, create_graph=True)
        terms = [(g * ember.tensor(vk)).sum() for g, vk in zip(g1, v) if g is not None]
        s = terms[0] if terms else None
        for t in terms[1:]:
            s = s + t
        if s is not None and s.requires_grad:
            hs = ember.autograd.grad(s, leaves, allow_unused=True)
        else:  # the first gradient does not depend on the inputs: the second derivative is zero
            hs = [None] * len(leaves)
        hv = [_numpy(h, st) for h, st in zip(hs, p.stores)]
        _compare(hv, numeric_grad(s_of, p.stores, eps), "second derivative", rtol * 10, atol * 10)
    return got
