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

import itertools
from dataclasses import dataclass, field, replace

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
    params: list = field(default_factory=list)   # [C out, A in, B in] + the epilogue's buffers
    ops: list = field(default_factory=lambda: ["gemm"])
    shape: tuple = ()
    bindings: dict = field(default_factory=dict)
    roles: tuple = ()       # the product's axes per role: (t, m, n, k, swapped)
    epilogue: dict = field(default_factory=dict)   # (rows, cols) of a tile -> its element program

    @property
    def work(self) -> int:
        return self.batch * self.M * self.N * self.K

    @property
    def affine(self) -> bool:
        return all(isinstance(s, int) for s in self.a_strides + self.b_strides)

    def render(self, symbol: str) -> str:
        from ember.kernels.gemm import render_gemm
        epi = (self.epilogue, len(self.params) - 3) if self.epilogue else None
        return render_gemm(symbol, self.dtype, self.batch, self.M, self.N, self.K,
                           self.a_strides, self.b_strides, self.a_offset, self.b_offset, epilogue=epi)

    def __str__(self) -> str:
        epi = ""
        if self.epilogue:
            ops = [v.op for v in next(iter(self.epilogue.values())) if v.op not in ("load", "store", "const")]
            epi = f", epilogue {' '.join(dict.fromkeys(ops))} (C itself not stored)"
        return (f"template gemm {self.name}: C[{self.batch}x{self.M}x{self.N}] = A @ B, K={self.K}, "
                f"A strides (t,m,k)={self.a_strides}+{self.a_offset}, B strides (t,k,n)={self.b_strides}+{self.b_offset}{epi}")


# An epilogue is applied to the accumulator vectors of each tile of C in the micro-kernel's final
# store (kernels/gemm.py), so it must be elementwise work the code generator's ALU table renders on
# vector types, reading other buffers contiguously along the columns or as one value per row.
EPILOGUE_OPS = {"const", "load", "store", "add", "mul", "neg", "div", "max", "min", "cmplt", "cmpeq", "where",
                "and", "or", "xor"}
# Buffers of C's size an epilogue may read or write besides C. Each is walked tile by tile, a
# cache line per row of a tile, rows far apart, which hardware prefetchers follow poorly: one in
# and one out (a ReLU mask, a residual) pay, Adam's moment updates (two in, two out) as the
# epilogue of their weight gradient took 6.7 ms against 4.6 ms for the product and a separate kernel.
EPILOGUE_MAX_MATRICES = 2


def gemm_epilogue(kern: GemmKernel, r: Node, outputs: list, is_input) -> tuple[GemmKernel, list] | None:
    """The GEMM computing `outputs` instead of its product `r` — the same-shape elementwise values
    that read it (a linear layer's bias and ReLU, a ReLU's backward mask): the GEMM and the
    epilogue's extra param nodes (inputs, then outputs), or None if they do not fit. The product
    itself is then not stored (the caller makes sure nothing else reads it). Each tile shape (MR
    or M % MR rows, NR or N % NR columns: the ragged ones start at fixed places) gets its own
    element program, lowered at (batch et, row em0 + er, column en0 + ec) — the tile's origin and
    its row and column in it — with exact index ranges, so the index simplifier leaves no div/mod
    along the columns.

    They fit when the product has one column axis and at most one batch axis (rows may span
    several axes, e.g. batch x sequence), not computed transposed; the outputs have its shape (its
    summed axes dropped) and C's dtype; the work is EPILOGUE_OPS on C's dtype and bools; other
    buffers are of C's dtype and read along the columns contiguously or broadcast, at most
    EPILOGUE_MAX_MATRICES of them of C's size; C is read only at the element written."""
    from ember.kernels.gemm import default_config
    from .lower import element_program
    t, m, n, ks, swapped = kern.roles
    if swapped or len(t) > 1 or not m or len(n) != 1:
        return None
    out_shape = tuple(x for d, x in enumerate(r.shape) if d not in ks)
    if any(o.shape != out_shape or o.dtype is not r.dtype for o in outputs):
        return None
    cfg = default_config(kern.dtype)
    programs, nodes = {}, None
    ec, et = Var("ec", 0, cfg.nr - 1), Var("et", 0, kern.batch - 1)
    for rows in sorted({min(kern.M, cfg.mr), kern.M % cfg.mr} - {0}):
        for cols in sorted({min(kern.N, cfg.nr), kern.N % cfg.nr} - {0}):
            em = Var("em0", 0, kern.M - cfg.mr) if rows == cfg.mr else Var("em0", kern.M - rows, kern.M - rows)
            en = Var("en0", 0, kern.N - cfg.nr) if cols == cfg.nr else Var("en0", kern.N - cols, kern.N - cols)
            rv, cv = Var("er", 0, rows - 1), Var("ec", 0, cols - 1)
            row = Expr({em: 1, rv: 1}, 0)   # the flat row; several row axes (batch x sequence) split it
            inner = {d: int(np.prod([r.shape[e] for e in m if e > d])) for d in m}
            idx = tuple(Expr({et: 1}, 0) if d in t else (row // inner[d] if d == m[0] else row // inner[d] % r.shape[d])
                        if d in m else Expr({en: 1, cv: 1}, 0) if d in n else Expr({}, 0)   # (size-1 axes: no role)
                        for d in range(len(r.shape)) if d not in ks)
            prog = element_program(outputs, is_input, r, idx)
            if prog is None or (nodes is not None and [id(x) for x in prog[2]] != [id(x) for x in nodes]):
                return None
            order, params, nodes = prog
            if not _vector_program(order, params, r.dtype, ec):
                return None
            programs[rows, cols] = order
    if sum(p.numel >= kern.batch * kern.M * kern.N for p in params[1:]) > EPILOGUE_MAX_MATRICES:
        return None
    fused = replace(kern, epilogue=programs, params=kern.params[:3] + params[1:],
                    name=kern.name + "_" + "_".join(dict.fromkeys(v.op for v in order if v.op not in ("load", "store", "const"))))
    return fused, nodes[1:]


def _vector_program(order: list, params: list, dt: D.DType, ec: Var) -> bool:
    """Whether the micro-kernel can run this element program on a vector of columns: EPILOGUE_OPS on
    `dt` and bools, buffers of `dt` whose index moves by 1 (or 0) per column and has no column inside
    a div or mod."""
    for v in order:
        if v.op not in EPILOGUE_OPS or (v.dtype is not None and v.dtype not in (dt, D.bool_)):
            return False
        if v.op in ("load", "store"):
            if params[v.arg[0]].dtype is not dt or (v.op == "load" and v.arg[2]):
                return False
            for a, c in v.arg[1].terms:
                if a == ec and c != 1 or a != ec and ec in (a.x.vars() if not isinstance(a, Var) else ()):
                    return False
    return True


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


def _k_order(modes: list) -> list:
    """k is summed, so its digits may run in any order (the same for both operands): the order in
    which each operand's modes compose best (fewest in all; the given order on ties). Attention's
    weight gradients sum over tokens in (seq, batch) order, which leaves both operands with two k
    modes; in (batch, seq) order the contiguous one folds into a plain stride."""
    def cost(ms):
        return sum(len(_compose([(cnt, (s[op],)) for cnt, s in ms])) for op in (0, 1))
    if not 1 < len(modes) <= 5:
        return modes
    return min((list(p) for p in itertools.permutations(modes)), key=cost)


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
    mt, mm, mn, mk = modes(t), modes(m), modes(n), _k_order(modes(kax))
    a_st = (_strides(mt, 0), _strides(mm, 0), _strides(mk, 0))
    b_st = (_strides(mt, 1), _strides(mk, 1), _strides(mn, 1))
    kern = GemmKernel(f"gemm_{batch}x{M}x{N}x{K}", r.dtype, batch, M, N, K, a_st, b_st, base[0], base[1],
                      [Param(r.dtype, r.numel, "out"), Param(na.dtype, na.numel, "in"), Param(nb.dtype, nb.numel, "in")],
                      shape=r.shape, roles=(t, m, n, kax, swap))
    if not m and kern.affine:   # a plain matrix-vector product streams better as a loop nest
        return None
    return kern, na, nb


def gemm_flops(k: GemmKernel) -> int:
    return 2 * k.batch * k.M * k.N * k.K


__all__ = ["GemmKernel", "match_gemm", "gemm_epilogue", "gemm_flops", "AttentionKernel", "match_attention", "find_attention"]


# ---- attention ---------------------------------------------------------------------------------
# softmax(Q K^T * scale (+ mask) (keep)) @ V, as framework/nn/attention.py `_attend` builds it (both
# softmax forms), becomes one flash-attention kernel on "cuda" (kernels/triton_attention.py): the
# L x S scores and weights are never stored. The operands' layouts are found like a GEMM's, by
# lowering each view at symbolic indices; the softmax in between is checked node by node.

ATTENTION_DTYPES = (D.float32, D.float16, D.bfloat16)
ATTENTION_MAX_HEAD_DIM = 128  # the kernel keeps a query block's whole head in registers
CAUSAL_PROBE_MAX = 1 << 24   # a computed keep-mask up to this size is evaluated to recognise causality


@dataclass
class AttentionKernel:
    """A flash-attention template instance ("cuda" only); quacks like kir.Kernel for the runtime
    and the debug surface. O (batch, L, Ev) is contiguous; batch flattens every leading dim.

    Strides per operand, like GemmKernel's: q (t, l, e), k (t, s, e), v (t, s, ev), mask / keep
    (t, l, s); t is an int stride or modes ((size, stride), ...) innermost first, the others ints.
    `mask` is a float mask added to the scores, `keep` a bool mask (False = left out), `causal`
    keeps key s <= query l (top-left aligned). `safe`: a row with no visible key gives zeros, else
    NaN (a plain softmax)."""
    name: str
    dtype: D.DType
    batch: int
    L: int
    S: int
    E: int
    Ev: int
    scale: float
    causal: bool
    safe: bool
    q_strides: tuple
    k_strides: tuple
    v_strides: tuple
    q_offset: int
    k_offset: int
    v_offset: int
    mask_strides: tuple | None = None
    mask_offset: int = 0
    keep_strides: tuple | None = None
    keep_offset: int = 0
    params: list = field(default_factory=list)   # [O out, Q, K, V, (mask), (keep)]
    ops: list = field(default_factory=lambda: ["attention"])
    shape: tuple = ()
    bindings: dict = field(default_factory=dict)

    @property
    def work(self) -> int:
        return self.batch * self.L * self.S * (self.E + self.Ev)

    @property
    def flops(self) -> int:
        """The two products over the whole L x S (causal programs skip about half of it)."""
        return 2 * self.work

    def __str__(self) -> str:
        extra = "".join(f", {w} strides (t,l,s)={st}" for w, st in (("mask", self.mask_strides),
                                                                   ("keep", self.keep_strides)) if st)
        return (f"template attention {self.name}: O[{self.batch}x{self.L}x{self.Ev}] = softmax(Q K^T * "
                f"{self.scale:g}) V, S={self.S}, E={self.E}{', causal' if self.causal else ''}"
                f"{'' if self.safe else ', unsafe softmax'}, Q strides (t,l,e)={self.q_strides}, "
                f"K (t,s,e)={self.k_strides}, V (t,s,ev)={self.v_strides}{extra}")


def _scalar(n: Node) -> float | None:
    """The value of a broadcast constant, else None."""
    while n.kind == MOVEMENT:
        n = n.srcs[0]
    return n.arg if n.op == "const" else None


def _last(n: Node, op: str, shape: tuple) -> Node | None:
    """The source of `n` if it is reduction `op` over the last axis of a value of `shape`."""
    if n.op == op and n.arg == (len(shape) - 1,) and n.srcs[0].shape == shape:
        return n.srcs[0]
    return None


def _unguard(n: Node, test: float, repl: float, inner: list) -> tuple[Node, bool]:
    """where(x == test, repl, x) -> (x, True) (the safe softmax's guards); else (n, False)."""
    if n.op == "where" and _scalar(n.srcs[1]) == repl:
        c, x = n.srcs[0], n.srcs[2]
        if c.op == "cmpeq" and x in c.srcs and _scalar(c.srcs[1 - c.srcs.index(x)]) == test:
            inner += [n, c]
            return x, True
    return n, False


def _broadcast_row(n: Node, shape: tuple, inner: list) -> Node:
    """Strip an expand of a (..., 1) value to `shape` (a broadcast along the last axis)."""
    if n.op == "expand" and n.shape == shape and n.srcs[0].shape == shape[:-1] + (1,):
        inner.append(n)
        return n.srcs[0]
    return n


def _layout(view: Node, vars_: list, roles: list) -> tuple[Node, list, int] | None:
    """Lower an operand view at `vars_`: (the node it reads, one entry per role — an int stride, or
    modes for a role of several axes that do not fold — and the offset). `roles` lists each role's
    axes, outermost first; None if the index is not a sum of per-axis offsets."""
    f = _operand(view, vars_)
    if f is None:
        return None
    node, e = f
    parts = _split(e, vars_)
    if parts is None:
        return None
    base, out = e.const, []
    for axes in roles:
        modes = []
        for d in reversed(axes):
            if vars_[d] is None:
                continue
            am = _axis_modes([parts], vars_[d], vars_[d].hi + 1)
            if am is None:
                return None
            modes += am[0]
            base += am[1][0]
        out.append(_strides(_compose(modes), 0))
    return node, out, base


def _is_causal(view: Node, vars_: list, ls: tuple) -> bool:
    """Whether a computed keep-mask reads True exactly where key s <= query l, whatever the batch
    (tril(ones) as `_causal_keep` builds it): evaluated with the numpy interpreter when it is made
    of index arithmetic alone (no buffer) and small enough."""
    from .interpret import interpret
    from .ir import toposort
    f = _factor(view, vars_, False)
    if f is None:
        return False
    node, e = f
    L, S = (vars_[d].hi + 1 if vars_[d] is not None else 1 for d in ls)
    if max(node.numel, L * S) > CAUSAL_PROBE_MAX or any(x.realized for x in toposort([node])):
        return False
    names = {vars_[d].name for d in ls if vars_[d] is not None}
    if any(v.name not in names for v in e.vars()):
        return False
    li, si = (x.reshape(-1) for x in np.meshgrid(np.arange(L), np.arange(S), indexing="ij"))
    env = {vars_[d].name: i for d, i in zip(ls, (li, si)) if vars_[d] is not None}
    table = interpret([node])[0].reshape(-1)[e.evaluate(env) + np.zeros(L * S, np.int64)]
    return bool((table == (si <= li)).all())


def match_attention(r: Node) -> tuple[AttentionKernel, list, set] | None:
    """If `r` is the `weights @ V` product of an attention, weights = softmax over the last axis of
    Q K^T * scale (+ mask) (where(keep, ., -inf)) — plain `.softmax(-1)` or `_softmax_last(safe=True)` —
    the template, its operand nodes [Q, K, V, (mask), (keep)] and the ids of the nodes it computes
    internally (the caller checks that nothing else reads them)."""
    if r.op != "sum" or r.dtype not in ATTENTION_DTYPES or r.srcs[0].op != "mul" or r.numel == 0:
        return None
    pv, dt = r.srcs[0], r.dtype
    nd = len(pv.shape)
    if nd < 3 or r.arg != (nd - 1,):
        return None
    vpv = [Var(f"a{d}", 0, n - 1) if n > 1 else None for d, n in enumerate(pv.shape)]
    inner = [pv]
    for pi in (0, 1):   # which factor is the weights P (a view of a div)
        f = _factor(pv.srcs[pi], vpv, False)
        if f is not None and f[0].op == "div" and f[0].shape == pv.shape[:-2] + pv.shape[-1:]:
            break
    else:
        return None
    P, pidx = f
    sshape = P.shape                      # (B..., L, S)
    nb = nd - 3
    strides = [int(np.prod(sshape[d + 1:])) for d in range(nb + 2)]
    axes_of_p = list(range(nb + 1)) + [nd - 1]
    if pidx != Expr({vpv[d]: st for d, st in zip(axes_of_p, strides) if vpv[d] is not None}, 0):
        return None
    x = pv.srcs[pi]
    while x is not P:
        inner.append(x)
        x = x.srcs[0]
    # P = E / rowsum(E) (sum guarded against 0 when safe); E = exp(Sf - rowmax(Sf)) (max guarded
    # against -inf when safe)
    inner.append(P)
    E, zr = P.srcs[0], _broadcast_row(P.srcs[1], sshape, inner)
    z, safe_z = _unguard(zr, 0.0, 1.0, inner)
    if _last(z, "sum", sshape) is not E:
        return None
    inner += [z, E]
    x = E
    if (x.op == "cast" and x.srcs[0].op == "exp" and x.srcs[0].srcs[0].op == "cast"
            and x.srcs[0].srcs[0].dtype is D.float32):   # Tensor.exp of a half type
        inner += [x.srcs[0], x.srcs[0].srcs[0]]
        x = x.srcs[0].srcs[0].srcs[0]
    elif x.op == "exp":
        x = x.srcs[0]
    else:
        return None
    if x.op != "add":
        return None
    inner.append(x)
    for si in (0, 1):   # Sf + broadcast(-rowmax), the broadcast before or after the neg
        sf, tmp = x.srcs[si], []
        row = _broadcast_row(x.srcs[1 - si], sshape, tmp)
        if row.op == "neg":
            mr = _broadcast_row(row.srcs[0], sshape, tmp)
            if mr.shape == sshape[:-1] + (1,):
                inner += tmp + [row]
                break
    else:
        return None
    m, safe_m = _unguard(mr, float("-inf"), 0.0, inner)
    if _last(m, "rmax", sshape) is not sf:
        return None
    inner.append(m)
    # Sf = where(keep, S1, -inf); S1 = S0 + mask; S0 = reshape(Q K^T) * scale
    keep_view = mask_view = None
    s = sf
    if s.op == "where" and s.srcs[0].dtype is D.bool_ and _scalar(s.srcs[2]) == float("-inf"):
        keep_view, s = s.srcs[0], s.srcs[1]
        inner.append(sf)
    scores = _scores(s, sshape, dt)
    if scores is None and s.op == "add":
        for si in (0, 1):
            scores = _scores(s.srcs[si], sshape, dt)
            if scores is not None:
                mask_view = s.srcs[1 - si]
                inner.append(s)
                break
    if scores is None:
        return None
    qkm, scale, views = scores
    inner += views
    vqk = [Var(f"b{d}", 0, n - 1) if n > 1 else None for d, n in enumerate(qkm.shape)]
    batch_ax, l_ax, s_ax, e_ax = list(range(nb)), nb, nb + 1, nb + 2
    ls = [batch_ax, [l_ax], [s_ax]]
    lq = _layout(qkm.srcs[0], vqk, ls + [[e_ax]])      # (t, l, s, e): Q must not depend on s
    lk = _layout(qkm.srcs[1], vqk, ls + [[e_ax]])      # K not on l
    if lq is not None and lk is not None and (lq[1][2] != 0 or lk[1][1] != 0):   # written K Q^T
        lq, lk = lk, lq
    lv = _layout(pv.srcs[1 - pi], vpv, [batch_ax, [nb], [nd - 1], [nb + 1]])   # (t, l, s, ev)
    if (lq is None or lk is None or lv is None or lq[1][2] != 0 or lk[1][1] != 0 or lv[1][1] != 0
            or any(n.dtype is not dt for n in (lq[0], lk[0], lv[0]))):
        return None
    operands = [lq[0], lk[0], lv[0]]
    (qt, ql, _, qe), (kt, _, ks, ke), (vt, _, vs, ve) = lq[1], lk[1], lv[1]
    batch = int(np.prod(sshape[:-2]))
    L, S, E, Ev = sshape[-2], sshape[-1], qkm.shape[-1], pv.shape[-2]
    if (min(S, E) == 0 or max(E, Ev) > ATTENTION_MAX_HEAD_DIM
            or not all(isinstance(st, int) for st in (ql, qe, ks, ke, vs, ve))):
        return None
    kern = AttentionKernel(f"attention_{batch}x{L}x{S}x{E}x{Ev}", dt, batch, L, S, E, Ev, scale, False,
                           safe_m and safe_z, (qt, ql, qe), (kt, ks, ke), (vt, vs, ve), lq[2], lk[2], lv[2],
                           shape=r.shape)
    params = [Param(dt, r.numel, "out")] + [Param(o.dtype, o.numel, "in") for o in operands]
    for view, kind in ((mask_view, "mask"), (keep_view, "keep")):
        if view is None:
            continue
        if kind == "keep" and _is_causal(view, vqk[:-1], (l_ax, s_ax)):
            kern.causal = True
            continue
        lm = _layout(view, vqk[:-1], ls)
        if lm is None or (kind == "mask" and lm[0].dtype is not dt) or not all(isinstance(st, int) for st in lm[1][1:]):
            return None
        setattr(kern, f"{kind}_strides", tuple(lm[1]))
        setattr(kern, f"{kind}_offset", lm[2])
        operands.append(lm[0])
        params.append(Param(lm[0].dtype, lm[0].numel, "in"))
    kern.params = params
    return kern, operands, {id(n) for n in inner}


def _scores(s: Node, sshape: tuple, dt: D.DType) -> tuple[Node, float, list] | None:
    """S0 = reshape(sum(mul(Q', K'), last axis)) (* scale): (the mul, the scale (rounded to the
    dtype, as the graph's constant is), the nodes on the way)."""
    views, scale = [], 1.0
    if s.op == "mul":
        for si in (0, 1):
            c = _scalar(s.srcs[si])
            if c is not None:
                scale = float(np.array(c, dtype=dt.np).astype(np.float64))
                views.append(s)
                s = s.srcs[1 - si]
                break
        else:
            return None
    if s.op != "reshape" or s.shape != sshape or s.srcs[0].shape != sshape + (1,):
        return None
    qk = s.srcs[0]
    if qk.op != "sum" or qk.arg != (len(sshape),) or qk.srcs[0].op != "mul":
        return None
    return qk.srcs[0], scale, views + [s, qk, qk.srcs[0]]


def find_attention(order: list, roots: dict, memo: dict) -> dict:
    """{id(r): (r, kernel, operands, interior ids)} for each attention in `order` (a topological
    order of the graph being scheduled) whose intermediate values — scores, weights — nothing else
    reads and no one asked for: the template computes them in registers and never stores them.
    (So a forward realized together with its backward, which reads the weights, or with dropout
    on the weights, keeps the unfused kernels; `memo` keeps the answers across schedule retries.)"""
    found = {}
    for n in order:
        if n.op == "sum" and not n.realized and n.dtype in ATTENTION_DTYPES and n.srcs[0].op == "mul":
            key = ("attention", id(n))
            if key not in memo:
                memo[key] = match_attention(n)
            if memo[key] is not None:
                found[id(n)] = (n,) + memo[key]
    if not found:
        return {}
    users: dict = {}
    for n in order:
        for s in n.srcs:
            users.setdefault(id(s), set()).add(id(n))
    return {rid: m for rid, m in found.items()
            if all(i not in roots and users.get(i, set()) <= m[3] | {rid} for i in m[3])}
