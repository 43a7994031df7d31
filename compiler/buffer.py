"""Buffers: flat, contiguous device memory that realized nodes hold.

A Buffer is the only thing kernels read and write. Shape and strides live in the graph (views are
index arithmetic), so a buffer is just (device, dtype, numel) plus its storage. This class is host
memory; a "cuda" buffer (compiler/runtime/cuda.py: CudaBuffer) has the same interface, and
`to(device)` copies between them.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import dtypes as D


POOL_LIMIT = 1 << 30   # bytes of freed storage kept for reuse
ALIGN = 64


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
        self.free: dict[int, list[tuple]] = {}
        self.bytes = 0

    def alloc(self, nbytes: int) -> tuple[np.ndarray, int]:
        """(storage of exactly max(nbytes, 1) bytes aligned to 64 bytes, its address)."""
        lst = self.free.get(nbytes)
        if lst:
            self.bytes -= nbytes
            return lst.pop()
        n = max(nbytes, 1)
        block = np.empty(n + ALIGN, dtype=np.uint8)
        off = -block.ctypes.data % ALIGN   # a cache line: full-width vector loads and stores
        return block[off:off + n], block.ctypes.data + off

    def release(self, raw: np.ndarray, ptr: int) -> None:
        if self.bytes + raw.nbytes <= POOL_LIMIT:
            self.free.setdefault(raw.nbytes, []).append((raw, ptr))
            self.bytes += raw.nbytes


_pool = _Pool()


_exported = weakref.WeakSet()   # buffers whose memory others read directly (DLPack consumers)


def export(buf) -> None:
    """Mark `buf` as shared outside ember (a DLPack consumer reads its memory): it is never
    overwritten in place (ember.compile), and its storage is left to numpy's reference counting
    instead of going back to the pool, which would hand it out while the consumer still reads it."""
    _exported.add(buf)
    if getattr(buf, "_raw", None) is not None:
        _Stats.live -= buf._raw.nbytes
        buf._raw = None


def exported(buf) -> bool:
    return bool(_exported) and buf in _exported


def memory_stats() -> dict:
    return {"live_bytes": _Stats.live, "peak_bytes": _Stats.peak, "pooled_bytes": _pool.bytes}


def reset_peak() -> None:
    _Stats.peak = _Stats.live


class Buffer:
    __slots__ = ("device", "dtype", "numel", "_data", "_raw", "_ptr", "__weakref__")

    def __init__(self, device: str, dtype: D.DType, numel: int, data: np.ndarray | None = None):
        if device != "cpu":  # other devices' buffers come from their backend (realize.backend)
            raise RuntimeError(f"Buffer holds host memory; use realize.backend({device!r}).alloc")
        self.device, self.dtype, self.numel = device, dtype, numel
        self._ptr = None
        if data is None:   # the hot path: every kernel output of every launch
            nbytes = numel * dtype.itemsize
            raw, self._ptr = _pool.alloc(nbytes)
            self._raw = raw
            self._data = (raw if raw.nbytes == nbytes else raw[:nbytes]).view(dtype.np)
            live = _Stats.live = _Stats.live + raw.nbytes
            if live > _Stats.peak:
                _Stats.peak = live
            return
        assert data.dtype == dtype.np and data.ndim == 1 and data.size == numel and data.flags.c_contiguous
        self._raw = None
        self._data = data

    def __del__(self):
        if self._raw is not None:
            _Stats.live -= self._raw.nbytes
            _pool.release(self._raw, self._ptr)

    @staticmethod
    def from_array(arr: np.ndarray, device: str = "cpu", copy: bool = False) -> "Buffer":
        dt = D.from_numpy(arr.dtype)
        flat = (np.array(arr, order="C") if copy else np.ascontiguousarray(arr)).reshape(-1)
        return Buffer("cpu", dt, flat.size, flat).to(device)

    def to(self, device: str):
        """This buffer's value on `device`: self if it is there, else a copy there."""
        if device == "cpu":
            return self
        from .realize import backend
        return backend(device).upload(self)

    def numpy(self) -> np.ndarray:
        """The storage as a flat numpy array (shared, not copied)."""
        return self._data

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def ptr(self) -> int:
        if self._ptr is None:   # numpy's .ctypes builds an object per access: keep the address
            self._ptr = self._data.ctypes.data
        return self._ptr

    def __repr__(self) -> str:
        return f"Buffer({self.device}, {self.dtype.name}, {self.numel})"
