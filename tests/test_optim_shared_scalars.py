"""Optimizer scalars shared across parameters (one step count per group of parameters that started
together, host scalars reused while unchanged, framework/optim/optimizer.py): the updates still
equal PyTorch's when counts lag, diverge, are reloaded, or the learning rate changes."""
import numpy as np
import pytest
import torch

import ember

SHAPES = [(3, 4), (4,), (2, 2)]


def _train(make, steps=6, skip_first=(1,), lr_change=None, reload_at=None):
    """Both libraries from the same weights and gradients; parameters and state compared each step."""
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    pe = [ember.tensor(w, requires_grad=True) for w in ws]
    pt = [torch.tensor(w, requires_grad=True) for w in ws]
    oe, ot = make(ember, pe), make(torch, pt)
    for k in range(steps):
        for i, (a, b) in enumerate(zip(pe, pt)):
            if k == 0 and i in skip_first:      # no gradient yet: this parameter's count lags
                a.grad = b.grad = None
            else:
                g = rng.standard_normal(a.shape).astype(np.float32)
                a.grad, b.grad = ember.tensor(g), torch.tensor(g)
        if lr_change and k == lr_change[0]:
            for ge, gt in zip(oe.param_groups, ot.param_groups):
                ge["lr"] = gt["lr"] = lr_change[1]
        if reload_at == k:
            sd = oe.state_dict()
            oe = make(ember, pe)
            oe.load_state_dict(sd)
        oe.step()
        ot.step()
        for a, b in zip(pe, pt):
            np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=2e-6, atol=1e-7)
    for a, b in zip(pe, pt):
        for key, vt in ot.state[b].items():
            ve = oe.state[a][key]
            np.testing.assert_allclose(np.asarray(ve.numpy() if hasattr(ve, "numpy") else ve),
                                       vt.numpy() if hasattr(vt, "numpy") else vt, rtol=2e-6, atol=1e-7, err_msg=key)


def _groups(ps):
    return [{"params": ps[:2]}, {"params": ps[2:], "lr": 0.05}]


CASES = {
    "adam-lagging-count": (lambda lib, ps: lib.optim.Adam(ps, lr=0.01), {}),
    "adam-lr-change": (lambda lib, ps: lib.optim.Adam(ps, lr=0.01), {"lr_change": (3, 0.003)}),
    "adam-reload": (lambda lib, ps: lib.optim.Adam(ps, lr=0.01), {"reload_at": 3}),
    "adam-groups": (lambda lib, ps: lib.optim.Adam(_groups(ps), lr=0.01), {}),
    "adamw-amsgrad": (lambda lib, ps: lib.optim.AdamW(ps, lr=0.01, amsgrad=True), {}),
    "sgd-momentum-lr-change": (lambda lib, ps: lib.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=0.1),
                               {"lr_change": (2, 0.02)}),
    "rmsprop-centered": (lambda lib, ps: lib.optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5), {}),
    "adagrad": (lambda lib, ps: lib.optim.Adagrad(ps, lr=0.1, lr_decay=0.01), {"skip_first": ()}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shared_scalars_match_torch(name):
    make, kw = CASES[name]
    _train(make, **kw)


def test_a_count_changed_in_place_diverges_from_the_others():
    """Counts that started shared stay per-parameter values: changing one leaves the other, and the
    next step's bias corrections follow each parameter's own count (checked against torch)."""
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal(3).astype(np.float32) for _ in range(2)]
    pe = [ember.tensor(w, requires_grad=True) for w in ws]
    pt = [torch.tensor(w, requires_grad=True) for w in ws]
    oe, ot = ember.optim.Adam(pe, lr=0.1), torch.optim.Adam(pt, lr=0.1)
    for _ in range(3):
        for a, b in zip(pe, pt):
            a.grad, b.grad = ember.ones(3), torch.ones(3)
        oe.step()
        ot.step()
    with ember.no_grad():
        oe.state[pe[0]]["step"].fill_(10.0)
    ot.state[pt[0]]["step"].fill_(10.0)
    for a, b in zip(pe, pt):
        a.grad, b.grad = ember.ones(3), torch.ones(3)
    oe.step()
    ot.step()
    assert [oe.state[p]["step"].item() for p in pe] == [11.0, 4.0]
    for a, b in zip(pe, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=2e-6, atol=1e-7)
