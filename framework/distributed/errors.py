"""Errors of ember.distributed, with PyTorch's names (torch.distributed.DistError and friends)."""
from __future__ import annotations


class DistError(RuntimeError):
    """Base of the errors raised by ember.distributed."""


class DistBackendError(DistError):
    """A collective failed in the backend: a timeout, a dead or unresponsive rank."""


class DistNetworkError(DistError):
    """Rendezvous between the ranks failed (NCCL's unique-id exchange)."""


def backend_missing(backend: str, module: str, extra_packages: str, detail: str) -> DistError:
    """The backend's Python package (or library) is not installed: say what to install."""
    return DistError(f"the {backend!r} backend of ember.distributed needs the '{module}' package ({detail}). "
                     f"Install it with: pip install {module} {extra_packages}".rstrip()
                     + "  (or: pip install 'ember[distributed]')")
