"""Buffers: flat, contiguous device memory that realized nodes hold.

A Buffer is the only thing kernels read and write. Shape and strides live in the graph (views are
index arithmetic), so a buffer is just (device, dtype, numel) plus its storage.
"""
from __future__ import annotations

import numpy as np

from . import dtypes as D


class Buffer:
    __slots__ = ("device", "dtype", "numel", "_data", "__weakref__")

    def __init__(self, device: str, dtype: D.DType, numel: int, data: np.ndarray | None = None):
        if device != "cpu":
            raise RuntimeError(f"no backend for device {device!r}")
        self.device, self.dtype, self.numel = device, dtype, numel
        if data is None:
            data = np.empty(numel, dtype=dtype.np)
        assert data.dtype == dtype.np and data.ndim == 1 and data.size == numel and data.flags.c_contiguous
        self._data = data

    @staticmethod
    def from_array(arr: np.ndarray, device: str = "cpu", copy: bool = False) -> "Buffer":
        dt = D.from_numpy(arr.dtype)
        flat = (np.array(arr, order="C") if copy else np.ascontiguousarray(arr)).reshape(-1)
        return Buffer(device, dt, flat.size, flat)

    def numpy(self) -> np.ndarray:
        """The storage as a flat numpy array (shared, not copied)."""
        return self._data

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def ptr(self) -> int:
        return self._data.ctypes.data

    def __repr__(self) -> str:
        return f"Buffer({self.device}, {self.dtype.name}, {self.numel})"
