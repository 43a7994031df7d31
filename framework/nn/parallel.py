"""DistributedDataParallel: the same model on every rank, gradients averaged across ranks.

    dist.init_process_group("mpi")                       # mpiexec -n 2 python train.py
    model = DistributedDataParallel(Net())                # rank 0's weights, everywhere
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    loss_fn(model(x_local), y_local).backward()           # gradients averaged over ranks here
    opt.step()                                            # identical update on every rank

## When the gradients are reduced, and why there

In PyTorch, a hook on each parameter fires as autograd *computes* its gradient, so bucket k's
all-reduce runs while the backward of bucket k+1 is still computing. In ember, `backward()` computes
nothing: gradients are lazy graphs, fused with the forward pass when realized. So the reduction
point is the END of the backward walk: a hook on every parameter counts arrivals, and the hook of
the last expected parameter (a) realizes all gradients in ONE `ember.realize` (forward and backward
are one fused program, exactly what a single process runs), (b) packs each bucket's gradients into
one contiguous buffer (a memory copy: `distributed.collectives.all_reduce_flat`) and all-reduces it
(SUM), all buckets issued nonblocking back to back, and (c) points each `p.grad` at a lazy slice of
its bucket divided by the world size, which fuses into the optimizer's update kernel (unflattening
and averaging cost no kernel of their own). Realizing bucket by bucket to overlap communication
with computation would split the fused program and recompute the forward values buckets share.

Buckets are groups of parameters of one dtype, in reverse registration order (PyTorch's
approximation of gradient-ready order), each at most `bucket_cap_mb`: fewer, larger messages than
one per parameter, while the largest temporary stays bounded.

## With ember.compile

The reduction is a single, explicit boundary: `_Reducer.reduce(grads) -> grads`, whose inputs are
the realized gradients and whose outputs are lazy slices of the reduced buckets. In a compiled step
each bucket's all-reduce is a host step (`tracing.host_call`): the captured program is
(forward + backward) -> all-reduce -> (unflatten + average + update), replayed as such. With
`find_unused_parameters=True` the used-mask is read into Python, which a trace cannot do: such a
step raises a TraceError under ember.compile.
"""
from __future__ import annotations

import contextlib
import weakref
import zlib

import numpy as np

from .. import autograd as _autograd
from .. import distributed as dist
from ..autograd_mode import is_grad_enabled, no_grad
from ..tensor import Tensor, realize
from .module import Module

__all__ = ["DistributedDataParallel"]

_BROADCAST_BUCKET_BYTES = 250 * 1024 * 1024     # PyTorch's broadcast_bucket_size


def _flatten(tensors: list[Tensor], scale: int = 1) -> Tensor:
    """One contiguous 1-D tensor holding `tensors` in order (lazy: a single fused kernel when realized)."""
    from ..ops_movement import cat
    pieces = [t.reshape(-1) if scale == 1 else t.reshape(-1) / scale for t in tensors]
    return pieces[0] if len(pieces) == 1 else cat(pieces)


def _unflatten(flat: Tensor, likes: list[Tensor]) -> list[Tensor]:
    """Lazy views of `flat` shaped like `likes` (slices: no kernel until used, then fused)."""
    out, off = [], 0
    for t in likes:
        n = t.numel()
        out.append(flat[off:off + n].reshape(t.shape))
        off += n
    return out


def _buckets(tensors: list[Tensor], cap_bytes: int) -> list[list[int]]:
    """Indices of `tensors` grouped by dtype into buckets of at most cap_bytes (a tensor larger than
    the cap gets a bucket of its own), in the given order."""
    open_: dict = {}
    done: list[list[int]] = []
    for i, t in enumerate(tensors):
        cur = open_.setdefault(t.dtype, [[], 0])
        nbytes = t.numel() * t.dtype.itemsize
        if cur[0] and cur[1] + nbytes > cap_bytes:
            done.append(cur[0])
            cur[0], cur[1] = [], 0
        cur[0].append(i)
        cur[1] += nbytes
    return done + [b for b, _ in open_.values() if b]


def _broadcast_coalesced(tensors: list[Tensor], src: int = 0) -> None:
    """Give every rank rank `src`'s values of `tensors` (in place), one broadcast per dtype bucket."""
    tensors = [t for t in tensors if t.numel() > 0]
    if not tensors or dist.get_world_size() == 1:
        return
    groups = _buckets(tensors, _BROADCAST_BUCKET_BYTES)
    flats = [_flatten([tensors[i] for i in g]) for g in groups]
    realize(*flats)
    for w in [dist.broadcast(f, src, async_op=True) for f in flats]:
        w.wait()
    if dist.get_rank() != src:
        with no_grad():
            for g, flat in zip(groups, flats):
                for i, v in zip(g, _unflatten(flat, [tensors[i] for i in g])):
                    tensors[i]._rebind(v)
        realize(*tensors)   # each its own buffer again, so the broadcast buffers are freed


class _Reducer:
    """Gradient averaging for one DDP module: arrival counting, buckets, the all-reduce boundary."""

    def __init__(self, params: list[Tensor], names: list[str], cap_bytes: int):
        order = list(range(len(params)))[::-1]                 # reverse: roughly gradient-ready order
        self.params, self.names = params, names
        self.buckets = [[order[i] for i in b] for b in _buckets([params[j] for j in order], cap_bytes)]
        self.expected: set[int] = set(range(len(params)))
        self.arrived: set[int] = set()
        self.enabled = False
        self.outputs: list = []     # weak references to the forward's outputs (see arrive)

    def arrive(self, index: int, g: Tensor, find_unused: bool):
        """A parameter's gradient of this backward has arrived; after the last one, reduce. Returns
        the replacement for `g` (the last parameter's reduced gradient) or None."""
        if not self.enabled:
            return None
        self.arrived.add(index)
        if not self.expected <= self.arrived:
            return None
        last = self.params[index]
        # The forward's outputs are computed in the same program as the gradients: the loss that
        # backward() started from is realized later (ember.pending, with optimizer.step), and by
        # then the forward's intermediates are gone; from the stored outputs it is a tiny kernel.
        grads = [p.grad for p in self.params]
        grads[index] = g if last.grad is None else last.grad + g
        from .. import pending
        outs = [t for t in (r() for r in self.outputs) if t is not None and t.node.op != "buffer"]
        reduced = self.reduce(grads, find_unused, outs + pending.take())
        self.arrived.clear()
        self.enabled = False
        for i, (p, r) in enumerate(zip(self.params, reduced)):
            if i != index and r is not None:
                p.grad = r
        last.grad = None          # autograd now stores the returned value as the last .grad
        return reduced[index]

    def reduce(self, grads: list[Tensor | None], find_unused: bool, extra=()) -> list[Tensor | None]:
        """THE communication boundary: average `grads` (one per parameter; None: unused here) over
        the ranks. Returns lazy slices of the reduced buckets; None for parameters no rank used.
        `extra`: tensors to compute in the same program (the forward's outputs, pending state)."""
        world = dist.get_world_size()
        from ..creation import tensor, zeros
        full = [g if g is not None else zeros(p.shape, dtype=p.dtype) for g, p in zip(grads, self.params)]
        realize(*full, *extra)               # forward + backward: one fused program, as one process runs it
        works = [dist.collectives.all_reduce_flat([full[i] for i in b]) for b in self.buckets]
        mask = tensor(np.array([g is not None for g in grads], dtype=np.uint8)) if find_unused else None
        if find_unused:
            works.append(dist.all_reduce(mask, op=dist.ReduceOp.MAX, async_op=True))
        for w in works:
            w.wait()
        anywhere = mask.numpy().astype(bool) if find_unused else [True] * len(grads)
        out: list[Tensor | None] = [None] * len(grads)
        for b, w in zip(self.buckets, works):
            flat = w.result()[0]
            for i, v in zip(b, _unflatten(flat, [self.params[i] for i in b])):
                out[i] = v / world if anywhere[i] else grads[i]   # the division fuses into the update
        return out

    def missing(self) -> list[str]:
        return [self.names[i] for i in sorted(self.expected - self.arrived)]


def _tensors_in(obj) -> list[Tensor]:
    """The tensors in a forward's output (a tensor, or lists/tuples/dicts of them)."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors_in(o)]
    return []


def _arrival_hook(ref, index: int):
    def hook(g):
        ddp = ref()
        return None if ddp is None else ddp._reducer.arrive(index, g, ddp.find_unused_parameters)
    return hook


class DistributedDataParallel(Module):
    """Data-parallel training over the ranks of ember.distributed (torch.nn.parallel's DDP).

    At construction, rank 0's parameters and buffers are broadcast to every rank. Each backward
    averages the gradients over the ranks (see the module docstring for when and how), so the
    optimizer takes the same step everywhere. `no_sync()` skips the averaging, for gradient
    accumulation; buffers (BatchNorm statistics) are re-broadcast from rank 0 before each forward
    when broadcast_buffers=True. state_dict keys carry the `module.` prefix, as in PyTorch.

    >>> model = DistributedDataParallel(nn.Linear(4, 2), bucket_cap_mb=25)
    >>> with model.no_sync():
    ...     loss_fn(model(x1), y1).backward()        # accumulates locally
    >>> loss_fn(model(x2), y2).backward()            # averages the accumulated gradients
    """

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group=None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False, **kwargs):
        super().__init__()
        dist.process_group._get(process_group)       # raises if init_process_group was not called
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel wraps an ember.nn.Module, got {type(module).__name__}")
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise RuntimeError("DistributedDataParallel is not needed when a module doesn't have any parameter "
                               "that requires a gradient.")
        self.module = module
        self.device_ids, self.output_device, self.dim = device_ids, output_device, dim
        self.broadcast_buffers, self.find_unused_parameters = broadcast_buffers, find_unused_parameters
        self.static_graph, self.gradient_as_bucket_view = static_graph, gradient_as_bucket_view
        self.require_backward_grad_sync = True
        self.require_forward_param_sync = True
        self.bucket_bytes_cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * 1024 * 1024)
        self._verify_same_model(module)
        _broadcast_coalesced([p for _, p in module.named_parameters()] + list(module.buffers()))
        params = [p for _, p in named]
        self._reducer = _Reducer(params, [n for n, _ in named], self.bucket_bytes_cap)
        self._hooks = []
        if dist.get_world_size() > 1:
            ref = weakref.ref(self)     # the hooks live on the parameters; they must not keep DDP alive
            self._hooks = [p.register_hook(_arrival_hook(ref, i)) for i, p in enumerate(params)]

    # -- construction checks ------------------------------------------------------------------
    @staticmethod
    def _verify_same_model(module: Module) -> None:
        """Every rank must wrap the same architecture: compare a checksum of the parameter names,
        shapes and dtypes (a mismatch would otherwise surface as a wrong reduction or a hang)."""
        world = dist.get_world_size()
        if world == 1:
            return
        desc = [(n, tuple(p.shape), p.dtype.name) for n, p in module.named_parameters()]
        from ..creation import tensor, zeros
        mine = tensor(np.array([len(desc), zlib.crc32(repr(desc).encode())], dtype=np.int64))
        everyone = zeros(world, 2, dtype=mine.dtype)
        dist.all_gather_into_tensor(everyone, mine)
        table = everyone.numpy()
        if (table != table[0]).any():
            rank = dist.get_rank()
            raise RuntimeError("DistributedDataParallel: the model differs between ranks (parameter names, shapes "
                               "or dtypes): " + ", ".join(f"rank {r} has {int(c)} parameters (checksum {int(s)})"
                                                          for r, (c, s) in enumerate(table))
                               + f"; this is rank {rank}")

    # -- calling ---------------------------------------------------------------------------------
    def forward(self, *inputs, **kwargs):
        r = self._reducer
        if r.arrived:
            missing = r.missing()
            r.arrived.clear()
            raise RuntimeError("Expected to have finished reduction in the prior iteration before starting a new "
                               "one. This error indicates that your module has parameters that were not used in "
                               "producing loss. You can enable unused parameter detection by passing the keyword "
                               "argument `find_unused_parameters=True` to `DistributedDataParallel`. Parameters "
                               f"that did not receive a gradient on rank {dist.get_rank()}: {', '.join(missing)}")
        if self.broadcast_buffers and self.require_forward_param_sync:
            _broadcast_coalesced(list(self.module.buffers()))
        out = self.module(*inputs, **kwargs)
        r.enabled = is_grad_enabled() and self.require_backward_grad_sync and dist.get_world_size() > 1
        if r.enabled:
            tensors = _tensors_in(out)
            r.outputs = [weakref.ref(t) for t in tensors]
            r.expected = self._used_params(tensors) if self.find_unused_parameters else set(range(len(r.params)))
            if not r.expected:
                r.enabled = False
        return out

    def _used_params(self, tensors: list[Tensor]) -> set[int]:
        """Indices of the parameters the outputs' autograd graph reaches (find_unused_parameters)."""
        roots = [t._ctx for t in tensors if t._ctx is not None]
        reached = {id(rec) for rec in _autograd._toposort(roots)} if roots else set()
        return {i for i, p in enumerate(self._reducer.params) if id(p._ctx) in reached}

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward passes accumulate gradients locally without averaging; the first
        backward after it (of a forward run outside it) averages the accumulated gradients."""
        old = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = old

    def extra_repr(self) -> str:
        return ""

    def __del__(self):
        for h in self.__dict__.get("_hooks", ()):
            h.remove()

