"""Collectives on ember tensors, with torch.distributed's names, signatures and in-place semantics.

A collective is a boundary in the lazy world: the input is realized (its graph computed, fused as
usual), its buffer's storage is handed to the backend as a flat numpy view (no copy), the backend
writes the result into a FRESH buffer, and the tensor is rebound to that buffer (`Tensor._rebind`,
under no_grad). Writing into the input's own storage instead would be wrong here: a realized node
is shared by every tensor and every pending graph that uses it (hash-consing), and those must keep
seeing the old value, as they would in PyTorch where they are separate tensors.

float16/bfloat16 are reduced in float32 (one cast kernel each way, fused where the result is used):
MPI has no half-precision arithmetic. AVG is a SUM followed by a lazy division.

    t = ember.ones(4) * (dist.get_rank() + 1)
    dist.all_reduce(t)                         # in place: every rank now holds the sum
    work = dist.all_reduce(t, async_op=True)   # returns a Work; t is updated by work.wait()
"""
from __future__ import annotations

import math

import numpy as np

from ember.compiler import Buffer, Node, dtypes as D

from .. import tracing as _tracing
from ..autograd_mode import no_grad
from ..errors import ShapeError
from ..tensor import Tensor, realize
from .process_group import _get
from .reduce_op import ReduceOp

__all__ = ["Work", "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
           "reduce_scatter_tensor", "barrier"]


class Work:
    """A collective in flight (what async_op=True returns): `wait()` completes it, then the
    output tensors hold the result."""

    def __init__(self, pg, pending, finish=None, keep=()):
        # keep: the input nodes whose storage the backend reads until completion (their buffers
        # must not go back to the allocator's pool before that)
        self._pg, self._pending, self._finish, self._keep = pg, pending, finish, keep
        self._done = False

    def wait(self, timeout=None) -> bool:
        if not self._done:
            secs = None if timeout is None else getattr(timeout, "total_seconds", lambda: timeout)()
            self._pg.backend.wait(self._pending, secs)
            self._done, self._keep = True, ()
            if self._finish is not None:
                self._finish()
        return True

    def is_completed(self) -> bool:
        return self._done or self._pg.backend.test(self._pending)

    def is_success(self) -> bool:
        return self.is_completed()


def _run(pg, pending, async_op: bool, finish=None, keep=()):
    work = Work(pg, pending, finish, keep)
    if async_op:
        return work
    work.wait()
    return None


# ---- tensors <-> host storage --------------------------------------------------------------------

def _check(t, name: str, what: str = "tensor") -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}(): {what} must be an ember Tensor, got {type(t).__name__}")


def _not_traced(name: str) -> None:
    if _tracing.current is not None:
        raise _tracing.TraceError(
            f"ember.distributed.{name}() inside a function traced by ember.compile: a collective needs the "
            "values of its input, which a trace does not compute, and ember.compile cannot split a step at a "
            "collective yet. Run this step (a DistributedDataParallel backward included) without "
            "ember.compile; see docs/distributed.md.")


def _storage(t: Tensor, name: str) -> np.ndarray:
    """t's value as a flat array sharing the buffer's storage (realizing t first)."""
    _not_traced(name)
    realize(t)
    return t.node.arg.numpy()


def _empty(shape, dtype: D.DType, device: str) -> tuple[Tensor, np.ndarray]:
    """A fresh buffer leaf for a collective to write into, and its storage."""
    buf = Buffer(device, dtype, math.prod(shape))
    return Tensor._wrap(Node.make("buffer", arg=buf, dtype=dtype, shape=tuple(shape)), device), buf.numpy()


def _set(t: Tensor, value: Tensor) -> None:
    with no_grad():
        t._rebind(value)


_HALF = (D.float16, D.bfloat16)


def _reduce_args(t: Tensor, op, name: str):
    """Validate `op` for t's dtype; the tensor the backend reduces (float32 for half types) and the
    op the backend applies (AVG is a SUM divided afterwards)."""
    if not isinstance(op, ReduceOp):
        raise TypeError(f"{name}(): op must be a dist.ReduceOp, got {op!r}")
    dt = t.dtype
    if op is ReduceOp.AVG and not dt.is_float:
        raise RuntimeError(f"{name}(): ReduceOp.AVG needs a floating-point tensor, got {dt.name}")
    if op in (ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR) and dt.is_float:
        raise RuntimeError(f"{name}(): {op} needs an integer or bool tensor, got {dt.name}")
    wire = t.to(D.float32) if dt in _HALF else t
    return wire, (ReduceOp.SUM if op is ReduceOp.AVG else op)


def _reduced(out: Tensor, op, dtype: D.DType, world: int) -> Tensor:
    """The backend's raw result as the value PyTorch returns (lazy: fuses into its consumers)."""
    if op is ReduceOp.AVG:
        out = out / world
    return out.to(dtype) if out.dtype is not dtype else out


# ---- the collectives -----------------------------------------------------------------------------

def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group=None, async_op: bool = False):
    """Reduce `tensor` over all ranks with `op`; every rank gets the result, in place.

    >>> t = ember.tensor([1.0, 2.0]) * (dist.get_rank() + 1)
    >>> dist.all_reduce(t, op=dist.ReduceOp.SUM)     # world of 2: t == [3., 6.] everywhere
    """
    pg = _get(group)
    _check(tensor, "all_reduce")
    wire, wire_op = _reduce_args(tensor, op, "all_reduce")
    send = _storage(wire, "all_reduce")
    out, recv = _empty(tensor.shape, wire.dtype, tensor.device)
    pending = pg.backend.allreduce(send, recv, wire_op) if send.size else []
    if not send.size:
        out = wire
    return _run(pg, pending, async_op, lambda: _set(tensor, _reduced(out, op, tensor.dtype, pg.size)), (wire.node,))


def all_reduce_flat(tensors: list[Tensor], op: ReduceOp = ReduceOp.SUM, group=None):
    """Reduce several tensors of one dtype as ONE message (not in PyTorch's API): returns (work,
    flat), `flat` a new 1-D tensor holding the reduced values of all `tensors` concatenated, to be
    read after `work.wait()`. DDP's gradient buckets go through it.

    The inputs are realized together, then their storages are packed into the result buffer with
    a memory copy and reduced in place there. (An ember `cat` kernel would do the packing as a
    fused op, but concatenation selects among all pieces per element and runs ~20x slower than a
    memory copy on a 100K-element bucket; the packing is pure data movement, as MPI would do
    internally for a non-contiguous datatype.)"""
    pg = _get(group)
    if not tensors:
        raise ValueError("all_reduce_flat(): expected at least one tensor")
    dtype = tensors[0].dtype
    for t in tensors:
        _check(t, "all_reduce_flat")
        if t.dtype is not dtype:
            raise TypeError(f"all_reduce_flat(): all tensors must have one dtype, got {dtype.name} and {t.dtype.name}")
    wires = [_reduce_args(t, op, "all_reduce_flat")[0] for t in tensors]
    wire_op = ReduceOp.SUM if op is ReduceOp.AVG else op
    _not_traced("all_reduce_flat")
    realize(*wires)
    sends = [w.node.arg.numpy() for w in wires]
    out, recv = _empty((sum(a.size for a in sends),), wires[0].dtype, tensors[0].device)
    np.concatenate(sends, out=recv)
    pending = pg.backend.allreduce(recv, recv, wire_op) if recv.size else []
    return Work(pg, pending), _reduced(out, op, dtype, pg.size)   # lazy: read it after work.wait()


def broadcast(tensor: Tensor, src: int | None = None, group=None, async_op: bool = False, group_src=None):
    """Copy rank `src`'s value of `tensor` into `tensor` on every other rank (same shape and dtype
    everywhere)."""
    pg = _get(group)
    _check(tensor, "broadcast")
    src = group_src if src is None else src
    if not isinstance(src, int) or not 0 <= src < pg.size:
        raise ValueError(f"broadcast(): src must be a rank in [0, {pg.size - 1}], got {src!r}")
    _not_traced("broadcast")
    if tensor.numel() == 0:
        return _run(pg, [], async_op)
    if pg.rank == src:
        data = _storage(tensor, "broadcast")
        return _run(pg, pg.backend.broadcast(data, src), async_op, keep=(tensor.node,))
    out, recv = _empty(tensor.shape, tensor.dtype, tensor.device)
    return _run(pg, pg.backend.broadcast(recv, src), async_op, lambda: _set(tensor, out))


def _gathered(input_tensor: Tensor, pg):
    """Issue the all-gather of `input_tensor`: (pending, result of shape (world, *input.shape))."""
    out, recv = _empty((pg.size,) + tuple(input_tensor.shape), input_tensor.dtype, input_tensor.device)
    send = _storage(input_tensor, "all_gather")
    return (pg.backend.allgather(send, recv) if send.size else []), out, input_tensor.node


def all_gather(tensor_list: list, tensor: Tensor, group=None, async_op: bool = False):
    """Fill `tensor_list` (one tensor per rank, each shaped like `tensor`) with every rank's
    `tensor`. The list's tensors are rebound to views of one gathered buffer (no copies)."""
    pg = _get(group)
    _check(tensor, "all_gather")
    _check_list(tensor_list, tensor, pg.size, "all_gather", "tensor_list")
    pending, out, send = _gathered(tensor, pg)

    def finish():
        for i, t in enumerate(tensor_list):
            _set(t, out[i])
    return _run(pg, pending, async_op, finish, (send,))


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None, async_op: bool = False):
    """Gather every rank's `input_tensor` into `output_tensor`, shaped (world * d0, ...) (ranks
    concatenated) or (world, d0, ...) (ranks stacked)."""
    pg = _get(group)
    _check(input_tensor, "all_gather_into_tensor", "input_tensor")
    _check(output_tensor, "all_gather_into_tensor", "output_tensor")
    _check_pair(output_tensor, input_tensor, pg.size, "all_gather_into_tensor", "output", "input")
    pending, out, send = _gathered(input_tensor, pg)
    return _run(pg, pending, async_op, lambda: _set(output_tensor, out.reshape(output_tensor.shape)), (send,))


def reduce_scatter(output: Tensor, input_list: list, op: ReduceOp = ReduceOp.SUM, group=None,
                   async_op: bool = False):
    """Reduce the ranks' `input_list`s elementwise, then give rank i the reduction of entry i."""
    pg = _get(group)
    _check(output, "reduce_scatter", "output")
    _check_list(input_list, output, pg.size, "reduce_scatter", "input_list")
    from ..ops_movement import stack
    return _reduce_scatter(output, stack(list(input_list)), op, pg, async_op, "reduce_scatter")


def reduce_scatter_tensor(output: Tensor, input: Tensor, op: ReduceOp = ReduceOp.SUM, group=None,
                          async_op: bool = False):
    """reduce_scatter with the inputs in one tensor, shaped (world * d0, ...) or (world, d0, ...)."""
    pg = _get(group)
    _check(output, "reduce_scatter_tensor", "output")
    _check(input, "reduce_scatter_tensor", "input")
    _check_pair(input, output, pg.size, "reduce_scatter_tensor", "input", "output")
    return _reduce_scatter(output, input, op, pg, async_op, "reduce_scatter_tensor")


def _reduce_scatter(output: Tensor, stacked: Tensor, op, pg, async_op: bool, name: str):
    wire, wire_op = _reduce_args(stacked, op, name)
    send = _storage(wire, name)
    out, recv = _empty(output.shape, wire.dtype, output.device)
    pending = pg.backend.reduce_scatter(send, recv, wire_op) if recv.size else []
    return _run(pg, pending, async_op, lambda: _set(output, _reduced(out, op, output.dtype, pg.size)), (wire.node,))


def barrier(group=None, async_op: bool = False, device_ids=None, timeout=None):
    """Wait until every rank has reached the barrier (or the timeout passes: DistBackendError)."""
    pg = _get(group)
    _not_traced("barrier")
    work = Work(pg, pg.backend.barrier())
    if async_op:
        return work
    work.wait(timeout)
    return None


# ---- argument checks (eager, before any communication) -------------------------------------------

def _check_list(tensors, like: Tensor, world: int, name: str, what: str) -> None:
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(f"{name}(): {what} must be a list of tensors, got {type(tensors).__name__}")
    if len(tensors) != world:
        raise ValueError(f"{name}(): {what} must hold one tensor per rank (world size {world}), "
                         f"got {len(tensors)}")
    for i, t in enumerate(tensors):
        _check(t, name, f"{what}[{i}]")
        if tuple(t.shape) != tuple(like.shape):
            raise ShapeError(f"{name}(): {what}[{i}] has shape {list(t.shape)} but the tensor has shape "
                             f"{list(like.shape)}")
        if t.dtype is not like.dtype:
            raise TypeError(f"{name}(): {what}[{i}] has dtype {t.dtype.name} but the tensor has dtype "
                            f"{like.dtype.name}")


def _check_pair(big: Tensor, small: Tensor, world: int, name: str, big_name: str, small_name: str) -> None:
    """`big` holds world copies of `small`: concatenated on dim 0 or stacked in a new dim 0."""
    s, b = tuple(small.shape), tuple(big.shape)
    ok = b == (world,) + s or (len(s) > 0 and b == (world * s[0],) + s[1:])
    if not ok:
        raise ShapeError(f"{name}(): {big_name} of shape {list(b)} must be the {small_name} shape {list(s)} with "
                         f"dim 0 multiplied by the world size {world} (or a new leading dim of {world})")
    if big.dtype is not small.dtype:
        raise TypeError(f"{name}(): {big_name} dtype {big.dtype.name} differs from {small_name} dtype "
                        f"{small.dtype.name}")

