"""default_collate / default_convert: samples -> batches, with PyTorch's rules.

Tensors are stacked along a new first dimension; numpy arrays and Python numbers become tensors
(floats -> float64, ints -> int64, as in PyTorch); strings stay lists; mappings, namedtuples and
sequences are collated field by field (a batch of tuples gives a LIST, as in PyTorch).

Host data (numpy arrays, numbers, and ember tensors that are already realized) is stacked on the
host into one buffer: one leaf per batch instead of a graph with one leaf per sample. Lazy tensors
are stacked with `ember.stack`, so their computation fuses with whatever consumes the batch.
"""
from __future__ import annotations

import collections.abc
import copy
import re

import numpy as np

__all__ = ["default_collate", "default_convert"]

_np_str_obj = re.compile(r"[SaUO]")
_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}")


def _tensor_cls():
    from ...tensor import Tensor
    return Tensor


def _from_host(arr: np.ndarray):
    from ...creation import from_numpy
    arr = np.asarray(arr)
    return from_numpy(arr if arr.flags.c_contiguous else np.array(arr, order="C"))  # keeps 0-d arrays 0-d


def _stack_tensors(batch: list):
    import ember
    first = batch[0]
    for i, t in enumerate(batch[1:], 1):
        if t.shape != first.shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(first.shape)} at entry 0 "
                               f"and {list(t.shape)} at entry {i}")
    host = all(t.node.realized and not t.requires_grad and t.dtype is first.dtype for t in batch)
    if host and batch:
        return _from_host(np.stack([t._value() for t in batch]))
    return ember.stack(batch, 0)


def default_collate(batch):
    """Collate a list of samples into a batch.

    >>> default_collate([(ember.tensor([1., 2.]), 0), (ember.tensor([3., 4.]), 1)])
    [tensor([[1., 2.], [3., 4.]]), tensor([0, 1])]
    """
    Tensor = _tensor_cls()
    elem = batch[0]
    if isinstance(elem, Tensor):
        return _stack_tensors(batch)
    if isinstance(elem, np.ndarray) or isinstance(elem, np.generic):
        if _np_str_obj.search(elem.dtype.str) is not None:
            raise TypeError(_ERR.format(elem.dtype))
        return _from_host(np.stack([np.asarray(b) for b in batch]))
    if isinstance(elem, float):
        return _from_host(np.asarray(batch, dtype=np.float64))
    if isinstance(elem, bool):
        return _from_host(np.asarray(batch, dtype=np.bool_))
    if isinstance(elem, int):
        return _from_host(np.asarray(batch, dtype=np.int64))
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        return _rebuild_mapping(elem, {key: default_collate([d[key] for d in batch]) for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(e) != size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        fields = [default_collate(list(s)) for s in zip(*batch)]
        return fields if isinstance(elem, tuple) else _rebuild_sequence(elem, fields)
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data):
    """Turn numpy arrays (recursively, inside containers) into tensors; used without batching.

    >>> default_convert(np.zeros(3))
    tensor([0., 0., 0.], dtype=ember.float64)
    """
    Tensor = _tensor_cls()
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)):
        return data if _np_str_obj.search(data.dtype.str) is not None else _from_host(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        return _rebuild_mapping(data, {k: default_convert(v) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        return _rebuild_sequence(data, [default_convert(d) for d in data])
    return data


def _rebuild_mapping(like, fields: dict):
    """`fields` in a mapping of like's type (a mutable one is copied and updated, which keeps its
    extra state); a plain dict when that type cannot be built from one."""
    try:
        if isinstance(like, collections.abc.MutableMapping):
            clone = copy.copy(like)
            clone.update(fields)
            return clone
        return type(like)(fields)
    except TypeError:
        return fields


def _rebuild_sequence(like, items: list):
    """`items` in a sequence of like's type, as _rebuild_mapping; a plain list as the fallback."""
    try:
        if isinstance(like, collections.abc.MutableSequence):
            clone = copy.copy(like)
            for i, item in enumerate(items):
                clone[i] = item
            return clone
        return type(like)(items)
    except TypeError:
        return items
