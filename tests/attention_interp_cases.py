"""The flash-attention template on the "cuda" device under Triton's interpreter
(EMBER_TRITON_INTERPRET=1), against a float64 numpy reference and torch's SDPA on the CPU. Not
collected on its own (no test_ prefix): test_triton_attention.py's `test_interpreter_cases` runs
it in a subprocess with the variable set, since the interpreter must be chosen before triton
loads. By hand: `EMBER_TRITON_INTERPRET=1 .venv/bin/pytest tests/attention_interp_cases.py`.
Shapes stay small: the interpreter runs each program in numpy.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import ember
import ember.nn.functional as F
from ember.compiler import dtypes as D

if os.environ.get("EMBER_TRITON_INTERPRET") != "1":
    raise RuntimeError("run with EMBER_TRITON_INTERPRET=1 (test_triton_attention.py's test_interpreter_cases does)")

rng = np.random.default_rng(11)
TOL = {D.float32: dict(rtol=1e-5, atol=2e-6), D.float16: dict(rtol=1e-2, atol=4e-3),
       D.bfloat16: dict(rtol=3e-2, atol=3e-2)}


def reference(q, k, v, scale, mask=None, keep=None, causal=False, safe=True):
    """softmax(q k^T * scale + mask, keep=False / above the diagonal left out) @ v in float64; a
    row with no visible key gives zeros when `safe` (scaled_dot_product_attention), else NaN."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = s + mask
    vis = np.ones(s.shape, bool)
    if keep is not None:
        vis = vis & keep
    if causal:
        vis = vis & np.tri(s.shape[-2], s.shape[-1], dtype=bool)
    s = np.where(vis, s, -np.inf)
    m = s.max(-1, keepdims=True)
    dead = m == -np.inf
    e = np.exp(s - np.where(dead, 0, m))
    z = e.sum(-1, keepdims=True)
    w = e / np.where(dead, 1 if safe else np.nan, z)
    return w @ v


def data(*shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


def on_cuda(x, dt):
    return ember.tensor(x, device="cuda").to(dt)


def rounded(x, dt):
    """x as the kernel sees it: rounded to dt."""
    return x.astype(dt.np).astype(np.float64)


def run(fn, *tensors):
    """fn(*tensors) realized on "cuda"; (numpy float64 result, kernel names that ran)."""
    with ember.debug.capture() as cap:
        out = fn(*tensors)
        got = out.to(ember.float32).numpy().astype(np.float64)
    assert out.device == "cuda"
    return got, [k.name for k in cap.kernels]


CASES = {   # name: (dtype, q shape, k shape, Ev, variant)
    "odd-lengths-head-dims": (D.float32, (2, 3, 37, 24), (2, 3, 29, 24), 20, None),
    "causal-square-several-blocks": (D.float32, (2, 100, 16), (2, 100, 16), 16, "causal"),
    "causal-fewer-queries": (D.float32, (1, 2, 20, 40), (1, 2, 45, 40), 12, "causal"),
    "bool-mask-fp16": (D.float16, (2, 2, 19, 40), (2, 2, 23, 40), 40, "bool"),
    "float-mask-bf16": (D.bfloat16, (3, 21, 64), (3, 70, 64), 32, "float"),
    "float-mask-per-head-fp32": (D.float32, (2, 3, 9, 8), (2, 3, 11, 8), 8, "float-heads"),
    "unbatched-causal-fp16": (D.float16, (33, 72), (33, 72), 72, "causal"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sdpa_runs_the_attention_template(case):
    dt, qs, ks, ev, variant = CASES[case]
    q, k, v = data(qs, ks, ks[:-1] + (ev,))
    L, S = qs[-2], ks[-2]
    mask = keep = None
    kw: dict = {}
    if variant == "causal":
        kw["is_causal"] = True
    elif variant == "bool":
        keep = rng.random((L, S)) > 0.4
        keep[3] = False                      # a row that sees no key: zeros
        kw["attn_mask"] = keep
    elif variant in ("float", "float-heads"):
        mask = rng.standard_normal(qs[:-2][-1:] + (L, S) if variant == "float-heads" else (L, S)).astype(np.float32)
        mask[..., 2, :5] = -np.inf
        kw["attn_mask"] = mask
    ekw = {n: (ember.tensor(a, device="cuda") if a.dtype == bool else on_cuda(a, dt)) if isinstance(a, np.ndarray)
           else a for n, a in kw.items()}
    got, names = run(lambda *t: F.scaled_dot_product_attention(*t, **ekw), *(on_cuda(x, dt) for x in (q, k, v)))
    assert sum(n.startswith("attention_") for n in names) == 1, names
    assert not any(n.startswith("gemm_") for n in names), names
    scale = float(np.array(1 / np.sqrt(qs[-1]), dt.np))     # the graph's constant, in dt
    want = reference(*(rounded(x, dt) for x in (q, k, v)), scale, None if mask is None else rounded(mask, dt), keep,
                     variant == "causal")
    np.testing.assert_allclose(got, want, **TOL[dt])
    if keep is None and dt is D.float32:   # torch's CPU SDPA (fully masked rows differ across versions)
        tkw = {n: torch.from_numpy(a) if isinstance(a, np.ndarray) else a for n, a in kw.items()}
        t = torch.nn.functional.scaled_dot_product_attention(*(torch.from_numpy(x) for x in (q, k, v)), **tkw)
        np.testing.assert_allclose(got, t.numpy(), rtol=1e-4, atol=1e-5)


def test_views_broadcast_batches_and_grouped_heads():
    """Q read through a transpose (N, L, H, E) -> (N, H, L, E), K/V shared by head groups (GQA:
    batch strides that are not one stride) and a mask broadcast over the batch."""
    q, k, v = data((2, 13, 4, 16), (2, 2, 17, 16), (2, 2, 17, 24))
    mask = rng.standard_normal((13, 17)).astype(np.float32)
    got, names = run(lambda a, b, c, m: F.scaled_dot_product_attention(a.transpose(1, 2), b, c, attn_mask=m,
                                                                       enable_gqa=True),
                     *(on_cuda(x, D.float32) for x in (q, k, v, mask)))
    assert sum(n.startswith("attention_") for n in names) == 1, names
    rep = np.repeat
    want = reference(q.transpose(0, 2, 1, 3), rep(k, 2, 1), rep(v, 2, 1), 0.25, mask)
    np.testing.assert_allclose(got, want, **TOL[D.float32])


def test_multihead_attention_inference_uses_the_template():
    """nn.MultiheadAttention without weights (need_weights=False), in eval under no_grad: heads are
    strided views of the projections; the output matches torch's module."""
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    mha = ember.nn.MultiheadAttention(32, 4, batch_first=True)
    mha.load_state_dict({n: ember.tensor(p.detach().numpy()) for n, p in ref.state_dict().items()})
    mha.eval().to("cuda")
    x = data((2, 11, 32))[0]
    mask = torch.nn.Transformer.generate_square_subsequent_mask(11)
    with ember.no_grad():
        got, names = run(lambda a, m: mha(a, a, a, attn_mask=m, need_weights=False, is_causal=True)[0],
                         on_cuda(x, D.float32), ember.tensor(mask.numpy(), device="cuda"))
    assert sum(n.startswith("attention_") for n in names) == 1, names
    with torch.no_grad():
        want = ref(torch.from_numpy(x), torch.from_numpy(x), torch.from_numpy(x), attn_mask=mask, need_weights=False,
                   is_causal=True)[0]
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)


def test_training_keeps_the_unfused_kernels_and_its_gradients():
    """Forward and backward realized together: the backward reads the weights, so the template is
    not used; values and gradients still match torch (the generic Triton kernels). A forward
    realized first does use it, and the backward after it is still right."""
    q, k, v = data((1, 2, 6, 8), (1, 2, 6, 8), (1, 2, 6, 8))
    x = [ember.tensor(a, device="cuda", requires_grad=True) for a in (q, k, v)]
    tx = [torch.from_numpy(a).requires_grad_() for a in (q, k, v)]
    with ember.debug.capture() as cap:
        out = F.scaled_dot_product_attention(*x, is_causal=True)
        (out * out).sum().backward()
        ember.realize(out, *(a.grad for a in x))
    assert not any(r.name.startswith("attention_") for r in cap.kernels)
    tout = torch.nn.functional.scaled_dot_product_attention(*tx, is_causal=True)
    (tout * tout).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)
    for a, b in zip(x, tx):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)
    # the forward realized on its own uses the template; the later backward recomputes the weights
    for a in x:
        a.grad = None
    with ember.debug.capture() as cap:
        out = F.scaled_dot_product_attention(*x, is_causal=True)
        ember.realize(out)
    assert [r.name for r in cap.kernels] == ["attention_2x6x6x8x8"]
    (out * out).sum().backward()
    for a, b in zip(x, tx):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_plain_softmax_form_gives_nan_for_rows_without_keys():
    """`_attend(safe=False)` (MultiheadAttention's explicit softmax) matched as the unsafe form: a row
    whose every key is masked is NaN, like a plain softmax; the other rows are the softmax."""
    from ember.nn.attention import _attend
    q, k, v = data((2, 7, 8), (2, 9, 8), (2, 9, 8))
    keep = rng.random((7, 9)) > 0.3
    keep[4] = False
    got, names = run(lambda a, b, c, m: _attend(a, b, c, None, m, 0.0, 0.5, safe=False)[0],
                     *(on_cuda(x, D.float32) for x in (q, k, v)), ember.tensor(keep, device="cuda"))
    assert sum(n.startswith("attention_") for n in names) == 1, names
    assert np.isnan(got[:, 4]).all() and not np.isnan(np.delete(got, 4, 1)).any()
    np.testing.assert_allclose(got, reference(q, k, v, 0.5, keep=keep, safe=False), equal_nan=True, **TOL[D.float32])
