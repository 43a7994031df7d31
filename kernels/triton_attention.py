"""Triton flash-attention template: O[t] = softmax(Q[t] K[t]^T * scale + mask) V[t] for a matched
`AttentionKernel` (compiler/templates.py: match_attention).

Flash-attention forward (online softmax): each program owns BLOCK_M query rows of one batch
entry (all leading batch/head dims flattened into `t`), keeps its Q block in registers and walks
the keys BLOCK_N at a time. Per key block it computes the scores with `tl.dot`, applies the float
mask (added), the boolean keep-mask and causality (top-left aligned: query i sees keys 0..i, as
PyTorch's is_causal), rescales its running row max / row sum / output accumulator and adds
P @ V — so the L x S weights never exist in memory. Accumulation is float32 for float32, float16
and bfloat16 inputs; P is rounded to the input type for the second product (as flash kernels do).
float32 products are IEEE unless `EMBER_ALLOW_TF32=1` (as the GEMM template).

Head dims up to 128 are padded to a power of two (at least 16, what tl.dot needs) with masked
loads. Shapes, strides (any per-role view: permuted heads, broadcast batches, stride-0 masks),
offsets and the scale are baked into the source like the GEMM template; block sizes come from a
small table by head dim and dtype, clipped to the problem (no autotuning: one configuration).

`safe` selects what a row with no visible key gives: zeros (scaled_dot_product_attention, the
`_softmax_last(safe=True)` form) or NaN (a plain softmax of an all -inf row).

    tk = render(attention_kernel, "ember_attn")     # TritonKernel: source + signature + config
"""
from __future__ import annotations

import os

from ember.compiler import dtypes as D
from ember.compiler.codegen.triton import _HELPERS, HEADER, Config, TritonKernel, literal, pointer_signature
from ember.kernels.triton_gemm import _offset, _pow2, _span

_SOURCE = '''
@triton.jit
def {name}(O, Q, K, V{extra}, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
           BLOCK_DV: tl.constexpr):
    # template attention: O[{batch}x{L}x{Ev}] = softmax(Q K^T * {scale}{what}) @ V, S={S}, E={E}
    pid = tl.program_id(0)
    t = (pid // {num_m}){idx}
    pm = pid % {num_m}
    rm = pm * BLOCK_M + tl.arange(0, BLOCK_M){idx}
    rd = tl.arange(0, BLOCK_D)
    rdv = tl.arange(0, BLOCK_DV)
    m_ok = rm < {L}
    q = tl.load(Q + {q_off} + {q_t} + (rm * {q_l})[:, None] + (rd * {q_e})[None, :],
                mask=m_ok[:, None] & (rd < {E})[None, :], other=0)
    k_base = K + {k_off} + {k_t} + (rd * {k_e})[:, None]
    v_base = V + {v_off} + {v_t} + (rdv * {v_e})[None, :]
    m_i = tl.full([BLOCK_M], _NINF, tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], dtype=tl.float32)
    for start in range(0, {hi}, BLOCK_N):
        rn = start + tl.arange(0, BLOCK_N){idx}
        n_ok = rn < {S}
        k = tl.load(k_base + (rn * {k_s})[None, :], mask=(rd < {E})[:, None] & n_ok[None, :], other=0)
        s = tl.dot(q{dot_in}, k{dot_in}{precision}) * {scale}{mask}
        keep = n_ok[None, :]{keep}
        s = tl.where(keep, s, _NINF)
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # rows that have seen no key yet: shift by 0, so exp(-inf) = 0 rather than exp(nan)
        m_use = tl.where(m_new == _NINF, 0.0, m_new)
        alpha = tl.exp(m_i - m_use)
        p = tl.exp(s - m_use[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        v = tl.load(v_base + (rn * {v_s})[:, None], mask=n_ok[:, None] & (rdv < {Ev})[None, :], other=0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype){dot_in}, v{dot_in}{precision})
        m_i = m_new
    out = acc / {denominator}[:, None]
    tl.store(O + t * {LEv} + (rm * {Ev})[:, None] + rdv[None, :], {out},
             mask=m_ok[:, None] & (rdv < {Ev})[None, :])
'''

# extra operands: a float mask added to the scores, a bool keep-mask (int8 in memory, 0 = masked)
_MASK = '''
        s = s + tl.load(Mk + {off} + {t} + (rm * {l})[:, None] + (rn * {s})[None, :],
                        mask=m_ok[:, None] & n_ok[None, :], other=0).to(tl.float32)'''
_KEEP = '''
        keep = keep & (tl.load(Kp + {off} + {t} + (rm * {l})[:, None] + (rn * {s})[None, :],
                               mask=m_ok[:, None] & n_ok[None, :], other=0) != 0)'''

# (BLOCK_M, BLOCK_N, num_warps, num_stages) by input kind and padded head dim: the FlashAttention-2
# Triton tutorial's Hopper choices for half types; float32 operands take twice the registers and
# shared memory, so smaller tiles.
_CONFIGS = {("half", 64): (128, 64, 4, 3), ("half", 128): (128, 64, 8, 3),
            ("float32", 64): (64, 64, 4, 2), ("float32", 128): (64, 32, 4, 2)}


def config(dtype: D.DType, batch: int, L: int, S: int, E: int, Ev: int) -> Config:
    """The one launch configuration: block sizes by dtype and head dim, clipped to the problem
    (tl.dot needs blocks of at least 16), grid = query blocks x batch entries on axis 0."""
    d = max(16, _pow2(E), _pow2(Ev))
    kind = "half" if dtype in (D.float16, D.bfloat16) else "float32"
    bm, bn, warps, stages = _CONFIGS[(kind, 64 if d <= 64 else 128)]
    bm, bn = max(16, min(bm, _pow2(L))), max(16, min(bn, _pow2(S)))
    warps = min(warps, max(1, bm // 16))
    grid = (-(-L // bm) * batch, 1, 1)
    return Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_D": max(16, _pow2(E)), "BLOCK_DV": max(16, _pow2(Ev))},
                  grid, warps, stages)


def render(k, name: str) -> TritonKernel:
    """The Triton source of AttentionKernel `k` (see compiler/templates.py for its fields)."""
    cfg = config(k.dtype, k.batch, k.L, k.S, k.E, k.Ev)
    num_m = -(-k.L // cfg.constexprs["BLOCK_M"])
    (qt, ql, qe), (kt, ks, ke), (vt, vs, ve) = k.q_strides, k.k_strides, k.v_strides
    spans = [abs(k.q_offset) + _span(qt, k.batch) + _span(ql, k.L) + _span(qe, k.E),
             abs(k.k_offset) + _span(kt, k.batch) + _span(ks, k.S) + _span(ke, k.E),
             abs(k.v_offset) + _span(vt, k.batch) + _span(vs, k.S) + _span(ve, k.Ev), k.batch * k.L * k.Ev]
    extra, mask, keep, what = "", "", "", ""
    if k.mask_strides is not None:
        (mt, ml, ms), extra, what = k.mask_strides, extra + ", Mk", what + " + mask"
        mask = _MASK.format(off=k.mask_offset, t=_offset(mt, "t"), l=ml, s=ms)
        spans.append(abs(k.mask_offset) + _span(mt, k.batch) + _span(ml, k.L) + _span(ms, k.S))
    if k.keep_strides is not None:
        (pt, pl, ps), extra, what = k.keep_strides, extra + ", Kp", what + ", keep-mask"
        keep = _KEEP.format(off=k.keep_offset, t=_offset(pt, "t"), l=pl, s=ps)
        spans.append(abs(k.keep_offset) + _span(pt, k.batch) + _span(pl, k.L) + _span(ps, k.S))
    hi = str(k.S)
    if k.causal:
        keep += " & (rn[None, :] <= rm[:, None])"
        hi = f"tl.minimum({k.S}, (pm + 1) * BLOCK_M)"   # blocks past the diagonal are all masked
        what += ", causal"
    wide = max(spans) >= 1 << 31   # offsets past int32: index in int64
    if k.dtype is D.float32:
        precision = f', input_precision="{"tf32" if os.environ.get("EMBER_ALLOW_TF32") == "1" else "ieee"}"'
    else:
        precision = ""
    helpers = ""
    # Triton's interpreter multiplies bfloat16 blocks wrongly in tl.dot (it reads their bits as
    # another type): under it (EMBER_TRITON_INTERPRET=1, a test mode) the operands are widened first
    dot_in = ".to(tl.float32)" if k.dtype is D.bfloat16 and os.environ.get("EMBER_TRITON_INTERPRET") == "1" else ""
    if k.dtype is D.bfloat16:   # round to nearest even (the interpreter's .to(bfloat16) truncates)
        out, helpers = "_ember_bf16(out)", f"\n@triton.jit\ndef _ember_bf16{_HELPERS['_ember_bf16']}\n"
    else:
        out = "out" if k.dtype is D.float32 else "out.to(tl.float16)"
    src = _SOURCE.format(
        name=name, extra=extra, batch=k.batch, L=k.L, S=k.S, E=k.E, Ev=k.Ev, LEv=k.L * k.Ev, num_m=num_m,
        scale=literal(k.scale, D.float32), what=what, idx=".to(tl.int64)" if wide else "",
        q_off=k.q_offset, q_t=_offset(qt, "t"), q_l=ql, q_e=qe, k_off=k.k_offset, k_t=_offset(kt, "t"), k_s=ks,
        k_e=ke, v_off=k.v_offset, v_t=_offset(vt, "t"), v_s=vs, v_e=ve, hi=hi, precision=precision, mask=mask,
        keep=keep, dot_in=dot_in, denominator="tl.where(l_i == 0.0, 1.0, l_i)" if k.safe else "l_i", out=out)
    names = ["O", "Q", "K", "V"] + (["Mk"] if k.mask_strides is not None else []) + \
        (["Kp"] if k.keep_strides is not None else [])
    signature = {n: pointer_signature(p.dtype) for n, p in zip(names, k.params)}
    signature.update({c: "constexpr" for c in cfg.constexprs})
    return TritonKernel(name, HEADER + helpers + "\n" + src, signature, [cfg],
                        {(i,): [["tt.divisibility", 16]] for i in range(len(names))})


__all__ = ["render", "config"]
