"""nn.Parameter, and the in-place value setters that modules, init and optimizers rely on.

A Parameter is a Tensor that a Module registers as learnable: a leaf that requires grad. Its value
is replaced in place (under no_grad) by `_rebind`, which keeps the same Python object and the same
autograd leaf, so `.grad` accumulation and optimizer references keep working.

This module also gives Tensor `data`, `copy_`, `fill_`, `zero_` and `__deepcopy__` where nothing
else defined them. `x.data` is a detached tensor on the same value; an in-place update of it
(`p.data.mul_(0.5)`, `p.data.copy_(w)`) also updates `x`, as in PyTorch where they share storage.
"""
from __future__ import annotations

import numpy as np

from ..autograd_mode import no_grad
from ..errors import ShapeError
from ..tensor import Tensor


class Parameter(Tensor):
    """A learnable tensor: a leaf with requires_grad=True that Modules register automatically.

    >>> w = nn.Parameter(ember.zeros(3))
    >>> w.requires_grad, w.is_leaf
    (True, True)
    """
    __slots__ = ()

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from ..creation import empty
            data = empty(0)
        elif not isinstance(data, Tensor):
            from ..creation import tensor
            data = tensor(data)
        self._init(data.node, data.device, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    __str__ = __repr__

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        out = Parameter(Tensor._wrap(self.node, self.device), self.requires_grad)
        out.grad = None if self.grad is None else Tensor._wrap(self.grad.node, self.grad.device)
        memo[id(self)] = out
        return out


class _DataView(Tensor):
    """What `x.data` returns: detached, and writing through it (in place) updates `x` too."""
    __slots__ = ("_base",)

    def _rebind(self, out: Tensor) -> Tensor:
        Tensor._rebind(self, out)
        with no_grad():
            self._base._rebind(Tensor._wrap(out.node, out.device))
        return self


def _get_data(self: Tensor) -> Tensor:
    view = _DataView.__new__(_DataView)
    view._init(self.node, self.device)
    view._base = self
    return view


def _set_data(self: Tensor, value: Tensor) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"data must be a Tensor, not {type(value).__name__}")
    with no_grad():
        self._rebind(Tensor._wrap(value.node, value.device))


def _copy_(self: Tensor, src, non_blocking: bool = False) -> Tensor:
    """Copy src's values into self (broadcast to self's shape, cast to self's dtype); differentiable
    with respect to src.

    >>> w = ember.zeros(2, 3); w.copy_(ember.ones(3))
    """
    if not isinstance(src, Tensor):
        from ..creation import as_tensor
        src = as_tensor(np.asarray(src))
    if src.device != self.device:
        src = src.to(self.device)
    if tuple(src.shape) != tuple(self.shape):
        try:
            src = src.expand(tuple(self.shape))
        except (RuntimeError, ValueError):
            raise ShapeError(f"The size of tensor a ({list(self.shape)}) must match the size of tensor b "
                             f"({list(src.shape)}): copy_ cannot broadcast {list(src.shape)} to "
                             f"{list(self.shape)}") from None
    if src.dtype is not self.dtype:
        src = src._apply("cast", arg=self.dtype)
    return self._rebind(src._apply("contiguous"))


def _fill_(self: Tensor, value) -> Tensor:
    """Set every element to `value` (a number or a 0-dim tensor)."""
    from ..creation import full
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                               f"{value.ndim} dimensions.")
        return _copy_(self, value)
    return self._rebind(full(tuple(self.shape), value, dtype=self.dtype, device=self.device))


def _zero_(self: Tensor) -> Tensor:
    """Set every element to zero."""
    return _fill_(self, 0)


def _deepcopy(self: Tensor, memo) -> Tensor:
    # graph values are immutable, so a deep copy is a new tensor object on the same value
    if id(self) in memo:
        return memo[id(self)]
    out = Tensor._wrap(self.node, self.device)
    if self.requires_grad and self.is_leaf:
        out.requires_grad = True
    memo[id(self)] = out
    return out


for _name, _fn in (("copy_", _copy_), ("fill_", _fill_), ("zero_", _zero_), ("__deepcopy__", _deepcopy),
                   ("data", property(_get_data, _set_data))):
    if not hasattr(Tensor, _name):
        setattr(Tensor, _name, _fn)

