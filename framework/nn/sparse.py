"""Embedding: a lookup table of vectors, rows picked by integer indices."""
from __future__ import annotations

from ..autograd_mode import no_grad
from ..creation import arange, empty
from ..tensor import Tensor
from . import init
from .module import Module
from .parameter import Parameter


def _renorm_rows(input: Tensor, weight: Tensor, max_norm: float, norm_type: float) -> None:
    """PyTorch's embedding_renorm_: rows that `input` looks up and whose norm exceeds max_norm are
    scaled (in place, without gradient) to norm max_norm."""
    with no_grad():
        n = weight.shape[0]
        used = (arange(n, device=weight.device).reshape(n, 1) == input.reshape(1, -1)).any(1, keepdim=True)
        norm = (weight.abs() ** norm_type).sum(1, keepdim=True) ** (1.0 / norm_type)
        scale = (max_norm / (norm + 1e-7)).where(used & (norm > max_norm), 1.0)
        weight._rebind(weight * scale.to(weight.dtype))


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """weight[input]: one row of weight per index; rows at padding_idx get no gradient.

    >>> F.embedding(ember.tensor([[0, 2]]), ember.eye(3)).shape
    ember.Size([1, 2, 3])
    """
    if input.dtype.is_float or input.dtype.name == "bool":
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {input.type()} instead (while checking arguments for embedding)")
    if scale_grad_by_freq:
        raise NotImplementedError("embedding: scale_grad_by_freq is not supported")
    n = weight.shape[0]
    if padding_idx is not None:
        if not -n <= padding_idx < n:
            raise AssertionError("Padding_idx must be within num_embeddings")
        padding_idx %= n
    if max_norm is not None:
        _renorm_rows(input, weight, max_norm, norm_type)
    rows = weight.index_select(0, input.reshape(-1)).reshape(tuple(input.shape) + tuple(weight.shape[1:]))
    if padding_idx is not None:  # same value, but the padding row's uses pass no gradient back
        pad = (input == padding_idx).reshape(tuple(input.shape) + (1,) * (weight.ndim - 1))
        rows = rows.detach().where(pad, rows)
    return rows


class Embedding(Module):
    """A table of num_embeddings vectors of size embedding_dim, initialised N(0, 1) (the
    padding_idx row with zeros).

    >>> nn.Embedding(10, 3)(ember.tensor([[1, 2, 4, 5]])).shape
    ember.Size([1, 4, 3])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Tensor | None = None, _freeze: bool = False, device=None, dtype=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise AssertionError("Padding_idx must be within num_embeddings")
            padding_idx %= num_embeddings
        self.padding_idx, self.max_norm, self.norm_type = padding_idx, max_norm, norm_type
        self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
        if _weight is None:
            self.weight = Parameter(empty((num_embeddings, embedding_dim), device=device, dtype=dtype),
                                    requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if list(_weight.shape) != [num_embeddings, embedding_dim]:
                raise AssertionError("Shape of weight does not match num_embeddings and embedding_dim")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight._rebind(self.weight.where(
                    (arange(self.num_embeddings) != self.padding_idx).reshape(-1, 1), 0.0))

    def forward(self, input: Tensor) -> Tensor:
        return embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s

    @classmethod
    def from_pretrained(cls, embeddings: Tensor, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> "Embedding":
        """An Embedding whose table is `embeddings` (frozen unless freeze=False)."""
        if embeddings.ndim != 2:
            raise AssertionError("Embeddings parameter is expected to be 2-dimensional")
        rows, cols = embeddings.shape
        return cls(rows, cols, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse,
                   _weight=embeddings.detach(), _freeze=freeze)


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """(*) int64 class indices -> (*, num_classes) int64 one-hot rows; num_classes=-1 uses max + 1.

    >>> F.one_hot(ember.tensor([0, 2]), 3).tolist()
    [[1, 0, 0], [0, 0, 1]]
    """
    from ember.compiler import dtypes as D
    if tensor.dtype is not D.int64:
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        if tensor.numel() == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(tensor.max().item()) + 1
    if tensor.node.op == "buffer" and tensor.numel():
        vals = tensor._value()
        if (vals < 0).any():
            raise RuntimeError("Class values must be non-negative.")
        if (vals >= num_classes).any():
            raise RuntimeError("Class values must be smaller than num_classes.")
    return (tensor.unsqueeze(-1) == arange(num_classes, device=tensor.device)).to(D.int64)
