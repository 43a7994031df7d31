"""Kernel templates: hand-written kernels the scheduler picks for heavy patterns.

Matrix products reach the compiler as `sum(mul(A', B'), k)` where A' and B' are views (expand,
permute, reshape) of two tensors. `match_gemm` recognises that pattern by lowering each factor at
symbolic loop indices (the same machinery as codegen): a factor that is a plain affine load from
one buffer yields its per-axis strides directly, whatever chain of views produced it. The match
then becomes a call of the generated GEMM in kernels/gemm.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import dtypes as D
from .ir import Node
from .kir import Param
from .lower import _Builder, _Params
from .ops import MOVEMENT
from .symbolic import Expr, Var

GEMM_MIN_FLOPS = 1 << 18     # below this a fused loop nest is as fast and saves a launch


@dataclass
class GemmKernel:
    """A GEMM template instance; quacks like kir.Kernel for the runtime and the debug surface."""
    name: str
    dtype: D.DType
    batch: int
    M: int
    N: int
    K: int
    a_strides: tuple
    b_strides: tuple
    a_offset: int
    b_offset: int
    params: list = field(default_factory=list)   # [C out, A in, B in]
    ops: list = field(default_factory=lambda: ["gemm"])
    shape: tuple = ()
    bindings: dict = field(default_factory=dict)

    @property
    def work(self) -> int:
        return self.batch * self.M * self.N * self.K

    def render(self, symbol: str) -> str:
        from ember.kernels.gemm import render_gemm
        return render_gemm(symbol, self.dtype, self.batch, self.M, self.N, self.K,
                           self.a_strides, self.b_strides, self.a_offset, self.b_offset)

    def __str__(self) -> str:
        return (f"template gemm {self.name}: C[{self.batch}x{self.M}x{self.N}] = A @ B, K={self.K}, "
                f"A strides (t,m,k)={self.a_strides}+{self.a_offset}, B strides (t,k,n)={self.b_strides}+{self.b_offset}")


def _available() -> bool:
    try:
        import ember.kernels.gemm  # noqa: F401
        return True
    except ImportError:
        return False


def _factor(node: Node, shape: tuple, vars_: list) -> tuple[Node, Expr] | None:
    """Lower one factor at symbolic indices: (the buffer node it reads, the index) or None."""
    b = _Builder(lambda n: n.kind != MOVEMENT, [], _Params())
    idx = tuple(Expr({v: 1}, 0) if v is not None else Expr({}, 0) for v in vars_)
    v = b.value(node, idx)
    if v.op != "load" or v.arg[2]:
        return None
    return b.p.nodes[v.arg[0]], v.arg[1]


def _coeff(e: Expr, v: Var | None) -> int | None:
    if v is None:
        return 0
    if e.nonlinear_in(v):
        return None
    return sum(c for a, c in e.terms if a == v)


def _merge(axes: list, dims: list, size: dict, coeffs: list) -> list | None:
    """Fold runs of adjacent axes whose strides compose (outer = inner * size) into their
    innermost axis; `size` and `coeffs` are updated in place. None if some run does not compose."""
    out = []
    for d in axes:
        if out and dims.index(d) == dims.index(out[-1]) + 1:
            o = out[-1]
            if any(c[o] != c[d] * size[d] for c in coeffs):
                return None
            size[d] *= size[o]
            size[o] = 1
            out[-1] = d
        else:
            out.append(d)
    return out


def match_gemm(r: Node) -> tuple[GemmKernel, Node, Node] | None:
    """If `r` is a (batched) matrix product of two buffer views, the template and its operands."""
    if r.op != "sum" or len(r.arg) != 1 or r.dtype not in (D.float32, D.float64) or not _available():
        return None
    src = r.srcs[0]
    if src.op != "mul":
        return None
    shape = src.shape
    kax = r.arg[0]
    K = shape[kax]
    vars_ = [Var(f"a{d}", 0, n - 1) if n > 1 else None for d, n in enumerate(shape)]
    fa, fb = (_factor(x, shape, vars_) for x in src.srcs)
    if fa is None or fb is None:
        return None
    (na, ea), (nb, eb) = fa, fb
    if any(v for v in ea.vars() | eb.vars() if v not in vars_):  # data-dependent: no
        return None
    ca = [_coeff(ea, v) for v in vars_]
    cb = [_coeff(eb, v) for v in vars_]
    if None in ca or None in cb:
        return None
    dims = [d for d in range(len(shape)) if d != kax and shape[d] > 1]
    m_axes = [d for d in dims if ca[d] and not cb[d]]
    n_axes = [d for d in dims if cb[d] and not ca[d]]
    t_axes = [d for d in dims if d not in m_axes + n_axes]
    # adjacent axes of one role whose strides compose act as one axis (e.g. a batch only A has)
    size = dict(enumerate(shape))
    m_axes, n_axes, t_axes = (_merge(ax, dims, size, [ca, cb]) for ax in (m_axes, n_axes, t_axes))
    if None in (m_axes, n_axes, t_axes) or len(m_axes) != 1 or len(n_axes) != 1 or len(t_axes) > 1 or K == 1:
        return None
    m, n = m_axes[0], n_axes[0]
    shape = tuple(size[d] for d in range(len(shape)))
    if m > n:  # output is C^T in our (t, m, n) layout: compute B^T A^T instead
        (na, ea, ca), (nb, eb, cb), m, n = (nb, eb, cb), (na, ea, ca), n, m
    if t_axes and t_axes[0] > m:
        return None  # batch axis must be outermost for a contiguous (t, m, n) output
    t = t_axes[0] if t_axes else None
    batch = shape[t] if t is not None else 1
    M, N = shape[m], shape[n]
    if 2 * batch * M * N * K < GEMM_MIN_FLOPS:
        return None
    st = lambda c, d: c[d] if d is not None else 0  # noqa: E731
    kern = GemmKernel(f"gemm_{batch}x{M}x{N}x{K}", r.dtype, batch, M, N, K,
                      (st(ca, t), ca[m], ca[kax]), (st(cb, t), cb[kax], cb[n]), ea.const, eb.const,
                      [Param(r.dtype, r.numel, "out"), Param(na.dtype, na.numel, "in"), Param(nb.dtype, nb.numel, "in")],
                      shape=r.shape)
    if na.dtype is not r.dtype or nb.dtype is not r.dtype:
        return None
    return kern, na, nb


def gemm_flops(k: GemmKernel) -> int:
    return 2 * k.batch * k.M * k.N * k.K


__all__ = ["GemmKernel", "match_gemm", "gemm_flops"]
