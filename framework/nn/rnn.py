"""Recurrent layers: RNN (tanh/relu), LSTM (optionally projected), GRU, and their single-step cells.

Parameter names, shapes, gate orders, initialisation (U(-1/sqrt(hidden), 1/sqrt(hidden)) for every
weight and bias) and the forward's inputs/outputs follow PyTorch exactly, so a PyTorch state_dict
loads unchanged. Each layer and direction projects the whole input sequence in one matmul and then
steps through time with the hidden-to-hidden product only; the lazy graph is as long as the
sequence (the scheduler cuts it into kernels), nothing is unrolled by hand.

Gate orders (PyTorch's): LSTM (i, f, g, o); GRU (r, z, n) with n = tanh(W_in x + b_in + r * (W_hn h
+ b_hn)) and h' = (1 - z) * n + z * h.
"""
from __future__ import annotations

import math
import numbers
import warnings

from ..creation import empty
from ..errors import ShapeError
from ..ops_movement import cat, stack
from ..tensor import Tensor
from . import init
from .dropout import dropout as _dropout
from .linear import linear as _linear
from .module import Module
from .parameter import Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _step(mode: str, gi: Tensor, state, w_hh: Tensor, b_hh: Tensor | None, w_hr: Tensor | None = None):
    """One time step from gi = x W_ih^T + b_ih; state is h, or (h, c) for LSTM, or None for the
    zero initial state. Returns the new state.

    For the zero state, 0 @ W_hh^T is the same for every batch row: sum_j 0 * W_hh[:, j], one small
    reduction instead of a batched product. It equals PyTorch's value exactly (NaN/inf weights
    propagate too) and keeps W_hh in the graph, so it gets its (zero) gradient as in PyTorch.
    The cell state's f * c0 is 0 and is skipped."""
    h, c = (None, None) if state is None else state if mode == "LSTM" else (state, None)
    if h is None:
        gh = (w_hh * 0.0).sum(1)
        gh = gh if b_hh is None else gh + b_hh
    else:
        # a materialization point: gh feeds every gate slice, so the scheduler would buffer this
        # reduction anyway; saying so here spares it one search over the (long) graph per step
        gh = _linear(h, w_hh, b_hh)._apply("contiguous")
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, -1)
        c_new = i.sigmoid() * g.tanh()
        if c is not None:
            c_new = f.sigmoid() * c + c_new
        h = o.sigmoid() * c_new.tanh()
        return (h if w_hr is None else _linear(h, w_hr), c_new)
    if mode == "GRU":
        (ir, iz, in_), (hr, hz, hn) = gi.chunk(3, -1), gh.chunk(3, -1)
        r, z = (ir + hr).sigmoid(), (iz + hz).sigmoid()
        n = (in_ + r * hn).tanh()
        return n - z * n if h is None else n + z * (h - n)   # (1 - z) * n + z * h
    pre = gi + gh
    return pre.tanh() if mode == "RNN_TANH" else pre.relu()


def _hidden(state):
    return state[0] if isinstance(state, tuple) else state


def _uniform_by_hidden_size(module: Module) -> None:
    """PyTorch's initialisation of every recurrent weight and bias: U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for weight in module.parameters():
        init.uniform_(weight, -stdv, stdv)


class RNNBase(Module):
    """The machinery shared by RNN, LSTM and GRU; `mode` is 'RNN_TANH', 'RNN_RELU', 'LSTM' or 'GRU'."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             "element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=2)
        for name, value, typ in (("bias", bias, bool), ("batch_first", batch_first, bool),
                                 ("input_size", input_size, int), ("hidden_size", hidden_size, int)):
            if not isinstance(value, typ):
                raise TypeError(f"{name} should be of type {typ.__name__}, got: {type(value).__name__}")
        if input_size <= 0:
            raise ValueError("input_size must be greater than zero")
        if hidden_size <= 0:
            raise ValueError("hidden_size must be greater than zero")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than zero")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if mode not in _GATES:
            raise ValueError("Unrecognized RNN mode: " + mode)
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size if proj_size > 0 else hidden_size
        dirs = 2 if bidirectional else 1
        kw = {"device": device, "dtype": dtype}
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else real_hidden * dirs
            for d in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                shapes = {"weight_ih": (gate_size, layer_in), "weight_hh": (gate_size, real_hidden)}
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                if proj_size > 0:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                names = [n + suffix for n in shapes]
                for name, shape in zip(names, shapes.values()):
                    setattr(self, name, Parameter(empty(shape, **kw)))
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_by_hidden_size(self)

    @property
    def _flat_weights(self) -> list:
        return [getattr(self, n, None) for n in self._flat_weights_names]

    @property
    def all_weights(self) -> list:
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A cuDNN layout hint in PyTorch; nothing to do here."""

    def _layer_weights(self, layer: int, d: int):
        suffix = f"_l{layer}" + ("_reverse" if d else "")
        get = lambda n: getattr(self, n + suffix, None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr")

    # -- argument checks (PyTorch's messages) --------------------------------------------------
    def _expected_hidden(self, input: Tensor, cell: bool = False) -> tuple:
        batch = input.shape[0] if self.batch_first else input.shape[1]
        size = self.proj_size if self.proj_size > 0 and not cell else self.hidden_size
        return (self.num_layers * (2 if self.bidirectional else 1), batch, size)

    def check_input(self, input: Tensor, batch_sizes=None) -> None:
        w = self._flat_weights[0]
        if input.dtype != w.dtype:
            raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype ({w.dtype}). Convert "
                             f"input: input.to({w.dtype}), or convert model: model.to({input.dtype})")
        if input.ndim != 3:
            raise ShapeError(f"input must have 3 dimensions, got {input.ndim}")
        if self.input_size != input.shape[-1]:
            raise ShapeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                             f"got {input.shape[-1]}")

    @staticmethod
    def check_hidden_size(hx: Tensor, expected: tuple, msg: str = "Expected hidden size {}, got {}") -> None:
        if tuple(hx.shape) != tuple(expected):
            raise ShapeError(msg.format(tuple(expected), list(hx.shape)))

    def _prepare(self, input: Tensor, hx):
        """Checks and normalises (input, hx) to batched, sequence-first form; returns
        (input (T, N, I), initial states per layer*direction, batched)."""
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a Tensor (PackedSequence is not supported), "
                            f"got {type(input).__name__}")
        name = "RNN" if self.mode.startswith("RNN") else self.mode
        if input.ndim not in (2, 3):
            what = "tensor instead" if name == "RNN" else "instead"
            raise ShapeError(f"{name}: Expected input to be 2D or 3D, got {input.ndim}D {what}")
        batched = input.ndim == 3
        lstm = self.mode == "LSTM"
        hs = None if hx is None else (tuple(hx) if lstm else (hx,))
        if not batched:
            input = input.unsqueeze(0 if self.batch_first else 1)
            if hs is not None:
                if any(h.ndim != 2 for h in hs):
                    raise ShapeError(self._rank_msg(hs, "unbatched 2-D", 2))
                hs = tuple(h.unsqueeze(1) for h in hs)
        elif hs is not None and any(h.ndim != 3 for h in hs):
            raise ShapeError(self._rank_msg(hs, "batched 3-D", 3))
        self.check_input(input)
        if hs is None:
            pass  # the zero state: see _step
        elif lstm:
            self.check_hidden_size(hs[0], self._expected_hidden(input), "Expected hidden[0] size {}, got {}")
            self.check_hidden_size(hs[1], self._expected_hidden(input, cell=True), "Expected hidden[1] size {}, got {}")
        else:
            self.check_hidden_size(hs[0], self._expected_hidden(input))
        if self.batch_first:
            input = input.transpose(0, 1)
        if input.shape[0] == 0:
            raise ShapeError("Expected sequence length to be larger than 0 in RNN")
        n_states = self.num_layers * (2 if self.bidirectional else 1)
        states = [None if hs is None else tuple(h[i] for h in hs) if lstm else hs[0][i] for i in range(n_states)]
        return input, states, batched

    def _rank_msg(self, hs, kind: str, rank: int) -> str:
        if self.mode == "LSTM":
            return (f"For {kind} input, hx and cx should also be {rank}-D but got ({hs[0].ndim}-D, "
                    f"{hs[1].ndim}-D) tensors")
        return f"For {kind} input, hx should also be {rank}-D but got {hs[0].ndim}-D tensor"

    # -- the recurrence -------------------------------------------------------------------------
    def _direction(self, x: Tensor, state, layer: int, d: int):
        """Run one layer in one direction over x (T, N, I); returns (outputs (T, N, H), final state)."""
        w_ih, w_hh, b_ih, b_hh, w_hr = self._layer_weights(layer, d)
        gi = _linear(x, w_ih, b_ih)                    # every time step's input projection at once
        steps = range(x.shape[0] - 1, -1, -1) if d else range(x.shape[0])
        outs = [None] * x.shape[0]
        for t in steps:
            state = _step(self.mode, gi[t], state, w_hh, b_hh, w_hr)
            outs[t] = _hidden(state)
        return stack(outs, 0), state

    def forward(self, input: Tensor, hx=None):
        """Returns (output, h_n), or (output, (h_n, c_n)) for LSTM, shaped like PyTorch's."""
        x, states, batched = self._prepare(input, hx)
        dirs = 2 if self.bidirectional else 1
        finals = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(dirs):
                out, state = self._direction(x, states[layer * dirs + d], layer, d)
                outs.append(out)
                finals.append(state)
            x = outs[0] if dirs == 1 else cat(outs, -1)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                x = _dropout(x, self.dropout, training=True)
        if self.mode == "LSTM":
            h_n = (stack([s[0] for s in finals], 0), stack([s[1] for s in finals], 0))
        else:
            h_n = stack(finals, 0)
        if self.batch_first:
            x = x.transpose(0, 1)
        if not batched:
            x = x.squeeze(0 if self.batch_first else 1)
            h_n = tuple(h.squeeze(1) for h in h_n) if self.mode == "LSTM" else h_n.squeeze(1)
        return x, h_n

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s


class RNN(RNNBase):
    """Elman RNN: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) (or relu).

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True, batch_first=False,
    dropout=0.0, bidirectional=False).

    >>> rnn = nn.RNN(10, 20, 2)
    >>> out, h_n = rnn(ember.randn(5, 3, 10))     # out (5, 3, 20), h_n (2, 3, 20)
    """

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if len(args) > 3:
            nonlinearity, args = args[3], args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", *args, **kwargs)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory; with proj_size > 0 the hidden state is projected by weight_hr.

    >>> lstm = nn.LSTM(10, 20, batch_first=True)
    >>> out, (h_n, c_n) = lstm(ember.randn(3, 5, 10))   # out (3, 5, 20), h_n/c_n (1, 3, 20)
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit (PyTorch's gate order r, z, n).

    >>> gru = nn.GRU(10, 20, bidirectional=True)
    >>> out, h_n = gru(ember.randn(5, 3, 10))     # out (5, 3, 40), h_n (2, 3, 20)
    """

    def __init__(self, *args, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        super().__init__("GRU", *args, **kwargs)


# ---- cells ---------------------------------------------------------------------------------------

class RNNCellBase(Module):
    """One time step: weight_ih (G*hidden, input), weight_hh (G*hidden, hidden), bias_ih, bias_hh."""

    _mode = ""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = Parameter(empty((num_chunks * hidden_size, input_size), **kw))
        self.weight_hh = Parameter(empty((num_chunks * hidden_size, hidden_size), **kw))
        if bias:
            self.bias_ih = Parameter(empty(num_chunks * hidden_size, **kw))
            self.bias_hh = Parameter(empty(num_chunks * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _uniform_by_hidden_size(self)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _cell(self, input: Tensor, hx, n_states: int):
        name = type(self).__name__
        if not isinstance(input, Tensor) or input.ndim not in (1, 2):
            raise ShapeError(f"{name}: Expected input to be 1D or 2D, got {getattr(input, 'ndim', '?')}D instead")
        hs = None if hx is None else (tuple(hx) if n_states == 2 else (hx,))
        if hs is not None:
            for i, h in enumerate(hs):
                if h.ndim not in (1, 2):
                    what = f"hx[{i}]" if n_states == 2 else "hidden"
                    raise ShapeError(f"{name}: Expected {what} to be 1D or 2D, got {h.ndim}D instead")
        batched = input.ndim == 2
        if not batched:
            input = input.unsqueeze(0)
        if hs is None:
            pass  # the zero state: see _step
        elif not batched:
            hs = tuple(h.unsqueeze(0) for h in hs)
        if input.shape[1] != self.input_size:
            raise ShapeError(f"input has inconsistent input_size: got {input.shape[1]} expected {self.input_size}")
        for i, h in enumerate(hs or ()):
            if h.shape[0] != input.shape[0]:
                raise ShapeError(f"Input batch size {input.shape[0]} doesn't match hidden{i} batch size {h.shape[0]}")
            if h.shape[1] != self.hidden_size:
                raise ShapeError(f"hidden{i} has inconsistent hidden_size: got {h.shape[1]}, "
                                 f"expected {self.hidden_size}")
        gi = _linear(input, self.weight_ih, self.bias_ih)
        out = _step(self._mode, gi, hs if n_states == 2 or hs is None else hs[0], self.weight_hh, self.bias_hh)
        if not batched:
            out = tuple(o.squeeze(0) for o in out) if n_states == 2 else out.squeeze(0)
        return out


class RNNCell(RNNCellBase):
    """h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu).

    >>> cell = nn.RNNCell(10, 20)
    >>> h = cell(ember.randn(3, 10))              # (3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
        return self._cell(input, hx, 1)

    @property
    def _mode(self) -> str:
        return "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"


class LSTMCell(RNNCellBase):
    """One LSTM step; returns (h', c').

    >>> cell = nn.LSTMCell(10, 20)
    >>> h, c = cell(ember.randn(3, 10))
    """

    _mode = "LSTM"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input: Tensor, hx=None):
        return self._cell(input, hx, 2)


class GRUCell(RNNCellBase):
    """One GRU step.

    >>> cell = nn.GRUCell(10, 20)
    >>> h = cell(ember.randn(3, 10))
    """

    _mode = "GRU"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._cell(input, hx, 1)
