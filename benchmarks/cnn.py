"""Convolution benchmarks: conv2d forward + backward at the MNIST CNN's shapes, and the CNN's whole
training step, registered in suite.py.

- `conv1` / `conv2`: batch 32, Conv2d(1, 32, 3) on 28x28 and Conv2d(32, 64, 3) on 26x26 (the
  shapes of PyTorch's examples/mnist network), forward plus the gradients the network needs
  (weight only for the first layer, whose input is the data; input and weight for the second),
  with a given upstream gradient. Every framework returns the same sample of the three results
  (every 97th element of y, 89th of gx, 7th of gw: a cheap gather, unlike a copy or a reduction).
  flops = 2 N O C k² P per product (forward, weight gradient, input gradient).
- `cnn_step`: one SGD-with-momentum step of the MNIST CNN (Conv2d(1,32,3), Conv2d(32,64,3), relu,
  max_pool2d(2), Dropout(0.25), Linear(9216,128), relu, Dropout(0.5), Linear(128,10),
  log_softmax, nll_loss), batch 64 of 28x28, as a PyTorch user writes it: zero_grad, forward,
  backward, step. Each framework starts from the same weights and keeps its model and optimizer
  across calls (every timed call is a real step). The result checked is the first step's loss;
  dropout masks differ between frameworks, so the check only asks for the same loss within 0.05
  (it is ln 10 ± 0.01 at initialisation). numpy runs the same step written out by hand.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .harness import Bench, Target

F32 = 4


# ---- conv2d forward + backward -------------------------------------------------------------------

def _conv_inputs(shape):
    n, c, h, o = shape
    rng = np.random.default_rng(11)
    return {"x": rng.standard_normal((n, c, h, h), np.float32),
            "w": (rng.standard_normal((o, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32),
            "g": rng.standard_normal((n, o, h - 2, h - 2), np.float32)}


def _np_conv(x, w):
    win = sliding_window_view(x, w.shape[2:], axis=(2, 3))            # (N, C, oh, ow, kh, kw)
    return np.einsum("ncpqij,ocij->nopq", win, w, optimize=True), win


def _np_conv_backward(x, w, g, win, need_input):
    gw = np.einsum("nopq,ncpqij->ocij", g, win, optimize=True)
    if not need_input:
        return None, gw
    gx = np.zeros_like(x)
    oh, ow = g.shape[2:]
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            gx[:, :, i:i + oh, j:j + ow] += np.einsum("nopq,oc->ncpq", g, w[:, :, i, j], optimize=True)
    return gx, gw


def _conv_numpy(x, w, g):
    y, win = _np_conv(x, w)
    gx, gw = _np_conv_backward(x, w, g, win, x.shape[1] > 1)
    return np.concatenate(_sample(y, gx, gw))


def _sample(y, gx, gw):
    return [t.reshape(-1)[::step] for t, step in ((y, 97), (gx, 89), (gw, 7)) if t is not None]


def _conv_torch(x, w, g):
    import torch
    need_input = x.shape[1] > 1
    x, w = x.detach().requires_grad_(need_input), w.detach().requires_grad_()
    y = torch.nn.functional.conv2d(x, w)
    grads = torch.autograd.grad(y, (x, w) if need_input else (w,), g)
    gx, gw = grads if need_input else (None, grads[0])
    return torch.cat(_sample(y.detach(), gx, gw))


def _conv_ember(x, w, g):
    import ember
    need_input = x.shape[1] > 1
    x, w = x.detach().requires_grad_(need_input), w.detach().requires_grad_()
    y = ember.nn.functional.conv2d(x, w)
    grads = ember.autograd.grad(y, (x, w) if need_input else (w,), g)
    gx, gw = grads if need_input else (None, grads[0])
    return ember.cat(_sample(y.detach(), gx, gw))


def _conv_flops(shape):
    n, c, h, o = shape
    products = 3 if c > 1 else 2
    return products * 2 * n * o * c * 9 * (h - 2) ** 2


def _conv_bench(name, full, quick) -> Bench:
    n, c, h, o = full
    return Bench(
        name=name,
        describe=f"conv2d {c}->{o} 3x3 on {h}x{h}, batch {n}: forward + backward "
                 f"({'input and weight' if c > 1 else 'weight'} gradients); flops = 2 N O C 9 P per product",
        sizes={"full": full, "quick": quick},
        inputs=_conv_inputs,
        impls={"numpy": _conv_numpy, "torch": _conv_torch, "ember": _conv_ember},
        bytes=lambda s: F32 * (s[0] * s[1] * s[2] ** 2 * 2 + s[0] * s[3] * (s[2] - 2) ** 2 * 2),
        flops=_conv_flops,
        bound="compute",
        targets=(Target("speedup", 1.0, "torch"),),
        rtol=2e-3, atol=1e-3,
    )


# ---- the MNIST CNN training step ----------------------------------------------------------------

LR, MOMENTUM = 0.01, 0.9
PARAMS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias", "fc2.weight",
          "fc2.bias")
SHAPES = ((32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 9216), (128,), (10, 128), (10,))


def _cnn_inputs(batch):
    rng = np.random.default_rng(12)
    out = {"x": rng.standard_normal((batch, 1, 28, 28), np.float32), "y": rng.integers(0, 10, batch)}
    for name, shape in zip(PARAMS, SHAPES):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else {32: 9, 64: 288, 128: 9216, 10: 128}[shape[0]]
        bound = 1 / np.sqrt(fan_in)  # PyTorch's default init bounds
        out[name.replace(".", "_")] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return out


def _net(nn, F, flatten):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.relu(self.conv1(x))
            x = F.relu(self.conv2(x))
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = flatten(x, 1)
            x = F.relu(self.fc1(x))
            x = self.dropout2(x)
            return F.log_softmax(self.fc2(x), dim=1)
    return Net()


_states: dict = {}


def _state(lib, x, params):
    """The model and optimizer of one framework's run (made on its first call, from the shared
    initial weights), kept across calls so that every call is a real step."""
    key = (lib.__name__, id(x))
    if key not in _states:
        model = _net(lib.nn, lib.nn.functional, lib.flatten)
        model.load_state_dict({name: params[name.replace(".", "_")] for name in PARAMS})
        _states[key] = (x, model, lib.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM))
    return _states[key][1:]


def _step(lib, x, y, params):
    model, opt = _state(lib, x, params)
    model.train()
    opt.zero_grad()
    loss = lib.nn.functional.nll_loss(model(x), y)
    loss.backward()
    opt.step()
    return loss.detach()


def _cnn_torch(x, y, **params):
    import torch
    return _step(torch, x, y, params)


def _cnn_ember(x, y, **params):
    import ember
    return _step(ember, x, y, params)


try:  # keep torch.compile from tracing the one-time model construction
    import torch as _torch
    _state = _torch.compiler.disable(_state)
except (ImportError, AttributeError):
    pass


def _cnn_numpy(x, y, **params):
    """The same step by hand: forward, backward, SGD with momentum (state kept across calls)."""
    st = _states.setdefault(("numpy", id(x)), {"p": {k: v.copy() for k, v in params.items()}, "buf": {},
                                                "rng": np.random.default_rng(0), "x": x})
    p, buf, rng = st["p"], st["buf"], st["rng"]
    b = x.shape[0]
    c1, win1 = _np_conv(x, p["conv1_weight"])
    a1 = np.maximum(c1 + p["conv1_bias"][:, None, None], 0)
    c2, win2 = _np_conv(a1, p["conv2_weight"])
    a2 = np.maximum(c2 + p["conv2_bias"][:, None, None], 0)
    blocks = a2.reshape(b, 64, 12, 2, 12, 2)
    pooled = blocks.max(axis=(3, 5))
    m1 = (rng.random(pooled.shape) >= 0.25) / 0.75
    f = (pooled * m1).reshape(b, -1)
    h = f @ p["fc1_weight"].T + p["fc1_bias"]
    a3 = np.maximum(h, 0)
    m2 = (rng.random(a3.shape) >= 0.5) / 0.5
    d2 = a3 * m2
    z = d2 @ p["fc2_weight"].T + p["fc2_bias"]
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    loss = -logp[np.arange(b), y].mean()
    gz = np.exp(logp)
    gz[np.arange(b), y] -= 1
    gz /= b
    g = {"fc2_weight": gz.T @ d2, "fc2_bias": gz.sum(0)}
    gh = (gz @ p["fc2_weight"]) * m2 * (h > 0)
    g["fc1_weight"], g["fc1_bias"] = gh.T @ f, gh.sum(0)
    gp = ((gh @ p["fc1_weight"]).reshape(pooled.shape) * m1)
    ga2 = (blocks == pooled[:, :, :, None, :, None]) * gp[:, :, :, None, :, None]
    gc2 = ga2.reshape(a2.shape) * (a2 > 0)
    ga1, g["conv2_weight"] = _np_conv_backward(a1, p["conv2_weight"], gc2, win2, True)
    g["conv2_bias"] = gc2.sum((0, 2, 3))
    gc1 = ga1 * (a1 > 0)
    g["conv1_weight"] = _np_conv_backward(x, p["conv1_weight"], gc1, win1, False)[1]
    g["conv1_bias"] = gc1.sum((0, 2, 3))
    for k, gk in g.items():
        buf[k] = gk if k not in buf else MOMENTUM * buf[k] + gk
        p[k] -= LR * buf[k].astype(np.float32)
    return np.float32(loss)


def _cnn_flops(batch):
    conv = 2 * batch * 9 * (32 * 1 * 26 * 26 * 2 + 64 * 32 * 24 * 24 * 3)   # conv1: fwd + dW; conv2: 3
    fc = 2 * batch * (9216 * 128 + 128 * 10) * 3
    return conv + fc


BENCHMARKS = (
    _conv_bench("conv1", (32, 1, 28, 32), (4, 1, 28, 32)),
    _conv_bench("conv2", (32, 32, 26, 64), (4, 8, 12, 16)),
    Bench(
        name="cnn_step",
        describe="MNIST CNN training step (2 conv, max-pool, dropout, 2 linear, log_softmax + nll_loss, "
                 "SGD momentum 0.9), batch 64 of 28x28; flops = the convolutions and linears, fwd + bwd",
        sizes={"full": 64, "quick": 8},
        inputs=_cnn_inputs,
        impls={"numpy": _cnn_numpy, "torch": _cnn_torch, "ember": _cnn_ember},
        bytes=lambda b: F32 * (b * 28 * 28 + sum(int(np.prod(s)) for s in SHAPES) * 3),
        flops=_cnn_flops,
        bound="compute",
        targets=(Target("speedup", 1.0, "torch"),),
        rtol=0.0, atol=0.05,
    ),
)
