"""What the rest of ember tells ember.compile while a step is being traced.

While `current` is set, a compiled function's body is running to record its graph: realizing is
deferred to the end of the trace, reading a value into Python is an error, and the framework
reports the two things a replay must redo on the host:

- `host_input`: a buffer whose value the host computes at every step (the random generator's seed
  and counter, a learning rate read from an optimizer's param group). Its function is called again,
  in the same order, at every replay.
- `note_module`: a module that ran, so a replay can check it is still in the same train/eval mode.

and one thing that splits a step: `host_call`, host work that needs values in the middle of it (a
collective), which ends one captured plan and starts the next.
"""
from __future__ import annotations

import numpy as np

current = None   # the framework.compile._Trace being recorded, if any


class TraceError(RuntimeError):
    """An operation that cannot be part of a compiled (traced) function."""


def host_buffer(value, dtype, shape: tuple):
    """A host buffer holding `value` (an array-like of `shape`) in `dtype`: a host input's value,
    at the trace and at every replay."""
    from ember.compiler import Buffer
    return Buffer.from_array(np.asarray(value, dtype=dtype.np).reshape(shape))


def host_input(role: str, fn, dtype, shape: tuple, device: str):
    """A tensor holding `fn()` (an array-like of `shape`), recomputed by the host at every replay.

    `role` names the input in recompile messages and trace comparisons."""
    from ember.compiler import Node
    from .tensor import Tensor
    buf = host_buffer(fn(), dtype, shape)
    t = Tensor._wrap(Node.make("buffer", arg=buf, dtype=dtype, shape=shape), device)
    if current is not None:
        current.host.append((t.node, role, fn))
    return t


def host_call(name: str, fn, inputs: list) -> list:
    """Host work on the values of `inputs` (tensors) in the middle of a step, such as a collective:
    `fn(input buffers) -> output buffers` (fresh buffers; the inputs must not be written).

    Eagerly it realizes the inputs and calls fn. Inside an ember.compile trace it is a boundary:
    the step's graph so far is computed up to the inputs (with whatever realize() was asked for
    meanwhile), fn runs on them, and each replay does the same, running the captured kernels before
    and after it as separate plans."""
    from .tensor import realize
    if current is not None:
        return current.boundary(name, fn, list(inputs))
    realize(*inputs)
    return fn([t.node.arg for t in inputs])


def note_module(module) -> None:
    if current is not None:
        current.modules[id(module)] = module


def value_read_error(what: str) -> TraceError:
    return TraceError(
        f"{what} reads a tensor's value into Python inside a function traced by ember.compile; the "
        "trace records kernels and cannot see values. Return the tensor from the function and read it "
        "outside (e.g. `loss = step(x, y); print(loss.item())`), or run this part without ember.compile.")
