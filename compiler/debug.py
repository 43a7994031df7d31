"""The compiler's debug surface: EMBER_DEBUG levels and launch records for ember.debug.capture().

EMBER_DEBUG=1 kernel count and time per realize; 2 the schedule and why each kernel boundary
exists; 3 kernel IR; 4 generated LLVM IR; 5 assembly. Output goes to stderr.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

_captures: list = []


def level() -> int:
    try:
        return int(os.environ.get("EMBER_DEBUG", "0"))
    except ValueError:
        return 0


def active() -> bool:
    return bool(_captures) or level() >= 1


@dataclass
class KernelRecord:
    """One kernel launch: what ran, what it fused, and its code at each stage."""
    name: str
    backend: str
    ops: list
    shape: tuple
    time_s: float
    bytes: int
    compiled: object = field(repr=False)

    @property
    def sources(self) -> dict:
        from .runtime import cpu
        c = self.compiled
        return {"ir": str(c.kernel), "llvm": c.source,
                "llvm_opt": _Lazy(lambda: cpu.compiler().optimized_ir(c.source)),
                "asm": _Lazy(lambda: cpu.compiler().assembly(c.source))}

    def source(self, stage: str) -> str:
        s = self.sources[stage]
        return s() if isinstance(s, _Lazy) else s


class _Lazy:
    def __init__(self, f):
        self.f = f

    def __call__(self):
        return self.f()


def record_launch(compiled, seconds: float, outs) -> None:
    k = compiled.kernel
    nbytes = sum(p.numel * p.dtype.itemsize for p in k.params)
    rec = KernelRecord(k.name, "llvm", list(k.ops), tuple(k.shape), seconds, nbytes, compiled)
    for c in _captures:
        c.kernels.append(rec)
    lv = level()
    if lv >= 1:
        print(f"[ember] kernel {k.name:<48} {seconds * 1e6:9.1f} us  {nbytes / max(seconds, 1e-12) / 1e9:7.2f} GB/s",
              file=sys.stderr)
    if lv >= 3 and not getattr(compiled, "_printed", False):
        compiled._printed = True
        print(str(k), file=sys.stderr)
        if lv >= 4:
            print(compiled.source, file=sys.stderr)
        if lv >= 5:
            print(rec.source("asm"), file=sys.stderr)


def record_realize(plan, cached: bool, seconds: float) -> None:
    for c in _captures:
        c.realizes += 1
    lv = level()
    if lv >= 1:
        print(f"[ember] realize: {len(plan.steps)} kernels, {seconds * 1e3:.3f} ms"
              f"{' (cached plan)' if cached else ''}", file=sys.stderr)
    if lv >= 2 and not cached:
        print(plan.schedule_text, file=sys.stderr)


class Capture:
    def __init__(self):
        self.kernels: list[KernelRecord] = []
        self.realizes = 0

    def __enter__(self):
        _captures.append(self)
        return self

    def __exit__(self, *exc):
        _captures.remove(self)
        return False
