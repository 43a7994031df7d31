"""Helpers for the nn tests (no tests here): run an ember module and a torch module that share
weights on the same inputs, and compare outputs, input gradients, parameter gradients and buffers.
"""
from __future__ import annotations

import numpy as np
import torch

import ember

RNG = np.random.default_rng(1234)


def randn(*shape, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def close(actual, expected, atol: float = 1e-5, rtol: float = 1e-4, what: str = "") -> None:
    a = actual.detach().numpy() if isinstance(actual, ember.Tensor) else np.asarray(actual)
    e = expected.detach().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != torch's {e.shape}"
    np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), atol=atol, rtol=rtol, err_msg=what)


def run_both(em, tm, *inputs, atol: float = 1e-5, rtol: float = 1e-4, backward: bool = True,
             copy_weights: bool = True, kwargs: dict | None = None):
    """Forward (and backward with a random upstream gradient) through both modules; compare all."""
    kwargs = kwargs or {}
    if copy_weights:
        em.load_state_dict(tm.state_dict())
    ex = [ember.tensor(x, requires_grad=backward and x.dtype.kind == "f") for x in inputs]
    tx = [torch.tensor(x, requires_grad=backward and x.dtype.kind == "f") for x in inputs]
    ey, ty = em(*ex, **kwargs), tm(*tx, **kwargs)
    if isinstance(ty, tuple):
        ey, ty = ey[0], ty[0]
    if not backward:
        close(ey, ty, atol, rtol, "output")
        return ey, ty
    g = RNG.standard_normal(tuple(ty.shape)).astype(np.float32)
    (ey * ember.tensor(g).to(ey.dtype)).sum().backward()
    (ty * torch.tensor(g).to(ty.dtype)).sum().backward()
    eparams = dict(em.named_parameters())
    grads = [x.grad for x in ex if x.requires_grad] + [p.grad for p in eparams.values() if p.grad is not None]
    ember.realize(ey, *grads)  # one schedule for forward and backward
    close(ey, ty, atol, rtol, "output")
    for i, (a, b) in enumerate(zip(ex, tx)):
        if b.requires_grad:
            close(a.grad, b.grad, atol, rtol, f"grad of input {i}")
    for name, p in tm.named_parameters():
        if p.grad is None:
            assert eparams[name].grad is None, f"{name}: ember has a gradient where torch has none"
        else:
            close(eparams[name].grad, p.grad, atol, rtol, f"grad of {name}")
    for name, b in tm.named_buffers():
        close(dict(em.named_buffers())[name], b, atol, rtol, f"buffer {name}")
    return ey, ty
