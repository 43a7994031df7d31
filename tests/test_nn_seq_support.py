"""Helpers for the sequence-layer tests (RNN, attention, transformer; no tests here): run an ember
module and a torch module with the same weights on the same inputs, and compare every output
(nested tuples such as LSTM's (output, (h_n, c_n)) included), every input gradient and every
parameter gradient, with a random upstream gradient on each output."""
from __future__ import annotations

import numpy as np
import torch

import ember

RNG = np.random.default_rng(4321)


def randn(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _map(fn, x):
    if isinstance(x, (tuple, list)):
        return type(x)(_map(fn, v) for v in x)
    return None if x is None else fn(x)


def _flat(x) -> list:
    if isinstance(x, (tuple, list)):
        return [v for item in x for v in _flat(item)]
    return [x]


def _np(t) -> np.ndarray:
    return t.detach().numpy()


def _close(a, e, atol, rtol, what):
    a, e = _np(a), _np(e)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != torch's {e.shape}"
    np.testing.assert_allclose(a.astype(np.float64), e.astype(np.float64), atol=atol, rtol=rtol, err_msg=what)


def compare(em, tm, args: list, kwargs: dict | None = None, atol: float = 2e-5, rtol: float = 1e-4,
            backward: bool = True, train: bool = False, copy_weights: bool = True):
    """Run both modules on `args` (numpy arrays, possibly nested in tuples, or None; float arrays get
    requires_grad) and `kwargs` (numpy arrays such as masks, or plain values; never differentiated).
    Returns (ember outputs, torch outputs)."""
    modules = isinstance(tm, torch.nn.Module)  # else two plain functions (e.g. F.scaled_dot_product_attention)
    if modules and copy_weights:
        em.load_state_dict(tm.state_dict())
    if modules:
        em.train(train)
        tm.train(train)
    grad = lambda x: backward and x.dtype.kind == "f"  # noqa: E731
    ex = _map(lambda x: ember.tensor(x, requires_grad=grad(x)), args)
    tx = _map(lambda x: torch.tensor(x, requires_grad=grad(x)), args)
    conv = lambda f: {k: f(v) if isinstance(v, np.ndarray) else v for k, v in (kwargs or {}).items()}  # noqa: E731
    eo, to = em(*ex, **conv(ember.tensor)), tm(*tx, **conv(torch.tensor))
    eouts, touts = _flat(eo), _flat(to)
    assert len(eouts) == len(touts), f"{len(eouts)} outputs, torch has {len(touts)}"
    for a, b in zip(eouts, touts):
        assert (a is None) == (b is None), f"ember output {a} vs torch {b}"
    pairs = [(a, b) for a, b in zip(eouts, touts) if b is not None]
    if not backward:
        for i, (a, b) in enumerate(pairs):
            _close(a, b, atol, rtol, f"output {i}")
        return eo, to
    gs = [randn(*b.shape) for _, b in pairs]
    sum((a * ember.tensor(g)).sum() for (a, _), g in zip(pairs, gs)).backward()
    sum((b * torch.tensor(g)).sum() for (_, b), g in zip(pairs, gs)).backward()
    eins, tins = _flat(ex), _flat(tx)
    eparams = dict(em.named_parameters()) if modules else {}
    grads = [x.grad for x in eins if x is not None and x.grad is not None]
    grads += [p.grad for p in eparams.values() if p.grad is not None]
    ember.realize(*[a for a, _ in pairs], *grads)  # forward and backward scheduled together
    for i, (a, b) in enumerate(pairs):
        _close(a, b, atol, rtol, f"output {i}")
    for i, (a, b) in enumerate(zip(eins, tins)):
        if b is not None and b.requires_grad:
            _close(a.grad, b.grad, atol, rtol, f"grad of input {i}")
    tparams = dict(tm.named_parameters()) if modules else {}
    assert set(tparams) == set(eparams), f"parameter names differ: {sorted(eparams)} vs torch {sorted(tparams)}"
    for name, p in tparams.items():
        if p.grad is None:
            assert eparams[name].grad is None, f"{name}: ember has a gradient where torch has none"
        else:
            _close(eparams[name].grad, p.grad, atol, rtol, f"grad of {name}")
    return eo, to
