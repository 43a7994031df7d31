"""Dtype and device conversions and copies: `to`, `type`, `float()`/`half()`/..., `cpu`/`cuda`,
`clone`, `detach`, `requires_grad_`. Attached to Tensor on import."""
from __future__ import annotations

from ember.compiler import Node, dtypes as D

from . import tracing as _tracing
from .compose import TORCH_NAME
from .tensor import Tensor, _canon_device, _grad_enabled, realize


def to_args(args, dtype=None, device=None, non_blocking: bool = False):
    """(dtype, device, non_blocking) from `.to(...)`'s positional forms: a dtype, a device (name or
    torch-style device object), a tensor (its dtype and device), a bool (non_blocking). Shared by
    Tensor.to and Module.to."""
    for a in args:
        if isinstance(a, D.DType):
            dtype = a
        elif isinstance(a, Tensor):
            dtype, device = a.dtype, a.device
        elif isinstance(a, str) or type(a).__name__ == "device":
            device = a
        elif isinstance(a, bool):
            non_blocking = a
        else:
            raise TypeError(f"to() received an invalid argument of type {type(a).__name__}")
    return dtype, device, non_blocking


def _to(self: Tensor, *args, dtype=None, device=None, copy: bool = False, non_blocking: bool = False,
        memory_format=None) -> Tensor:
    """Convert dtype and/or device: `x.to(ember.float64)`, `x.to("cpu")`, `x.to(other)`.
    Returns self when nothing changes (and copy is False). (Copies are synchronous: non_blocking
    is accepted and has nothing to do.)"""
    dtype, device, _ = to_args(args, dtype, device, non_blocking)
    device = self.device if device is None else _canon_device(device)
    dtype = self.dtype if dtype is None else dtype
    if not isinstance(dtype, D.DType):
        raise TypeError(f"to(): dtype must be an ember.dtype, not {type(dtype).__name__}")
    if dtype is self.dtype and device == self.device:
        return _clone(self) if copy else self
    if device != self.device:
        moved = _transfer(self, device)
        return moved._apply("cast", arg=dtype) if dtype is not self.dtype else moved
    return self._apply("cast", arg=dtype) if dtype is not self.dtype else _clone(self)


def _transfer(x: Tensor, device: str) -> Tensor:
    """x's value on another device: computed where x lives, then copied (as PyTorch does).

    Inside an ember.compile trace nothing can run, so the value stays lazy and is computed on the
    target device instead (graphs do not depend on devices; buffers move to where they are used).
    Gradients flow back through the copy."""
    node = x.node
    if node.op != "buffer" and _tracing.current is None:
        realize(x)
        node = x.node
    if node.op == "buffer":
        node = Node.make("buffer", arg=node.arg.to(device), dtype=node.dtype, shape=node.shape)
    out = Tensor._wrap(node, device)
    if x._ctx is not None and _grad_enabled():
        from .autograd import Record
        # the cotangent is used as it is: autograd builds one backward graph on the loss's device,
        # whose buffers move to that device when it runs
        out._ctx = Record("to", device, (x.node,), (x._ctx,), out.node, rule=lambda b, g, o, xs, arg: [g])
    return out


def _clone(self: Tensor, *, memory_format=None) -> Tensor:
    """A copy with its own storage once computed (the graph stays lazy)."""
    return self._apply("contiguous")


def _detach(self: Tensor) -> Tensor:
    """The same value, cut from autograd (requires_grad False)."""
    return Tensor._wrap(self.node, self.device)


def _requires_grad_(self: Tensor, requires_grad: bool = True) -> Tensor:
    if requires_grad and not self.dtype.is_float:
        raise RuntimeError("only Tensors of floating point dtype can require gradients")
    self.requires_grad = requires_grad
    return self


_TYPE_NAMES = {"Float": D.float32, "Double": D.float64, "Half": D.float16, "BFloat16": D.bfloat16,
               "Long": D.int64, "Int": D.int32, "Short": D.int16, "Char": D.int8, "Byte": D.uint8,
               "Bool": D.bool_}


def _type(self: Tensor, dtype=None, non_blocking: bool = False):
    """With no argument the type name ('ember.FloatTensor'); otherwise `to(dtype)`."""
    if dtype is None:
        return f"ember.{TORCH_NAME[self.dtype]}Tensor"
    if isinstance(dtype, str):
        name = dtype.rsplit(".", 1)[-1]
        if not name.endswith("Tensor") or name[:-6] not in _TYPE_NAMES:
            raise ValueError(f"invalid type: '{dtype}'")
        dtype = _TYPE_NAMES[name[:-6]]
    return _to(self, dtype)


def _cuda(self: Tensor, device=None, non_blocking: bool = False) -> Tensor:
    return _to(self, "cuda" if device is None else device)


_CONVERSIONS = {"float": D.float32, "double": D.float64, "half": D.float16, "bfloat16": D.bfloat16,
                "int": D.int32, "long": D.int64, "short": D.int16, "char": D.int8, "byte": D.uint8,
                "bool": D.bool_}
for _name, _dt in _CONVERSIONS.items():
    setattr(Tensor, _name, lambda self, _dt=_dt: _to(self, _dt))
Tensor.to, Tensor.type, Tensor.clone, Tensor.detach = _to, _type, _clone, _detach
Tensor.requires_grad_ = _requires_grad_
Tensor.cpu = lambda self: _to(self, "cpu")
Tensor.cuda = _cuda
