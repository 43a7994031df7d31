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
        # must not go back to the allocator's pool before that). finish() -> the result tensors.
        self._pg, self._pending, self._finish, self._keep = pg, pending, finish, keep
        self._done, self._result = False, []

    def wait(self, timeout=None) -> bool:
        if not self._done:
            secs = None if timeout is None else getattr(timeout, "total_seconds", lambda: timeout)()
            self._pg.backend.wait(self._pending, secs)
            self._done, self._keep = True, ()
            if self._finish is not None:
                self._result = self._finish()
        return True

    def result(self) -> list:
        """The collective's output tensors (waiting for it first), as torch's Work.result()."""
        self.wait()
        return self._result

    def is_completed(self) -> bool:
        return self._done or self._pg.backend.test(self._pending)

    def is_success(self) -> bool:
        return self.is_completed()


def _collective(pg, name: str, inputs: list, outs: list, issue, async_op: bool, finish=None, device: str = "cpu"):
    """THE way a collective runs. `inputs`: the tensors whose values it sends; `outs`: (shape,
    dtype) of the fresh buffers it receives into; `issue(sends, recvs)` starts it on their flat
    storages (numpy views, no copies) and returns the backend's pending requests; `finish(*results)`
    rebinds the user's tensors to the received values (lazy: averaging and casts fuse onward) and may
    return the value `Work.result()` gives (default: the received tensors).

    Eagerly the inputs are realized together and the collective runs nonblocking: a Work, or with
    async_op=False its completion. Inside a function traced by ember.compile it is a host step
    (tracing.host_call): the step's kernels before it, then the collective on their buffers,
    completed, then the kernels after it, at the trace and at every replay."""
    def run(bufs):
        recvs = [Buffer("cpu", dt, math.prod(shape)) for shape, dt in outs]
        pg.backend.wait(issue([b.numpy() for b in bufs], [b.numpy() for b in recvs]), pg.timeout_s)
        return recvs

    def results(bufs):
        return [Tensor._wrap(Node.make("buffer", arg=b, dtype=dt, shape=tuple(shape)), device)
                for b, (shape, dt) in zip(bufs, outs)]
    def complete(bufs):
        done = results(bufs)
        value = finish(*done) if finish is not None else None
        return done if value is None else [value]
    if _tracing.current is not None:
        work = Work(pg, [], lambda: complete(_tracing.host_call(name, run, inputs)))
        work.wait()
        return work if async_op else None
    realize(*inputs)
    bufs = [Buffer("cpu", dt, math.prod(shape)) for shape, dt in outs]
    pending = issue([t.node.arg.numpy() for t in inputs], [b.numpy() for b in bufs])
    work = Work(pg, pending, lambda: complete(bufs), keep=tuple(t.node for t in inputs))
    if async_op:
        return work
    work.wait()
    return None


# ---- tensors <-> host storage --------------------------------------------------------------------

def _check(t, name: str, what: str = "tensor") -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}(): {what} must be an ember Tensor, got {type(t).__name__}")


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
    if tensor.numel() == 0:
        return _collective(pg, "all_reduce", [], [], lambda s, r: [], async_op)
    return _collective(pg, "all_reduce", [wire], [(tensor.shape, wire.dtype)],
                       lambda s, r: pg.backend.allreduce(s[0], r[0], wire_op), async_op,
                       lambda out: _set(tensor, _reduced(out, op, tensor.dtype, pg.size)), tensor.device)


def all_reduce_flat(tensors: list[Tensor], op: ReduceOp = ReduceOp.SUM, group=None):
    """Reduce several tensors of one dtype as ONE message (not in PyTorch's API): returns a Work
    whose `result()` is `[flat]`, a new 1-D tensor holding the reduced values of all `tensors`
    concatenated. DDP's gradient buckets go through it.

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
    total = sum(t.numel() for t in tensors)

    def issue(sends, recvs):
        np.concatenate(sends, out=recvs[0])
        return pg.backend.allreduce(recvs[0], recvs[0], wire_op) if total else []
    return _collective(pg, "all_reduce_flat", wires, [((total,), wires[0].dtype)], issue, True,
                       lambda out: _reduced(out, op, dtype, pg.size), tensors[0].device)


def broadcast(tensor: Tensor, src: int | None = None, group=None, async_op: bool = False, group_src=None):
    """Copy rank `src`'s value of `tensor` into `tensor` on every other rank (same shape and dtype
    everywhere)."""
    pg = _get(group)
    _check(tensor, "broadcast")
    src = group_src if src is None else src
    if not isinstance(src, int) or not 0 <= src < pg.size:
        raise ValueError(f"broadcast(): src must be a rank in [0, {pg.size - 1}], got {src!r}")
    if tensor.numel() == 0:
        return _collective(pg, "broadcast", [], [], lambda s, r: [], async_op)
    if pg.rank == src:
        return _collective(pg, "broadcast", [tensor], [], lambda s, r: pg.backend.broadcast(s[0], src), async_op)
    return _collective(pg, "broadcast", [], [(tensor.shape, tensor.dtype)], lambda s, r: pg.backend.broadcast(r[0], src),
                       async_op, lambda out: _set(tensor, out), tensor.device)


def _all_gather(input_tensor: Tensor, pg, async_op: bool, finish, name: str):
    """The all-gather of `input_tensor`; `finish` gets the result, shaped (world, *input.shape)."""
    shape = (pg.size,) + tuple(input_tensor.shape)
    return _collective(pg, name, [input_tensor], [(shape, input_tensor.dtype)],
                       lambda s, r: pg.backend.allgather(s[0], r[0]) if s[0].size else [], async_op, finish,
                       input_tensor.device)


def all_gather(tensor_list: list, tensor: Tensor, group=None, async_op: bool = False):
    """Fill `tensor_list` (one tensor per rank, each shaped like `tensor`) with every rank's
    `tensor`. The list's tensors are rebound to views of one gathered buffer (no copies)."""
    pg = _get(group)
    _check(tensor, "all_gather")
    _check_list(tensor_list, tensor, pg.size, "all_gather", "tensor_list")

    def finish(out):
        for i, t in enumerate(tensor_list):
            _set(t, out[i])
    return _all_gather(tensor, pg, async_op, finish, "all_gather")


def all_gather_into_tensor(output_tensor: Tensor, input_tensor: Tensor, group=None, async_op: bool = False):
    """Gather every rank's `input_tensor` into `output_tensor`, shaped (world * d0, ...) (ranks
    concatenated) or (world, d0, ...) (ranks stacked)."""
    pg = _get(group)
    _check(input_tensor, "all_gather_into_tensor", "input_tensor")
    _check(output_tensor, "all_gather_into_tensor", "output_tensor")
    _check_pair(output_tensor, input_tensor, pg.size, "all_gather_into_tensor", "output", "input")
    return _all_gather(input_tensor, pg, async_op, lambda out: _set(output_tensor, out.reshape(output_tensor.shape)),
                       "all_gather_into_tensor")


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
    return _collective(pg, name, [wire], [(output.shape, wire.dtype)],
                       lambda s, r: pg.backend.reduce_scatter(s[0], r[0], wire_op) if r[0].size else [], async_op,
                       lambda out: _set(output, _reduced(out, op, output.dtype, pg.size)), output.device)


def barrier(group=None, async_op: bool = False, device_ids=None, timeout=None):
    """Wait until every rank has reached the barrier (or the timeout passes: DistBackendError)."""
    pg = _get(group)
    if _tracing.current is not None or async_op:
        return _collective(pg, "barrier", [], [], lambda s, r: pg.backend.barrier(), async_op)
    Work(pg, pg.backend.barrier()).wait(timeout)
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

