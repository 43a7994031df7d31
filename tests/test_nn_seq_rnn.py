"""RNN, LSTM, GRU and their cells against torch with the same weights: outputs, final states, input
and initial-state gradients and parameter gradients; parameter names/shapes/initialisation;
PyTorch's errors; dropout between layers."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from test_nn_seq_support import compare, randn

import ember
from ember import nn

MODES = {"rnn_tanh": ("RNN", {}), "rnn_relu": ("RNN", {"nonlinearity": "relu"}), "lstm": ("LSTM", {}),
         "gru": ("GRU", {})}


def make_pair(mode: str, *args, **kw):
    cls, extra = MODES[mode]
    kw = {**extra, **kw}
    torch.manual_seed(0)
    return getattr(nn, cls)(*args, **kw), getattr(torch.nn, cls)(*args, **kw)


def states(mode, layers, dirs, batch, hidden, proj=0):
    """Random initial states shaped like PyTorch expects (batch None = unbatched)."""
    lead = (layers * dirs,) + (() if batch is None else (batch,))
    h = randn(*lead, proj or hidden)
    return (h, randn(*lead, hidden)) if mode == "lstm" else h


# Sequences stay short: the graph (and its compile time) grows with T * layers * directions.
CONFIGS = [  # (num_layers, bidirectional, batch_first, with h0, bias)
    (1, False, False, False, True),
    (2, False, True, True, False),
    (1, True, False, True, True),
]


@pytest.mark.parametrize("mode,layers,bidir,batch_first,with_h0,bias",
                         [(m,) + c for m in MODES for c in CONFIGS] + [("lstm", 2, True, True, True, True),
                                                                       ("gru", 2, True, False, False, True)])
def test_rnn_matches_torch(mode, layers, bidir, batch_first, with_h0, bias):
    T, N, I, H = 3, 2, 5, 6
    em, tm = make_pair(mode, I, H, layers, bias=bias, batch_first=batch_first, bidirectional=bidir)
    x = randn(N, T, I) if batch_first else randn(T, N, I)
    args = [x] + ([states(mode, layers, 2 if bidir else 1, N, H)] if with_h0 else [])
    compare(em, tm, args)


@pytest.mark.parametrize("mode,with_h0", [("rnn_tanh", True), ("rnn_relu", False), ("lstm", True), ("gru", False),
                                          ("lstm", False), ("gru", True)])
def test_rnn_unbatched(mode, with_h0):
    em, tm = make_pair(mode, 3, 4, 1, bidirectional=True, batch_first=True)
    args = [randn(3, 3)] + ([states(mode, 1, 2, None, 4)] if with_h0 else [])
    eo, to = compare(em, tm, args)
    assert tuple(eo[0].shape) == (3, 8)


@pytest.mark.parametrize("layers,bidir", [(2, False), (1, True)])
def test_lstm_projection(layers, bidir):
    em, tm = make_pair("lstm", 4, 6, layers, proj_size=3, bidirectional=bidir)
    dirs = 2 if bidir else 1
    assert tuple(em.weight_hr_l0.shape) == (3, 6) and tuple(em.weight_hh_l0.shape) == (24, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: "LSTM with projections is not supported with oneDNN"
        eo, _ = compare(em, tm, [randn(3, 2, 4), states("lstm", layers, dirs, 2, 6, proj=3)])
    assert tuple(eo[0].shape) == (3, 2, 3 * dirs) and tuple(eo[1][1].shape) == (layers * dirs, 2, 6)


@settings(max_examples=4, deadline=None)
@given(mode=st.sampled_from(list(MODES)), T=st.integers(1, 3), N=st.integers(1, 3), I=st.integers(1, 4),
       H=st.integers(1, 5), layers=st.integers(1, 2), bidir=st.booleans(), batch_first=st.booleans(),
       with_h0=st.booleans())
def test_rnn_random_shapes(mode, T, N, I, H, layers, bidir, batch_first, with_h0):
    em, tm = make_pair(mode, I, H, layers, batch_first=batch_first, bidirectional=bidir)
    x = randn(N, T, I) if batch_first else randn(T, N, I)
    compare(em, tm, [x] + ([states(mode, layers, 2 if bidir else 1, N, H)] if with_h0 else []))


@pytest.mark.parametrize("mode", list(MODES))
def test_single_step_zero_state(mode):
    """T=1 without h0: weight_hh only meets the zero state; torch still gives it a (zero) gradient."""
    em, tm = make_pair(mode, 3, 4, 2, bidirectional=True)
    compare(em, tm, [randn(1, 2, 3)])
    assert np.all(em.weight_hh_l1_reverse.grad.numpy() == 0)


def test_rnn_float64():
    torch.manual_seed(0)
    em, tm = nn.GRU(3, 4, 2, dtype=ember.float64), torch.nn.GRU(3, 4, 2, dtype=torch.float64)
    assert em.weight_ih_l0.dtype is ember.float64
    compare(em, tm, [randn(3, 2, 3).astype(np.float64)], atol=1e-10, rtol=1e-10)


def test_rnn_zero_batch():
    em, tm = make_pair("lstm", 3, 4)
    out, (h, c) = em(ember.zeros(3, 0, 3))
    assert tuple(out.shape) == (3, 0, 4) and tuple(h.shape) == tuple(c.shape) == (1, 0, 4)


# ---- parameters, initialisation, repr ----------------------------------------------------------------

@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("kw", [{}, {"num_layers": 3, "bidirectional": True, "bias": False},
                                {"num_layers": 2, "batch_first": True, "dropout": 0.25}])
def test_parameter_names_shapes_repr(mode, kw):
    em, tm = make_pair(mode, 7, 5, **kw)
    assert [(n, tuple(p.shape)) for n, p in em.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
    assert repr(em) == repr(tm)
    assert [[tuple(p.shape) for p in ws] for ws in em.all_weights] == \
        [[tuple(p.shape) for p in ws] for ws in tm.all_weights]
    # and the other way: ember's state_dict loads into torch
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in em.state_dict().items()})


@pytest.mark.parametrize("make", [lambda nn: nn.LSTM(4, 16, 2, bidirectional=True), lambda nn: nn.GRUCell(3, 16),
                                  lambda nn: nn.RNN(3, 16, bias=False)])
def test_default_init_is_uniform_in_bound(make):
    ember.manual_seed(0)
    em = make(nn)
    bound = 1 / np.sqrt(16)
    values = np.concatenate([p.detach().numpy().ravel() for p in em.parameters()]).astype(np.float64)
    assert np.all(np.abs(values) <= bound)
    # U(-b, b): mean 0 and std b / sqrt(3), within 5 standard errors (a few hundred samples at least)
    std, n = bound / np.sqrt(3), values.size
    assert abs(values.mean()) < 5 * std / np.sqrt(n)
    assert abs(values.std() - std) < 5 * std / np.sqrt(n)
    assert len(np.unique(values)) > 0.9 * values.size


# ---- cells -----------------------------------------------------------------------------------------------

CELLS = {"rnn_tanh": ("RNNCell", {}), "rnn_relu": ("RNNCell", {"nonlinearity": "relu"}), "lstm": ("LSTMCell", {}),
         "gru": ("GRUCell", {})}


@pytest.mark.parametrize("mode", list(CELLS))
@pytest.mark.parametrize("batch,with_h,bias", [(3, True, True), (2, False, False), (None, True, True),
                                               (None, False, True)])
def test_cells(mode, batch, with_h, bias):
    cls, extra = CELLS[mode]
    torch.manual_seed(0)
    em, tm = getattr(nn, cls)(4, 5, bias=bias, **extra), getattr(torch.nn, cls)(4, 5, bias=bias, **extra)
    assert repr(em) == repr(tm)
    x = randn(4) if batch is None else randn(batch, 4)
    h = None
    if with_h:
        shape = () if batch is None else (batch,)
        h = (randn(*shape, 5), randn(*shape, 5)) if mode == "lstm" else randn(*shape, 5)
    compare(em, tm, [x] if h is None else [x, h])


def test_cell_sequence_equals_layer():
    """Stepping an LSTMCell with the layer's weights gives the layer's outputs (independent of torch)."""
    torch.manual_seed(0)
    layer, cell = nn.LSTM(3, 4), nn.LSTMCell(3, 4)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    x = ember.tensor(randn(5, 2, 3))
    out, (h_n, c_n) = layer(x)
    h = c = ember.tensor(np.zeros((2, 4), np.float32))
    steps = []
    for t in range(5):
        h, c = cell(x[t], (h, c))
        steps.append(h)
    np.testing.assert_allclose(ember.stack(steps).detach().numpy(), out.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(c.detach().numpy(), c_n[0].detach().numpy(), atol=1e-6)


# ---- dropout between layers -----------------------------------------------------------------------------

def test_dropout_between_layers():
    em, tm = make_pair("gru", 3, 4, 2, dropout=0.5)
    x = randn(4, 2, 3)
    compare(em, tm, [x], train=False)   # eval: no dropout, equals torch
    em.train()
    a, b = (em(ember.tensor(x))[0].detach().numpy() for _ in range(2))
    assert a.shape == (4, 2, 4) and not np.allclose(a, b)  # fresh masks per call
    ember.manual_seed(3)
    c = em(ember.tensor(x))[0].detach().numpy()
    ember.manual_seed(3)
    np.testing.assert_array_equal(c, em(ember.tensor(x))[0].detach().numpy())


def test_dropout_one_zeroes_the_next_layers_input():
    """dropout=1 drops every input of layer 1, deterministically (torch agrees, in train mode)."""
    em, tm = make_pair("lstm", 3, 4, 2, dropout=1.0)
    compare(em, tm, [randn(3, 2, 3)], train=True)


def test_no_dropout_after_last_layer():
    em, _ = make_pair("rnn_tanh", 3, 4, 1)
    em.dropout = 0.9
    em.train()
    x = ember.tensor(randn(4, 2, 3))
    np.testing.assert_array_equal(em(x)[0].detach().numpy(), em(x)[0].detach().numpy())


# ---- errors (same types as torch, messages naming the sizes) ---------------------------------------------

def _same_error(make_call, match):
    errors = []
    for lib, mod in ((nn, ember), (torch.nn, torch)):
        with pytest.raises(Exception, match=match) as info:
            make_call(lib, mod)
        errors.append(info.value)
    e, t = errors
    assert isinstance(e, type(t)), f"ember raised {type(e).__name__}, torch {type(t).__name__}"


@pytest.mark.parametrize("call,match", [
    (lambda nn, m: nn.LSTM(3, 4)(m.zeros(2, 3, 5)), r"input.size\(-1\) must be equal to input_size. Expected 3, got 5"),
    (lambda nn, m: nn.GRU(3, 4)(m.zeros(2, 2, 3, 3)), "GRU: Expected input to be 2D or 3D, got 4D instead"),
    (lambda nn, m: nn.RNN(3, 4)(m.zeros(3)), "RNN: Expected input to be 2D or 3D, got 1D tensor instead"),
    (lambda nn, m: nn.RNN(3, 4, 2)(m.zeros(5, 2, 3), m.zeros(1, 2, 4)),
     r"Expected hidden size \(2, 2, 4\), got \[1, 2, 4\]"),
    (lambda nn, m: nn.LSTM(3, 4)(m.zeros(5, 2, 3), (m.zeros(1, 2, 4), m.zeros(1, 3, 4))),
     r"Expected hidden\[1\] size \(1, 2, 4\), got \[1, 3, 4\]"),
    (lambda nn, m: nn.GRU(3, 4)(m.zeros(5, 3), m.zeros(1, 1, 4)), "For unbatched 2-D input, hx should also be 2-D"),
    (lambda nn, m: nn.LSTM(3, 4)(m.zeros(5, 2, 3), (m.zeros(2, 4), m.zeros(2, 4))),
     r"For batched 3-D input, hx and cx should also be 3-D but got \(2-D, 2-D\) tensors"),
    (lambda nn, m: nn.GRU(3, 4)(m.zeros(0, 2, 3)), "Expected sequence length to be larger than 0"),
    (lambda nn, m: nn.GRU(3, 4, proj_size=2), "proj_size argument is only supported for LSTM"),
    (lambda nn, m: nn.LSTM(3, 4, proj_size=4), "proj_size has to be smaller than hidden_size"),
    (lambda nn, m: nn.RNN(3, 4, nonlinearity="gelu"), "Unknown nonlinearity 'gelu'"),
    (lambda nn, m: nn.LSTM(3, 4, dropout=1.5), r"dropout should be a number in range \[0, 1\]"),
    (lambda nn, m: nn.GRU(3, 0), "hidden_size must be greater than zero"),
    (lambda nn, m: nn.GRU(3, 4, num_layers=0), "num_layers must be greater than zero"),
    (lambda nn, m: nn.GRU(3.0, 4), "input_size should be of type int, got: float"),
    (lambda nn, m: nn.GRUCell(3, 4)(m.zeros(2, 5)), "input has inconsistent input_size: got 5 expected 3"),
    (lambda nn, m: nn.RNNCell(3, 4)(m.zeros(2, 3), m.zeros(3, 4)),
     "Input batch size 2 doesn't match hidden0 batch size 3"),
    (lambda nn, m: nn.LSTMCell(3, 4)(m.zeros(2, 3), (m.zeros(2, 4), m.zeros(2, 7))),
     "hidden1 has inconsistent hidden_size: got 7, expected 4"),
    (lambda nn, m: nn.LSTMCell(3, 4)(m.zeros(2, 2, 3)), "LSTMCell: Expected input to be 1D or 2D, got 3D instead"),
])
def test_errors_match_torch(call, match):
    _same_error(call, match)


def test_dtype_mismatch_error():
    with pytest.raises(ValueError, match="does not match weight dtype"):
        nn.LSTM(3, 4)(ember.zeros(2, 1, 3, dtype=ember.float64))


def test_dropout_warning_single_layer():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        nn.GRU(3, 4, dropout=0.2)
