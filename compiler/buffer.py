"""Buffers: flat, contiguous device memory that realized nodes hold.

A Buffer is the only thing kernels read and write. Shape and strides live in the graph (views are
index arithmetic), so a buffer is just (device, dtype, numel) plus its storage.
"""
from __future__ import annotations

import numpy as np

from . import dtypes as D


POOL_LIMIT = 1 << 30   # bytes of freed storage kept for reuse


class _Stats:
    """Bytes of live kernel-made buffers, and the peak since the last reset (ember.debug.memory_stats)."""
    live = 0
    peak = 0


class _Pool:
    """Caching allocator: freed storage is kept by size and handed out again.

    Large numpy allocations are fresh mmaps whose every page faults on first write; a training
    loop allocates the same sizes each step, so reusing storage saves that cost (the same reason
    PyTorch caches device memory)."""

    def __init__(self):
        self.free: dict[int, list[np.ndarray]] = {}
        self.bytes = 0

    def alloc(self, nbytes: int) -> np.ndarray:
        lst = self.free.get(nbytes)
        if lst:
            self.bytes -= nbytes
            return lst.pop()
        return np.empty(max(nbytes, 1), dtype=np.uint8)

    def release(self, raw: np.ndarray) -> None:
        if self.bytes + raw.nbytes <= POOL_LIMIT:
            self.free.setdefault(raw.nbytes, []).append(raw)
            self.bytes += raw.nbytes


_pool = _Pool()


def memory_stats() -> dict:
    return {"live_bytes": _Stats.live, "peak_bytes": _Stats.peak, "pooled_bytes": _pool.bytes}


def reset_peak() -> None:
    _Stats.peak = _Stats.live


class Buffer:
    __slots__ = ("device", "dtype", "numel", "_data", "_raw", "__weakref__")

    def __init__(self, device: str, dtype: D.DType, numel: int, data: np.ndarray | None = None):
        if device != "cpu":
            raise RuntimeError(f"no backend for device {device!r}")
        self.device, self.dtype, self.numel = device, dtype, numel
        self._raw = None
        if data is None:
            self._raw = _pool.alloc(numel * dtype.itemsize)
            data = self._raw[:numel * dtype.itemsize].view(dtype.np)
            _Stats.live += self._raw.nbytes
            _Stats.peak = max(_Stats.peak, _Stats.live)
        assert data.dtype == dtype.np and data.ndim == 1 and data.size == numel and data.flags.c_contiguous
        self._data = data

    def __del__(self):
        if self._raw is not None:
            _Stats.live -= self._raw.nbytes
            _pool.release(self._raw)

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
