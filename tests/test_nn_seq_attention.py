"""scaled_dot_product_attention and MultiheadAttention against torch: outputs, attention weights,
input and parameter gradients with the same weights, for every mask kind; dropout by its
structure; parameter names, initialisation and errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st
from test_nn_seq_support import compare, randn

import ember
import ember.nn.functional as F
from ember import nn


def as_kw(kw: dict, lib) -> dict:
    return {k: lib.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}


def sdpa_compare(q, k, v, **kw):
    fe = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **as_kw(kw, ember))  # noqa: E731
    ft = lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, **as_kw(kw, torch))  # noqa: E731
    return compare(fe, ft, [q, k, v])


def random_bool_mask(*shape):
    """A random attend/ignore mask in which every row keeps at least one position."""
    m = np.random.default_rng(7).random(shape) < 0.6
    m[..., 0] = True
    return m


# ---- scaled_dot_product_attention --------------------------------------------------------------------

@pytest.mark.parametrize("shapes", [((2, 3, 4, 8), (2, 3, 6, 8), (2, 3, 6, 5)),   # (N, H, L, E), S != L, Ev != E
                                    ((3, 5, 4), (3, 5, 4), (3, 5, 4)),             # 3-D
                                    ((4, 2), (7, 2), (7, 3)),                       # 2-D
                                    ((2, 1, 3, 4), (1, 2, 5, 4), (1, 2, 5, 4))])    # broadcast batch dims
def test_sdpa_plain(shapes):
    sdpa_compare(*(randn(*s) for s in shapes))


@pytest.mark.parametrize("L,S", [(4, 4), (3, 5), (5, 3)])
def test_sdpa_causal(L, S):
    sdpa_compare(randn(2, 2, L, 4), randn(2, 2, S, 4), randn(2, 2, S, 4), is_causal=True)


@pytest.mark.parametrize("mask_shape", [(4, 6), (2, 1, 4, 6), (2, 3, 4, 6)])
def test_sdpa_bool_mask(mask_shape):
    sdpa_compare(randn(2, 3, 4, 5), randn(2, 3, 6, 5), randn(2, 3, 6, 5), attn_mask=random_bool_mask(*mask_shape))


def test_sdpa_float_mask_and_scale():
    mask = randn(4, 6)
    mask[1, 2:] = -np.inf  # partly masked rows
    sdpa_compare(randn(2, 3, 4, 5), randn(2, 3, 6, 5), randn(2, 3, 6, 5), attn_mask=mask, scale=0.3)


def test_sdpa_fully_masked_row_gives_zeros():
    mask = random_bool_mask(4, 6)
    mask[2] = False
    eo, to = sdpa_compare(randn(1, 2, 4, 3), randn(1, 2, 6, 3), randn(1, 2, 6, 3), attn_mask=mask)
    assert np.all(eo.detach().numpy()[:, :, 2] == 0)


def test_sdpa_gqa():
    sdpa_compare(randn(2, 4, 3, 5), randn(2, 2, 6, 5), randn(2, 2, 6, 5), enable_gqa=True)


@settings(max_examples=6, deadline=None)
@given(N=st.integers(1, 2), H=st.integers(1, 3), L=st.integers(1, 6), S=st.integers(1, 6), E=st.integers(1, 6),
       Ev=st.integers(1, 4), kind=st.sampled_from(["none", "causal", "bool", "float"]))
def test_sdpa_random(N, H, L, S, E, Ev, kind):
    kw = {"causal": {"is_causal": True}, "bool": {"attn_mask": random_bool_mask(L, S)},
          "float": {"attn_mask": randn(H, L, S)}, "none": {}}[kind]
    if kind == "causal" and L > S:
        kw = {}  # rows past S would be fully masked (NaN in torch's math path on some builds)
    sdpa_compare(randn(N, H, L, E), randn(N, H, S, E), randn(N, H, S, Ev), **kw)


def test_sdpa_dropout_structure():
    """With uniform attention (zero queries) and value = identity, the output row is the dropped
    attention row itself: each entry is 0 (dropped) or 1/S / (1 - p); about p of them are 0."""
    N, H, L, S, p = 4, 2, 16, 16, 0.4
    q = ember.tensor(np.zeros((N, H, L, 8), np.float32))
    k = ember.tensor(randn(N, H, S, 8))
    v = ember.eye(S).expand(N, H, S, S)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=p).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1 / S / (1 - p), rtol=1e-5)
    assert abs(1 - kept.mean() - p) < 0.06      # 2048 draws: standard error ~0.011
    assert out.shape == (N, H, L, S)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: F.scaled_dot_product_attention(ember.zeros(2, 3), ember.zeros(2, 3), ember.zeros(2, 3),
                                            attn_mask=ember.ones(2, 2, dtype=ember.bool), is_causal=True),
     RuntimeError, "Explicit attn_mask should not be set when is_causal=True"),
    (lambda: F.scaled_dot_product_attention(ember.zeros(2, 3), ember.zeros(2, 4), ember.zeros(2, 3)),
     ValueError, r"\[2, 3\].*\[2, 4\]"),
])
def test_sdpa_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("kind", ["mask", "qkv"])
def test_sdpa_dtype_errors_match_torch(kind):
    def call(lib):
        q = lib.ones(2, 3)
        if kind == "mask":
            return lib.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=lib.zeros(2, 2, dtype=lib.float16))
        return lib.nn.functional.scaled_dot_product_attention(q, q.double(), q)
    match = "Expected attn_mask dtype to be bool or float" if kind == "mask" else \
        "Expected query, key, and value to have the same"
    with pytest.raises(RuntimeError, match=match):
        call(torch)
    with pytest.raises(RuntimeError, match=match):
        call(ember)
    with pytest.raises(TypeError):
        call(ember)



# ---- MultiheadAttention ------------------------------------------------------------------------------

def mha_pair(*args, **kw):
    torch.manual_seed(0)
    return nn.MultiheadAttention(*args, **kw), torch.nn.MultiheadAttention(*args, **kw)


def seq(L, N, E, batch_first):
    return randn(N, L, E) if batch_first else randn(L, N, E)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights,average", [(True, True), (True, False), (False, True)])
def test_mha_self_attention(batch_first, need_weights, average):
    em, tm = mha_pair(8, 2, batch_first=batch_first)
    x = seq(5, 3, 8, batch_first)
    compare(em, tm, [x, x, x], {"need_weights": need_weights, "average_attn_weights": average})


@pytest.mark.parametrize("kw,need_weights", [({}, True), ({"kdim": 3, "vdim": 5}, False), ({"bias": False}, True),
                                             ({"add_bias_kv": True}, False), ({"add_zero_attn": True}, True),
                                             ({"kdim": 3, "vdim": 5, "add_bias_kv": True, "add_zero_attn": True},
                                              True)])
def test_mha_cross_attention(kw, need_weights):
    em, tm = mha_pair(8, 4, **kw)
    q = randn(4, 2, 8)
    k, v = randn(6, 2, kw.get("kdim", 8)), randn(6, 2, kw.get("vdim", 8))
    compare(em, tm, [q, k, v], {"need_weights": need_weights})


def _masks(L, S, N, H, kind):
    rng = np.random.default_rng(11)
    if kind == "bool2d":
        m = rng.random((L, S)) < 0.3
        m[:, 0] = False          # True = ignored; keep one position per row
        return {"attn_mask": m}
    if kind == "float2d":
        return {"attn_mask": randn(L, S)}
    if kind == "bool3d":
        m = rng.random((N * H, L, S)) < 0.3
        m[..., 0] = False
        return {"attn_mask": m}
    if kind == "kpm_bool":
        m = rng.random((N, S)) < 0.4
        m[:, 0] = False
        return {"key_padding_mask": m}
    if kind == "kpm_float":
        return {"key_padding_mask": randn(N, S)}
    if kind == "both":
        m = rng.random((N, S)) < 0.4
        m[:, 0] = False
        return {"key_padding_mask": m, "attn_mask": np.triu(np.full((L, S), -np.inf, np.float32), 1)}
    raise ValueError(kind)


@pytest.mark.parametrize("kind,need_weights", [("bool2d", True), ("bool2d", False), ("float2d", False),
                                               ("bool3d", True), ("kpm_bool", True), ("kpm_bool", False),
                                               ("kpm_float", False), ("both", True)])
def test_mha_masks(kind, need_weights):
    N, H, L, S, E = 2, 2, 4, 5, 6
    em, tm = mha_pair(E, H, batch_first=True)
    masks = _masks(L, S, N, H, kind)
    if kind == "both":
        S = L
        masks = _masks(L, S, N, H, kind)
    kv = randn(N, S, E)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compare(em, tm, [randn(N, L, E), kv, kv], {"need_weights": need_weights, **masks})
    # PyTorch deprecates a bool key_padding_mask with a float attn_mask; ember warns the same way
    assert sum("mismatched key_padding_mask" in str(w.message) for w in caught) == (2 if kind == "both" else 0)


def test_mha_is_causal_hint():
    em, tm = mha_pair(6, 3)
    x = randn(5, 2, 6)
    mask = np.triu(np.full((5, 5), -np.inf, np.float32), 1)
    compare(em, tm, [x, x, x], {"attn_mask": mask, "is_causal": True, "need_weights": False})


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_unbatched(need_weights):
    em, tm = mha_pair(6, 3, batch_first=True)
    m = np.zeros(5, bool)
    m[3] = True
    compare(em, tm, [randn(4, 6), randn(5, 6), randn(5, 6)], {"key_padding_mask": np.where(m, -np.inf, 0).astype(
        np.float32), "need_weights": need_weights, "attn_mask": randn(3, 4, 5)})


@settings(max_examples=5, deadline=None)
@given(N=st.integers(1, 3), L=st.integers(1, 5), S=st.integers(1, 5), heads=st.sampled_from([1, 2, 4]),
       hd=st.integers(1, 3), batch_first=st.booleans(), need_weights=st.booleans())
def test_mha_random(N, L, S, heads, hd, batch_first, need_weights):
    E = heads * hd
    em, tm = mha_pair(E, heads, batch_first=batch_first)
    kv = seq(S, N, E, batch_first)
    compare(em, tm, [seq(L, N, E, batch_first), kv, kv], {"need_weights": need_weights})


def test_mha_train_dropout_weights():
    """In training the returned per-head weights are the dropped ones: each is 0 or eval / (1 - p)."""
    p = 0.5
    em, tm = mha_pair(8, 2, dropout=p)
    em.load_state_dict(tm.state_dict())
    x = ember.tensor(randn(6, 3, 8))
    em.eval()
    _, w_eval = em(x, x, x, average_attn_weights=False)
    em.train()
    out, w = em(x, x, x, average_attn_weights=False)
    w, w_eval = w.detach().numpy(), w_eval.detach().numpy()
    kept = w != 0
    np.testing.assert_allclose(w[kept], w_eval[kept] / (1 - p), rtol=1e-5)
    assert 0.3 < 1 - kept.mean() < 0.7 and tuple(out.shape) == (6, 3, 8)


def test_mha_parameters_init_repr():
    em, tm = mha_pair(12, 3)
    assert [(n, tuple(p.shape)) for n, p in em.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in tm.named_parameters()]
    assert repr(em) == repr(tm)
    assert np.all(em.in_proj_bias.detach().numpy() == 0) and np.all(em.out_proj.bias.detach().numpy() == 0)
    w = em.in_proj_weight.detach().numpy()
    bound = np.sqrt(6 / (12 + 36))    # xavier_uniform_ over the whole (3E, E) matrix
    assert np.all(np.abs(w) <= bound) and w.std() > 0.4 * bound
    em2, tm2 = mha_pair(12, 3, kdim=5, vdim=7, bias=False, add_bias_kv=True)
    assert [(n, tuple(p.shape)) for n, p in em2.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in tm2.named_parameters()]
    assert em2.in_proj_weight is None and em2.in_proj_bias is None


@pytest.mark.parametrize("call,exc,match", [
    (lambda m, x: m.MultiheadAttention(10, 3), AssertionError, "embed_dim must be divisible by num_heads"),
    (lambda m, x: m.MultiheadAttention(0, 3), ValueError, "embed_dim and num_heads must be greater than 0"),
    (lambda m, x: m.MultiheadAttention(6, 2)(x.zeros(4, 2, 6), x.zeros(5, 2, 6), x.zeros(5, 2, 6),
                                             attn_mask=x.zeros(4, 4)),
     RuntimeError, r"The shape of the 2D attn_mask is .*4, 4.*, but should be \(4, 5\)"),
    (lambda m, x: m.MultiheadAttention(6, 2)(x.zeros(4, 2, 6), x.zeros(4, 2, 6), x.zeros(4, 2, 6), is_causal=True),
     RuntimeError, "Need attn_mask if specifying the is_causal hint"),
    (lambda m, x: m.MultiheadAttention(6, 2)(x.zeros(4, 2, 6), x.zeros(4, 6), x.zeros(4, 6)),
     AssertionError, "expected `key` and `value` to be 3-D but found 2-D and 2-D"),
])
def test_mha_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call(torch.nn, torch)
    with pytest.raises((exc, ValueError) if exc is AssertionError else exc, match=match):
        call(nn, ember)
