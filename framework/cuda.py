"""ember.cuda: the "cuda" device, PyTorch's `torch.cuda` surface.

    if ember.cuda.is_available():
        x = ember.randn(1024, 1024, device="cuda")
        ember.cuda.synchronize()

Served by an NVIDIA GPU (Triton kernels, memory through `cuda-bindings`), or, with
EMBER_TRITON_INTERPRET=1, by Triton's interpreter on the CPU (a test mode). Nothing GPU-related is
imported until one of these is called.
"""
from __future__ import annotations

from ember.compiler.runtime import cuda as _rt

__all__ = ["is_available", "device_count", "synchronize", "current_device", "get_device_name",
           "memory_allocated", "max_memory_allocated", "empty_cache", "manual_seed", "manual_seed_all"]


def is_available() -> bool:
    """Whether "cuda" tensors can be made (a GPU with triton and cuda-bindings, or the interpreter)."""
    return _rt.is_available()


def device_count() -> int:
    return _rt.device_count()


def synchronize(device=None) -> None:
    """Wait for every launched kernel and copy to finish."""
    _rt.synchronize()


def current_device() -> int:
    _rt.require()
    return 0


def get_device_name(device=None) -> str:
    return _rt.device_name()


def memory_allocated(device=None) -> int:
    return _rt.memory_stats()["live_bytes"]


def max_memory_allocated(device=None) -> int:
    return _rt.memory_stats()["peak_bytes"]


def empty_cache() -> None:
    """Give cached, unused device memory back to the driver."""
    _rt.empty_cache()


def manual_seed(seed: int) -> None:
    """ember's random numbers are the same on every device: this seeds the one generator."""
    from .random import manual_seed as _seed
    _seed(seed)


manual_seed_all = manual_seed
