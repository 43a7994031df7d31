"""nn.Module, Parameter, containers and nn.init against torch's behaviour.

Most tests build the same architecture twice through one function that takes the `nn` namespace
(torch.nn or ember.nn), so names, keys and reprs are compared with torch's own.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from test_nn_support import close, randn

import ember
from ember import nn


def cnn(nn):
    class Net(nn.Module):  # the classic MNIST CNN of the PyTorch examples
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)
    return Net()


def assorted(nn):
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(4)
            self.convs = nn.ModuleList([nn.Conv2d(4, 4, 3, padding=1, bias=False) for _ in range(3)])
            self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Identity()})
            self.scale = nn.Parameter(torch.ones(1) if nn is torch.nn else ember.ones(1))
            self.register_buffer("steps", torch.zeros(2) if nn is torch.nn else ember.zeros(2))
            self.register_buffer("scratch", torch.zeros(2) if nn is torch.nn else ember.zeros(2), persistent=False)
            self.shared = self.heads["a"]
    return nn.Sequential(nn.Embedding(10, 4, padding_idx=0), nn.LayerNorm(4), Block(),
                         nn.Sequential(nn.GroupNorm(2, 4), nn.GELU(approximate="tanh")),
                         nn.Flatten(), nn.Unflatten(1, (2, 2)), nn.LeakyReLU(0.2), nn.Softplus(beta=2),
                         nn.MaxPool2d(2, ceil_mode=True), nn.AvgPool2d(3, 1, 1), nn.AdaptiveAvgPool2d((1, 1)),
                         nn.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1), nn.Dropout2d(0.1),
                         nn.CrossEntropyLoss(label_smoothing=0.1), nn.Softmax(dim=1), nn.ELU(), nn.Hardshrink(),
                         nn.Conv1d(2, 2, 3, padding="same", padding_mode="circular", dilation=2), nn.Mish(),
                         nn.ReLU(inplace=True), nn.Upsample(scale_factor=2, mode="bilinear"), nn.PReLU(3))


# ---- Parameter ----------------------------------------------------------------------------------

def test_parameter_is_a_leaf_tensor_that_requires_grad():
    p = nn.Parameter(ember.tensor([1.0, 2.0]))
    assert isinstance(p, ember.Tensor) and isinstance(p, nn.Parameter)
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    assert repr(p).startswith("Parameter containing:\ntensor([1., 2.]") and str(p) == repr(p)
    assert not nn.Parameter(ember.zeros(2), requires_grad=False).requires_grad
    (p * 3).sum().backward()
    close(p.grad, [3.0, 3.0])
    assert type(p * 2) is ember.Tensor  # results of ops are plain tensors, as in torch


def test_data_is_a_detached_view_that_writes_through():
    p = nn.Parameter(ember.tensor([1.0, 2.0]))
    d = p.data
    assert not d.requires_grad
    d.mul_(3)                       # in place through .data updates the parameter (shared storage in torch)
    close(p.detach(), [3.0, 6.0])
    assert p.requires_grad and p.is_leaf
    p.data = ember.tensor([5.0, 6.0, 7.0])  # rebinding .data may change the shape, as in torch
    close(p.detach(), [5.0, 6.0, 7.0])
    p.data.zero_()
    close(p.detach(), [0.0, 0.0, 0.0])


def test_copy_fill_zero_follow_torch_rules():
    p = nn.Parameter(ember.zeros(2, 3))
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        p.copy_(ember.ones(2, 3))
    with ember.no_grad():
        p.copy_(ember.tensor([1, 2, 3]))   # broadcasts and casts like torch's copy_
    close(p.detach(), np.tile([1.0, 2.0, 3.0], (2, 1)))
    with pytest.raises(RuntimeError):
        with ember.no_grad():
            p.copy_(ember.ones(4))
    src = ember.tensor([1.0, 2.0, 3.0], requires_grad=True)
    dst = ember.zeros(2, 3)
    dst.copy_(src)
    (dst * ember.tensor([[1.0], [2.0]])).sum().backward()  # copy_ is differentiable in src
    close(src.grad, [3.0, 3.0, 3.0])
    t = ember.zeros(3)
    t.fill_(2.5)
    close(t, [2.5] * 3)
    t.zero_()
    close(t, [0.0] * 3)


# ---- registration and traversal -----------------------------------------------------------------

@pytest.mark.parametrize("build", [cnn, assorted])
def test_names_keys_and_repr_match_torch(build):
    torch.manual_seed(0)
    em, tm = build(nn), build(torch.nn)
    assert [n for n, _ in em.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert [n for n, _ in em.named_buffers()] == [n for n, _ in tm.named_buffers()]
    assert [n for n, _ in em.named_modules()] == [n for n, _ in tm.named_modules()]
    assert [n for n, _ in em.named_children()] == [n for n, _ in tm.named_children()]
    assert list(em.state_dict()) == list(tm.state_dict())
    assert [tuple(v.shape) for v in em.state_dict().values()] == [tuple(v.shape) for v in tm.state_dict().values()]
    assert repr(em) == repr(tm)
    assert sum(p.numel() for p in em.parameters()) == sum(p.numel() for p in tm.parameters())


def test_named_members_with_prefix_recurse_and_duplicates():
    em, tm = assorted(nn), assorted(torch.nn)
    for kwargs in ({"prefix": "model"}, {"recurse": False}, {"remove_duplicate": False}):
        assert [n for n, _ in em[2].named_parameters(**kwargs)] == [n for n, _ in tm[2].named_parameters(**kwargs)]
    assert em[2].get_submodule("heads.a") is em[2].heads["a"]
    assert em.get_parameter("2.scale") is em[2].scale
    with pytest.raises(AttributeError):
        em.get_submodule("2.nothing")


def test_setattr_registers_and_replaces():
    m = nn.Module()
    m.w = nn.Parameter(ember.ones(2))
    m.sub = nn.Linear(2, 2)
    m.register_buffer("b", ember.zeros(1))
    m.b = ember.ones(1)                      # assigning a tensor to a buffer name replaces the buffer
    assert list(m.state_dict()) == ["w", "b", "sub.weight", "sub.bias"]
    with pytest.raises(TypeError):
        m.w = ember.ones(2)                  # a plain tensor cannot replace a parameter
    m.w = None
    assert [n for n, _ in m.named_parameters()] == ["sub.weight", "sub.bias"]
    del m.sub
    assert not hasattr(m, "sub")
    with pytest.raises(KeyError):
        m.register_buffer("a.b", ember.zeros(1))

    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(ember.ones(1))
    with pytest.raises(AttributeError, match="before Module.__init__"):
        Early()


# ---- state dicts --------------------------------------------------------------------------------

def test_state_dict_round_trip_and_values():
    torch.manual_seed(1)
    em, tm = assorted(nn), assorted(torch.nn)
    em.load_state_dict(tm.state_dict())
    for (k, v), (k2, v2) in zip(em.state_dict().items(), tm.state_dict().items()):
        assert k == k2 and not v.requires_grad
        close(v, v2, 0, 0, k)
    em2 = assorted(nn)
    assert repr(em2.load_state_dict(em.state_dict())) == "<All keys matched successfully>"
    close(em2[0].weight.detach(), tm[0].weight, 0, 0)
    assert em.state_dict(keep_vars=True)["0.weight"] is em[0].weight


def test_load_state_dict_errors_like_torch():
    em, tm = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)), torch.nn.Sequential(torch.nn.Linear(3, 2),
                                                                                    torch.nn.BatchNorm1d(2))
    sd = {k: v.clone() for k, v in tm.state_dict().items()}
    del sd["1.running_var"]
    sd["extra"] = torch.zeros(1)
    sd["0.weight.x"] = torch.zeros(1)
    with pytest.raises(RuntimeError) as e_err:
        em.load_state_dict(sd)
    with pytest.raises(RuntimeError) as t_err:
        tm.load_state_dict(sd)
    for line in str(t_err.value).split("\n\t")[1:]:
        assert line in str(e_err.value)
    assert str(e_err.value).startswith("Error(s) in loading state_dict for Sequential:")
    e_res, t_res = em.load_state_dict(sd, strict=False), tm.load_state_dict(sd, strict=False)
    assert e_res.missing_keys == t_res.missing_keys and e_res.unexpected_keys == t_res.unexpected_keys
    bad = dict(tm.state_dict())
    bad["0.weight"] = torch.zeros(5, 3)
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight: copying a param with shape .*\[5, 3\]"):
        em.load_state_dict(bad)


# ---- modes, conversions, grads, apply, hooks -------------------------------------------------------

def test_train_eval_propagate():
    em = assorted(nn)
    assert all(m.training for m in em.modules())
    assert em.eval() is em and not any(m.training for m in em.modules())
    em[2].train()
    assert em[2].convs[1].training and not em[1].training
    with pytest.raises(ValueError):
        em.train("yes")


def test_to_dtype_and_device():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    w = m[0].weight
    assert m.double() is m and m[0].weight is w      # same objects, new values
    assert w.dtype is ember.float64 and m[1].running_mean.dtype is ember.float64
    assert m[1].num_batches_tracked.dtype is ember.int64  # integer buffers keep their dtype
    assert w.requires_grad and w.is_leaf
    m.to(ember.float32)
    assert w.dtype is ember.float32
    m.half()
    assert w.dtype is ember.float16
    assert m.to("cpu") is m and m.cpu() is m
    with pytest.raises(RuntimeError, match="cuda"):
        m.to("cuda")
    with pytest.raises(TypeError):
        m.to(ember.int32)


def test_zero_grad():
    m = nn.Linear(3, 2)
    m(ember.ones(1, 3)).sum().backward()
    assert m.weight.grad is not None
    m.zero_grad(set_to_none=False)
    close(m.weight.grad, np.zeros((2, 3)))
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


def test_apply_visits_children_first_like_torch():
    seen_e, seen_t = [], []
    assorted(nn).apply(lambda m: seen_e.append(type(m).__name__))
    assorted(torch.nn).apply(lambda m: seen_t.append(type(m).__name__))
    assert seen_e == seen_t


def test_forward_hooks():
    m = nn.Linear(2, 2)
    calls = []
    pre = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    post = m.register_forward_hook(lambda mod, args, out: calls.append(out) or out + 1)
    y = m(ember.ones(1, 2))
    close(y, (m.bias.detach() + 1).reshape(1, 2).numpy())
    assert len(calls) == 1
    pre.remove()
    post.remove()
    close(m(ember.zeros(1, 2)), m.bias.detach().reshape(1, 2).numpy())
    h = m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {}), with_kwargs=True)
    m(ember.zeros(1, 2))
    h.remove()


def test_deepcopy_gives_independent_parameters():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    c = copy.deepcopy(m)
    assert c[0].weight is not m[0].weight and isinstance(c[0].weight, nn.Parameter)
    close(c[0].weight.detach(), m[0].weight.detach(), 0, 0)
    with ember.no_grad():
        c[0].weight.add_(1)
    assert not np.allclose(c[0].weight.detach().numpy(), m[0].weight.detach().numpy())


# ---- containers -----------------------------------------------------------------------------------

def test_sequential_list_dict_behave_like_torch():
    for mod in (nn, torch.nn):
        s = mod.Sequential(mod.ReLU(), mod.Tanh(), mod.Sigmoid())
        assert len(s) == 3 and type(s[1]).__name__ == "Tanh" and type(s[-1]).__name__ == "Sigmoid"
        assert [type(m).__name__ for m in s[1:]] == ["Tanh", "Sigmoid"]
    es, ts = nn.Sequential(nn.ReLU(), nn.Tanh()), torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh())
    for s, mod in ((es, nn), (ts, torch.nn)):
        s.append(mod.ELU())
        s.insert(1, mod.GELU())
        del s[0]
    assert repr(es) == repr(ts)
    el = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)]) + nn.ModuleList([nn.ReLU()])
    tl = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)]) + torch.nn.ModuleList([torch.nn.ReLU()])
    assert repr(el) == repr(tl) and len(el) == 4
    ed = nn.ModuleDict({"x": nn.ReLU()})
    ed["y"] = nn.Linear(1, 1)
    assert list(ed.keys()) == ["x", "y"] and "y" in ed and len(ed) == 2
    assert [n for n, _ in ed.named_parameters()] == ["y.weight", "y.bias"]
    pl = nn.ParameterList([nn.Parameter(ember.ones(2)), ember.zeros(3)])
    tpl = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(2)), torch.zeros(3)])
    assert [n for n, _ in pl.named_parameters()] == [n for n, _ in tpl.named_parameters()]
    assert isinstance(pl[1], nn.Parameter)


def test_sequential_forward_chains_modules():
    torch.manual_seed(2)
    tm = torch.nn.Sequential(torch.nn.Linear(10, 50), torch.nn.ReLU(), torch.nn.Linear(50, 10))
    em = nn.Sequential(nn.Linear(10, 50), nn.ReLU(), nn.Linear(50, 10))
    em.load_state_dict(tm.state_dict())
    x = randn(4, 10)
    close(em(ember.tensor(x)), tm(torch.tensor(x)))


# ---- init -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                        ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)])
def test_calculate_gain(name, param):
    assert nn.init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def _stats(t):
    v = t.detach().numpy().astype(np.float64)
    return v.min(), v.max(), v.mean(), v.std()


@pytest.mark.parametrize("fn,kwargs,shape", [
    ("kaiming_uniform_", {"a": math.sqrt(5)}, (256, 64)),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}, (64, 32, 3, 3)),
    ("kaiming_normal_", {"nonlinearity": "relu"}, (128, 96)),
    ("xavier_uniform_", {"gain": 2.0}, (100, 200)),
    ("xavier_normal_", {}, (100, 200)),
    ("uniform_", {"a": -2.0, "b": 3.0}, (50000,)),
    ("normal_", {"mean": 1.0, "std": 0.5}, (50000,)),
    ("trunc_normal_", {"mean": 0.5, "std": 1.0, "a": -1.0, "b": 1.5}, (50000,)),
])
def test_random_init_distributions_match_torch(fn, kwargs, shape):
    ember.manual_seed(0)
    torch.manual_seed(0)
    e = getattr(nn.init, fn)(nn.Parameter(ember.empty(shape)), **kwargs)
    t = getattr(torch.nn.init, fn)(torch.empty(shape), **kwargs)
    (emin, emax, emean, estd), (tmin, tmax, tmean, tstd) = _stats(e), _stats(t)
    n = math.prod(shape)
    assert abs(emean - tmean) < 6 * tstd / math.sqrt(n) + 1e-3
    assert estd == pytest.approx(tstd, rel=0.05)
    if "uniform" in fn or fn == "trunc_normal_":  # bounded: same support
        assert emin >= tmin - 0.05 * (tmax - tmin) and emax <= tmax + 0.05 * (tmax - tmin)
        assert emin < tmin + 0.05 * (tmax - tmin) and emax > tmax - 0.05 * (tmax - tmin)


def test_init_is_in_place_under_no_grad_and_seeded():
    p = nn.Parameter(ember.zeros(4, 5))
    out = nn.init.normal_(p)
    assert out is p and p.requires_grad and p.is_leaf
    ember.manual_seed(7)
    a = nn.Linear(8, 4)
    ember.manual_seed(7)
    b = nn.Linear(8, 4)
    close(a.weight.detach(), b.weight.detach(), 0, 0)
    assert not np.allclose(a.weight.detach().numpy(), nn.Linear(8, 4).weight.detach().numpy())


@pytest.mark.parametrize("fn,shape,args", [("constant_", (3, 4), (0.3,)), ("ones_", (2, 2), ()), ("zeros_", (5,), ()),
                                           ("eye_", (3, 5), ()), ("dirac_", (4, 2, 3, 3), ()),
                                           ("dirac_", (6, 2, 3), (2,))])
def test_deterministic_inits_equal_torch(fn, shape, args):
    e = getattr(nn.init, fn)(nn.Parameter(ember.empty(shape)), *args)
    t = getattr(torch.nn.init, fn)(torch.empty(shape), *args)
    close(e, t, 0, 0)


def test_fan_errors():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(ember.zeros(3))
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        nn.init.calculate_gain("swish")


@pytest.mark.parametrize("make", [lambda nn: nn.Linear(300, 40), lambda nn: nn.Conv2d(8, 16, 5),
                                  lambda nn: nn.ConvTranspose2d(16, 8, 3), lambda nn: nn.Conv1d(4, 6, 7, groups=2),
                                  lambda nn: nn.Embedding(5000, 8), lambda nn: nn.Bilinear(20, 30, 8)])
def test_default_initialisation_matches_torch_distribution(make):
    ember.manual_seed(3)
    torch.manual_seed(3)
    em, tm = make(nn), make(torch.nn)
    fan_in = tm.weight.shape[1] if isinstance(tm, torch.nn.Bilinear) else \
        torch.nn.init._calculate_fan_in_and_fan_out(tm.weight)[0]
    for (name, e), (_, t) in zip(em.named_parameters(), tm.named_parameters()):
        (emin, emax, _, estd), (tmin, tmax, _, tstd) = _stats(e), _stats(t)
        if t.numel() >= 200:  # enough samples for a stable spread
            assert estd == pytest.approx(tstd, rel=0.15), name
        if not isinstance(em, nn.Embedding):  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
            bound = 1 / math.sqrt(fan_in)
            assert max(abs(emin), abs(emax)) <= bound, name
            if t.numel() >= 200:
                assert max(abs(emin), abs(emax)) >= 0.95 * bound, name


def test_norm_layer_defaults():
    bn, ln = nn.BatchNorm2d(3), nn.LayerNorm((2, 3))
    close(bn.weight.detach(), np.ones(3), 0, 0)
    close(bn.bias.detach(), np.zeros(3), 0, 0)
    close(bn.running_var, np.ones(3), 0, 0)
    assert bn.num_batches_tracked.item() == 0 and bn.num_batches_tracked.dtype is ember.int64
    close(ln.weight.detach(), np.ones((2, 3)), 0, 0)
    e = nn.Embedding(4, 3, padding_idx=2)
    close(e.weight.detach()[2], np.zeros(3), 0, 0)
