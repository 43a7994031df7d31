"""Transformer layers against torch with the same weights (eval mode: dropout off): outputs, input
and parameter gradients for encoder/decoder layers and stacks, post- and pre-norm, both batch
layouts, with masks; train-mode dropout by shape and seeding; structure, repr and errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_nn_seq_support import compare, randn

import ember
import ember.nn.functional as F
from ember import nn

D, H, FF = 8, 2, 12


def pair(make):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "enable_nested_tensor is True, but ..."
        return make(nn, F), make(torch.nn, torch.nn.functional)


def seq(L, N, batch_first):
    return randn(N, L, D) if batch_first else randn(L, N, D)


def causal(L):
    return np.triu(np.full((L, L), -np.inf, np.float32), 1)


def padding(N, S):
    m = np.zeros((N, S), bool)
    m[0, -2:] = True         # the first sequence is 2 shorter
    return m


ACTIVATIONS = {"relu": lambda F: "relu", "gelu": lambda F: "gelu", "callable": lambda F: F.silu,
               "default": None}


@pytest.mark.parametrize("norm_first,batch_first,activation", [
    (False, False, "default"), (True, True, "default"), (False, True, "relu"), (True, False, "gelu"),
    (False, False, "callable"), (True, True, "callable")])
def test_encoder_layer(norm_first, batch_first, activation):
    act = ACTIVATIONS[activation]
    em, tm = pair(lambda nn, F: nn.TransformerEncoderLayer(
        D, H, FF, batch_first=batch_first, norm_first=norm_first, **({} if act is None else {"activation": act(F)})))
    assert em.activation_relu_or_gelu == tm.activation_relu_or_gelu
    compare(em, tm, [seq(4, 3, batch_first)])


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_masks(norm_first):
    em, tm = pair(lambda nn, F: nn.TransformerEncoderLayer(D, H, FF, batch_first=True, norm_first=norm_first))
    compare(em, tm, [seq(5, 2, True)], {"src_mask": causal(5), "src_key_padding_mask": padding(2, 5).astype(
        np.float32) * -1e9})
    compare(em, tm, [seq(5, 2, True)], {"src_mask": causal(5), "is_causal": True})


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_with_norm(norm_first):
    em, tm = pair(lambda nn, F: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(D, H, FF, norm_first=norm_first, activation="gelu"), 2, norm=nn.LayerNorm(D)))
    L, N = 3, 2
    mask = np.zeros((N, L), bool)
    mask[1, -1] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare(em, tm, [seq(L, N, False)], {"mask": causal(L), "src_key_padding_mask": mask})
    # a bool padding mask with a float mask is deprecated in PyTorch; both warn once
    assert sum("mismatched src_key_padding_mask and mask" in str(w.message) for w in caught) == 2


@pytest.mark.parametrize("norm_first,batch_first", [(False, False), (True, True)])
def test_decoder_layer(norm_first, batch_first):
    em, tm = pair(lambda nn, F: nn.TransformerDecoderLayer(D, H, FF, batch_first=batch_first, norm_first=norm_first))
    compare(em, tm, [seq(3, 2, batch_first), seq(5, 2, batch_first)],
            {"tgt_mask": causal(3), "memory_key_padding_mask": padding(2, 5)})


@pytest.mark.filterwarnings("ignore:Support for mismatched")
def test_decoder_layer_all_masks():
    em, tm = pair(lambda nn, F: nn.TransformerDecoderLayer(D, H, FF, activation=F.gelu))
    compare(em, tm, [seq(4, 2, False), seq(5, 2, False)],
            {"tgt_mask": causal(4) == -np.inf, "memory_mask": randn(4, 5), "tgt_key_padding_mask": padding(2, 4),
             "memory_key_padding_mask": padding(2, 5), "tgt_is_causal": False})


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_with_norm(norm_first):
    em, tm = pair(lambda nn, F: nn.TransformerDecoder(
        nn.TransformerDecoderLayer(D, H, FF, norm_first=norm_first, batch_first=True), 2, norm=nn.LayerNorm(D)))
    compare(em, tm, [seq(3, 2, True), seq(2, 2, True)], {"tgt_mask": causal(3)})


def test_transformer():
    em, tm = pair(lambda nn, F: nn.Transformer(D, H, 1, 1, FF, batch_first=True))
    mask = tm.generate_square_subsequent_mask(4).numpy()
    np.testing.assert_array_equal(nn.Transformer.generate_square_subsequent_mask(4).numpy(), mask)
    compare(em, tm, [seq(5, 2, True), seq(4, 2, True)], {"tgt_mask": mask, "src_key_padding_mask": padding(2, 5)})


def test_unbatched_encoder_layer():
    em, tm = pair(lambda nn, F: nn.TransformerEncoderLayer(D, H, FF))
    compare(em, tm, [randn(5, D)], {"src_mask": causal(5)})


# ---- training mode ---------------------------------------------------------------------------------

def test_train_mode_without_dropout_equals_torch():
    em, tm = pair(lambda nn, F: nn.TransformerDecoderLayer(D, H, FF, dropout=0.0))
    compare(em, tm, [seq(4, 2, False), seq(5, 2, False)], train=True)


def test_train_mode_dropout_is_random_and_seeded():
    em, _ = pair(lambda nn, F: nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF, dropout=0.3), 1))
    x = ember.tensor(seq(4, 2, False))
    em.train()
    a, b = em(x).detach().numpy(), em(x).detach().numpy()
    assert a.shape == (4, 2, D) and not np.allclose(a, b)
    ember.manual_seed(5)
    c = em(x).detach().numpy()
    ember.manual_seed(5)
    np.testing.assert_array_equal(c, em(x).detach().numpy())
    em.eval()
    np.testing.assert_array_equal(em(x).detach().numpy(), em(x).detach().numpy())


# ---- structure -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda nn, F: nn.TransformerEncoderLayer(D, H, FF, bias=False),
    lambda nn, F: nn.TransformerDecoderLayer(D, H, FF, layer_norm_eps=1e-3),
    lambda nn, F: nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF), 3, norm=nn.LayerNorm(D)),
    lambda nn, F: nn.Transformer(D, H, 2, 1, FF),
])
def test_parameters_and_repr(make):
    em, tm = pair(make)
    assert [(n, tuple(p.shape)) for n, p in em.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
    assert repr(em) == repr(tm)


def test_clones_are_independent():
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(D, H, FF), 2)
    w0, w1 = enc.layers[0].linear1.weight, enc.layers[1].linear1.weight
    assert w0 is not w1
    with ember.no_grad():
        w0.fill_(0.5)
    assert np.all(w0.detach().numpy() == 0.5) and not np.all(w1.detach().numpy() == 0.5)


def test_transformer_init_is_xavier():
    ember.manual_seed(0)
    model = nn.Transformer(16, 4, 1, 1, 32)
    w = model.encoder.layers[0].linear1.weight.detach().numpy()   # (32, 16)
    bound = np.sqrt(6 / (16 + 32))
    assert np.all(np.abs(w) <= bound) and abs(w.std() - bound / np.sqrt(3)) < 0.15 * bound


@pytest.mark.parametrize("call,match", [
    (lambda nn: nn.TransformerEncoderLayer(D, H, FF, activation="tanh"), "activation should be relu/gelu, not tanh"),
    (lambda nn: nn.Transformer(D, H, 1, 1, FF)(ember.zeros(5, 2, D) if nn is not torch.nn else torch.zeros(5, 2, D),
                                               ember.zeros(4, 3, D) if nn is not torch.nn else torch.zeros(4, 3, D)),
     "the batch number of src and tgt must be equal"),
    (lambda nn: nn.Transformer(D, H, 1, 1, FF)(ember.zeros(5, 2, 4) if nn is not torch.nn else torch.zeros(5, 2, 4),
                                               ember.zeros(4, 2, D) if nn is not torch.nn else torch.zeros(4, 2, D)),
     "the feature number of src and tgt must be equal to d_model"),
])
def test_errors(call, match):
    for lib in (torch.nn, nn):
        with pytest.raises(RuntimeError, match=match):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call(lib)
