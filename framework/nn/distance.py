"""Distances and normalisation: pairwise_distance, cosine_similarity, normalize."""
from __future__ import annotations

from ..tensor import Tensor
from .module import Module


def _root(s: Tensor, p: float) -> Tensor:
    """s ** (1/p) for s >= 0, with gradient 0 (not 0 * inf) where s == 0, as PyTorch's norms."""
    pos = s > 0
    safe = s.where(pos, 1.0)
    return (safe.sqrt() if p == 2 else safe ** (1.0 / p)).where(pos, 0.0)


def _pnorm(x: Tensor, p: float, dim: int, keepdim: bool = False) -> Tensor:
    if p == 2:
        return _root((x * x).sum(dim, keepdim=keepdim), 2)
    if p == 1:
        return x.abs().sum(dim, keepdim=keepdim)
    if p == float("inf"):
        return x.abs().amax(dim, keepdim=keepdim)
    return _root((x.abs() ** p).sum(dim, keepdim=keepdim), p)


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out=None) -> Tensor:
    """input / max(||input||_p, eps) along dim.

    >>> F.normalize(ember.tensor([[3.0, 4.0]])).tolist()
    [[0.6000000238418518, 0.800000011920929]]
    """
    if p == 2:  # sqrt(max(sum x^2, eps^2)) equals max(norm, eps) and has a finite gradient at 0
        denom = Tensor.sqrt((input * input).sum(dim, keepdim=True).clamp(min=eps * eps))
    else:
        denom = _pnorm(input, p, dim, keepdim=True).clamp(min=eps)
    return input / denom


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    """||x1 - x2 + eps||_p along the last dim."""
    return _pnorm(x1 - x2 + eps, p, -1, keepdim)


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """x1 . x2 / (max(||x1||, eps) * max(||x2||, eps)) along dim."""
    n1 = Tensor.sqrt((x1 * x1).sum(dim, keepdim=True).clamp(min=eps * eps))
    n2 = Tensor.sqrt((x2 * x2).sum(dim, keepdim=True).clamp(min=eps * eps))
    return ((x1 / n1) * (x2 / n2)).sum(dim)


class PairwiseDistance(Module):
    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False):
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)


class CosineSimilarity(Module):
    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return cosine_similarity(x1, x2, self.dim, self.eps)
