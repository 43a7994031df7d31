"""nn.functional against torch.nn.functional: activations, losses (every reduction), and the
utility functions (one_hot, pad, interpolate, normalize, unfold/fold, embedding)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st
from test_nn_support import RNG, close, randn

import ember
import ember.nn.functional as F
from ember import nn

pytestmark = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")


def compare(fn, tfn, inputs, grad=None, atol=1e-5, rtol=1e-4, **kwargs):
    """fn(*inputs, **kwargs) vs tfn(...): value, and the gradient of every float input listed in grad
    (default: all float inputs)."""
    grad = [i for i, x in enumerate(inputs) if isinstance(x, np.ndarray) and x.dtype.kind == "f"] \
        if grad is None else grad
    ex = [ember.tensor(x, requires_grad=i in grad) if isinstance(x, np.ndarray) else x for i, x in enumerate(inputs)]
    tx = [torch.tensor(x, requires_grad=i in grad) if isinstance(x, np.ndarray) else x for i, x in enumerate(inputs)]
    ey, ty = fn(*ex, **kwargs), tfn(*tx, **kwargs)
    if not grad:
        close(ey, ty, atol, rtol, "value")
        return
    g = RNG.standard_normal(tuple(ty.shape)).astype(np.float32)
    (ey * ember.tensor(g)).sum().backward()
    (ty * torch.tensor(g)).sum().backward()
    ember.realize(ey, *[ex[i].grad for i in grad])
    close(ey, ty, atol, rtol, "value")
    for i in grad:
        close(ex[i].grad, tx[i].grad, atol, rtol, f"grad of input {i}")


# ---- activations --------------------------------------------------------------------------------

ACTIVATIONS = [
    ("relu", {}), ("relu6", {}), ("leaky_relu", {"negative_slope": 0.1}), ("elu", {"alpha": 1.3}), ("selu", {}),
    ("celu", {"alpha": 0.6}), ("gelu", {}), ("gelu", {"approximate": "tanh"}), ("silu", {}), ("mish", {}),
    ("sigmoid", {}), ("tanh", {}), ("softplus", {}), ("softplus", {"beta": 0.5, "threshold": 2.0}),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}), ("hardsigmoid", {}), ("hardswish", {}), ("logsigmoid", {}),
    ("softsign", {}), ("tanhshrink", {}), ("hardshrink", {"lambd": 0.7}), ("softshrink", {"lambd": 0.2}),
    ("threshold", {"threshold": 0.3, "value": 5.0}), ("softmax", {"dim": 1}), ("log_softmax", {"dim": 0}),
    ("softmin", {"dim": -1}), ("glu", {"dim": 1}),
]


@pytest.mark.parametrize("name,kwargs", ACTIVATIONS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ACTIVATIONS)])
def test_activation(name, kwargs):
    x = randn(3, 4, 5) * 4
    x[0, 0, :4] = [0.0, 30.0, -30.0, 100.0]    # kinks and the saturated ranges
    compare(getattr(F, name), getattr(TF, name), [x], **kwargs)


def test_activation_gradients_at_kinks_are_torchs():
    x = np.array([-1.0, 0.0, 1.0, -0.5, 0.5, 6.0, -3.0, 3.0], np.float32)
    for name, kwargs in [("relu", {}), ("leaky_relu", {}), ("elu", {}), ("relu6", {}), ("hardtanh", {"min_val": -0.5,
                         "max_val": 0.5}), ("softplus", {}), ("logsigmoid", {}), ("silu", {})]:
        compare(getattr(F, name), getattr(TF, name), [x], **kwargs)


def test_prelu_and_inplace():
    compare(F.prelu, TF.prelu, [randn(2, 3, 4), np.array([0.1, -0.2, 0.3], np.float32)])
    x = ember.tensor([-1.0, 2.0])
    y = x * 1
    assert F.relu(y, inplace=True) is y
    close(y, [0.0, 2.0])


def test_softmax_default_dim_follows_torch():
    for shape in [(5,), (2, 3), (2, 3, 4), (2, 3, 4, 2)]:
        x = randn(*shape)
        with pytest.warns(UserWarning):
            t = TF.softmax(torch.tensor(x), dim=None)
        close(F.softmax(ember.tensor(x)), t)


# ---- losses -------------------------------------------------------------------------------------

REDUCTIONS = ["none", "mean", "sum"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,kwargs", [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {}),
                                         ("smooth_l1_loss", {"beta": 0.5}), ("smooth_l1_loss", {"beta": 0.0}),
                                         ("huber_loss", {}), ("huber_loss", {"delta": 0.3})])
def test_regression_losses(name, kwargs, reduction):
    a, b = randn(4, 5), randn(4, 5)
    b[0, :2] = a[0, :2]  # zero differences: the gradient there is torch's (0 for l1)
    compare(getattr(F, name), getattr(TF, name), [a, b], reduction=reduction, **kwargs)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["plain", "weight", "ignore", "smooth", "weight+smooth+ignore", "spatial",
                                  "unbatched", "probs", "probs+weight+smooth"])
def test_cross_entropy(case, reduction):
    n, c = 6, 5
    spatial = case == "spatial"
    x = randn(n, c, 3, 2) if spatial else randn(c) if case == "unbatched" else randn(n, c)
    if case.startswith("probs"):
        t = np.abs(randn(*x.shape))
        t = t / t.sum(1, keepdims=True)
    else:
        t = RNG.integers(0, c, size=(n, 3, 2) if spatial else () if case == "unbatched" else (n,))
        if "ignore" in case:
            t[1] = 3
    kwargs = {"reduction": reduction}
    if "weight" in case:
        kwargs["weight"] = np.abs(randn(c)) + 0.1
    if "ignore" in case:
        kwargs["ignore_index"] = 3
    if "smooth" in case:
        kwargs["label_smoothing"] = 0.2
    w = kwargs.pop("weight", None)
    ew = None if w is None else ember.tensor(w)
    tw = None if w is None else torch.tensor(w)
    compare(lambda a, b: F.cross_entropy(a, b, ew, **kwargs), lambda a, b: TF.cross_entropy(a, b, tw, **kwargs),
            [x, t], grad=[0])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_with_weight_and_ignore(reduction):
    logp = np.log(np.abs(randn(7, 4)) + 0.1)
    t = np.array([0, 3, 1, 1, 2, -100, 3])
    w = np.abs(randn(4)) + 0.5
    compare(lambda a, b: F.nll_loss(a, b, ember.tensor(w), reduction=reduction),
            lambda a, b: TF.nll_loss(a, b, torch.tensor(w), reduction=reduction), [logp, t], grad=[0])
    compare(lambda a, b: nn.NLLLoss(ignore_index=1, reduction=reduction)(a, b),
            lambda a, b: torch.nn.NLLLoss(ignore_index=1, reduction=reduction)(a, b), [logp, t.clip(0)], grad=[0])


def test_classification_loss_errors():
    with pytest.raises(IndexError, match="Target 5 is out of bounds"):
        F.cross_entropy(ember.zeros(2, 5), ember.tensor([1, 5]))
    with pytest.raises(ValueError, match=r"Expected input batch_size \(2\) to match target batch_size \(3\)"):
        F.cross_entropy(ember.zeros(2, 5), ember.tensor([1, 2, 3]))
    with pytest.raises(RuntimeError, match="expected scalar type Long"):
        F.nll_loss(ember.zeros(2, 5), ember.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        F.mse_loss(ember.zeros(2), ember.zeros(2), reduction="avg")


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy(reduction):
    p = 1 / (1 + np.exp(-randn(4, 3)))
    t = (RNG.random((4, 3)) > 0.5).astype(np.float32)
    w = np.abs(randn(4, 3))
    compare(F.binary_cross_entropy, TF.binary_cross_entropy, [p, t], grad=[0], reduction=reduction)
    compare(lambda a, b: nn.BCELoss(ember.tensor(w), reduction=reduction)(a, b),
            lambda a, b: torch.nn.BCELoss(torch.tensor(w), reduction=reduction)(a, b), [p, t], grad=[0])
    with pytest.raises(ValueError):
        F.binary_cross_entropy(ember.tensor(p), ember.tensor(t[:, :1]))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_with_logits(reduction):
    x = randn(5, 3) * 5
    x[0] = [0.0, 40.0, -40.0]                   # the kink at 0 and saturated logits
    t = RNG.random((5, 3)).astype(np.float32)   # soft targets
    pw, w = np.abs(randn(3)) + 0.5, np.abs(randn(5, 3))
    compare(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits, [x, t], reduction=reduction)
    compare(lambda a, b: nn.BCEWithLogitsLoss(ember.tensor(w), reduction=reduction, pos_weight=ember.tensor(pw))(a, b),
            lambda a, b: torch.nn.BCEWithLogitsLoss(torch.tensor(w), reduction=reduction,
                                                    pos_weight=torch.tensor(pw))(a, b), [x, t])


@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    inp = np.log(np.abs(randn(4, 5)) + 0.05)
    t = np.abs(randn(4, 5))
    t[0, 0] = 0.0  # 0 * log 0 counts as 0
    if log_target:
        t = np.log(t + 0.1)
    # torch's gradient for the target is NaN where the target is 0; ember's is finite: compare input grads
    compare(F.kl_div, TF.kl_div, [inp, t], grad=[0, 1] if log_target else [0], reduction=reduction,
            log_target=log_target)


@pytest.mark.parametrize("name,make_inputs,kwargs", [
    ("poisson_nll_loss", lambda: [randn(4, 3), np.abs(randn(4, 3)) * 3], {}),
    ("poisson_nll_loss", lambda: [np.abs(randn(4, 3)) + 0.1, np.round(np.abs(randn(4, 3)) * 3)],
     {"log_input": False, "full": True}),
    ("gaussian_nll_loss", lambda: [randn(4, 3), randn(4, 3), np.abs(randn(4, 3)) + 0.1], {}),
    ("gaussian_nll_loss", lambda: [randn(4, 3), randn(4, 3), np.abs(randn(4, 1)) + 0.1], {"full": True}),
    ("margin_ranking_loss", lambda: [randn(6), randn(6), np.sign(randn(6))], {"margin": 0.3}),
    ("hinge_embedding_loss", lambda: [randn(6), np.sign(randn(6))], {"margin": 0.5}),
    ("soft_margin_loss", lambda: [randn(6), np.sign(randn(6))], {}),
    ("multilabel_soft_margin_loss", lambda: [randn(4, 3), (randn(4, 3) > 0).astype(np.float32)], {}),
    ("cosine_embedding_loss", lambda: [randn(5, 3), randn(5, 3), np.sign(randn(5))], {"margin": 0.1}),
    ("triplet_margin_loss", lambda: [randn(5, 3), randn(5, 3), randn(5, 3)], {}),
    ("triplet_margin_loss", lambda: [randn(5, 3), randn(5, 3), randn(5, 3)], {"p": 1, "swap": True}),
])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_other_losses(name, make_inputs, kwargs, reduction):
    inputs = make_inputs()
    grad = [i for i in range(len(inputs)) if not (name in ("margin_ranking_loss", "cosine_embedding_loss")
                                                   and i == 2) and not (name in ("hinge_embedding_loss",
                                                   "soft_margin_loss", "multilabel_soft_margin_loss",
                                                   "poisson_nll_loss") and i == 1)]
    compare(getattr(F, name), getattr(TF, name), inputs, grad=grad, reduction=reduction, **kwargs)


def test_loss_modules_match_torch_repr_and_value():
    x, t = randn(4, 3), RNG.integers(0, 3, 4)
    for make in [lambda nn: nn.CrossEntropyLoss(), lambda nn: nn.MSELoss(reduction="sum"), lambda nn: nn.L1Loss(),
                 lambda nn: nn.SmoothL1Loss(beta=0.5), lambda nn: nn.HuberLoss(delta=2.0), lambda nn: nn.KLDivLoss()]:
        em, tm = make(nn), make(torch.nn)
        assert repr(em) == repr(tm)
        if isinstance(tm, torch.nn.CrossEntropyLoss):
            close(em(ember.tensor(x), ember.tensor(t)), tm(torch.tensor(x), torch.tensor(t)))
        else:
            close(em(ember.tensor(x), ember.tensor(abs(x))), tm(torch.tensor(x), torch.tensor(abs(x))))
    assert list(nn.CrossEntropyLoss(weight=ember.ones(3)).state_dict()) == \
        list(torch.nn.CrossEntropyLoss(weight=torch.ones(3)).state_dict())


# ---- utilities --------------------------------------------------------------------------------------

def test_one_hot():
    t = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(F.one_hot(ember.tensor(t)).numpy(), TF.one_hot(torch.tensor(t)).numpy())
    np.testing.assert_array_equal(F.one_hot(ember.tensor(t), 6).numpy(), TF.one_hot(torch.tensor(t), 6).numpy())
    assert F.one_hot(ember.tensor(t)).dtype is ember.int64
    with pytest.raises(RuntimeError, match="Class values must be smaller than num_classes"):
        F.one_hot(ember.tensor(t), 3)
    with pytest.raises(RuntimeError, match="LongTensor"):
        F.one_hot(ember.tensor([1.0]))


@pytest.mark.parametrize("pad,mode,value", [((1, 2), "constant", 0.0), ((1, 0, 2, 1), "constant", -1.5),
                                            ((2, 1, 1, 2), "reflect", None), ((1, 1, 0, 2), "replicate", None),
                                            ((1, 2, 2, 0), "circular", None), ((-1, 1), "constant", 0.0)])
def test_pad(pad, mode, value):
    kwargs = {"mode": mode} if value is None else {"mode": mode, "value": value}
    compare(F.pad, TF.pad, [randn(2, 3, 4, 5)], pad=pad, **kwargs)


@pytest.mark.parametrize("kwargs,shape", [
    ({"scale_factor": 2}, (1, 2, 3, 4)),
    ({"size": (5, 3)}, (2, 1, 3, 4)),
    ({"scale_factor": (1.7, 0.6)}, (1, 2, 5, 6)),
    ({"size": (7, 5), "mode": "nearest-exact"}, (1, 2, 3, 4)),
    ({"size": (5, 7), "mode": "bilinear"}, (2, 2, 3, 4)),
    ({"scale_factor": 0.5, "mode": "bilinear"}, (1, 2, 6, 5)),
    ({"size": (6, 4), "mode": "bilinear", "align_corners": True}, (1, 2, 3, 4)),
    ({"scale_factor": 2.5, "mode": "bilinear", "recompute_scale_factor": True}, (1, 1, 3, 3)),
    ({"size": 7, "mode": "linear"}, (2, 3, 4)),
    ({"size": (2, 3), "mode": "area"}, (1, 2, 5, 7)),
    ({"size": (3, 2, 4), "mode": "trilinear"}, (1, 1, 2, 3, 3)),
])
def test_interpolate(kwargs, shape):
    compare(F.interpolate, TF.interpolate, [randn(*shape)], **kwargs)


def test_interpolate_errors():
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        F.interpolate(ember.zeros(1, 1, 2, 2), scale_factor=2, align_corners=True)
    with pytest.raises(NotImplementedError):
        F.interpolate(ember.zeros(1, 1, 2), scale_factor=2, mode="bilinear")


@pytest.mark.parametrize("p,dim", [(2.0, 1), (1.0, 0), (3.0, -1)])
def test_normalize(p, dim):
    x = randn(3, 4)
    x[0] = 0.0  # a zero vector: finite result and gradient, as in torch
    compare(F.normalize, TF.normalize, [x], p=p, dim=dim)


def test_cosine_similarity_and_pairwise_distance():
    compare(F.cosine_similarity, TF.cosine_similarity, [randn(4, 5), randn(4, 5)])
    compare(F.pairwise_distance, TF.pairwise_distance, [randn(4, 5), randn(4, 5)])
    compare(F.pairwise_distance, TF.pairwise_distance, [randn(4, 5), randn(4, 5)], p=1.0, keepdim=True)


@settings(max_examples=6, deadline=None)
@given(k=st.tuples(st.integers(1, 3), st.integers(1, 3)), s=st.integers(1, 2), p=st.integers(0, 1),
       d=st.integers(1, 2))
def test_unfold_fold(k, s, p, d):
    x = randn(2, 3, 6, 5)
    compare(F.unfold, TF.unfold, [x], kernel_size=k, stride=s, padding=p, dilation=d)
    cols = TF.unfold(torch.tensor(x), k, d, p, s).numpy()
    compare(F.fold, TF.fold, [cols], output_size=(6, 5), kernel_size=k, stride=s, padding=p, dilation=d)


def test_linear_and_embedding_functional():
    compare(F.linear, TF.linear, [randn(3, 4), randn(2, 4), randn(2)])
    compare(F.linear, TF.linear, [randn(2, 3, 4), randn(5, 4)])
    idx = np.array([[0, 2], [3, 2]])
    compare(F.embedding, TF.embedding, [idx, randn(4, 3)], grad=[1], padding_idx=2)


def test_batch_norm_functional_updates_running_stats_in_place():
    x = randn(6, 3, 2)
    erm, erv = ember.zeros(3), ember.ones(3)
    trm, trv = torch.zeros(3), torch.ones(3)
    y = F.batch_norm(ember.tensor(x), erm, erv, training=True, momentum=0.2)
    ty = TF.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.2)
    close(y, ty)
    close(erm, trm)
    close(erv, trv)
    close(F.batch_norm(ember.tensor(x), erm, erv), TF.batch_norm(torch.tensor(x), trm, trv))


def test_layer_and_group_norm_functional():
    compare(lambda x, w, b: F.layer_norm(x, (4, 5), w, b), lambda x, w, b: TF.layer_norm(x, (4, 5), w, b),
            [randn(3, 4, 5), randn(4, 5), randn(4, 5)])
    compare(lambda x, w, b: F.group_norm(x, 2, w, b), lambda x, w, b: TF.group_norm(x, 2, w, b),
            [randn(2, 4, 3), randn(4), randn(4)])
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(ember.zeros(3, 4), (5,))


def test_half_precision_norm_and_softmax_stay_in_dtype():
    x = randn(4, 8)
    for dt, tdt in ((ember.float16, torch.float16), (ember.bfloat16, torch.bfloat16)):
        e = F.layer_norm(ember.tensor(x).to(dt), (8,))
        t = TF.layer_norm(torch.tensor(x).to(tdt), (8,))
        assert e.dtype is dt
        close(e.to(ember.float32), t.float(), 2e-2, 2e-2)
