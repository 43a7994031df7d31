"""Kernel templates: hand-written kernels the scheduler picks for heavy patterns.

Matrix products reach the compiler as `sum(mul(A', B'), axes)` where A' and B' are views (expand,
permute, reshape, slice, the sliding windows of a convolution) of two tensors. `match_gemm`
recognises that pattern by lowering each factor at symbolic loop indices (the same machinery as
codegen): a factor that is a load from one buffer yields its index as a function of the loop
variables, whatever chain of views produced it.

Each axis of the product then plays one role: `t` (batch: both operands, or neither, depend on it),
`m` (only A), `n` (only B) or `k` (summed). A role may span several axes, and an axis's index may
be nonlinear (a flattened (row, column) window position is `p // W * W' + p % W`): each role's
offset into an operand is described by *modes*, `((size, stride), ...)` innermost first, meaning
offset(i) = Σ stride_j · digit_j(i) in the mixed radix of the sizes. Any index that is a sum of one
such function per role is a GEMM operand: transposes, broadcast batches (stride 0), batch axes only
one operand has, several summed axes, and im2col views of a convolution (the windows are packed
straight from the input, no im2col buffer). A padded view becomes an operand of its own (the
padded copy is materialized by an ordinary kernel, since the template reads buffers).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import dtypes as D
from .ir import Node
from .kir import Param
from .lower import _Builder, _Params
from .ops import MOVEMENT
from .symbolic import Expr, Var

GEMM_MIN_FLOPS = 1 << 18     # below this a fused loop nest is as fast and saves a launch


@dataclass
class GemmKernel:
    """A GEMM template instance; quacks like kir.Kernel for the runtime and the debug surface.

    a_strides = (t, m, k) and b_strides = (t, k, n): each entry is an int stride (in elements) when
    that role's offset is affine, else a tuple of modes ((size, stride), ...) innermost first (see
    the module docstring); `affine` says whether every entry is a plain stride."""
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

    @property
    def affine(self) -> bool:
        return all(isinstance(s, int) for s in self.a_strides + self.b_strides)

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


def _factor(node: Node, vars_: list, pads_are_inputs: bool) -> tuple[Node, Expr] | None:
    """Lower one factor at symbolic indices: (the buffer node it reads, the index) or None."""
    stop = (lambda n: n.kind != MOVEMENT or n.op == "pad") if pads_are_inputs else (lambda n: n.kind != MOVEMENT)
    b = _Builder(stop, [], _Params())
    idx = tuple(Expr({v: 1}, 0) if v is not None else Expr({}, 0) for v in vars_)
    v = b.value(node, idx)
    if v.op != "load" or v.arg[2]:
        return None
    return b.p.nodes[v.arg[0]], v.arg[1]


def _operand(node: Node, vars_: list) -> tuple[Node, Expr] | None:
    """The factor as a view of a buffer; a view through a pad (guarded loads) reads the padded
    value instead, which the scheduler then materializes."""
    return _factor(node, vars_, False) or _factor(node, vars_, True)


def _split(e: Expr, vars_: list) -> dict | None:
    """{var: the part of `e` in that variable alone}; None if an atom mixes variables or reads a
    data-dependent index (then the operand is not a sum of per-axis offsets)."""
    parts: dict = {}
    for a, c in e.terms:
        vs = {a} if isinstance(a, Var) else a.x.vars()
        if len(vs) != 1 or next(iter(vs)) not in vars_:
            return None
        parts.setdefault(next(iter(vs)), {})[a] = c
    return {v: Expr(t, 0) for v, t in parts.items()}


def _axis_modes(parts: list, v: Var, n: int) -> tuple[list, list] | None:
    """Modes of one axis of size n jointly for the operands' index parts, [(size, (strides...))]
    innermost first, and each operand's offset at index 0; None if the offsets are not
    mixed-radix in the axis."""
    ps = [p.get(v) for p in parts]
    if all(p is None or (len(p.terms) == 1 and p.terms[0][0] == v) for p in ps):   # affine: no table
        return [(n, tuple(p.terms[0][1] if p is not None else 0 for p in ps))], [0] * len(ps)
    i = np.arange(n, dtype=np.int64)
    tab = np.stack([p.evaluate({v.name: i}) if p is not None else np.zeros(n, np.int64) for p in ps])
    base = [int(x) for x in tab[:, 0]]
    tab = tab - tab[:, :1]
    modes, inner = [], 1
    while inner < n:
        s = tab[:, inner]
        blocks = n // inner
        rows = tab[:, :blocks * inner].reshape(len(ps), blocks, inner)
        ok = (rows == rows[:, :1, :] + np.arange(blocks)[None, :, None] * s[:, None, None]).all(axis=(0, 2))
        cnt = blocks if ok.all() else int(np.argmin(ok))
        while cnt > 1 and blocks % cnt:
            cnt -= 1
        if cnt < 2:
            return None
        modes.append((cnt, tuple(int(x) for x in s)))
        inner *= cnt
    rebuilt = np.zeros_like(tab)
    inner = 1
    for cnt, s in modes:
        rebuilt += np.array(s)[:, None] * ((i // inner) % cnt)[None, :]
        inner *= cnt
    return (modes, base) if (rebuilt == tab).all() else None


def _compose(modes: list) -> list:
    """Fold adjacent modes whose strides compose (outer stride = inner stride * inner size)."""
    out: list = []
    for cnt, s in modes:
        if cnt == 1:
            continue
        if out and all(so == si * out[-1][0] for so, si in zip(s, out[-1][1])):
            out[-1] = (out[-1][0] * cnt, out[-1][1])
        else:
            out.append((cnt, s))
    return out


def _strides(modes: list, op: int) -> int | tuple:
    """One operand's view of a role: a plain stride when affine, else ((size, stride), ...)."""
    own = _compose([(cnt, (s[op],)) for cnt, s in modes])
    if len(own) <= 1:
        return own[0][1][0] if own else 0
    return tuple((cnt, s[0]) for cnt, s in own)


def _roles(out: list, dep: dict, degenerate: bool = False) -> tuple | None:
    """Split the output's axes (in order) into batch, row and column roles so that C is a
    contiguous (t, m, n) array: a prefix of batch axes (any dependence; a batch axis only one
    operand has reads the other with stride 0), then axes only A depends on, then axes only B
    depends on (or the other way round: then the product is computed transposed). The shortest
    batch prefix wins: it leaves the largest matrices. With `degenerate`, the rows may be
    missing (M = 1). Returns (t, m, n, swapped) or None."""
    for cut in range(len(out)):
        rest = out[cut:]
        for swap, first in ((False, (True, False)), (True, (False, True))):
            i = 0
            while i < len(rest) and dep[rest[i]] == first:
                i += 1
            second = (first[1], first[0])
            if (0 < i or degenerate) and i < len(rest) and all(dep[d] == second for d in rest[i:]):
                return out[:cut], rest[:i], rest[i:], swap
    return None


def match_gemm(r: Node) -> tuple[GemmKernel, Node, Node] | None:
    """If `r` is a (batched) matrix product of two buffer views, the template and its operands."""
    if r.op != "sum" or r.dtype not in (D.float32, D.float64) or not _available():
        return None
    src = r.srcs[0]
    if src.op != "mul":
        return None
    shape = src.shape
    vars_ = [Var(f"a{d}", 0, n - 1) if n > 1 else None for d, n in enumerate(shape)]
    fa, fb = (_operand(x, vars_) for x in src.srcs)
    if fa is None or fb is None:
        return None
    (na, ea), (nb, eb) = fa, fb
    if na.dtype is not r.dtype or nb.dtype is not r.dtype:
        return None
    parts = [_split(ea, vars_), _split(eb, vars_)]
    if None in parts:
        return None
    axes, base = {}, [ea.const, eb.const]
    for d, n in enumerate(shape):
        if n > 1:
            am = _axis_modes(parts, vars_[d], n)
            if am is None:
                return None
            axes[d] = am[0]
            base = [x + y for x, y in zip(base, am[1])]
    dep = {d: (any(s[0] for _, s in m), any(s[1] for _, s in m)) for d, m in axes.items()}
    kax = [d for d in axes if d in r.arg]
    out = [d for d in axes if d not in r.arg]
    split = _roles(out, dep) or _roles(out, dep, degenerate=True)
    if split is None or not kax:
        return None
    t, m, n, swap = split
    if swap:  # output is C^T in our (t, m, n) layout: compute B^T A^T instead
        na, nb, base = nb, na, base[::-1]
        axes = {d: [(c, s[::-1]) for c, s in md] for d, md in axes.items()}

    def modes(ds):  # a role's modes, innermost axis first
        return _compose([md for d in reversed(ds) for md in axes[d]])
    sizes = [int(np.prod([shape[d] for d in ds])) for ds in (t, m, n, kax)]
    batch, M, N, K = sizes
    if 2 * batch * M * N * K < GEMM_MIN_FLOPS:
        return None
    mt, mm, mn, mk = modes(t), modes(m), modes(n), modes(kax)
    a_st = (_strides(mt, 0), _strides(mm, 0), _strides(mk, 0))
    b_st = (_strides(mt, 1), _strides(mk, 1), _strides(mn, 1))
    kern = GemmKernel(f"gemm_{batch}x{M}x{N}x{K}", r.dtype, batch, M, N, K, a_st, b_st, base[0], base[1],
                      [Param(r.dtype, r.numel, "out"), Param(na.dtype, na.numel, "in"), Param(nb.dtype, nb.numel, "in")],
                      shape=r.shape)
    if not m and kern.affine:   # a plain matrix-vector product streams better as a loop nest
        return None
    return kern, na, nb


def gemm_flops(k: GemmKernel) -> int:
    return 2 * k.batch * k.M * k.N * k.K


__all__ = ["GemmKernel", "match_gemm", "gemm_flops"]
