"""Attention: `scaled_dot_product_attention`, `multi_head_attention_forward` and `MultiheadAttention`.

Everything is composed from Tensor ops (matmul, softmax pieces, where), so autograd and every
backend get it for free. Mask conventions follow PyTorch, and they differ between the two APIs:
for `scaled_dot_product_attention` a boolean `attn_mask` says which positions TAKE PART (True =
attend); for `MultiheadAttention` a boolean `attn_mask`/`key_padding_mask` says which positions are
MASKED OUT (True = ignore). Float masks are added to the scores in both.

A row whose every score is masked out gives zeros from `scaled_dot_product_attention` (as PyTorch's
CPU kernels do) but NaN from `MultiheadAttention(..., need_weights=True)` (PyTorch's explicit
softmax there gives NaN too); `safe=` below selects which.
"""
from __future__ import annotations

import math
import warnings

from ember.compiler import dtypes as D

from ..creation import ones, zeros
from ..errors import ShapeError
from ..ops_elementwise import where
from ..ops_movement import tril
from ..tensor import Tensor
from .dropout import dropout as _dropout_fn
from .linear import Linear, linear as _linear
from .module import Module
from .parameter import Parameter

__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward", "MultiheadAttention"]


class AttentionDTypeError(TypeError, RuntimeError):
    """A bad dtype combination: PyTorch raises RuntimeError here, Python code expects TypeError."""


def _softmax_last(scores: Tensor, safe: bool) -> Tensor:
    """Softmax over the last dim. With safe=True a row that is entirely -inf gives zeros instead
    of NaN: the (detached; softmax is shift-invariant) row max is replaced by 0 there, so exp gives
    0 everywhere and the zero sum is replaced by 1."""
    if not safe:
        return scores.softmax(-1)
    m = scores.amax(-1, keepdim=True).detach()
    m = where(m == float("-inf"), 0.0, m)
    e = (scores - m).exp()
    s = e.sum(-1, keepdim=True)
    return e / where(s == 0, 1.0, s)


def _attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, keep: Tensor | None, dropout_p: float,
            scale: float, safe: bool) -> tuple[Tensor, Tensor]:
    """softmax(q k^T * scale + mask, positions with keep=False removed) @ v; returns (out, weights)."""
    scores = q.matmul(k.transpose(-2, -1)) * scale
    if mask is not None:
        scores = scores + mask
    if keep is not None:
        scores = where(keep, scores, float("-inf"))
    weights = _softmax_last(scores, safe)
    if dropout_p > 0.0:
        weights = _dropout_fn(weights, dropout_p, training=True)
    return weights.matmul(v), weights


def _causal_keep(L: int, S: int, device: str) -> Tensor:
    """Top-left aligned lower triangle, like PyTorch: query i attends keys 0..i."""
    return tril(ones(L, S, dtype=D.bool_, device=device))


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value over the last two dims; leading dims broadcast.

    query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev). A bool `attn_mask`
    marks the positions that take part (True = attend); a float mask is added to the scores.
    `is_causal` masks keys after the query (top-left aligned); dropout is applied whenever
    dropout_p > 0 (no train/eval switch here, as in PyTorch). `scale` defaults to 1/sqrt(E).

    >>> q = ember.randn(2, 4, 5, 8)
    >>> F.scaled_dot_product_attention(q, q, q, is_causal=True).shape
    ember.Size([2, 4, 5, 8])
    """
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, Tensor):
            raise TypeError(f"scaled_dot_product_attention(): argument '{name}' must be Tensor, not "
                            f"{type(t).__name__}")
        if t.ndim < 2:
            raise ShapeError(f"scaled_dot_product_attention: {name} must be at least 2-D, got shape {list(t.shape)}")
    if not (query.dtype == key.dtype == value.dtype) or not query.dtype.is_float:
        raise AttentionDTypeError(f"Expected query, key, and value to have the same floating dtype, but got "
                                  f"query.dtype: {query.dtype} key.dtype: {key.dtype} and value.dtype: "
                                  f"{value.dtype} instead.")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ShapeError(f"scaled_dot_product_attention: incompatible shapes query {list(query.shape)}, "
                         f"key {list(key.shape)}, value {list(value.shape)} (need query[-1] == key[-1] and "
                         f"key[-2] == value[-2])")
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        key, value = (_repeat_heads(t, query.shape[-3]) for t in (key, value))
    L, S = query.shape[-2], key.shape[-2]
    keep = mask = None
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                               "is_causal=True")
        keep = _causal_keep(L, S, query.device)
    elif attn_mask is not None:
        if attn_mask.dtype is D.bool_:
            keep = attn_mask
        elif attn_mask.dtype == query.dtype:
            mask = attn_mask
        else:
            raise AttentionDTypeError(f"Expected attn_mask dtype to be bool or float or to match query dtype, "
                                      f"but got attn_mask.dtype: {attn_mask.dtype} and query.dtype: {query.dtype} "
                                      f"instead.")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return _attend(query, key, value, mask, keep, dropout_p, scale, safe=True)[0]


def _repeat_heads(t: Tensor, heads: int) -> Tensor:
    """Grouped-query attention: repeat each of key/value's heads (dim -3) heads // Hk times."""
    hk = t.shape[-3]
    if heads % hk:
        raise ShapeError(f"enable_gqa: number of query heads {heads} is not a multiple of key/value heads {hk}")
    lead, rest = tuple(t.shape[:-3]), tuple(t.shape[-2:])
    t = t.unsqueeze(-3).expand(lead + (hk, heads // hk) + rest)
    return t.reshape(lead + (heads,) + rest)


class NonDynamicallyQuantizableLinear(Linear):
    """PyTorch's name for MultiheadAttention.out_proj's class (a plain Linear); kept for repr."""


# ---- multi-head attention ----------------------------------------------------------------------

def _float_mask(mask: Tensor | None, name: str, dtype, other: Tensor | None = None,
                other_name: str = "") -> Tensor | None:
    """PyTorch's canonical mask: a bool mask (True = ignore) becomes 0 / -inf of `dtype`. Like
    PyTorch, warns when `other` (the mask it will be combined with) has another dtype."""
    if mask is None:
        return None
    if other is not None and other.dtype != mask.dtype:
        warnings.warn(f"Support for mismatched {name} and {other_name} is deprecated. Use same type for both "
                      f"instead.", stacklevel=4)
    if mask.dtype is D.bool_:
        return where(mask, float("-inf"), 0.0).to(dtype)
    if not mask.dtype.is_float:
        raise TypeError(f"only bool and floating types of {name} are supported")
    return mask


def _check_mha_shapes(query, key, value, key_padding_mask, attn_mask, num_heads) -> bool:
    """The rank checks of PyTorch's _mha_shape_check; returns whether the input is batched."""
    if query.ndim not in (2, 3):
        raise ShapeError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query tensor")
    batched = query.ndim == 3
    kind = "batched (3-D)" if batched else "unbatched (2-D)"
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise ShapeError(f"For {kind} `query`, expected `key` and `value` to be {query.ndim}-D but found "
                         f"{key.ndim}-D and {value.ndim}-D tensors respectively")
    if key_padding_mask is not None and key_padding_mask.ndim != query.ndim - 1:
        raise ShapeError(f"For {kind} `query`, expected `key_padding_mask` to be `None` or {query.ndim - 1}-D "
                         f"but found {key_padding_mask.ndim}-D tensor instead")
    if attn_mask is not None:
        if attn_mask.ndim not in (2, 3):
            raise ShapeError(f"For {kind} `query`, expected `attn_mask` to be `None`, 2-D or 3-D but found "
                             f"{attn_mask.ndim}-D tensor instead")
        if not batched and attn_mask.ndim == 3:
            want = (num_heads, query.shape[0], key.shape[0])
            if tuple(attn_mask.shape) != want:
                raise ShapeError(f"Expected `attn_mask` shape to be {want} but got {tuple(attn_mask.shape)}")
    return batched


def multi_head_attention_forward(query, key, value, embed_dim_to_check: int, num_heads: int, in_proj_weight,
                                 in_proj_bias, bias_k, bias_v, add_zero_attn: bool, dropout_p: float,
                                 out_proj_weight, out_proj_bias, training: bool = True, key_padding_mask=None,
                                 need_weights: bool = True, attn_mask=None, use_separate_proj_weight: bool = False,
                                 q_proj_weight=None, k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights: bool = True, is_causal: bool = False):
    """PyTorch's functional multi-head attention on sequence-first inputs: query (L, N, E) or
    unbatched (L, E); returns (output, weights or None). See `MultiheadAttention`."""
    batched = _check_mha_shapes(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    src_len = key.shape[0]
    key_padding_mask = _float_mask(key_padding_mask, "key_padding_mask", query.dtype, attn_mask, "attn_mask")
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # PyTorch trusts the hint and lets the kernel build the causal mask
    else:
        attn_mask = _float_mask(attn_mask, "attn_mask", query.dtype)
        if key_padding_mask is not None:
            is_causal = False
    if embed_dim != embed_dim_to_check:
        raise ShapeError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise ShapeError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise ShapeError(f"key's sequence and batch dims {tuple(key.shape[:2])} do not match value's "
                             f"{tuple(value.shape[:2])}")
        bq = bk = bv = None
        if in_proj_bias is not None:
            bq, bk, bv = in_proj_bias.chunk(3)
        q, k, v = (_linear(x, w, b) for x, w, b in
                   ((query, q_proj_weight, bq), (key, k_proj_weight, bk), (value, v_proj_weight, bv)))
    else:
        if tuple(key.shape) != tuple(value.shape):
            raise ShapeError(f"key shape {tuple(key.shape)} does not match value shape {tuple(value.shape)}")
        ws = in_proj_weight.chunk(3)
        bs = (None,) * 3 if in_proj_bias is None else in_proj_bias.chunk(3)
        q, k, v = (_linear(x, w, b) for x, w, b in zip((query, key, value), ws, bs))

    if attn_mask is not None:  # -> (1 or N*H, L, S)
        want = (tgt_len, src_len) if attn_mask.ndim == 2 else (bsz * num_heads, tgt_len, src_len)
        if tuple(attn_mask.shape) != want:
            raise ShapeError(f"The shape of the {attn_mask.ndim}D attn_mask is {tuple(attn_mask.shape)}, but "
                             f"should be {want}.")
        if attn_mask.ndim == 2:
            attn_mask = attn_mask.unsqueeze(0)
    if bias_k is not None and bias_v is not None:
        from ..ops_movement import cat, constant_pad_nd
        k = cat([k, bias_k.expand(1, bsz, embed_dim)])
        v = cat([v, bias_v.expand(1, bsz, embed_dim)])
        attn_mask = None if attn_mask is None else constant_pad_nd(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else constant_pad_nd(key_padding_mask, (0, 1))
    elif (bias_k is None) != (bias_v is None):
        raise ValueError("bias_k and bias_v must both be given or both be None")

    # heads: (L, N, E) -> (N, H, L, hd)
    def heads(x, n):
        return x.reshape(n, bsz, num_heads, head_dim).permute(1, 2, 0, 3)
    q = heads(q, tgt_len)
    k = static_k.reshape(bsz, num_heads, -1, head_dim) if static_k is not None else heads(k, k.shape[0])
    v = static_v.reshape(bsz, num_heads, -1, head_dim) if static_v is not None else heads(v, v.shape[0])
    if add_zero_attn:
        from ..ops_movement import cat, constant_pad_nd
        z = zeros(bsz, num_heads, 1, head_dim, dtype=k.dtype, device=k.device)
        k, v = cat([k, z], 2), cat([v, z], 2)
        attn_mask = None if attn_mask is None else constant_pad_nd(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else constant_pad_nd(key_padding_mask, (0, 1))
    src_len = k.shape[2]
    mask = None
    if attn_mask is not None:
        lead = (1, 1) if attn_mask.shape[0] == 1 else (bsz, num_heads)
        mask = attn_mask.reshape(lead + (tgt_len, src_len))
    if key_padding_mask is not None:
        if tuple(key_padding_mask.shape) != (bsz, src_len):
            raise ShapeError(f"Expected key_padded_mask.shape to be {(bsz, src_len)}, but got "
                             f"{tuple(key_padding_mask.shape)}")
        kpm = key_padding_mask.reshape(bsz, 1, 1, src_len)
        mask = kpm if mask is None else mask + kpm
    keep = _causal_keep(tgt_len, src_len, q.device) if is_causal and mask is None else None
    if not training:
        dropout_p = 0.0
    out, weights = _attend(q, k, v, mask, keep, dropout_p, 1.0 / math.sqrt(head_dim), safe=not need_weights)
    out = out.permute(2, 0, 1, 3).reshape(tgt_len, bsz, embed_dim)        # (L, N, E)
    out = _linear(out, out_proj_weight, out_proj_bias)
    if not need_weights:
        return (out if batched else out.squeeze(1)), None
    if average_attn_weights:
        weights = weights.mean(1)
    if not batched:
        out, weights = out.squeeze(1), weights.squeeze(0)
    return out, weights


class MultiheadAttention(Module):
    """Multi-head attention with PyTorch's parameters (in_proj_weight/in_proj_bias or separate
    q/k/v_proj_weight when kdim/vdim differ, out_proj) and forward signature.

    >>> mha = nn.MultiheadAttention(16, 4, batch_first=True)
    >>> x = ember.randn(2, 5, 16)
    >>> out, w = mha(x, x, x)          # out (2, 5, 16), w (2, 5, 5) averaged over heads
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be greater than 0, got embed_dim={embed_dim} and "
                             f"num_heads={num_heads} instead")
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise AssertionError("embed_dim must be divisible by num_heads")
        kw = {"dtype": dtype, "device": device}
        if not self._qkv_same_embed_dim:
            self.q_proj_weight = Parameter(zeros(embed_dim, embed_dim, **kw))
            self.k_proj_weight = Parameter(zeros(embed_dim, self.kdim, **kw))
            self.v_proj_weight = Parameter(zeros(embed_dim, self.vdim, **kw))
            self.register_parameter("in_proj_weight", None)
        else:
            self.in_proj_weight = Parameter(zeros(3 * embed_dim, embed_dim, **kw))
            for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
                self.register_parameter(name, None)
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * embed_dim, **kw))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = NonDynamicallyQuantizableLinear(embed_dim, embed_dim, bias=bias, **kw)
        if add_bias_kv:
            self.bias_k = Parameter(zeros(1, 1, embed_dim, **kw))
            self.bias_v = Parameter(zeros(1, 1, embed_dim, **kw))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        from . import init
        if self._qkv_same_embed_dim:
            init.xavier_uniform_(self.in_proj_weight)
        else:
            for w in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            init.constant_(self.in_proj_bias, 0.0)
            init.constant_(self.out_proj.bias, 0.0)
        if self.bias_k is not None:
            init.xavier_normal_(self.bias_k)
        if self.bias_v is not None:
            init.xavier_normal_(self.bias_v)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False):
        """Returns (attn_output, attn_weights or None); inputs are (L, N, E), (N, L, E) with
        batch_first, or unbatched (L, E). Bool masks: True = position is ignored."""
        batched = query.ndim == 3
        if self.batch_first and batched:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        out, weights = multi_head_attention_forward(
            query, key, value, self.embed_dim, self.num_heads, self.in_proj_weight, self.in_proj_bias,
            self.bias_k, self.bias_v, self.add_zero_attn, self.dropout, self.out_proj.weight, self.out_proj.bias,
            training=self.training, key_padding_mask=key_padding_mask, need_weights=need_weights,
            attn_mask=attn_mask, use_separate_proj_weight=not self._qkv_same_embed_dim,
            q_proj_weight=self.q_proj_weight, k_proj_weight=self.k_proj_weight, v_proj_weight=self.v_proj_weight,
            average_attn_weights=average_attn_weights, is_causal=is_causal)
        if self.batch_first and batched:
            out = out.transpose(0, 1)
        return out, weights
