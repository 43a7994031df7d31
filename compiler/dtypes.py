"""Data types and PyTorch's type-promotion rules.

A DType is a small immutable record; every backend maps it to its own type names in one place
(see codegen/llvm.py). float16/bfloat16 are storage types: kernels compute in float32 and round
on store, as PyTorch's CPU kernels do.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True, eq=False)
class DType:
    name: str
    itemsize: int
    kind: str  # 'b' bool, 'u' unsigned int, 'i' signed int, 'f' float
    np: np.dtype

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    @property
    def is_signed(self) -> bool:
        return self.kind in "if"

    @property
    def bits(self) -> int:
        return 1 if self.kind == "b" else self.itemsize * 8

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):  # dtypes are singletons, also across pickling (DataLoader workers)
        return (by_name, (self.name,))


bool_ = DType("bool", 1, "b", np.dtype(np.bool_))
uint8 = DType("uint8", 1, "u", np.dtype(np.uint8))
int8 = DType("int8", 1, "i", np.dtype(np.int8))
int16 = DType("int16", 2, "i", np.dtype(np.int16))
int32 = DType("int32", 4, "i", np.dtype(np.int32))
int64 = DType("int64", 8, "i", np.dtype(np.int64))
# Unsigned 32/64-bit are internal (the counter-based RNG needs them); PyTorch exposes them barely.
uint32 = DType("uint32", 4, "u", np.dtype(np.uint32))
uint64 = DType("uint64", 8, "u", np.dtype(np.uint64))
float16 = DType("float16", 2, "f", np.dtype(np.float16))
bfloat16 = DType("bfloat16", 2, "f", np.dtype(ml_dtypes.bfloat16))
float32 = DType("float32", 4, "f", np.dtype(np.float32))
float64 = DType("float64", 8, "f", np.dtype(np.float64))

ALL = (bool_, uint8, int8, int16, int32, int64, uint32, uint64, float16, bfloat16, float32, float64)
_BY_NAME = {d.name: d for d in ALL}
_BY_NP = {d.np: d for d in ALL}
_BY_NAME.update({"bool_": bool_, "half": float16, "float": float32, "double": float64, "long": int64,
                 "int": int32, "short": int16})


def by_name(name: str) -> DType:
    return _BY_NAME[name]


def from_numpy(dt) -> DType:
    dt = np.dtype(dt)
    if dt not in _BY_NP:
        raise TypeError(f"numpy dtype {dt} has no ember equivalent")
    return _BY_NP[dt]


def compute_dtype(dt: DType) -> DType:
    """The type arithmetic happens in: half types widen to float32 (as PyTorch's CPU kernels do)."""
    return float32 if dt in (float16, bfloat16) else dt


def _promote2(a: DType, b: DType) -> DType:
    if a is b:
        return a
    if a.kind == "b":
        return b
    if b.kind == "b":
        return a
    if a.is_float or b.is_float:
        if not (a.is_float and b.is_float):
            return a if a.is_float else b
        if {a, b} == {float16, bfloat16}:
            return float32
        return a if a.itemsize >= b.itemsize else b
    # both integers: numpy/PyTorch lattice
    if a.kind == b.kind:
        return a if a.itemsize >= b.itemsize else b
    u, s = (a, b) if a.kind == "u" else (b, a)
    if s.itemsize > u.itemsize:
        return s
    return {1: int16, 2: int32, 4: int64}.get(u.itemsize, int64)


def _category(dt: DType) -> int:
    return {"b": 0, "u": 1, "i": 1, "f": 2}[dt.kind]


def result_type(*operands, default_float: DType = float32) -> DType:
    """PyTorch's promotion: dimensioned tensors > zero-dim tensors > Python scalars, by category.

    Each operand is a (dtype, ndim) pair for tensors or a Python bool/int/float.
    """
    groups: list[list[DType]] = [[], [], []]  # dim tensors, zero-dim tensors, python scalars
    for op in operands:
        if isinstance(op, tuple):
            dt, ndim = op
            groups[0 if ndim > 0 else 1].append(dt)
        elif isinstance(op, bool):
            groups[2].append(bool_)
        elif isinstance(op, int):
            groups[2].append(int64)
        elif isinstance(op, float):
            groups[2].append(default_float)
        else:
            raise TypeError(f"unsupported operand type {type(op).__name__}")
    result = None
    for g in groups:
        if not g:
            continue
        t = g[0]
        for d in g[1:]:
            t = _promote2(t, d)
        if result is None or _category(t) > _category(result):
            result = t
    assert result is not None
    return result
