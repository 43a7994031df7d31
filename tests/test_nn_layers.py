"""Layers against torch with the same weights: outputs, input gradients, parameter gradients and
buffers (running statistics) agree within float32 tolerance, in train and eval mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from test_nn_support import close, randn, run_both

import ember
from ember import nn


def both(make):
    torch.manual_seed(0)
    return make(nn), make(torch.nn)


# ---- linear -------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.Linear(5, 3), (4, 5)),
    (lambda nn: nn.Linear(5, 3, bias=False), (2, 3, 5)),
    (lambda nn: nn.Linear(4, 2), (4,)),
    (lambda nn: nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Unflatten(1, (2, 3))), (2, 3, 4)),
    (lambda nn: nn.Identity(54, unused=1), (2, 3)),
])
def test_linear_family(make, shape):
    run_both(*both(make), randn(*shape))


def test_bilinear():
    em, tm = both(lambda nn: nn.Bilinear(3, 4, 2))
    run_both(em, tm, randn(5, 3), randn(5, 4))


# ---- convolutions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.Conv2d(1, 4, 3, 1), (2, 1, 8, 8)),                                      # the MNIST conv
    (lambda nn: nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)), (2, 4, 7, 6)),
    (lambda nn: nn.Conv2d(4, 6, 3, padding="same", groups=2, bias=False), (2, 4, 5, 5)),
    (lambda nn: nn.Conv2d(3, 3, 4, padding="same", dilation=2, groups=3), (1, 3, 9, 7)),  # even kernel
    (lambda nn: nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"), (2, 2, 5, 6)),
    (lambda nn: nn.Conv2d(2, 3, 3, padding="valid"), (2, 5, 5)),                            # unbatched
    (lambda nn: nn.Conv1d(4, 6, 5, stride=2, padding=2, groups=2), (3, 4, 11)),
    (lambda nn: nn.Conv1d(2, 3, 3, padding="same", padding_mode="replicate", dilation=2), (2, 2, 7)),
    (lambda nn: nn.Conv1d(2, 3, 4, padding=(3,), padding_mode="circular"), (2, 2, 6)),
    (lambda nn: nn.Conv3d(2, 3, (2, 3, 2), padding=(1, 0, 1)), (1, 2, 3, 4, 3)),
])
def test_conv(make, shape):
    run_both(*both(make), randn(*shape), atol=2e-5)


@pytest.mark.parametrize("make,shape,kwargs", [
    (lambda nn: nn.ConvTranspose2d(4, 3, 3, stride=2), (2, 4, 3, 4), {}),
    (lambda nn: nn.ConvTranspose2d(4, 6, (3, 2), stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2),
     (2, 4, 4, 3), {}),
    (lambda nn: nn.ConvTranspose2d(2, 2, 3, stride=2, padding=2, dilation=2, bias=False), (1, 2, 4, 4), {}),
    (lambda nn: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1), (1, 3, 4, 4), {"output_size": (8, 8)}),
    (lambda nn: nn.ConvTranspose1d(3, 2, 4, stride=3, padding=1), (2, 3, 5), {}),
])
def test_conv_transpose(make, shape, kwargs):
    run_both(*both(make), randn(*shape), atol=2e-5, kwargs=kwargs)


@settings(max_examples=6, deadline=None)
@given(k=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 2), d=st.integers(1, 2), g=st.sampled_from([1, 2]),
       h=st.integers(5, 8))
def test_conv2d_geometry(k, s, p, d, g, h):
    w = randn(4, 4 // g, k, k)
    x = randn(1, 4, h, 6)
    b = randn(4)
    import ember.nn.functional as F
    ex, ew = ember.tensor(x, requires_grad=True), ember.tensor(w, requires_grad=True)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    y = F.conv2d(ex, ew, ember.tensor(b), s, p, d, g)
    ty = torch.nn.functional.conv2d(tx, tw, torch.tensor(b), s, p, d, g)
    g = randn(*ty.shape)
    (y * ember.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    ember.realize(y, ex.grad, ew.grad)
    close(y, ty, 2e-5)
    close(ex.grad, tx.grad, 2e-5)
    close(ew.grad, tw.grad, 2e-5)


def test_conv_errors_name_shapes():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(RuntimeError, match="expected input.*to have 3 channels, but got 2"):
        conv(ember.zeros(1, 2, 5, 5))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
        conv(ember.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match="padding='same' is not supported for strided convolutions"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="in_channels must be divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)


# ---- pooling ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.MaxPool2d(2), (2, 3, 6, 7)),
    (lambda nn: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 7, 6)),
    (lambda nn: nn.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)), (1, 2, 7, 8)),
    (lambda nn: nn.MaxPool1d(3, stride=2, padding=1), (2, 3, 9)),
    (lambda nn: nn.AvgPool2d(2), (2, 3, 6, 7)),
    (lambda nn: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 2, 8, 7)),
    (lambda nn: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 2, 7, 7)),
    (lambda nn: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), (2, 2, 8, 7)),
    (lambda nn: nn.AvgPool2d(2, divisor_override=3), (1, 2, 4, 4)),
    (lambda nn: nn.AvgPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 8)),
    (lambda nn: nn.AdaptiveAvgPool2d((1, 1)), (2, 3, 5, 4)),
    (lambda nn: nn.AdaptiveAvgPool2d((3, None)), (2, 3, 7, 4)),
    (lambda nn: nn.AdaptiveAvgPool2d(2), (3, 6, 4)),                     # unbatched, divisible
    (lambda nn: nn.AdaptiveMaxPool2d((3, 2)), (2, 2, 7, 5)),
    (lambda nn: nn.AdaptiveAvgPool1d(4), (2, 3, 9)),
])
def test_pooling(make, shape):
    run_both(*both(make), randn(*shape))


def test_max_pool_return_indices_match_torch():
    x = randn(2, 3, 7, 8)
    for kwargs in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
                   {"kernel_size": (2, 3), "stride": 1, "dilation": (2, 1)}):
        y, i = nn.functional.max_pool2d(ember.tensor(x), return_indices=True, **kwargs)
        ty, ti = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kwargs)
        close(y, ty, 0, 0)
        np.testing.assert_array_equal(i.numpy(), ti.numpy())


def test_pool_errors():
    with pytest.raises(RuntimeError, match="pad should be at most half of effective kernel size"):
        nn.functional.max_pool2d(ember.zeros(1, 1, 4, 4), 2, padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        nn.functional.avg_pool2d(ember.zeros(1, 1, 2, 2), 3)


# ---- normalisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.LayerNorm(6), (3, 6)),
    (lambda nn: nn.LayerNorm((3, 4), eps=1e-3), (2, 3, 4)),
    (lambda nn: nn.LayerNorm(5, elementwise_affine=False), (4, 5)),
    (lambda nn: nn.LayerNorm(5, bias=False), (4, 5)),
    (lambda nn: nn.GroupNorm(2, 6), (3, 6, 4, 2)),
    (lambda nn: nn.GroupNorm(3, 3, affine=False), (2, 3, 5)),
    (lambda nn: nn.InstanceNorm2d(3, affine=True), (2, 3, 4, 5)),
    (lambda nn: nn.RMSNorm(6), (3, 6)),
])
def test_norm_layers(make, shape):
    em, tm = both(make)
    for p in tm.parameters():  # non-trivial affine parameters
        torch.nn.init.normal_(p)
    run_both(em, tm, randn(*shape) * 3 + 1)


@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.BatchNorm1d(4), (8, 4)),
    (lambda nn: nn.BatchNorm1d(3, momentum=None), (5, 3, 6)),
    (lambda nn: nn.BatchNorm2d(3, momentum=0.3, eps=1e-3), (4, 3, 5, 2)),
    (lambda nn: nn.BatchNorm2d(3, affine=False), (2, 3, 4, 4)),
    (lambda nn: nn.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 4)),
])
def test_batch_norm_train_steps_then_eval(make, shape):
    em, tm = both(make)
    for p in tm.parameters():
        torch.nn.init.normal_(p)
    em.load_state_dict(tm.state_dict())
    for _ in range(3):  # running statistics (buffers) are compared after every step
        run_both(em, tm, randn(*shape) * 2 + 0.5, copy_weights=False)
        em.zero_grad()
        tm.zero_grad()
    em.eval()
    tm.eval()
    run_both(em, tm, randn(*shape), copy_weights=False)
    if tm.track_running_stats:
        assert em.num_batches_tracked.item() == 3


def test_batch_norm_errors():
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(ember.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        nn.BatchNorm1d(3)(ember.zeros(1, 3))


def test_batch_norm_state_updates_are_settled_each_step():
    bn = nn.BatchNorm1d(2)
    for _ in range(4):
        bn(ember.randn(5, 2))
        assert bn.running_mean.node.op != "buffer"  # the update is lazy until the next step or a realize
    bn(ember.randn(5, 2))
    # the chain never grows past one step: the previous update was realized before this one was built
    srcs = {s.op for s in bn.running_mean.node.srcs for s in [s] + list(s.srcs)}
    assert "buffer" in srcs


# ---- embedding --------------------------------------------------------------------------------------

def test_embedding_with_padding_idx():
    em, tm = both(lambda nn: nn.Embedding(10, 4, padding_idx=2))
    idx = np.array([[1, 2, 4], [2, 9, 1]])
    em.load_state_dict(tm.state_dict())
    ey, ty = em(ember.tensor(idx)), tm(torch.tensor(idx))
    g = randn(2, 3, 4)
    (ey * ember.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    close(ey, ty, 0, 0)
    close(em.weight.grad, tm.weight.grad)
    assert not em.weight.grad.numpy()[2].any()  # the padding row gets no gradient


def test_embedding_max_norm_renormalises_looked_up_rows():
    em, tm = both(lambda nn: nn.Embedding(6, 3, max_norm=1.0))
    em.load_state_dict(tm.state_dict())
    idx = np.array([0, 3, 3])
    close(em(ember.tensor(idx)), tm(torch.tensor(idx)), 1e-6)
    close(em.weight.detach(), tm.weight.detach(), 1e-6)  # only rows 0 and 3 were rescaled, in place


def test_embedding_from_pretrained_and_errors():
    w = randn(4, 3)
    e = nn.Embedding.from_pretrained(ember.tensor(w))
    assert not e.weight.requires_grad
    close(e(ember.tensor([3, 0])), w[[3, 0]], 0, 0)
    with pytest.raises(IndexError):
        e(ember.tensor([4]))
    with pytest.raises(RuntimeError, match="indices"):
        e(ember.tensor([1.0]))


# ---- dropout ------------------------------------------------------------------------------------------

def test_dropout_eval_is_identity_and_train_keeps_rate():
    x = ember.ones(200, 100, requires_grad=True)
    d = nn.Dropout(0.3)
    assert d.eval()(x) is x
    d.train()
    ember.manual_seed(0)
    y = d(x)
    y.sum().backward()
    v, g = y.detach().numpy(), x.grad.numpy()
    kept = v != 0
    assert abs(kept.mean() - 0.7) < 0.01                      # 20000 draws: 5 sigma is ~0.016
    np.testing.assert_allclose(v[kept], 1 / 0.7, rtol=1e-6)   # survivors are scaled by 1/(1-p)
    np.testing.assert_array_equal(g != 0, kept)              # gradient flows exactly where values survived
    np.testing.assert_allclose(g[kept], 1 / 0.7, rtol=1e-6)
    ember.manual_seed(0)
    np.testing.assert_array_equal(d(x).detach().numpy(), v)   # same seed, same mask


def test_dropout2d_drops_whole_channels():
    ember.manual_seed(1)
    x = ember.ones(40, 30, 3, 2)
    y = nn.Dropout2d(0.5)(x).numpy()
    per_channel = y.reshape(40, 30, -1)
    assert ((per_channel == 0).all(-1) | (per_channel == 2.0).all(-1)).all()
    assert abs((per_channel[..., 0] == 0).mean() - 0.5) < 0.07
    assert nn.Dropout2d(0.5).eval()(x) is x


def test_dropout_p_edges_and_errors():
    x = ember.ones(3, 4)
    close(nn.functional.dropout(x, 1.0), np.zeros((3, 4)), 0, 0)
    assert nn.functional.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)


# ---- activations as modules, upsampling ---------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda nn: nn.ReLU(), lambda nn: nn.LeakyReLU(0.2), lambda nn: nn.ELU(alpha=0.7), lambda nn: nn.GELU(),
    lambda nn: nn.GELU(approximate="tanh"), lambda nn: nn.SiLU(), lambda nn: nn.Mish(), lambda nn: nn.Sigmoid(),
    lambda nn: nn.Tanh(), lambda nn: nn.Softmax(dim=1), lambda nn: nn.LogSoftmax(dim=-1),
    lambda nn: nn.Softplus(beta=2, threshold=3), lambda nn: nn.Hardtanh(-0.5, 1.5), lambda nn: nn.ReLU6(),
    lambda nn: nn.PReLU(6), lambda nn: nn.SELU(), lambda nn: nn.CELU(0.5), lambda nn: nn.Hardswish(),
    lambda nn: nn.Hardsigmoid(), lambda nn: nn.LogSigmoid(), lambda nn: nn.Softsign(), lambda nn: nn.GLU(1),
    lambda nn: nn.Softmin(1), lambda nn: nn.Tanhshrink(), lambda nn: nn.Softshrink(0.3),
    lambda nn: nn.Threshold(0.1, -2.0),
])
def test_activation_modules(make):
    em, tm = both(make)
    assert repr(em) == repr(tm)
    run_both(em, tm, randn(4, 6, 2) * 3)


@pytest.mark.parametrize("make,shape", [
    (lambda nn: nn.Upsample(scale_factor=2), (1, 2, 3, 4)),
    (lambda nn: nn.Upsample(size=(5, 7), mode="bilinear"), (2, 2, 3, 4)),
    (lambda nn: nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True), (1, 2, 4, 3)),
    (lambda nn: nn.UpsamplingNearest2d(size=(7, 5)), (1, 1, 3, 4)),
    (lambda nn: nn.Upsample(size=9, mode="linear"), (2, 3, 4)),
    (lambda nn: nn.PixelShuffle(2), (1, 8, 2, 3)),
    (lambda nn: nn.PixelUnshuffle(2), (1, 2, 4, 6)),
])
def test_upsampling_modules(make, shape):
    em, tm = both(make)
    assert repr(em) == repr(tm)
    run_both(em, tm, randn(*shape))


# ---- a whole model ------------------------------------------------------------------------------------------

def test_mnist_cnn_forward_backward_matches_torch():
    def build(nn, F):
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn.Conv2d(1, 4, 3, 1)
                self.conv2 = nn.Conv2d(4, 8, 3, 1)
                self.dropout1 = nn.Dropout(0.25)
                self.fc1 = nn.Linear(8 * 4 * 4, 16)
                self.fc2 = nn.Linear(16, 10)

            def forward(self, x):
                x = F.relu(self.conv1(x))
                x = F.max_pool2d(F.relu(self.conv2(x)), 2)
                x = self.dropout1(x)
                x = torch.flatten(x, 1) if nn is torch.nn else ember.flatten(x, 1)
                return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)
        return Net()
    torch.manual_seed(0)
    em, tm = build(nn, nn.functional), build(torch.nn, torch.nn.functional)
    em.eval()
    tm.eval()
    em.load_state_dict(tm.state_dict())
    x, y = randn(3, 1, 12, 12), np.array([1, 7, 3])
    el = nn.functional.nll_loss(em(ember.tensor(x)), ember.tensor(y))
    tl = torch.nn.functional.nll_loss(tm(torch.tensor(x)), torch.tensor(y))
    el.backward()
    tl.backward()
    close(el, tl)
    for (name, p), (_, q) in zip(em.named_parameters(), tm.named_parameters()):
        close(p.grad, q.grad, 1e-5, 1e-4, name)
