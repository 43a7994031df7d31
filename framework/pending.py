"""Values a training step computes on the side, to be realized with the step's other work.

BatchNorm's running statistics: each training step rebinds such a buffer to a small lazy graph
(0.9 * old + 0.1 * batch mean). The loss a `backward()` started from: the user reads it after
`optimizer.step()` (`loss.item()`). Each should be computed together with the step's other work
(the optimizer's realize), not on its own: on its own it would re-run the forward pass up to that
point, as the forward's intermediate values are gone by then. They are recorded here;
`take()` hands them to whoever realizes next (optimizer.step), and `settle()` is the fallback a
module calls before building the next update, so no chain outlives one step.
"""
from __future__ import annotations

import weakref

from .tensor import Tensor, realize

_pending: "weakref.WeakValueDictionary[int, Tensor]" = weakref.WeakValueDictionary()


def defer(*tensors: Tensor) -> None:
    """Note tensors whose lazy values are state updates to realize with the next step."""
    for t in tensors:
        if t is not None and t.node.op != "buffer":
            _pending[id(t)] = t


def take() -> list[Tensor]:
    """The recorded tensors that are still lazy (the registry is emptied)."""
    out = [t for t in list(_pending.values()) if t.node.op != "buffer"]
    _pending.clear()
    return out


def settle(*tensors: Tensor) -> None:
    """Realize any of `tensors` that are still lazy (the previous step's update was never computed)."""
    lazy = [t for t in tensors if t is not None and t.node.op != "buffer"]
    if lazy:
        realize(*lazy)
        for t in lazy:
            _pending.pop(id(t), None)
