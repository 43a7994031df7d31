"""ember.debug: see what the compiler did.

    with ember.debug.capture() as cap:
        y = (x.exp() * w).sum(1).numpy()
    print(len(cap.kernels), cap.kernels[0].ops, cap.kernels[0].source("llvm"))
"""
from ember.compiler.debug import Capture, KernelRecord, level

__all__ = ["capture", "Capture", "KernelRecord", "level"]


def capture() -> Capture:
    """Context manager recording every kernel launched inside it (name, backend, ops fused,
    shape, time, and the source at each stage via `.source('ir'|'llvm'|'llvm_opt'|'asm')`)."""
    return Capture()
