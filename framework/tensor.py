"""The Tensor: a handle on a lazy graph node, with PyTorch's API.

Every operation goes through `Tensor._apply(op, ...)`, which builds one primitive node. Everything
richer (softmax, indexing, matmul, ...) is a composition of `_apply` calls in framework/ops_*.py,
attached to Tensor at import. Nothing runs until a value is needed (`numpy()`, `item()`, `repr`,
`bool()`, `ember.realize`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ember.compiler import Node, dtypes as D, realize as _realize
from ember.compiler.ir import expand_to
from ember.compiler.buffer import export as _export

from . import autograd as _autograd
from . import tracing as _tracing
from .autograd_mode import is_grad_enabled
from .errors import ShapeError

_DEFAULT_FLOAT = [D.float32]


def get_default_dtype() -> D.DType:
    return _DEFAULT_FLOAT[0]


def set_default_dtype(dt: D.DType) -> None:
    if not dt.is_float:
        raise TypeError("only floating-point types are supported as the default type")
    _DEFAULT_FLOAT[0] = dt


def _canon_device(device) -> str:
    """'cpu' or 'cuda' (index 0); "cuda" raises, naming what is missing, where it cannot be served."""
    if device is None:
        return "cpu"
    name = str(device)
    base, _, index = name.partition(":")
    if base == "cpu":
        return "cpu"
    if base == "cuda":
        from ember.compiler.runtime import cuda  # imports no GPU package until asked
        cuda.require()
        if index not in ("", "0"):
            raise RuntimeError(f"CUDA error: invalid device ordinal {index!r}: ember uses one GPU, 'cuda:0'")
        return "cuda"
    raise RuntimeError(f"unknown device {device!r}; expected 'cpu' or 'cuda'")


class Tensor:
    __slots__ = ("node", "device", "grad", "_ctx", "__weakref__")
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, data, dtype: D.DType | None = None, device=None, requires_grad: bool = False):
        from .creation import tensor as _tensor
        t = _tensor(data, dtype=dtype, device=device)
        self._init(t.node, t.device, requires_grad)

    def _init(self, node: Node, device: str, requires_grad: bool = False):
        self.node, self.device, self.grad, self._ctx = node, device, None, None
        if requires_grad:
            self.requires_grad = True

    @staticmethod
    def _wrap(node: Node, device: str = "cpu") -> "Tensor":
        t = Tensor.__new__(Tensor)
        t._init(node, device)
        return t

    # -- the one path to the graph -------------------------------------------------------------
    def _apply(self, op: str, *others: "Tensor", arg=None) -> "Tensor":
        """Apply primitive `op` to self (and `others`), returning the lazy result."""
        # every op of every eager step comes through here: one pass over the operands, no
        # generators, and autograd only hears of ops on values with history
        device, tracked = self.device, self._ctx is not None
        if others:
            srcs = [self.node]
            for o in others:
                if o.device != device:
                    raise RuntimeError(f"expected all tensors to be on the same device, but found "
                                       f"{device} and {o.device}")
                srcs.append(o.node)
                tracked = tracked or o._ctx is not None
            node = Node.make(op, tuple(srcs), arg)
        else:
            node = Node.make(op, (self.node,), arg)
        out = Tensor.__new__(Tensor)   # Tensor._wrap, inlined
        out._init(node, device)
        if tracked:
            _autograd.record(op, arg, (self,) + others, out)
        return out

    def _rebind(self, out: "Tensor") -> "Tensor":
        """In-place update: self takes `out`'s value and history. Uses of the old value recorded
        earlier keep referring to it (autograd records belong to values, not tensors)."""
        if self._ctx is not None and self._ctx.leaf is not None and _grad_enabled():
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        if self._ctx is not None and self._ctx.leaf is not None:  # under no_grad: stays the same leaf
            self.node = out.node
            return self
        self.node, self._ctx = out.node, out._ctx
        return self

    # -- autograd -------------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._ctx is not None

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if flag and self._ctx is None:
            if not self.dtype.is_float:
                raise RuntimeError("only Tensors of floating point dtype can require gradients")
            self._ctx = _autograd.Record.for_leaf(self)
        elif not flag and self._ctx is not None:
            if self._ctx.leaf is None:
                raise RuntimeError("you can only change requires_grad flags of leaf variables. If you want to use a "
                                   "computed variable in a subgraph that doesn't require differentiation use "
                                   "var_no_grad = var.detach().")
            self._ctx = None

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None or self._ctx.leaf is not None

    @property
    def grad_fn(self):
        return None if self.is_leaf else _autograd.GradFn(self._ctx)

    def backward(self, gradient: "Tensor | None" = None, retain_graph=None, create_graph: bool = False,
                 inputs=None) -> None:
        """Accumulate gradients into leaves' `.grad`. Nothing is computed yet: the gradients are
        lazy graphs, realized (and fused with the forward pass) when they are used."""
        _autograd.backward(self, gradient, retain_graph, create_graph, inputs)

    def register_hook(self, hook):
        """Call hook(grad) when this value's gradient is computed; a returned tensor replaces it."""
        return _autograd.register_hook(self, hook)

    # -- metadata ---------------------------------------------------------------------------
    @property
    def shape(self) -> "Size":
        return Size(self.node.shape)

    def size(self, dim: int | None = None):
        if dim is None:
            return self.shape
        return self.node.shape[self._dim(dim)]

    @property
    def dtype(self) -> D.DType:
        return self.node.dtype

    @property
    def ndim(self) -> int:
        return len(self.node.shape)

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return math.prod(self.node.shape)

    def element_size(self) -> int:
        return self.dtype.itemsize

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.node.shape[0]

    def _dim(self, dim: int, ndim: int | None = None) -> int:
        """Normalise a possibly negative dim, raising IndexError as PyTorch does."""
        n = self.ndim if ndim is None else ndim
        lo, hi = (-1, 0) if n == 0 else (-n, n - 1)
        if not isinstance(dim, (int, np.integer)) or not lo <= dim <= hi:
            raise IndexError(f"Dimension out of range (expected to be in range of [{lo}, {hi}], but got {dim})")
        return int(dim) % max(n, 1)

    # -- materialization ----------------------------------------------------------------------
    def realize(self) -> "Tensor":
        realize(self)
        return self

    def numpy(self) -> np.ndarray:
        """The value as a numpy array (a copy; the tensor keeps its own storage)."""
        if self.requires_grad and _grad_enabled():
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return self._value().copy()

    def _value(self) -> np.ndarray:
        # inside a trace, a value the call computes (lazy, or made by a host step such as a
        # collective) differs at every replay: reading it into Python would freeze it
        if _tracing.current is not None and (self.node.op != "buffer" or _tracing.current.ref_of(self.node)):
            raise _tracing.value_read_error("reading a computed value (.item(), .numpy(), bool(), print)")
        if self.node.op != "buffer":
            _realize([self.node], self.device)  # the node becomes a buffer leaf in place
        return self.node.arg.numpy().reshape(self.node.shape)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        """DLPack export (zero-copy on the CPU): torch.from_dlpack(t), np.from_dlpack(t)."""
        if self.device != "cpu":
            raise RuntimeError("__dlpack__: only CPU tensors can be exported yet")
        arr = self._value()
        _export(self.node.arg)   # its memory is now read outside ember: never overwritten in place
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        kw = {} if max_version is None else {"max_version": max_version}
        return arr.__dlpack__(stream=stream, **kw)

    def __dlpack_device__(self):
        if self.device != "cpu":
            raise RuntimeError("__dlpack_device__: only CPU tensors can be exported yet")
        return (1, 0)   # kDLCPU, device 0

    def __array__(self, dtype=None, copy=None):
        v = self._value()
        return v.astype(dtype) if dtype is not None else v.copy()

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to Scalar")
        return self._value().reshape(()).item()

    def tolist(self):
        return self._value().tolist()

    def __bool__(self) -> bool:
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self.dtype.is_float or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __repr__(self) -> str:
        v = self._value()
        body = np.array2string(v.astype(np.float32) if self.dtype is D.bfloat16 else v,
                               separator=", ", prefix="tensor(", precision=4)
        extras = []
        if self.dtype not in (D.float32, D.int64, D.bool_):
            extras.append(f"dtype={self.dtype!r}")
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    __str__ = __repr__

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __reduce__(self):
        raise TypeError("pickling ember tensors is not supported; use ember.save")


class Size(tuple):
    """torch.Size: a tuple of ints with numel()."""

    def numel(self) -> int:
        return math.prod(self)

    def __repr__(self) -> str:
        return f"ember.Size({list(self)})"


# ---- promotion and broadcasting shared by every multi-operand op ------------------------------

def broadcast_shapes(*shapes: Sequence[int]) -> tuple:
    """numpy/PyTorch broadcasting; names both shapes on mismatch."""
    nd = max((len(s) for s in shapes), default=0)
    out = [1] * nd
    for s in shapes:
        for i, n in enumerate(s):
            j = nd - len(s) + i
            if out[j] == 1:
                out[j] = n
            elif n != 1 and n != out[j]:
                raise ShapeError(f"The size of tensor a ({out[j]}) must match the size of tensor b ({n}) at "
                                 f"non-singleton dimension {i}: shapes {[list(x) for x in shapes]} do not broadcast")
    return tuple(out)


def _operand_info(x):
    return (x.dtype, x.ndim) if isinstance(x, Tensor) else x


def promote(*xs, dtype: D.DType | None = None) -> list[Tensor]:
    """Turn scalars into tensors, cast to the promoted dtype and broadcast to one shape."""
    tensors = [x for x in xs if isinstance(x, Tensor)]
    if not tensors:
        raise TypeError("expected at least one Tensor operand")
    for x in xs:
        if not isinstance(x, (Tensor, bool, int, float, np.number, np.bool_)):
            raise TypeError(f"unsupported operand type: {type(x).__name__}")
    xs = [x.item() if isinstance(x, (np.number, np.bool_)) else x for x in xs]
    dt = dtype or D.result_type(*[_operand_info(x) for x in xs], default_float=get_default_dtype())
    shape = broadcast_shapes(*[x.shape for x in tensors])
    device = tensors[0].device
    out = []
    for x in xs:
        if isinstance(x, Tensor):
            x = x.to(dtype=dt) if x.dtype is not dt else x
            out.append(x if tuple(x.shape) == shape else x.expand(shape))
        else:
            out.append(Tensor._wrap(expand_to(_const_node(x, dt), shape), device))
    return out


def _const_node(value, dt: D.DType) -> Node:
    from ember.compiler.ir import const
    return const(value, dt)


def realize(*tensors: Tensor) -> None:
    """Compute several tensors together (their kernels are scheduled and fused as one program,
    one per device)."""
    if _tracing.current is not None:   # ember.compile computes them at its next boundary or the end
        _tracing.current.request(tensors)
        return
    by_device: dict = {}
    for t in tensors:
        if t.node.op != "buffer":
            by_device.setdefault(t.device, []).append(t.node)
    for device, nodes in by_device.items():
        _realize(nodes, device)


_grad_enabled = is_grad_enabled   # called on every in-place update: imported once, not per call
