"""A generated CPU GEMM (BLIS/GotoBLAS structure) as LLVM IR text: C[t] = A[t] @ B[t].

    src = render_gemm("mm", dtypes.float32, 1, 1024, 1024, 1024, (0, 1024, 1), (0, 1024, 1))
    # defines void @mm(ptr %c, ptr %a, ptr %b, i64 %tid, i64 %nt); calling it for every tid in
    # 0..nt-1 (concurrently) computes all of C, contiguous (batch, M, N).

Structure, per thread (no synchronisation: each thread owns whole rows or whole columns of C):

    for jc in N step NC:                      B block KC x NC      -> L3
      for pc in K step KC:  pack B[pc, jc]    as NR-wide slivers [k][NR], zero-padded
        for ic in M step MC: pack A[ic, pc]   as MR-row slivers        -> L2
          for jr in NC step NR:               one B sliver (KC x NR)   -> L1
            for ir in MC step MR:             micro-kernel: MR x NR accumulators in registers

The micro-kernel holds MR x (NR / VEC) vector accumulators (e.g. 6 x 2 <8 x float> on AVX2),
per k broadcasting one A element per row and loading NR/VEC B vectors: MR*NR/VEC fused
multiply-adds per MR + NR/VEC loads. Edges: rows are handled by variants of the micro-kernel for
every row count < MR (no wasted FMAs), columns by masked loads/stores (B slivers are zero-padded),
K by the loop count. Only the variants a shape can use are generated (`row_counts`). Packing makes any input strides (transposed, broadcast batch with stride 0)
the same to the micro-kernel; the strides are compile-time constants, so each packing loop is
specialised (contiguous rows become vector copies, transposed B an 8x8 register transpose).
Shapes are constants too: one kernel per (shape, strides), like every ember kernel.

A role's stride may also be mixed-radix modes ((size, stride), ...), innermost first: offset(i) =
Σ stride_j * digit_j(i). That is how a convolution's window view is read (a window position p is
(row, column) = (p // W, p % W)): each block fills a table of its rows', columns' and k's offsets,
and packing reads through it, copying runs that turn out contiguous with vector loads. im2col
happens in packing; no column buffer is ever written.

Two copies are skipped where they cannot pay: with few columns (N <= 2 NR) each packed A element
would serve at most two slivers, so the micro-kernel reads A in place; with at most two panels of
rows (M <= 2 MR, GEMV-like) it reads row-contiguous B in place, prefetching rows ahead in software.

Threads split batch x MR-row panels of C (each thread packs the B blocks it needs), or, when there
are more columns than rows, batch x NR-column panels.
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace

from ..compiler import dtypes as D
from ..compiler.runtime.cpu_compile import passes_marker

from .gemm_pack import _affine, _fill, _fill_runs, _offset, _pack_a, _pack_b, _runs
from .llvm_ir import Function


# ---- configuration -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """Register and cache blocking. nr is a multiple of vec (lanes per vector register)."""
    mr: int
    nr: int
    vec: int
    mc: int
    kc: int
    nc: int
    unroll: int = 4     # k steps per micro-kernel loop iteration

    def __post_init__(self):
        assert self.nr % self.vec == 0 and self.mc % self.mr == 0 and self.nc % self.nr == 0, self


@functools.cache
def host_isa() -> str:
    """'avx512', 'avx2', 'neon' or 'sse' (the widest vector ISA the host reports)."""
    import llvmlite.binding as llvm
    llvm.initialize_native_target()
    feats = llvm.get_host_cpu_features()
    if feats.get("avx512f"):
        return "avx512"
    if feats.get("avx2") and feats.get("fma"):
        return "avx2"
    if feats.get("neon") or llvm.get_process_triple().startswith(("aarch64", "arm64")):
        return "neon"
    return "sse"


VECTOR_BYTES = {"avx512": 64, "avx2": 32, "neon": 16, "sse": 16}
# (MR, NR in vectors): accumulators + NR/VEC B vectors + 1 broadcast must fit the register file
# (16 vector registers on AVX2/SSE, 32 on AVX-512/NEON).
REGISTER_TILE = {"avx512": (12, 2), "avx2": (6, 2), "neon": (8, 3), "sse": (6, 2)}


def default_config(dtype: D.DType, isa: str | None = None) -> Config:
    """Blocking for `dtype` on `isa` (default: the host): the B sliver (KC x NR) fills about half
    of L1, the packed A block (MC x KC) about a third of L2, the B block (KC x NC) lives in L3."""
    isa = isa or host_isa()
    vec = VECTOR_BYTES[isa] // dtype.itemsize
    mr, nv = REGISTER_TILE[isa]
    nr = nv * vec
    kc = 256
    mc = max(mr, (48 * 1024 * 3 // (kc * dtype.itemsize)) // mr * mr)   # ~144 KB of A
    nc = (4096 // nr) * nr
    return Config(mr, nr, vec, mc, kc, nc)


def gemm_flops(batch: int, M: int, N: int, K: int) -> int:
    """Floating-point operations of C = A @ B: one multiply and one add per (t, m, n, k).

    >>> gemm_flops(1, 1024, 1024, 1024)
    2147483648
    """
    return 2 * batch * M * N * K


# ---- code generation ---------------------------------------------------------------------------

TYPES = {"float32": "float", "float64": "double"}
PREFETCH_ROWS = 48     # how far ahead the direct micro-kernel prefetches B rows
DIRECT_B_PANELS = 2    # B is read in place (not packed) when C has at most this many row panels
DIRECT_A_SLIVERS = 2   # A is read in place when C has at most this many column slivers (2x for k-contiguous A)
FMA_CHAINS = 8         # independent accumulators that hide FMA latency (2 pipes x 4 cycles on Zen 3 / Skylake)


@dataclass(frozen=True)
class _Spec:
    """Everything one generated GEMM depends on."""
    sym: str
    ty: str
    isz: int
    batch: int
    M: int
    N: int
    K: int
    sa: tuple
    sb: tuple
    aoff: int
    boff: int
    cfg: Config
    extra: int = 0          # the epilogue's buffers (after c, a, b); 0: no epilogue
    epi: dict | None = None  # (rows, cols) -> the epilogue's element program (templates.gemm_epilogue)

    @property
    def tab_bytes(self) -> int:
        """Scratch for the offset tables of non-affine roles: A rows (MC), A and B k's (KC each),
        B columns (NC), and the run flags of the two k tables (one per VEC k's), as i64."""
        return 8 * (self.cfg.mc + 2 * self.kce + self.cfg.nc + 2 * (self.kce // self.cfg.vec + 1))

    @property
    def a_kmajor(self) -> bool:
        """Pack A slivers as [k][MR] when its rows are strided and its columns contiguous (A^T
        views); else as MR rows of KCe contiguous elements. Either way packing reads A along its
        contiguous direction; the micro-kernel's broadcasts are equally cheap in both layouts."""
        return self.sa[1] == 1 and self.sa[2] != 1

    @property
    def a_direct(self) -> bool:
        """With few columns of C each packed A element would serve only a few B slivers, so the
        copy does not pay: the micro-kernel then reads A in place (A's block stays in L2). Rows
        with contiguous k's are read in place up to twice as many slivers (DIRECT_A_SLIVERS):
        each tile's broadcasts then walk MR cache-line streams, and skipping the copy wins
        6-13% on attention's Q K^T (64 x 64x64x32), and 0-10% on linear layers with N <= 64;
        A^T views (contiguous m's, e.g. dS^T Q) read in place lose 40% at 4 slivers."""
        slivers = DIRECT_A_SLIVERS * (2 if self.sa[2] == 1 else 1)
        return self.N <= slivers * self.cfg.nr and 1 in self.sa[1:] and _affine(self.sa[1]) and _affine(self.sa[2])

    @property
    def a_steps(self) -> tuple[int, int]:
        """Distances (elements) between rows and between k steps of the A the micro-kernel reads."""
        if self.a_direct:
            return self.sa[1], self.sa[2]
        return (1, self.cfg.mr) if self.a_kmajor else (self.kce, 1)

    @property
    def b_direct(self) -> bool:
        """With few panels of rows, each packed B sliver would serve only them, so packing B costs
        more than it saves: the micro-kernel then reads row-contiguous B in place (only the ragged
        last sliver is packed), the later panels finding the sliver in cache."""
        return self.M <= DIRECT_B_PANELS * self.cfg.mr and self.sb[2] == 1 and _affine(self.sb[1])

    @property
    def row_counts(self) -> list[int]:
        """The row counts tiles can have: MR, and the ragged last panel's (threads and blocks
        split rows at multiples of MR). Only these micro-kernel variants are generated: the others
        would never run and would cost compile time (most of a GEMM's)."""
        return sorted({min(self.M, self.cfg.mr), self.M % self.cfg.mr} - {0})

    @property
    def kce(self) -> int:
        """The k block: KC, or K itself when it is at most 1.25 KC, else K split into equal blocks
        of at most KC (a ragged last block would make one more pass over C for a few k's)."""
        kc = self.cfg.kc
        if self.K <= kc * 5 // 4:
            return max(self.K, 1)
        per = -(-self.K // -(-self.K // kc))            # ceil(K / number of blocks)
        return min(kc, -(-per // 4) * 4)                # rounded up to the micro-kernel's unroll

    @property
    def vty(self) -> str:
        return f"<{self.cfg.vec} x {self.ty}>"


def render_gemm(symbol: str, dtype: D.DType, batch: int, M: int, N: int, K: int,
                a_strides: tuple[int, int, int], b_strides: tuple[int, int, int], a_offset=0, b_offset=0,
                config: Config | None = None, epilogue: tuple | None = None) -> str:
    """LLVM IR text defining `void @<symbol>(ptr noalias %c, ptr noalias %a, ptr noalias %b, i64 %tid,
    i64 %nt)`: thread tid's share (of nt) of C[t] = A[t] @ B[t] for t < batch, with C contiguous
    (batch, M, N) and A[t, m, k] at a + a_offset + t*a_strides[0] + m*a_strides[1] + k*a_strides[2]
    (B likewise over (t, k, n)), in elements. Strides may be 0 (broadcast), negative or in any
    order; a stride may instead be modes ((size, stride), ...) innermost first, the role's offset
    then being Σ stride_j * ((i // (size_0 ... size_{j-1})) % size_j).

    With an `epilogue` (programs, extra), the entry takes `extra` more buffers after b, and the
    micro-kernel's last store of each tile runs the tile shape's element program on the
    accumulator vectors (templates.gemm_epilogue) instead of storing them: C holds only partial
    sums (when K spans several blocks), the outputs come from registers. The default blocking is
    used (the programs are made for its tile shapes).

    >>> src = render_gemm("mm", D.float32, 1, 64, 64, 64, (0, 64, 1), (0, 1, 64))  # A @ B^T
    """
    if dtype.name not in TYPES:
        raise TypeError(f"render_gemm supports float32 and float64, not {dtype.name}")
    programs, extra = epilogue or (None, 0)
    cfg = config or (default_config(dtype) if epilogue else tuned_config(dtype, M, N, K))
    s = _Spec(symbol, TYPES[dtype.name], dtype.itemsize, batch, M, N, K, tuple(a_strides), tuple(b_strides),
              a_offset, b_offset, cfg, extra, programs)
    decls: dict = {}   # intrinsics the epilogues call
    # the IR below is vectorized, unrolled and register-blocked already: LLVM's IR passes take ~3/4
    # of its compile time and gain nothing, except in the table-driven packing of non-affine
    # (convolution window) operands, which -O2 serves as well as -O3 (docs/architecture.md)
    affine = all(_affine(st) for st in (*a_strides, *b_strides))
    parts = [passes_marker(0 if affine else 2)
             + f"; ember GEMM {dtype.name} batch={batch} M={M} N={N} K={K} a={a_strides}+{a_offset} "
             f"b={b_strides}+{b_offset} {cfg}"]
    if batch and M and N and K:
        parts += [_microkernel(s, r, decls=decls) for r in s.row_counts]
        if s.b_direct:
            parts += [_microkernel(s, r, direct=True, decls=decls) for r in s.row_counts]
        parts += [_pack_b(s), _block(s)] + ([] if s.a_direct else [_pack_a(s)])
    parts += [_driver(s), *_declarations(s), *decls.values()]
    return "\n\n".join(parts) + "\n"


def _declarations(s: _Spec) -> list[str]:
    v, t = s.vty, s.ty
    sfx = f"v{s.cfg.vec}{'f32' if t == 'float' else 'f64'}"
    return [f"declare {v} @llvm.fmuladd.{sfx}({v}, {v}, {v})",
            f"declare {v} @llvm.masked.load.{sfx}.p0(ptr, <{s.cfg.vec} x i1>, {v})",
            f"declare void @llvm.masked.store.{sfx}.p0({v}, ptr, <{s.cfg.vec} x i1>)",
            "declare void @llvm.memset.p0.i64(ptr, i8, i64, i1)",
            "declare void @llvm.prefetch.p0(ptr, i32, i32, i32)",
            "declare noalias ptr @malloc(i64)", "declare void @free(ptr)",
            'attributes #0 = { nounwind "frame-pointer"="none" }',
            '!0 = !{!"llvm.loop.unroll.disable"}',
            *(f"!{_loop_id(r, tag, d)} = distinct !{{!{_loop_id(r, tag, d)}, !0}}"
              for r in range(1, s.cfg.mr + 1) for tag in ("main", "rem") for d in (False, True))]


def _loop_id(rows: int, tag: str, direct: bool) -> int:
    return 4 * rows + 2 * direct + (tag == "rem")


def _microkernel(s: _Spec, rows: int, direct: bool = False, decls: dict | None = None) -> str:
    """@<sym>.uk<rows>(kc, a, b, c, cols, acc): C[rows x cols] (+)= Apanel[rows x kc] @ Bsliver[kc x NR];
    @<sym>.uk<rows>d reads the sliver from B itself (rows sb[1] apart) instead of a packed copy.

    Accumulators are phis of the k loop (unrolled `unroll` times, then a remainder loop), so they
    stay in registers; the store is a plain vector store for full tiles and masked for cols < NR."""
    cfg, ty, v = s.cfg, s.ty, s.vty
    nv, V = cfg.nr // cfg.vec, cfg.vec
    ldb, balign = (s.sb[1], s.isz) if direct else (cfg.nr, cfg.vec * s.isz)
    f = Function(f"{s.sym}.uk{rows}{'d' if direct else ''}", "void",
                 [("i64", "kc"), ("ptr", "a"), ("ptr", "b"), ("ptr", "c"), ("i64", "cols"), ("i1", "acc")]
                 + _epilogue_params(s), "noinline #0")
    L = f.lines
    fma = f"@llvm.fmuladd.v{V}{'f32' if ty == 'float' else 'f64'}"

    def step(k: str, cur):
        """One k: NR/VEC B vectors, `rows` broadcasts, rows*NR/VEC FMAs. Returns the new accs."""
        bo = f.mul(k, ldb)
        bv = [f.load(v, f.gep(ty, "%b", f.add(bo, j * V)), balign) for j in range(nv)]
        if direct:  # B rows are far apart: the hardware prefetcher does not follow them
            for off in sorted({0, cfg.nr - 1}):
                f.do(f"call void @llvm.prefetch.p0(ptr {f.gep(ty, '%b', f.add(bo, PREFETCH_ROWS * ldb + off))}, "
                     "i32 0, i32 3, i32 1)")
        new = []
        for i in range(rows):
            ai = f.add(f.mul(k, s.a_steps[1]), i * s.a_steps[0])
            x = f.load(ty, f.gep(ty, "%a", ai), s.isz)
            splat = f(f"shufflevector {v} {f(f'insertelement {v} poison, {ty} {x}, i64 0')}, {v} poison, "
                      f"<{V} x i32> zeroinitializer")
            new.append([f(f"call {v} {fma}({v} {splat}, {v} {bv[j]}, {v} {cur[i][j]})") for j in range(nv)])
        return new

    def kloop(tag: str, start: str, init, bound: str, unroll: int):
        """for (k = start; k < bound; k += unroll) with the accumulators in phis (entering with
        `init`, a list of accumulator sets: unrolled step u updates set u % len(init)); returns
        the sets' values on exit."""
        k, body, pred = f"%{tag}.k", f"{tag}.body", f.block
        acc = [[[f"%{tag}.a{q}_{i}_{j}" for j in range(nv)] for i in range(rows)] for q in range(len(init))]
        out = [[[f"%{tag}.o{q}_{i}_{j}" for j in range(nv)] for i in range(rows)] for q in range(len(init))]
        f.do(f"br label %{tag}")
        f.label(tag)
        L.append(f"  {k} = phi i64 [ {start}, %{pred} ], [ {k}.next, %{body} ]")
        for q, i, j in itertools.product(range(len(init)), range(rows), range(nv)):
            L.append(f"  {acc[q][i][j]} = phi {v} [ {init[q][i][j]}, %{pred} ], [ {out[q][i][j]}, %{body} ]")
        f.do(f"br i1 {f(f'icmp ult i64 {k}, {bound}')}, label %{body}, label %{tag}.done")
        f.label(body)
        cur = list(acc)
        for u in range(unroll):
            cur[u % len(cur)] = step(f.add(k, u), cur[u % len(cur)])
        for q, i, j in itertools.product(range(len(init)), range(rows), range(nv)):
            L.append(f"  {out[q][i][j]} = bitcast {v} {cur[q][i][j]} to {v}")
        L.append(f"  {k}.next = add nuw nsw i64 {k}, {unroll}")
        # the body is unrolled as written: stop LLVM from unrolling (and bloating) it further
        f.do(f"br label %{tag}, !llvm.loop !{_loop_id(rows, tag, direct)}")
        f.label(f"{tag}.done")
        return acc

    # A tile of few rows has too few accumulators to hide the FMA latency (FMA_CHAINS independent
    # chains keep both pipes busy): it then keeps several sets, alternating between them per k,
    # summed after the loop. Full tiles are unrolled; other edge tiles are rare: kept small.
    sets = 1 if rows * nv >= FMA_CHAINS else -(-FMA_CHAINS // (rows * nv))
    U = cfg.unroll if rows == cfg.mr else sets
    # the tile of C is read (or written) after the k loop: fetch its lines while the loop runs
    for i in range(rows):
        for off in sorted({0, cfg.nr - 1}):
            f.do(f"call void @llvm.prefetch.p0(ptr {f.gep(ty, '%c', i * s.N + off)}, i32 1, i32 3, i32 1)")
    if s.extra:     # and so are the tiles of the matrices the epilogue reads or writes
        prog = s.epi.get((rows, min(s.N, cfg.nr))) or s.epi.get((rows, s.N % cfg.nr))
        with f.if_("%last"):
            for x in prog or ():
                if x.op in ("load", "store") and x.arg[0] != 0 and _column_step(x.arg[1]):
                    for i in range(rows):
                        for off in sorted({0, cfg.nr - 1}):
                            ptr = f.gep(ty, f"%e{x.arg[0] - 1}", _tile_index(f, x.arg[1], i, off))
                            f.do(f"call void @llvm.prefetch.p0(ptr {ptr}, i32 {int(x.op == 'store')}, i32 3, i32 1)")
    zero = [["zeroinitializer"] * nv for _ in range(rows)]
    if U > 1:
        f.do(f"%kmain = and i64 %kc, {-U}")
        parts = kloop("main", "0", [zero] * sets, "%kmain", U)
        total = parts[0]
        for other in parts[1:]:
            total = [[f(f"fadd {v} {x}, {y}") for x, y in zip(rx, ry)] for rx, ry in zip(total, other)]
        racc = kloop("rem", "%main.k", [total], "%kc", 1)[0]
    else:
        racc = kloop("rem", "0", [zero], "%kc", 1)[0]
    # write the tile: full or column-masked, assigning or accumulating
    f.do(f"br i1 {f(f'icmp eq i64 %cols, {cfg.nr}')}, label %full, label %part")
    sfx = f"v{V}{'f32' if ty == 'float' else 'f64'}"
    for kind in ("full", "part"):
        f.label(kind)
        masks = []
        if kind == "part":
            cs = f(f"shufflevector <{V} x i64> {f(f'insertelement <{V} x i64> poison, i64 %cols, i64 0')}, "
                   f"<{V} x i64> poison, <{V} x i32> zeroinitializer")
            for j in range(nv):
                lanes = ", ".join(f"i64 {j * V + l}" for l in range(V))
                masks.append(f(f"icmp slt <{V} x i64> <{lanes}>, {cs}"))
        f.do(f"br i1 %acc, label %{kind}.acc, label %{kind}.set")
        for mode in ("acc", "set"):
            f.label(f"{kind}.{mode}")
            vals = {}
            for i in range(rows):
                for j in range(nv):
                    p = f.gep(ty, "%c", i * s.N + j * V)
                    val = racc[i][j]
                    if mode == "acc":
                        old = f.load(v, p, s.isz) if kind == "full" else f(
                            f"call {v} @llvm.masked.load.{sfx}.p0(ptr align {s.isz} {p}, <{V} x i1> {masks[j]}, "
                            f"{v} zeroinitializer)")
                        val = f(f"fadd {v} {old}, {val}")
                    vals[i, j] = p, val

            def store_c():
                for (i, j), (p, val) in vals.items():
                    if kind == "full":
                        f.store(v, val, p, s.isz)
                    else:
                        f.do(f"call void @llvm.masked.store.{sfx}.p0({v} {val}, ptr align {s.isz} {p}, <{V} x i1> {masks[j]})")
            if s.extra:     # after the last k block: the epilogue, from the registers
                cols = min(s.N, cfg.nr) if kind == "full" else s.N % cfg.nr
                prog = s.epi.get((rows, cols)) if cols == cfg.nr or kind == "part" else None
                f.do(f"br i1 %last, label %{kind}.{mode}.epi, label %{kind}.{mode}.c")
                f.label(f"{kind}.{mode}.epi")
                if prog is None:        # no tile of this shape exists
                    f.do("unreachable")
                else:
                    for (i, j), (_, val) in vals.items():
                        _epilogue(f, s, prog, i, j, val, masks[j] if kind == "part" else None, decls)
                    f.do("ret void")
                f.label(f"{kind}.{mode}.c")
            store_c()
            f.do("ret void")
    return f.render()


def _epilogue_params(s: _Spec) -> list:
    """The micro-kernel's extra arguments with an epilogue: whether this is the last k block, the
    tile's batch index, first row and first column, and the epilogue's buffers."""
    if not s.extra:
        return []
    return [("i1", "last"), ("i64", "t"), ("i64", "m"), ("i64", "n")] + _extra_params(s)


def _column_step(e) -> int:
    """How far an epilogue index moves per column of the tile (1, or 0 for one value per row)."""
    return dict(e.terms).get(_var("ec"), 0)


def _var(name: str):
    from ..compiler.symbolic import Var
    return Var(name, 0, 0)   # variables compare by name


def _tile_index(f: Function, e, row: int, col: int) -> str:
    """An epilogue index at a tile's row `row` and column `col`, in the micro-kernel's %t, %m, %n."""
    from ..compiler.symbolic import FloorDiv, Var, const
    at = {"et": "%t", "em0": "%m", "en0": "%n"}

    def emit(e) -> str:
        acc = str(e.const)
        for a, c in e.terms:
            x = at[a.name] if isinstance(a, Var) else f(f"{'udiv' if isinstance(a, FloorDiv) else 'urem'} i64 {emit(a.x)}, {a.c}")
            acc = f.add(acc, f.mul(x, c))
        return acc
    return emit(e.substitute({_var("er"): const(row), _var("ec"): const(col)}))


class _ALU:
    """What the code generator's ALU table needs from a renderer, on a Function."""

    def __init__(self, f: Function, decls: dict):
        self.f, self.decls = f, decls

    def emit(self, instr: str) -> str:
        return self.f(instr)

    def call(self, fn: str, ret: str, argtys: list, args) -> str:
        self.decls[fn] = f"declare {ret} @{fn}({', '.join(argtys)})"
        return f"call {ret} @{fn}(" + ", ".join(f"{t} {a}" for t, a in zip(argtys, args)) + ")"


def _epilogue(f: Function, s: _Spec, prog: list, i: int, j: int, val: str, mask: str | None, decls: dict) -> None:
    """The element program on accumulator vector (row i, columns j*VEC ...) of the tile at (%t, %m,
    %n) whose C value is `val`: loads along the columns become vector loads (masked at the ragged
    edge), loads of one value per row a broadcast, ALU ops the same instructions on vectors."""
    from ..compiler.codegen.llvm import ALU, ctype, literal
    V, vty = s.cfg.vec, s.vty
    sfx = f"v{V}{'f32' if s.ty == 'float' else 'f64'}"
    alu = _ALU(f, decls)

    def vector_type(dt):
        return f"<{V} x {ctype(dt)}>"
    names = {}
    for v in prog:
        if v.op == "const":
            names[v.id] = f"splat ({ctype(v.dtype)} {literal(v.arg, v.dtype)})"
        elif v.op in ("load", "store"):
            p, e = v.arg[0], v.arg[1]
            if v.op == "load" and p == 0:
                names[v.id] = val
                continue
            step = _column_step(e)
            ptr = f.gep(s.ty, f"%e{p - 1}", _tile_index(f, e, i, j * V))
            if v.op == "store":
                x = names[v.srcs[0].id]
                if mask is None:
                    f.store(vty, x, ptr, s.isz)
                else:
                    f.do(f"call void @llvm.masked.store.{sfx}.p0({vty} {x}, ptr align {s.isz} {ptr}, <{V} x i1> {mask})")
            elif step == 0:     # one value for the whole row: broadcast
                x = f.load(s.ty, ptr, s.isz)
                names[v.id] = f(f"shufflevector {vty} {f(f'insertelement {vty} poison, {s.ty} {x}, i64 0')}, "
                                f"{vty} poison, <{V} x i32> zeroinitializer")
            elif mask is None:
                names[v.id] = f.load(vty, ptr, s.isz)
            else:
                names[v.id] = f(f"call {vty} @llvm.masked.load.{sfx}.p0(ptr align {s.isz} {ptr}, <{V} x i1> {mask}, "
                                f"{vty} zeroinitializer)")
        else:
            dt = v.srcs[-1].dtype if v.op != "where" else v.dtype
            res = ALU[v.op](alu, dt, vector_type(dt), *(names[x.id] for x in v.srcs))
            names[v.id] = res if res.startswith("%") or " " not in res else f(res)


def _block(s: _Spec) -> str:
    """@<sym>.blk(c, a, b, pa, pb, tab, t, m0, m1, n0, n1): C[t][m0:m1, n0:n1] with packing buffers
    pa, pb and scratch `tab` for the offset tables of roles that are not affine (filled per block,
    so packing costs a table load, not a division, per element)."""
    cfg, ty = s.cfg, s.ty
    _, sam, sak = s.sa
    _, sbk, sbn = s.sb
    f = Function(f"{s.sym}.blk", "void", [("ptr noalias", "c"), ("ptr", "a"), ("ptr", "b"), ("ptr noalias", "pa"),
                                         ("ptr noalias", "pb"), ("ptr noalias", "tab"), ("i64", "t"), ("i64", "m0"), ("i64", "m1"),
                                         ("i64", "n0"), ("i64", "n1")] + _extra_params(s), "noinline #0")
    mt = "%tab"
    kta = f.gep("i64", mt, cfg.mc)
    ktb = f.gep("i64", kta, s.kce)
    ntb = f.gep("i64", ktb, s.kce)
    kfa = f.gep("i64", ntb, cfg.nc)
    kfb = f.gep("i64", kfa, s.kce // cfg.vec + 1)

    def origin(i, stride):   # affine roles move the block's pointer; tables hold absolute offsets
        return f.mul(i, stride) if _affine(stride) else "0"
    a = f.gep(ty, "%a", f.add(s.aoff, _offset(f, "%t", s.sa[0])))
    b = f.gep(ty, "%b", f.add(s.boff, _offset(f, "%t", s.sb[0])))
    c = f.gep(ty, "%c", f.mul("%t", s.M * s.N))
    with f.loop("%n0", "%n1", cfg.nc) as jc:
        nc = f.min(cfg.nc, f.sub("%n1", jc))
        if not _affine(sbn):
            _fill(f, ntb, jc, nc, sbn)
        with f.loop("0", s.K, s.kce) as pc:
            kc = f.min(s.kce, f.sub(s.K, pc))
            for tab, flags, stride in ((kta, kfa, sak), (ktb, kfb, sbk)):
                if not _affine(stride):
                    _fill(f, tab, pc, kc, stride)
                    if _runs(stride, cfg.vec):
                        _fill_runs(f, flags, tab, kc, cfg.vec)
            bk = f.gep(ty, b, f.add(origin(pc, sbk), origin(jc, sbn)))
            if s.b_direct:              # pack only the ragged last sliver
                nfull = f.mul(f(f"udiv i64 {nc}, {cfg.nr}"), cfg.nr)
                with f.if_(f(f"icmp ult i64 {nfull}, {nc}")):
                    edge = f.gep(ty, bk, nfull)
                    f.do(f"call void @{s.sym}.packb(ptr %pb, ptr {edge}, i64 {kc}, i64 {f.sub(nc, nfull)}, "
                         f"ptr {ktb}, ptr {ntb}, ptr {kfb})")
            else:
                f.do(f"call void @{s.sym}.packb(ptr %pb, ptr {bk}, i64 {kc}, i64 {nc}, ptr {ktb}, ptr {ntb}, ptr {kfb})")
            acc = f(f"icmp ne i64 {pc}, 0")
            last = f(f"icmp eq i64 {f.add(pc, kc)}, {s.K}")
            with f.loop("%m0", "%m1", cfg.mc) as ic:
                mc = f.min(cfg.mc, f.sub("%m1", ic))
                if not _affine(sam):
                    _fill(f, mt, ic, mc, sam)
                ablock = f.gep(ty, a, f.add(origin(ic, sam), origin(pc, sak)))
                if s.a_direct:
                    apanel = ablock
                else:
                    apanel = "%pa"
                    f.do(f"call void @{s.sym}.packa(ptr %pa, ptr {ablock}, i64 {mc}, i64 {kc}, ptr {mt}, ptr {kta}, ptr {kfa})")
                crow = f.gep(ty, c, f.add(jc, f.mul(ic, s.N)))
                astep = sam if s.a_direct else kc if s.a_kmajor else s.kce   # between panel rows

                def tile(rows, variants, suffix, ap, bp, cp, cols, m, n):
                    """Call the micro-kernel variant for `rows` (one of `variants`, the last the default)."""
                    args = f"i64 {kc}, ptr {ap}, ptr {bp}, ptr {cp}, i64 {cols}, i1 {acc}"
                    if s.extra:
                        args += f", i1 {last}, i64 %t, i64 {m}, i64 {n}" + "".join(f", ptr %e{i}" for i in range(s.extra))
                    if len(variants) == 1:
                        f.do(f"call void @{s.sym}.uk{variants[0]}{suffix}({args})")
                        return
                    labels = [f.fresh("uk") for _ in variants]
                    join = f.fresh("ukjoin")
                    cases = " ".join(f"i64 {r}, label %{lab}" for r, lab in zip(variants[:-1], labels))
                    f.do(f"switch i64 {rows}, label %{labels[-1]} [ {cases} ]")
                    for r, lab in zip(variants, labels):
                        f.label(lab)
                        f.do(f"call void @{s.sym}.uk{r}{suffix}({args})")
                        f.do(f"br label %{join}")
                    f.label(join)
                if s.b_direct:          # B read in place by each panel in turn (a ragged edge packed)
                    with f.loop("0", nc, cfg.nr) as jr:
                        cols = f.min(cfg.nr, f.sub(nc, jr))
                        inplace = f(f"icmp ult i64 {jr}, {nfull}")
                        bp = f(f"select i1 {inplace}, ptr {f.gep(ty, bk, jr)}, ptr %pb")
                        with f.loop("0", mc, cfg.mr) as ir:
                            rows = f.min(cfg.mr, f.sub(mc, ir))
                            ap, cp = f.gep(ty, apanel, f.mul(ir, astep)), f.gep(ty, crow, f.add(jr, f.mul(ir, s.N)))
                            m, n = f.add(ic, ir), f.add(jc, jr)
                            with f.if_(inplace):
                                tile(rows, s.row_counts, "d", ap, bp, cp, cols, m, n)
                            with f.if_(f(f"xor i1 {inplace}, true")):
                                tile(rows, s.row_counts, "", ap, bp, cp, cols, m, n)
                else:
                    with f.loop("0", nc, cfg.nr) as jr:
                        cols = f.min(cfg.nr, f.sub(nc, jr))
                        bp = f.gep(ty, "%pb", f.mul(jr, kc))
                        cj = f.gep(ty, crow, jr)
                        with f.loop("0", mc, cfg.mr) as ir:
                            rows = f.min(cfg.mr, f.sub(mc, ir))
                            ap = f.gep(ty, apanel, f.mul(ir, astep))
                            cp = f.gep(ty, cj, f.mul(ir, s.N))
                            tile(rows, s.row_counts, "", ap, bp, cp, cols, f.add(ic, ir), f.add(jc, jr))
    f.do("ret void")
    return f.render()


def _extra_params(s: _Spec) -> list:
    """The epilogue's buffers (its inputs, then its outputs), after c, a and b."""
    return [("ptr noalias", f"e{i}") for i in range(s.extra)]


def _driver(s: _Spec) -> str:
    """The entry point: thread tid's units of work -> @<sym>.blk calls, with one malloc'd pair of
    packing buffers per call (too big for the stack: the B block is KC x NC)."""
    cfg, ty = s.cfg, s.ty
    f = Function(s.sym, "void", [("ptr noalias", "c"), ("ptr noalias", "a"), ("ptr noalias", "b")] + _extra_params(s)
                 + [("i64", "tid"), ("i64", "nt")], "#0", linkage="")
    total = s.batch * s.M * s.N
    if total and not s.K:               # empty sum: zero-fill this thread's share of C
        lo = f(f"udiv i64 {f.mul(total, '%tid')}, %nt")
        hi = f(f"udiv i64 {f.mul(total, f.add('%tid', 1))}, %nt")
        start, nbytes = f.gep(ty, "%c", lo), f.mul(f.sub(hi, lo), s.isz)
        f.do(f"call void @llvm.memset.p0.i64(ptr {start}, i8 0, i64 {nbytes}, i1 false)")
    elif total:
        pm, pn = -(-s.M // cfg.mr), -(-s.N // cfg.nr)
        # Split rows when the batch alone feeds every thread; else split the longer of M and N
        # (each thread packs all of the other operand's block, so the shorter side is duplicated),
        # unless it has fewer panels than threads.
        if s.M >= s.N:
            enough = f(f"icmp uge i64 {pm}, %nt")
        else:
            enough = f(f"icmp ult i64 {pn}, %nt")
        by_rows = f(f"or i1 {f(f'icmp uge i64 {s.batch}, %nt')}, {enough}")
        per = f(f"select i1 {by_rows}, i64 {pm}, i64 {pn}")
        units = f.mul(per, s.batch)
        u0 = f(f"udiv i64 {f.mul(units, '%tid')}, %nt")
        u1 = f(f"udiv i64 {f.mul(units, f.add('%tid', 1))}, %nt")
        with f.if_(f(f"icmp ult i64 {u0}, {u1}")):
            mce = min(cfg.mc, -(-s.M // cfg.mr) * cfg.mr)
            nce = min(cfg.nc, pn * cfg.nr)
            a_bytes = (mce * s.kce * s.isz + 63) // 64 * 64
            b_bytes = (nce * s.kce * s.isz + 63) // 64 * 64
            raw = f(f"call ptr @malloc(i64 {a_bytes + b_bytes + s.tab_bytes + 64})")
            misalign = f(f"and i64 {f(f'ptrtoint ptr {raw} to i64')}, 63")
            pa = f.gep("i8", raw, f.sub(64, misalign))    # 64-byte aligned: aligned vector access
            pb = f.gep("i8", pa, a_bytes)
            tab = f.gep("i8", pb, b_bytes)
            t0, t1 = f(f"udiv i64 {u0}, {per}"), f(f"udiv i64 {f.add(u1, f.sub(per, 1))}, {per}")
            with f.loop(t0, t1) as t:
                first = f.mul(t, per)
                lo = f.max(f.sub(u0, first), 0)
                hi = f.min(f.sub(u1, first), per)
                m0 = f(f"select i1 {by_rows}, i64 {f.mul(lo, cfg.mr)}, i64 0")
                m1 = f(f"select i1 {by_rows}, i64 {f.min(f.mul(hi, cfg.mr), s.M)}, i64 {s.M}")
                n0 = f(f"select i1 {by_rows}, i64 0, i64 {f.mul(lo, cfg.nr)}")
                n1 = f(f"select i1 {by_rows}, i64 {s.N}, i64 {f.min(f.mul(hi, cfg.nr), s.N)}")
                f.do(f"call void @{s.sym}.blk(ptr %c, ptr %a, ptr %b, ptr {pa}, ptr {pb}, ptr {tab}, i64 {t}, "
                     f"i64 {m0}, i64 {m1}, i64 {n0}, i64 {n1}{''.join(f', ptr %e{i}' for i in range(s.extra))})")
            f.do(f"call void @free(ptr {raw})")
    f.do("ret void")
    return f.render()


# ---- autotuning ----------------------------------------------------------------------------------

_tuned: dict = {}


def tuned_config(dtype: D.DType, M: int, N: int, K: int) -> Config:
    """The autotuned config for this shape class if `autotune` ran for it in this process, else
    the default for the host."""
    return _tuned.get(_shape_class(dtype, M, N, K)) or default_config(dtype)


def _shape_class(dtype: D.DType, M: int, N: int, K: int) -> tuple:
    def size(x):  # small / medium / large, against the blocking
        return 0 if x < 64 else 1 if x < 512 else 2
    return dtype.name, host_isa(), size(M), size(N), size(K)


def candidates(dtype: D.DType) -> list[Config]:
    """A few blockings around the default, trading the depth of a k block (KC: fewer passes over C)
    against the A block's (MC x KC) share of L2."""
    base = default_config(dtype)
    out = [base]
    for kc, mc in ((base.kc * 3 // 2, base.mc // 2), (base.kc * 3 // 2, base.mc), (base.kc // 2, base.mc * 2),
                   (base.kc, base.mc * 2)):
        cfg = replace(base, kc=kc, mc=max(base.mr, mc // base.mr * base.mr))
        if cfg not in out:
            out.append(cfg)
    return out


def autotune(dtype: D.DType, M: int, N: int, K: int, configs: list[Config] | None = None,
             repeat: int = 3) -> Config:
    """Time `configs` (default: `candidates`) on this shape, capped at 512 per dimension so it
    stays fast, and remember the fastest for the shape class in this process (render_gemm then
    uses it). Returns the chosen config.

    >>> cfg = autotune(D.float32, 256, 256, 256)   # doctest: +SKIP
    """
    import time

    import numpy as np

    from ..compiler.runtime import cpu
    key = _shape_class(dtype, M, N, K)
    if key in _tuned:
        return _tuned[key]
    M, N, K = (max(1, min(x, 512)) for x in (M, N, K))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(dtype.np)
    b = rng.standard_normal((K, N)).astype(dtype.np)
    c = np.empty((M, N), dtype.np)
    best, best_t = None, float("inf")
    for cfg in configs or candidates(dtype):
        fn = compile_gemm(dtype, 1, M, N, K, (0, K, 1), (0, N, 1), config=cfg)
        ptrs = [x.ctypes.data for x in (c, a, b)]
        cpu.launch(fn, ptrs, gemm_flops(1, M, N, K))
        t = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            cpu.launch(fn, ptrs, gemm_flops(1, M, N, K))
            t = min(t, time.perf_counter() - t0)
        if t < best_t:
            best, best_t = cfg, t
    _tuned[key] = best
    return best


def compile_gemm(dtype: D.DType, batch: int, M: int, N: int, K: int, a_strides, b_strides, a_offset=0,
                 b_offset=0, config: Config | None = None):
    """render_gemm compiled and loaded through the CPU runtime: a ctypes function (c, a, b, tid, nt)."""
    import hashlib

    from ..compiler.runtime import cpu
    probe = render_gemm("GEMM", dtype, batch, M, N, K, a_strides, b_strides, a_offset, b_offset, config)
    sym = "ember_gemm_" + hashlib.sha256(probe.encode()).hexdigest()[:16]
    src = render_gemm(sym, dtype, batch, M, N, K, a_strides, b_strides, a_offset, b_offset, config)
    comp = cpu.compiler()
    obj, _ = comp.object_code(src)
    return comp.load(obj, sym, 3)
