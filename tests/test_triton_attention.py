"""The flash-attention template (compiler/templates.py: match_attention, kernels/triton_attention.py).

Without a GPU: which graphs the scheduler hands to the template on "cuda" (and never on the CPU),
what it reads (strides, masks, causality, the softmax form), and that the rendered kernel compiles
to PTX for sm_90 in each dtype. Values are checked under Triton's interpreter by
attention_interp_cases.py, which `test_interpreter_cases` runs in a subprocess.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ember
import ember.nn.functional as F
from ember.compiler import dtypes as D
from ember.compiler.realize import _strip_reshapes
from ember.compiler.rewrite import rewrite
from ember.compiler.schedule import schedule
from ember.compiler.templates import AttentionKernel
from ember.nn.attention import _attend

rng = np.random.default_rng(3)


def t(*shape, dtype=ember.float32):
    return as_buffer(ember.tensor(rng.standard_normal(shape).astype(np.float32)).to(dtype))


def as_buffer(x):
    """x computed (on the CPU): the graphs below then read buffers, as real inputs do."""
    ember.realize(x)
    return x


def plan(*tensors, device="cuda"):
    """The scheduled kernels computing `tensors` together on `device` (nothing runs), as
    realize.build_plan schedules them."""
    nodes = [r for r in dict.fromkeys(_strip_reshapes(n) for n in rewrite([x.node for x in tensors]))
             if not r.realized]
    return [sk.kernel for sk in schedule(nodes, device)]


def attention(*tensors, device="cuda") -> list:
    return [k for k in plan(*tensors, device=device) if isinstance(k, AttentionKernel)]


Q, K, V = t(2, 3, 37, 24), t(2, 3, 29, 24), t(2, 3, 29, 20)
KEEP = ember.tensor(rng.random((37, 29)) > 0.3)
MASK = t(3, 37, 29)


# ---- what the scheduler matches -----------------------------------------------------------------

@pytest.mark.parametrize("dt", [ember.float32, ember.float16, ember.bfloat16], ids=lambda d: d.name)
def test_sdpa_forms_are_one_attention_kernel_on_cuda_only(dt):
    q, k, v, mask = (as_buffer(x.to(dt)) for x in (Q, K, V, MASK))
    cases = {"plain": F.scaled_dot_product_attention(q, k, v),
             "causal": F.scaled_dot_product_attention(q, k, v, is_causal=True),
             "bool": F.scaled_dot_product_attention(q, k, v, attn_mask=KEEP),
             "float": F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.5),
             "unsafe": _attend(q, k, v, None, None, 0.0, 0.3, safe=False)[0]}
    for name, out in cases.items():
        ks = plan(out)
        assert len(ks) == 1 and isinstance(ks[0], AttentionKernel), (name, ks)
        a = ks[0]
        assert (a.batch, a.L, a.S, a.E, a.Ev, a.dtype) == (6, 37, 29, 24, 20, dt)
        assert a.q_strides == (37 * 24, 24, 1) and a.k_strides == (29 * 24, 24, 1) and a.v_strides == (29 * 20, 20, 1)
        assert a.causal == (name == "causal") and a.safe == (name != "unsafe")
        assert (a.keep_strides is not None) == (name == "bool") and (a.mask_strides is not None) == (name == "float")
        want_scale = {"float": 0.5, "unsafe": 0.3}.get(name, 1 / np.sqrt(24))
        assert a.scale == float(np.array(want_scale, dt.np))        # the graph's constant, in dt
        assert not attention(out, device="cpu")                      # the CPU path is unchanged
    a = attention(cases["bool"])[0]
    assert a.keep_strides == (0, 29, 1)                              # broadcast over batch and heads
    assert attention(cases["float"])[0].mask_strides == (((3, 37 * 29), (2, 0)), 29, 1)   # per head


def test_layouts_are_read_through_views():
    """Transposed heads (N, L, H, E) -> (N, H, L, E), grouped K/V heads (batch modes), a sliced
    batch (offset) and unbatched inputs: no copies, the template reads the buffers."""
    x = t(2, 13, 4, 16)
    kv = t(2, 2, 17, 16)
    [a] = attention(F.scaled_dot_product_attention(x.transpose(1, 2), kv, kv, enable_gqa=True))
    assert a.q_strides == (((4, 16), (2, 13 * 64)), 64, 1)
    assert a.k_strides == (((2, 0), (4, 17 * 16)), 16, 1) == a.v_strides
    [b] = attention(F.scaled_dot_product_attention(Q[1:], K[1:], V[1:]))
    assert (b.batch, b.q_offset, b.k_offset, b.v_offset) == (3, 3 * 37 * 24, 3 * 29 * 24, 3 * 29 * 20)
    [c] = attention(F.scaled_dot_product_attention(Q[0, 0], K[0, 0], V[0, 0], is_causal=True))
    assert c.batch == 1 and c.causal
    assert len(plan(F.scaled_dot_product_attention(Q[0, 0], K[0, 0], V[0, 0], is_causal=True))) == 1


def test_multihead_attention_matches_only_without_weights():
    mha = ember.nn.MultiheadAttention(32, 4)
    x = t(11, 2, 32)
    with ember.no_grad():
        out, _ = mha(x, x, x, need_weights=False)
        assert len(attention(out)) == 1
        assert attention(out)[0].safe
        out, w = mha(x, x, x)
        assert not attention(out, w)             # the weights asked for too: the softmax is materialized
        [a] = attention(out)                     # weights dropped: the output alone (PyTorch's NaN softmax)
        assert not a.safe


def test_no_template_where_the_weights_are_needed_or_the_pattern_differs():
    out, w = _attend(Q, K, V, None, None, 0.0, 0.2, safe=True)
    assert not attention(out, w)                                       # weights asked for too
    assert not attention(F.scaled_dot_product_attention(Q, K, V, dropout_p=0.1))   # dropout on the weights
    q = Q.detach().requires_grad_()
    o = F.scaled_dot_product_attention(q, K, V)
    o.sum().backward()
    assert not attention(o, q.grad)                                    # the backward reads the weights
    assert len(attention(o)) == 1                                      # the forward alone: yes
    assert not attention(F.scaled_dot_product_attention(Q.double(), K.double(), V.double()))   # float64
    big = t(1, 5, 160)
    assert not attention(F.scaled_dot_product_attention(big, big, big))   # head dim > 128
    s = (Q @ K.transpose(-2, -1)).softmax(-2) @ V                      # softmax over the wrong axis
    assert not attention(s)
    s = ((Q @ K.transpose(-2, -1)).exp() / 3) @ V                      # no softmax
    assert not attention(s)
    keep = ember.tensor(np.tri(37, 29, k=1, dtype=bool))              # near-causal: read as a mask
    [a] = attention(F.scaled_dot_product_attention(Q, K, V, attn_mask=keep))
    assert not a.causal and a.keep_strides == (0, 29, 1)


def test_kernel_is_reported_by_the_debug_surface():
    from ember.compiler import debug
    [a] = attention(F.scaled_dot_product_attention(Q, K, V, is_causal=True))
    assert debug.count_flops(a) == 2 * 6 * 37 * 29 * (24 + 20)
    assert "causal" in str(a) and a.name == "attention_6x37x29x24x20"
    assert "attention" in debug.RULES and "attention-operand" in debug.RULES


# ---- the Triton kernel ------------------------------------------------------------------------

from ember.compiler.codegen import triton as tg  # noqa: E402
from ember.compiler.runtime import cuda  # noqa: E402
from ember.kernels import triton_attention  # noqa: E402

try:
    from triton.backends.compiler import GPUTarget
except ImportError:
    GPUTarget = None
needs_triton = pytest.mark.skipif(GPUTarget is None, reason="triton is not installed")

COMPILE = {   # dtype, q, k, Ev, variant
    "fp16-causal-d64": (ember.float16, (2, 4, 300, 64), (2, 4, 300, 64), 64, "causal"),
    "bf16-masks-d128": (ember.bfloat16, (2, 200, 128), (2, 260, 128), 128, "masks"),
    "fp32-odd-d24-keep": (ember.float32, (3, 37, 24), (3, 29, 24), 20, "keep"),
    "fp16-d80-float-mask-gqa": (ember.float16, (2, 4, 50, 80), (2, 2, 70, 80), 80, "float"),
}


def _compile_case(dt, qs, ks, ev, variant):
    q, k, v = t(*qs, dtype=dt), t(*ks, dtype=dt), t(*ks[:-1], ev, dtype=dt)
    L, S = qs[-2], ks[-2]
    if variant == "masks":   # both a float mask and a keep-mask (MultiheadAttention's forms)
        out = _attend(q, k, v, t(L, S, dtype=dt), ember.tensor(rng.random((L, S)) > 0.5), 0.0, 0.1, safe=True)[0]
    else:
        kw = {"causal": dict(is_causal=True), "keep": dict(attn_mask=ember.tensor(rng.random((L, S)) > 0.5)),
              "float": dict(attn_mask=t(L, S, dtype=dt), enable_gqa=True)}[variant]
        out = F.scaled_dot_product_attention(q, k, v, **kw)
    [a] = attention(out)
    return a


@needs_triton
@pytest.mark.parametrize("case", sorted(COMPILE))
def test_attention_kernel_compiles_to_ptx_for_sm90(case):
    a = _compile_case(*COMPILE[case])
    tk = tg.render(a, "ember_test_attention")
    text = cuda.compile_config(tk, tk.configs[0], GPUTarget("cuda", 90, 32)).asm["ptx"]
    assert ".target sm_90" in text and ".entry ember_test_attention" in text
    if a.dtype is not D.float32:
        assert "mma" in text          # tensor cores (float32 keeps IEEE products unless TF32 is allowed)
    assert ("Kp" in tk.signature) == (COMPILE[case][-1] in ("keep", "masks"))
    assert ("Mk" in tk.signature) == (COMPILE[case][-1] in ("float", "masks"))


def test_config_is_clipped_to_the_problem_and_causal_stops_at_the_diagonal():
    c = triton_attention.config(D.float16, 6, 20, 30, 24, 20)
    assert c.constexprs == {"BLOCK_M": 32, "BLOCK_N": 32, "BLOCK_D": 32, "BLOCK_DV": 32}
    assert c.grid == (6, 1, 1)
    big = triton_attention.config(D.bfloat16, 8, 4096, 4096, 128, 128)
    assert big.constexprs["BLOCK_M"] == 128 and big.num_warps == 8 and big.grid == (32 * 8, 1, 1)
    assert triton_attention.config(D.float32, 1, 3, 5, 4, 4).constexprs["BLOCK_M"] == 16   # tl.dot minimum
    [a] = attention(F.scaled_dot_product_attention(Q, K, V, is_causal=True))
    src = tg.render(a, "k").source
    assert "tl.minimum(29, (pm + 1) * BLOCK_M)" in src and "rn[None, :] <= rm[:, None]" in src
    [b] = attention(F.scaled_dot_product_attention(Q, K, V))
    assert "tl.minimum" not in tg.render(b, "k").source and "Kp" not in tg.render(b, "k").signature


def test_tf32_is_opt_in(monkeypatch):
    [a] = attention(F.scaled_dot_product_attention(Q, K, V))
    assert tg.render(a, "k").source.count('input_precision="ieee"') == 2
    monkeypatch.setenv("EMBER_ALLOW_TF32", "1")
    assert tg.render(a, "k").source.count('input_precision="tf32"') == 2


# ---- values, under Triton's interpreter -----------------------------------------------------------

@needs_triton
@pytest.mark.skipif(os.environ.get("EMBER_TRITON_INTERPRET") == "1", reason="this drives the interpreter run")
def test_interpreter_cases():
    """Every test of attention_interp_cases.py, in a subprocess with EMBER_TRITON_INTERPRET=1."""
    cases = Path(__file__).with_name("attention_interp_cases.py")
    p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-p", "no:cacheprovider", "-p", "no:warnings",
                        str(cases)],
                       capture_output=True, text=True, timeout=600, cwd=cases.parent.parent,
                       env={**os.environ, "EMBER_TRITON_INTERPRET": "1"})
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert " passed" in p.stdout and "failed" not in p.stdout
