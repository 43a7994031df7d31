"""Loss functions and their modules, with PyTorch's reductions ('none', 'mean', 'sum').

Classification losses pick each target's log-probability with a one-hot comparison against the
class index (a `where` and a sum over the class dim) rather than a gather: it fuses with the
log_softmax that precedes it and needs no index validation on the host. Targets that are already
computed are still checked for out-of-range classes, as PyTorch does.
"""
from __future__ import annotations

import math

from ..creation import arange
from ..errors import ShapeError
from ..ops_reduce import log_softmax as _log_softmax
from ..tensor import Tensor
from .activation import _softplus
from .module import Module


def _legacy_reduction(size_average, reduce) -> str:
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _resolve(size_average, reduce, reduction: str) -> str:
    return _legacy_reduction(size_average, reduce) if size_average is not None or reduce is not None else reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _same_size(input: Tensor, target: Tensor, name: str) -> None:
    if tuple(input.shape) != tuple(target.shape):
        raise ShapeError(f"Using a target size ({target.shape}) that is different to the input size ({input.shape}) "
                         f"is not supported in {name}. Please ensure they have the same size.")


# ---- regression --------------------------------------------------------------------------------

def mse_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """(input - target)^2, reduced.

    >>> F.mse_loss(ember.tensor([1.0, 3.0]), ember.tensor([0.0, 0.0])).item()
    5.0
    """
    d = input - target
    return _reduce(d * d, _resolve(size_average, reduce, reduction))


def l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """|input - target|, reduced."""
    return _reduce((input - target).abs(), _resolve(size_average, reduce, reduction))


def smooth_l1_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
                   beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (d = input - target)."""
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    d = (input - target).abs()
    loss = d if beta == 0 else (d * d * (0.5 / beta)).where(d < beta, d - 0.5 * beta)
    return _reduce(loss, _resolve(size_average, reduce, reduction))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5 d^2 where |d| <= delta, delta * (|d| - 0.5 delta) elsewhere."""
    d = (input - target).abs()
    loss = (d * d * 0.5).where(d <= delta, (d - 0.5 * delta) * delta)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# ---- classification ------------------------------------------------------------------------------

def _check_targets(target: Tensor, classes: int, ignore_index: int) -> None:
    """Out-of-range class indices raise IndexError, where the targets are already computed."""
    if target.node.op != "buffer" or target.numel() == 0:
        return
    vals = target._value()
    bad = (vals != ignore_index) & ((vals < 0) | (vals >= classes))
    if bad.any():
        raise IndexError(f"Target {vals[bad].flat[0]} is out of bounds.")


def _class_layout(input: Tensor, target: Tensor, name: str) -> tuple[Tensor, Tensor, bool]:
    """Bring (C,) / (N, C) / (N, C, d1, ...) inputs and their index targets to batched form."""
    if input.ndim == 0:
        raise ValueError(f"{name}: input tensor should be 1D or more")
    if input.ndim == 1:
        if target.ndim != 0:
            raise ShapeError(f"{name}: a 1D input (a single sample) expects a 0D target, got target of shape "
                             f"{list(target.shape)}")
        return input.unsqueeze(0), target.unsqueeze(0), True
    if target.ndim == 0 or input.shape[0] != target.shape[0]:
        got = target.shape[0] if target.ndim else "a scalar"
        raise ShapeError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size ({got}).")
    if tuple(target.shape[1:]) != tuple(input.shape[2:]):
        raise ShapeError(f"Expected target size {[input.shape[0]] + list(input.shape[2:])}, got {list(target.shape)}")
    return input, target, False


def _onehot_mask(target: Tensor, classes: int) -> Tensor:
    """(N, C, d...) bool: True at each target's class."""
    c = arange(classes, device=target.device).reshape((1, classes) + (1,) * (target.ndim - 1))
    return c == target.unsqueeze(1)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
             ignore_index: int = -100, reduce=None, reduction: str = "mean") -> Tensor:
    """-input[n, target[n]] (times weight[target[n]]), for log-probabilities `input`; targets equal
    to ignore_index contribute nothing, and 'mean' divides by the total weight of the others."""
    reduction = _resolve(size_average, reduce, reduction)
    if target.dtype.is_float or target.dtype.name == "bool":
        raise RuntimeError(f"expected scalar type Long but found {target.type()[len('ember.'):-len('Tensor')]}")
    x, t, unbatched = _class_layout(input, target, "nll_loss")
    classes = x.shape[1]
    if weight is not None and tuple(weight.shape) != (classes,):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no classes but "
                           f"got weight tensor of shape: {list(weight.shape)}")
    _check_targets(t, classes, ignore_index)
    hit = _onehot_mask(t, classes)
    picked = x.where(hit, 0.0).sum(1)
    valid = t != ignore_index
    if weight is None:
        w = valid.to(x.dtype)
    else:
        wb = weight.to(x.dtype).reshape((1, classes) + (1,) * (x.ndim - 2)).expand(tuple(x.shape))
        w = wb.where(hit, 0.0).sum(1).where(valid, 0.0)
    loss = -(picked * w)
    if reduction == "mean":
        return loss.sum() / w.sum()
    loss = _reduce(loss, reduction)
    return loss.squeeze(0) if unbatched and reduction == "none" else loss


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                  ignore_index: int = -100, reduce=None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """log_softmax over the class dim (1, or 0 for a single sample) followed by nll_loss. `target`
    holds class indices, or class probabilities with input's shape; label_smoothing mixes the
    target with the uniform distribution.

    >>> F.cross_entropy(ember.zeros(2, 4), ember.tensor([1, 3])).item()   # log(4)
    1.3862943649291992
    """
    reduction = _resolve(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 1 if input.ndim >= 2 else 0
    classes = input.shape[class_dim]
    logp = _log_softmax(input, class_dim)
    wshape = tuple(classes if i == class_dim else 1 for i in range(input.ndim))
    if target.dtype.is_float:  # class probabilities
        if tuple(target.shape) != tuple(input.shape):
            raise ShapeError(f"Expected target size {list(input.shape)}, got {list(target.shape)}")
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / classes
        prod = logp * target
        if weight is not None:
            prod = prod * weight.reshape(wshape)
        loss = -prod.sum(class_dim)
        if reduction == "mean":
            return -prod.sum() / (input.numel() // classes) if input.numel() else loss.sum() * math.nan
        return _reduce(loss, reduction)
    nll = nll_loss(logp, target, weight, None, ignore_index, None, reduction)
    if label_smoothing == 0:
        return nll
    smooth = -(logp * weight.to(logp.dtype).reshape(wshape)).sum(class_dim) if weight is not None \
        else -logp.sum(class_dim)
    valid = target != ignore_index
    smooth = smooth.where(valid, 0.0)
    if reduction == "mean":
        if weight is not None:
            x, t, _ = _class_layout(logp, target, "cross_entropy")
            wb = weight.to(x.dtype).reshape((1, classes) + (1,) * (x.ndim - 2)).expand(tuple(x.shape))
            denom = wb.where(_onehot_mask(t, classes), 0.0).sum(1).where(t != ignore_index, 0.0).sum()
        else:
            denom = valid.sum()
        smooth = smooth.sum() / denom
    else:
        smooth = _reduce(smooth, reduction)
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / classes)


def _log_clamped(x: Tensor) -> Tensor:
    return x.log().clamp(min=-100.0)  # PyTorch clamps BCE's logs at -100 so 0 and 1 stay finite


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                         reduce=None, reduction: str = "mean") -> Tensor:
    """-(t log x + (1 - t) log(1 - x)) for probabilities x, with the logs clamped at -100."""
    reduction = _resolve(size_average, reduce, reduction)
    _same_size(input, target, "binary_cross_entropy")
    loss = -(target * _log_clamped(input) + (1 - target) * _log_clamped(1 - input))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _softplus_neg(x: Tensor) -> Tensor:
    """log(1 + exp(-x)), overflow-free, with gradient -sigmoid(-x) everywhere."""
    return _softplus(-x)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average=None, reduce=None, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """binary_cross_entropy(sigmoid(input), target) computed stably from the logits; pos_weight
    scales the positive term (per class, broadcast over the last dim)."""
    reduction = _resolve(size_average, reduce, reduction)
    if tuple(input.shape) != tuple(target.shape):
        raise ShapeError(f"Target size ({target.shape}) must be the same as input size ({input.shape})")
    sp = _softplus_neg(input)
    if pos_weight is not None:
        loss = (1 - target) * input + ((pos_weight - 1) * target + 1) * sp
    else:
        loss = (1 - target) * input + sp
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def kl_div(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean",
           log_target: bool = False) -> Tensor:
    """target * (log(target) - input) for log-probabilities `input` (0 where target is 0);
    reduction='batchmean' divides the sum by the batch size (the mathematically correct KL)."""
    reduction = _resolve(size_average, reduce, reduction)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        zero = target == 0  # xlogy: 0 * log 0 counts as 0 (the log sees 1 there, keeping gradients finite)
        loss = (target * Tensor.log(target.where(~zero, 1.0))).where(~zero, 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.ndim else 1)
    return _reduce(loss, reduction)


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False, size_average=None,
                     eps: float = 1e-8, reduce=None, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of target under Poisson(input) (input = log-rate if log_input)."""
    reduction = _resolve(size_average, reduce, reduction)
    loss = input.exp() - target * input if log_input else input - target * (input + eps).log()
    if full:
        safe = target.where(target > 1, 2.0)
        stirling = safe * safe.log() - safe + 0.5 * Tensor.log(2 * math.pi * safe)
        loss = loss + stirling.where(target > 1, 0.0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(input: Tensor, target: Tensor, var, full: bool = False, eps: float = 1e-6,
                      reduction: str = "mean") -> Tensor:
    """0.5 (log(max(var, eps)) + (input - target)^2 / max(var, eps)) (+ 0.5 log(2 pi) if full)."""
    if not isinstance(var, Tensor):
        var = input.detach() * 0 + var
    if tuple(var.shape) != tuple(input.shape):
        if tuple(input.shape[:-1]) == tuple(var.shape):  # one variance per sample
            var = var.unsqueeze(-1)
        elif not (tuple(input.shape[:-1]) == tuple(var.shape[:-1]) and var.shape[-1] == 1):
            raise ValueError("var is of incorrect size")
    # PyTorch clamps a copy of var under no_grad: the clamped value, with var's own gradient
    v = var.clamp(min=eps).detach() + (var - var.detach())
    d = input - target
    loss = 0.5 * (v.log() + d * d / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, size_average=None,
                        reduce=None, reduction: str = "mean") -> Tensor:
    """max(0, -target * (input1 - input2) + margin)."""
    return _reduce((-target * (input1 - input2) + margin).clamp(min=0), _resolve(size_average, reduce, reduction))


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average=None, reduce=None,
                         reduction: str = "mean") -> Tensor:
    """x where target == 1, max(0, margin - x) where target == -1."""
    loss = input.where(target == 1, 0.0) + (margin - input).clamp(min=0).where(target == -1, 0.0)
    return _reduce(loss, _resolve(size_average, reduce, reduction))


def soft_margin_loss(input: Tensor, target: Tensor, size_average=None, reduce=None, reduction: str = "mean") -> Tensor:
    """log(1 + exp(-target * input))."""
    return _reduce(_softplus_neg(target * input), _resolve(size_average, reduce, reduction))


def multilabel_soft_margin_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average=None,
                                reduce=None, reduction: str = "mean") -> Tensor:
    """Per-class binary cross-entropy with logits, averaged over the classes of each sample."""
    loss = target * _softplus_neg(input) + (1 - target) * _softplus_neg(-input)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss.mean(-1), _resolve(size_average, reduce, reduction))


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0, size_average=None,
                          reduce=None, reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where target == 1, max(0, cos(x1, x2) - margin) where target == -1."""
    eps = 1e-12
    dot = (input1 * input2).sum(-1)
    cos = dot / Tensor.sqrt(((input1 * input1).sum(-1) + eps) * ((input2 * input2).sum(-1) + eps))
    loss = (1 - cos).where(target == 1, 0.0) + (cos - margin).clamp(min=0).where(target == -1, 0.0)
    return _reduce(loss, _resolve(size_average, reduce, reduction))


def triplet_margin_loss(anchor: Tensor, positive: Tensor, negative: Tensor, margin: float = 1.0, p: float = 2,
                        eps: float = 1e-6, swap: bool = False, size_average=None, reduce=None,
                        reduction: str = "mean") -> Tensor:
    """max(d(a, p) - d(a, n) + margin, 0) with d the p-norm pairwise distance."""
    from .distance import pairwise_distance
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = Tensor.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce((d_pos - d_neg + margin).clamp(min=0), _resolve(size_average, reduce, reduction))


# ---- modules ----------------------------------------------------------------------------------

class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = _resolve(size_average, reduce, reduction)


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error.

    >>> nn.MSELoss()(ember.ones(3), ember.zeros(3)).item()
    1.0
    """

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Quadratic below beta, linear above."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Quadratic below delta, linear (slope delta) above."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class indices given log-probabilities."""

    def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean"):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Softmax cross-entropy from unnormalised logits; targets are class indices or probabilities.

    >>> nn.CrossEntropyLoss(label_smoothing=0.1)(ember.randn(8, 10), ember.randint(0, 10, (8,)))
    """

    def __init__(self, weight: Tensor | None = None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index, reduction=self.reduction,
                             label_smoothing=self.label_smoothing)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits (sigmoid folded in, numerically stable)."""

    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight: Tensor | None = None):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy_with_logits(input, target, self.weight, reduction=self.reduction,
                                                pos_weight=self.pos_weight)


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence of target from exp(input); reduction='batchmean' is the true KL."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


class PoissonNLLLoss(_Loss):
    def __init__(self, log_input: bool = True, full: bool = False, size_average=None, eps: float = 1e-8, reduce=None,
                 reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.log_input, self.full, self.eps = log_input, full, eps

    def forward(self, log_input: Tensor, target: Tensor) -> Tensor:
        return poisson_nll_loss(log_input, target, self.log_input, self.full, eps=self.eps, reduction=self.reduction)


class GaussianNLLLoss(_Loss):
    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__(reduction=reduction)
        self.full, self.eps = full, eps

    def forward(self, input: Tensor, target: Tensor, var) -> Tensor:
        return gaussian_nll_loss(input, target, var, self.full, self.eps, self.reduction)


class MarginRankingLoss(_Loss):
    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return margin_ranking_loss(input1, input2, target, self.margin, reduction=self.reduction)


class HingeEmbeddingLoss(_Loss):
    def __init__(self, margin: float = 1.0, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return hinge_embedding_loss(input, target, self.margin, reduction=self.reduction)


class SoftMarginLoss(_Loss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return soft_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_WeightedLoss):
    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return multilabel_soft_margin_loss(input, target, self.weight, reduction=self.reduction)


class CosineEmbeddingLoss(_Loss):
    def __init__(self, margin: float = 0.0, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin = margin

    def forward(self, input1: Tensor, input2: Tensor, target: Tensor) -> Tensor:
        return cosine_embedding_loss(input1, input2, target, self.margin, reduction=self.reduction)


class TripletMarginLoss(_Loss):
    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False, size_average=None,
                 reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.margin, self.p, self.eps, self.swap = margin, p, eps, swap

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        return triplet_margin_loss(anchor, positive, negative, self.margin, self.p, self.eps, self.swap,
                                   reduction=self.reduction)

