"""Packing for the generated GEMM (kernels/gemm.py): the routines that copy blocks of A and B
into the micro-kernel's panels, reading each operand through its strides or, for roles that are not
affine (a convolution's windows), through per-block offset tables.

A role's stride is an int, or modes ((size, stride), ...) innermost first: offset(i) =
Σ stride_j * digit_j(i) in the mixed radix of the sizes. Each block fills a table of its offsets
(`_fill`), so the packing loops do a table load, not a division, per element; runs of offsets that
turn out contiguous are copied with vector loads (`_fill_runs` flags groups of VEC k's).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .llvm_ir import Function

if TYPE_CHECKING:
    from .gemm import _Spec


def _affine(stride) -> bool:
    """Whether a role's offset is a plain stride (else it is a tuple of (size, stride) modes)."""
    return isinstance(stride, int)


def _offset(f: Function, i: str, stride) -> str:
    """The element offset of index i in a role: i * stride, or Σ stride_j * digit_j(i) over modes."""
    if _affine(stride):
        return f.mul(i, stride)
    total, inner = "0", 1
    for j, (cnt, st) in enumerate(stride):
        d = i if inner == 1 else f(f"udiv i64 {i}, {inner}")
        if j + 1 < len(stride):
            d = f(f"urem i64 {d}, {cnt}")
        total = f.add(total, f.mul(d, st))
        inner *= cnt
    return total


def _fill(f: Function, tab: str, start: str, count: str, stride) -> None:
    """tab[i] = offset(start + i) for i < count: a non-affine role's offsets for one block, so the
    packing loops read the operand through a table instead of dividing per element."""
    with f.loop("0", count) as i:
        f.store("i64", _offset(f, f.add(start, i), stride), f.gep("i64", tab, i), 8)


def _runs(stride, width: int) -> bool:
    """Whether `width` consecutive indices of a role can be contiguous in memory: a unit stride, or
    modes whose innermost is (size >= width, stride 1) (e.g. the columns of a window row)."""
    if _affine(stride):
        return stride == 1
    return stride[0][1] == 1 and stride[0][0] >= width


def _fill_runs(f: Function, flags: str, tab: str, count: str, V: int) -> None:
    """flags[q] = 1 when tab[qV .. qV+V-1] are consecutive (one vector load covers them)."""
    with f.loop("0", f(f"udiv i64 {count}, {V}")) as q:
        first = f.mul(q, V)
        base = f.load("i64", f.gep("i64", tab, first), 8)
        ok = "true"
        for l in range(1, V):
            x = f.load("i64", f.gep("i64", tab, f.add(first, l)), 8)
            ok = f(f"and i1 {ok}, {f(f'icmp eq i64 {x}, {f.add(base, l)}')}")
        f.store("i64", f(f"zext i1 {ok} to i64"), f.gep("i64", flags, q), 8)


def _if_else(f: Function, cond: str, then, other) -> None:
    with f.if_(cond):
        then()
    with f.if_(f(f"xor i1 {cond}, true")):
        other()


def _lookup(f: Function, tab: str, i: str, stride) -> str:
    """Offset of index i inside the current block: i * stride, or the block's table entry."""
    return f.mul(i, stride) if _affine(stride) else f.load("i64", f.gep("i64", tab, i), 8)


def _pack_a(s: _Spec) -> str:
    """@<sym>.packa(dst, src, mc, kc, mt, kt): the mc x kc block of A at src into MR-row slivers
    (mt, kt: the block's row and k offset tables, for roles that are not affine)."""
    cfg, ty = s.cfg, s.ty
    _, sam, sak = s.sa
    f = Function(f"{s.sym}.packa", "void", [("ptr noalias", "dst"), ("ptr noalias", "src"), ("i64", "mc"),
                                           ("i64", "kc"), ("ptr noalias", "mt"), ("ptr noalias", "kt"),
                                           ("ptr noalias", "kf")], 'noinline "no-builtins" #0')   # row copies, not memcpy calls
    V, v = cfg.vec, s.vty
    if s.a_kmajor:  # sliver p: [k][MR]; reads A^T along its contiguous rows
        MR = cfg.mr
        W = -(-MR // V) * V     # elements a vector copy of one sliver row moves (>= MR)

        def copy(i0, kk, k, i):
            x = f.load(ty, f.gep(ty, "%src", f.add(f.add(i0, i), kk)), s.isz)
            f.store(ty, x, f.gep(ty, "%dst", f.add(f.mul(i0, "%kc"), f.add(f.mul(k, MR), i))), s.isz)
        full = f(f"udiv i64 %mc, {MR}")
        # Slivers whose W-element reads stay inside the block's rows are copied by vector copies of
        # W elements, the extra W - MR lanes landing on slots written later: the next k's of the
        # same sliver, or the next sliver's first k. Groups of G slivers go k by k, so each k's
        # row of A is read whole and only G panels are written at once (their strides may map
        # to few cache sets); a group's last k is then copied exactly (its spill would overwrite
        # the next sliver's first k, already written). The slivers near the block's end, whose
        # reads would leave it, are copied element by element.
        def vcopy(p, k, kk):
            i0 = f.mul(p, MR)
            for j in range(0, W, V):
                x = f.load(v, f.gep(ty, "%src", f.add(f.add(i0, kk), j)), s.isz)
                f.store(v, x, f.gep(ty, "%dst", f.add(f.mul(i0, "%kc"), f.add(f.mul(k, MR), j))), s.isz)
        G = 8
        nvec = f(f"sdiv i64 {f.max(f.sub('%mc', W - MR), 0)}, {MR}")
        with f.loop("0", nvec, G) as p0:
            p1 = f.min(f.add(p0, G), nvec)
            with f.loop("0", f.sub("%kc", 1)) as k:
                kk = _lookup(f, "%kt", k, sak)
                with f.loop(p0, p1) as p:
                    vcopy(p, k, kk)
            k = f.sub("%kc", 1)
            kk = _lookup(f, "%kt", k, sak)
            with f.loop(p0, p1) as p:
                for i in range(MR):
                    copy(f.mul(p, MR), kk, k, i)
        with f.loop(nvec, full) as p:
            with f.loop("0", "%kc") as k:
                kk = _lookup(f, "%kt", k, sak)
                for i in range(MR):
                    copy(f.mul(p, MR), kk, k, i)
        with f.loop("0", "%kc") as k:       # the ragged last sliver
            kk = _lookup(f, "%kt", k, sak)
            with f.loop("0", f.sub("%mc", f.mul(full, MR))) as i:
                copy(f.mul(full, MR), kk, k, i)
    else:           # row i at i*KCe: vector copies of each row's contiguous runs of k

        def scalar(src, dst, k0, k1):
            with f.loop(k0, k1) as k:
                x = f.load(ty, f.gep(ty, src, _lookup(f, "%kt", k, sak)), s.isz)
                f.store(ty, x, f.gep(ty, dst, k), s.isz)
        with f.loop("0", "%mc") as i:
            src, dst = f.gep(ty, "%src", _lookup(f, "%mt", i, sam)), f.gep(ty, "%dst", f.mul(i, s.kce))
            if not _runs(sak, V):
                scalar(src, dst, "0", "%kc")
            else:           # unit stride, or window rows: the k runs the block's flags mark
                groups = f(f"udiv i64 %kc, {V}")
                with f.loop("0", groups) as q:
                    k0 = f.mul(q, V)

                    def vector(k0=k0):
                        x = f.load(v, f.gep(ty, src, _lookup(f, "%kt", k0, sak)), s.isz)
                        f.store(v, x, f.gep(ty, dst, k0), s.isz)
                    if _affine(sak):
                        vector()
                    else:
                        flag = f(f"icmp ne i64 {f.load('i64', f.gep('i64', '%kf', q), 8)}, 0")
                        _if_else(f, flag, vector, lambda k0=k0: scalar(src, dst, k0, f.add(k0, V)))
                scalar(src, dst, f.mul(groups, V), "%kc")
    f.do("ret void")
    return f.render()


def _transpose(f: Function, rows: list[str], vty: str, V: int) -> list[str]:
    """Columns of the V x V matrix whose rows are `rows`: log2(V) rounds of interleaving pairs
    (perfect-shuffle transpose); for 8 floats, the unpck/shufps/vperm2f128 network."""
    def shuf(x, y, mask):
        return f(f"shufflevector {vty} {x}, {vty} {y}, <{V} x i32> <{', '.join(f'i32 {m}' for m in mask)}>")
    if V == 8:
        lo = [0, 8, 1, 9, 4, 12, 5, 13]
        t = [shuf(rows[i & ~1], rows[i | 1], [m + (2 if i & 1 else 0) for m in lo]) for i in range(8)]
        u = []
        for g in (0, 4):
            for i in range(4):
                x, y = t[g + (i >> 1)], t[g + 2 + (i >> 1)]
                u.append(shuf(x, y, [m + (2 if i & 1 else 0) for m in (0, 1, 8, 9, 4, 5, 12, 13)]))
        # u = [u0 u1 u2 u3 | u4 u5 u6 u7]: rows 0-3 and 4-7 of columns (q, q+4) for q = 0..3
        return [shuf(u[q & 3], u[4 + (q & 3)], [0, 1, 2, 3, 8, 9, 10, 11] if q < 4 else [4, 5, 6, 7, 12, 13, 14, 15])
                for q in range(8)]
    half = V // 2
    for _ in range(V.bit_length() - 1):
        nxt = []
        for i in range(half):
            x, y = rows[i], rows[i + half]
            nxt.append(shuf(x, y, [m for l in range(half) for m in (l, V + l)]))
            nxt.append(shuf(x, y, [m for l in range(half, V) for m in (l, V + l)]))
        rows = nxt
    return rows


def _pack_b(s: _Spec) -> str:
    """@<sym>.packb(dst, src, kc, nc, kt, nt, kf): the kc x nc block of B at src into NR-column
    slivers [k][NR] of kc*NR elements, the last one zero-padded (kt, nt: the block's k and column
    offset tables for roles that are not affine; kf: which groups of VEC k's are contiguous).

    A sliver is copied the cheapest way its layout allows: vector copies when its columns are
    contiguous (row-major B, or window columns within one row), two masked vector loads per vector
    when they are two runs (window columns across a row boundary), VEC x VEC register transposes
    when runs of k are contiguous (B^T, or the windows of a weight gradient), else element by
    element."""
    cfg, ty, v, V = s.cfg, s.ty, s.vty, s.cfg.vec
    _, sbk, sbn = s.sb
    nr = cfg.nr
    f = Function(f"{s.sym}.packb", "void", [("ptr noalias", "dst"), ("ptr noalias", "src"), ("i64", "kc"),
                                           ("i64", "nc"), ("ptr noalias", "kt"), ("ptr noalias", "nt"),
                                           ("ptr noalias", "kf")], "noinline #0")

    def vector_copy(src, dst):            # the sliver's columns are contiguous in B
        with f.loop("0", "%kc") as k:
            kk = _lookup(f, "%kt", k, sbk)
            for j in range(0, nr, V):
                x = f.load(v, f.gep(ty, src, f.add(kk, j)), s.isz)
                f.store(v, x, f.gep(ty, dst, f.add(f.mul(k, nr), j)), V * s.isz)

    def scalar_copy(src, dst, cols, k0, k1):
        with f.loop(k0, k1) as k:
            kk = _lookup(f, "%kt", k, sbk)
            for j in range(nr):
                x = f.load(ty, f.gep(ty, src, f.add(kk, cols[j])), s.isz)
                f.store(ty, x, f.gep(ty, dst, f.add(f.mul(k, nr), j)), s.isz)

    def transposed(src, dst, cols):       # runs of V k's: V x V register transposes
        def block(k0, kk, j, q):          # columns j..j+V, k's k0..k0+V*q: q transposes per column group
            rows = [[f.load(v, f.gep(ty, src, f.add(f.add(kk, h * V), cols[j + r])), s.isz) for h in range(q)]
                    for r in range(V)]
            for h in range(q):
                for qq, col in enumerate(_transpose(f, [rows[r][h] for r in range(V)], v, V)):
                    f.store(v, col, f.gep(ty, dst, f.add(f.mul(f.add(k0, h * V + qq), nr), j)), V * s.isz)
        groups = f(f"udiv i64 %kc, {V}")
        if _affine(sbk):
            # Q groups of k per column read a whole cache line of it at once: with columns far apart
            # (B^T of an attention batch) a line would be evicted before its next group's turn
            Q = max(1, 64 // (V * s.isz))
            pairs = f(f"udiv i64 %kc, {Q * V}")
            for j in range(0, nr, V):
                with f.loop("0", pairs) as q:
                    k0 = f.mul(q, Q * V)
                    block(k0, k0, j, Q)
                with f.loop(f.mul(pairs, Q), groups) as q:
                    k0 = f.mul(q, V)
                    block(k0, k0, j, 1)
        else:
            with f.loop("0", groups) as q:
                k0 = f.mul(q, V)

                def vector(k0=k0):
                    kk = _lookup(f, "%kt", k0, sbk)
                    for j in range(0, nr, V):
                        block(k0, kk, j, 1)
                flag = f(f"icmp ne i64 {f.load('i64', f.gep('i64', '%kf', q), 8)}, 0")
                _if_else(f, flag, vector, lambda k0=k0: scalar_copy(src, dst, cols, k0, f.add(k0, V)))
        scalar_copy(src, dst, cols, f.mul(groups, V), "%kc")   # the k tail

    def two_runs(dst, cols, at):          # columns [0, at) and [at, NR) each contiguous
        first = f.gep(ty, "%src", cols[0])
        second = f.gep(ty, "%src", f.sub(cols[nr - 1], nr - 1))   # column j of the second run: second[j]
        sfx = f"v{V}{'f32' if ty == 'float' else 'f64'}"
        cut = f(f"shufflevector <{V} x i64> {f(f'insertelement <{V} x i64> poison, i64 {at}, i64 0')}, "
                f"<{V} x i64> poison, <{V} x i32> zeroinitializer")
        masks = [f(f"icmp slt <{V} x i64> <{', '.join(f'i64 {j + l}' for l in range(V))}>, {cut}")
                 for j in range(0, nr, V)]
        with f.loop("0", "%kc") as k:
            kk = _lookup(f, "%kt", k, sbk)
            for h, j in enumerate(range(0, nr, V)):
                m = masks[h]
                inv = f(f"xor <{V} x i1> {m}, <{', '.join(['i1 true'] * V)}>")
                lo = f(f"call {v} @llvm.masked.load.{sfx}.p0(ptr align {s.isz} {f.gep(ty, first, f.add(kk, j))}, "
                       f"<{V} x i1> {m}, {v} zeroinitializer)")
                hi = f(f"call {v} @llvm.masked.load.{sfx}.p0(ptr align {s.isz} {f.gep(ty, second, f.add(kk, j))}, "
                       f"<{V} x i1> {inv}, {v} zeroinitializer)")
                f.store(v, f(f"select <{V} x i1> {m}, {v} {lo}, {v} {hi}"), f.gep(ty, dst, f.add(f.mul(k, nr), j)),
                        V * s.isz)

    def any_columns(src, dst, cols):
        if _runs(sbk, V):
            transposed(src, dst, cols)
        else:
            scalar_copy(src, dst, cols, "0", "%kc")

    full = f("udiv i64 %nc, " + str(nr))
    with f.loop("0", full) as p:
        dst = f.gep(ty, "%dst", f.mul(f.mul(p, "%kc"), nr))
        if not _affine(sbn):              # window columns: contiguous unless the sliver wraps a row
            cols = [f.load("i64", f.gep("i64", "%nt", f.add(f.mul(p, nr), j)), 8) for j in range(nr)]
            if _runs(sbn, nr):
                # breaks between neighbouring columns: none (one run) or one (a row boundary)
                breaks, at = "0", "0"
                for j in range(1, nr):
                    brk = f(f"icmp ne i64 {cols[j]}, {f.add(cols[j - 1], 1)}")
                    breaks = f.add(breaks, f(f"zext i1 {brk} to i64"))
                    at = f(f"select i1 {brk}, i64 {j}, i64 {at}")
                _if_else(f, f(f"icmp eq i64 {breaks}, 0"), lambda: vector_copy(f.gep(ty, "%src", cols[0]), dst),
                         lambda: _if_else(f, f(f"icmp eq i64 {breaks}, 1"),
                                          lambda: two_runs(dst, cols, at),
                                          lambda: any_columns("%src", dst, cols)))
            else:
                any_columns("%src", dst, cols)
        else:
            src = f.gep(ty, "%src", f.mul(f.mul(p, nr), sbn))
            if sbn == 1:                  # rows of B are contiguous: vector copies
                vector_copy(src, dst)
            else:
                any_columns(src, dst, [str(j * sbn) for j in range(nr)])
    rem = f("urem i64 %nc, " + str(nr))
    with f.if_(f(f"icmp ne i64 {rem}, 0")):
        first = f.mul(full, nr)
        dst = f.gep(ty, "%dst", f.mul(first, "%kc"))
        src = f.gep(ty, "%src", f.mul(first, sbn)) if _affine(sbn) else "%src"
        if _runs(sbk, V):
            # the ragged sliver by register transposes too (a weight gradient with few columns,
            # e.g. a 3x3 kernel's 9, is nothing but this sliver): the lanes past the edge repeat
            # the last column, as the micro-kernel never stores them
            last = f.sub(rem, 1)
            transposed(src, dst, [f.mul(f.min(j, last), sbn) if _affine(sbn)
                                  else _lookup(f, "%nt", f.add(first, f.min(j, last)), sbn) for j in range(nr)])
        else:
            nbytes = f.mul("%kc", nr * s.isz)
            f.do(f"call void @llvm.memset.p0.i64(ptr align {V * s.isz} {dst}, i8 0, i64 {nbytes}, i1 false)")
            with f.loop("0", "%kc") as k:
                kk = _lookup(f, "%kt", k, sbk)
                with f.loop("0", rem) as j:
                    col = f.mul(j, sbn) if _affine(sbn) else _lookup(f, "%nt", f.add(first, j), sbn)
                    x = f.load(ty, f.gep(ty, src, f.add(kk, col)), s.isz)
                    f.store(ty, x, f.gep(ty, dst, f.add(f.mul(k, nr), j)), s.isz)
    f.do("ret void")
    return f.render()
