"""LLVM IR code generator: Kernel (kir.py) -> LLVM IR text.

The kernel's loop nest becomes plain counted loops over `i64` induction variables with `noalias`
buffer pointers, so LLVM's loop vectorizer handles the inner loops; float reductions carry the
`reassoc` flag so they vectorize too. Each nest's outermost loop takes the share of thread `tid`
of `nt` (the runtime launches one call per thread). Every elementwise primitive is rendered from the one table `ALU`.

Storage vs compute types: float16 and bfloat16 are widened to float on load and rounded on store;
bool is i8 in memory and i1 in registers.

Streaming stores: a contiguous store into an output far larger than the caches is staged through a
small stack tile and copied out with non-temporal (`vmovntps`) stores, which skip the read for
ownership of each line (a plain store first reads the line it writes): see `streams` and `tiles`.
"""
from __future__ import annotations

import platform
import struct

from .. import dtypes as D
from ..kir import Kernel, KVal, Loop
from ..symbolic import Expr, FloorDiv, Mod, Var
from . import llvm_math


def ctype(dt: D.DType) -> str:
    """LLVM type of a value in registers (compute type)."""
    if dt.kind == "b":
        return "i1"
    if dt.is_float:
        return {2: "float", 4: "float", 8: "double"}[dt.itemsize]
    return f"i{dt.bits}"


def stype(dt: D.DType) -> str:
    """LLVM type of a value in memory."""
    if dt is D.float16:
        return "half"
    if dt is D.bfloat16:
        return "i16"
    if dt is D.bool_:
        return "i8"
    return ctype(dt)


def fconst(value: float, ty: str) -> str:
    if ty == "float":
        value = struct.unpack("f", struct.pack("f", value))[0] if value == value and abs(value) != float("inf") else value
    return "0x%016X" % struct.unpack("<Q", struct.pack("<d", value))[0]


def literal(value, dt: D.DType) -> str:
    if dt.is_float:
        return fconst(float(value), ctype(dt))
    if dt is D.bool_:
        return "true" if value else "false"
    return str(int(value))


def _sfx(ty: str) -> str:
    """An intrinsic's type suffix: f32, i64, v8f32 (the table below renders scalars and vectors)."""
    if ty.startswith("<"):
        n, elem = ty[1:-1].split(" x ")
        return f"v{n}{_sfx(elem)}"
    return {"float": "f32", "double": "f64"}.get(ty, ty)


def _bool(ty: str) -> str:
    """The type of a comparison of `ty` values (i1, or a vector of i1 for a vector type)."""
    return f"<{ty[1:].split(' x ')[0]} x i1>" if ty.startswith("<") else "i1"


# ---- the per-primitive rendering table --------------------------------------------------------
# Each entry: fn(r, dtype, ty, a, b, ...) -> str, an instruction (or value) computing the result.
# `r` is the renderer (for helper instructions and intrinsic declarations).

def _float_or_int(fop, iop, uop=None):
    def f(r, dt, ty, *a):
        if dt.is_float:
            return f"{fop} {ty} " + ", ".join(a)
        return f"{(uop if uop and dt.kind in 'ub' else iop)} {ty} " + ", ".join(a)
    return f


def _intrinsic(name, argn=1):
    def f(r, dt, ty, *a):
        return r.call(f"llvm.{name}.{_sfx(ty)}", ty, [ty] * argn, a)
    return f


def _neg(r, dt, ty, a):
    return f"fneg {ty} {a}" if dt.is_float else f"sub {ty} 0, {a}"


def _add(r, dt, ty, a, b):
    if dt is D.bool_:
        return f"or {ty} {a}, {b}"
    return f"fadd {ty} {a}, {b}" if dt.is_float else f"add {ty} {a}, {b}"


def _mul(r, dt, ty, a, b):
    if dt is D.bool_:
        return f"and {ty} {a}, {b}"
    return f"fmul {ty} {a}, {b}" if dt.is_float else f"mul {ty} {a}, {b}"


def _minmax(which):
    def f(r, dt, ty, a, b):
        if dt.is_float:
            return r.call(f"llvm.{which}imum.{_sfx(ty)}", ty, [ty, ty], (a, b))
        if dt is D.bool_:
            return f"{'or' if which == 'max' else 'and'} {ty} {a}, {b}"
        return r.call(f"llvm.{'u' if dt.kind == 'u' else 's'}{which}.{ty}", ty, [ty, ty], (a, b))
    return f


def _intdiv(kind):
    """Integer division/remainder that never traps: x/0 -> 0 and MIN/-1 wraps."""
    def f(r, dt, ty, a, b):
        if dt.is_float:
            return f"frem {ty} {a}, {b}"
        zero = r.emit(f"icmp eq {ty} {b}, 0")
        safe = r.emit(f"select i1 {zero}, {ty} 1, {ty} {b}")
        if dt.kind == "i":
            m1 = r.emit(f"icmp eq {ty} {safe}, -1")
            safe = r.emit(f"select i1 {m1}, {ty} 1, {ty} {safe}")
            q = r.emit(f"{'sdiv' if kind == 'div' else 'srem'} {ty} {a}, {safe}")
            if kind == "div":
                q = r.emit(f"select i1 {m1}, {ty} {r.emit(f'sub {ty} 0, {a}')}, {ty} {q}")
        else:
            q = r.emit(f"{'udiv' if kind == 'div' else 'urem'} {ty} {a}, {safe}")
        return f"select i1 {zero}, {ty} 0, {ty} {q}"
    return f


def _libm(name32, name64):
    def f(r, dt, ty, *a):
        return r.call(name32 if ty == "float" else name64, ty, [ty] * len(a), a)
    return f


def _cmp(fpred, spred, upred):
    def f(r, dt, ty, a, b):
        if dt.is_float:
            return f"fcmp {fpred} {ty} {a}, {b}"
        return f"icmp {upred if dt.kind in 'ub' else spred} {ty} {a}, {b}"
    return f


ALU = {
    "neg": _neg, "add": _add, "mul": _mul,
    "div": lambda r, dt, ty, a, b: f"fdiv {ty} {a}, {b}",
    "idiv": _intdiv("div"), "mod": _intdiv("rem"),
    "max": _minmax("max"), "min": _minmax("min"),
    "pow": _intrinsic("pow", 2),
    "exp": llvm_math.exp, "log": llvm_math.log, "tanh": llvm_math.tanh,
    "sin": _intrinsic("sin"), "cos": _intrinsic("cos"), "sqrt": _intrinsic("sqrt"),
    "erf": _libm("erff", "erf"),
    "floor": _intrinsic("floor"), "ceil": _intrinsic("ceil"), "trunc": _intrinsic("trunc"),
    "round": _intrinsic("roundeven"),
    "cmplt": _cmp("olt", "slt", "ult"), "cmpeq": _cmp("oeq", "eq", "eq"),
    "and": _float_or_int("and", "and"), "or": _float_or_int("or", "or"), "xor": _float_or_int("xor", "xor"),
    "shl": lambda r, dt, ty, a, b: f"shl {ty} {a}, {b}",
    "shr": lambda r, dt, ty, a, b: f"{'lshr' if dt.kind == 'u' else 'ashr'} {ty} {a}, {b}",
    "where": lambda r, dt, ty, c, a, b: f"select {_bool(ty)} {c}, {ty} {a}, {ty} {b}",
}

REDUCE_COMBINE = {"sum": "add", "prod": "mul", "rmax": "max", "rmin": "min"}


# ---- streaming (non-temporal) stores ---------------------------------------------------------
# An output this large cannot stay in the caches (32 MiB L3 shared by all cores on the machine we
# tune for, 1 MiB L2 per core), so whoever reads it next reads it from memory anyway; writing it
# with plain stores costs a read of every line first (write-allocate): 5 units of traffic for a
# kernel that moves 4. Below it, a consumer kernel may still find the output in L3, and streaming
# would send it to memory. See docs/architecture.md for the measurements behind the number.
STREAM_MIN_BYTES = 16 << 20
TILE = 256           # elements staged per tile: every dtype's tile is whole cache lines (256..2048 B)
LINE = 64
STREAMING = platform.machine().lower() in ("x86_64", "amd64")   # sfence and vmovnt* are x86's


def _walk(stmts):
    for s in stmts:
        if isinstance(s, Loop):
            yield from _walk(s.body)
        else:
            yield s


def streams(k: Kernel) -> dict:
    """{id(loop): [store, ...]}: the stores to write with non-temporal stores. A store qualifies
    when its output is large (STREAM_MIN_BYTES), nothing in the kernel reads that output, it sits
    in an innermost loop of at least one tile, and its index is `var + rest` with `rest` a multiple
    of a cache line in every term, so a tile starting on a line boundary fills whole lines."""
    if not STREAMING:
        return {}
    loaded = {v.arg[0] for v in _walk(k.body) if v.op == "load"}
    out: dict = {}
    for lp in k.loops():
        if lp.reduce is not None or lp.size < TILE or any(isinstance(s, Loop) for s in lp.body):
            continue
        chosen = [s for s in lp.body if s.op == "store" and _streamable(k, s, lp.var, loaded)]
        if chosen:
            out[id(lp)] = chosen
    return out


def _streamable(k: Kernel, s: KVal, var: Var, loaded: set) -> bool:
    p, idx = s.arg
    prm = k.params[p]
    isz = prm.dtype.itemsize
    if prm.role != "out" or p in loaded or prm.numel * isz < STREAM_MIN_BYTES:
        return False
    per_line = LINE // isz
    if idx.const % per_line or dict(idx.terms).get(var) != 1:
        return False
    for atom, c in idx.terms:
        if atom == var:
            continue
        vs = {atom} if isinstance(atom, Var) else atom.x.vars()
        if var in vs or any(v in k.bindings for v in vs) or c % per_line:
            return False
    return True


class Renderer:
    def __init__(self, kernel: Kernel, symbol: str):
        self.k, self.symbol = kernel, symbol
        self.lines: list[str] = []
        self.entry: list[str] = []      # allocas, hoisted to the entry block
        self.decls: dict[str, str] = {}
        self.names: dict[int, str] = {}
        self.n = 0
        self.label = "entry"
        self.streams = streams(kernel)
        self.var_names: dict = {}      # loop variable -> the SSA value standing for it (tiles)
        self.redirect: dict = {}       # store id -> (tile pointer, index in tile) inside a tile

    # -- helpers used by the ALU table ----------------------------------------------------
    def tmp(self) -> str:
        self.n += 1
        return f"%t{self.n}"

    def emit(self, instr: str) -> str:
        t = self.tmp()
        self.lines.append(f"  {t} = {instr}")
        return t

    def call(self, fn: str, ret: str, argtys: list[str], args) -> str:
        self.decls[fn] = f"declare {ret} @{fn}({', '.join(argtys)})"
        return f"call {ret} @{fn}(" + ", ".join(f"{t} {a}" for t, a in zip(argtys, args)) + ")"

    # -- index expressions ----------------------------------------------------------------
    def expr(self, e: Expr) -> str:
        acc = str(e.const)
        first = e.const == 0
        for atom, c in e.terms:
            a = self.atom(atom)
            if c != 1:
                a = self.emit(f"mul nsw i64 {a}, {c}")
            acc = a if first else self.emit(f"add nsw i64 {acc}, {a}")
            first = False
        return acc

    def atom(self, a) -> str:
        if isinstance(a, Var):
            if a in self.var_names:
                return self.var_names[a]
            if a in self.k.bindings:
                return self.names[self.k.bindings[a].id]
            return f"%{a.name}"
        x = self.expr(a.x)
        if a.x.lo >= 0:
            return self.emit(f"{'udiv' if isinstance(a, FloorDiv) else 'urem'} i64 {x}, {a.c}")
        # floor semantics for a dividend that may be negative: adjust truncation toward -inf
        r = self.emit(f"srem i64 {x}, {a.c}")
        neg = self.emit(f"icmp slt i64 {r}, 0")
        if isinstance(a, Mod):
            return self.emit(f"select i1 {neg}, i64 {self.emit(f'add i64 {r}, {a.c}')}, i64 {r}")
        q = self.emit(f"sdiv i64 {x}, {a.c}")
        return self.emit(f"select i1 {neg}, i64 {self.emit(f'sub i64 {q}, 1')}, i64 {q}")

    def guard(self, cons) -> str:
        acc = None
        for e, lo, hi in cons:
            x = self.expr(e)
            for cond in ([f"icmp sge i64 {x}, {lo}"] if e.lo < lo else []) + ([f"icmp sle i64 {x}, {hi}"] if e.hi > hi else []):
                c = self.emit(cond)
                acc = c if acc is None else self.emit(f"and i1 {acc}, {c}")
        return acc or "true"

    # -- memory -----------------------------------------------------------------------------
    def load(self, v: KVal) -> str:
        p, idx, guard = v.arg
        dt = self.k.params[p].dtype
        st = stype(dt)
        i = self.expr(idx)
        g = self.guard(guard) if guard else None
        if g:
            i = self.emit(f"select i1 {g}, i64 {i}, i64 0")
        ptr = self.emit(f"getelementptr inbounds {st}, ptr %p{p}, i64 {i}")
        raw = self.emit(f"load {st}, ptr {ptr}, align {dt.itemsize}")
        val = self.widen(raw, dt)
        if g:
            ty = ctype(dt)
            val = self.emit(f"select i1 {g}, {ty} {val}, {ty} {literal(0, dt)}")
        return val

    def widen(self, raw: str, dt: D.DType) -> str:
        if dt is D.float16:
            return self.emit(f"fpext half {raw} to float")
        if dt is D.bfloat16:
            w = self.emit(f"zext i16 {raw} to i32")
            return self.emit(f"bitcast i32 {self.emit(f'shl i32 {w}, 16')} to float")
        if dt is D.bool_:
            return self.emit(f"icmp ne i8 {raw}, 0")
        return raw

    def narrow(self, val: str, dt: D.DType) -> str:
        """Compute value -> storage representation (rounding half types to nearest even)."""
        if dt is D.float16:
            return self.emit(f"fptrunc float {val} to half")
        if dt is D.bfloat16:
            u = self.emit(f"bitcast float {val} to i32")
            lsb = self.emit(f"and i32 {self.emit(f'lshr i32 {u}, 16')}, 1")
            rounded = self.emit(f"add i32 {u}, {self.emit(f'add i32 {lsb}, 32767')}")
            hi = self.emit(f"trunc i32 {self.emit(f'lshr i32 {rounded}, 16')} to i16")
            nan = self.emit(f"fcmp uno float {val}, 0.0")
            return self.emit(f"select i1 {nan}, i16 32704, i16 {hi}")
        if dt is D.bool_:
            return self.emit(f"zext i1 {val} to i8")
        return val

    def store(self, v: KVal) -> None:
        p, idx = v.arg
        dt = self.k.params[p].dtype
        st = stype(dt)
        val = self.narrow(self.names[v.srcs[0].id], dt)
        if v.id in self.redirect:   # inside a tile: stage the value (see `tiles`)
            tile, i = self.redirect[v.id]
            ptr = self.emit(f"getelementptr inbounds {st}, ptr {tile}, i64 {i}")
        else:
            ptr = self.emit(f"getelementptr inbounds {st}, ptr %p{p}, i64 {self.expr(idx)}")
        self.lines.append(f"  store {st} {val}, ptr {ptr}, align {dt.itemsize}")

    # -- casts -----------------------------------------------------------------------------
    def cast(self, x: str, src: D.DType, dst: D.DType) -> str:
        cs, cd = D.compute_dtype(src), D.compute_dtype(dst)
        ts, td = ctype(cs), ctype(cd)
        if cs.is_float and cd.is_float:
            if ts != td:
                x = self.emit(f"{'fpext' if cs.itemsize < cd.itemsize else 'fptrunc'} {ts} {x} to {td}")
            if dst in (D.float16, D.bfloat16):  # round to the half type, keep computing in float
                x = self.widen(self.narrow(x, dst), dst)
            return x
        if dst is D.bool_:
            return self.emit(f"fcmp une {ts} {x}, 0.0" if cs.is_float else f"icmp ne {ts} {x}, 0")
        if cs.is_float:
            y = self.emit(f"{'fptoui' if dst.kind == 'u' else 'fptosi'} {ts} {x} to {td}")
            return self.emit(f"freeze {td} {y}")  # NaN/out-of-range: unspecified but not poison
        if cd.is_float:
            x = self.emit(f"{'uitofp' if src.kind in 'ub' else 'sitofp'} {ts} {x} to {td}")
            return self.widen(self.narrow(x, dst), dst) if dst in (D.float16, D.bfloat16) else x
        if cs.bits == cd.bits:
            return x
        if cs.bits > cd.bits:
            return self.emit(f"trunc {ts} {x} to {td}")
        return self.emit(f"{'zext' if src.kind in 'ub' else 'sext'} {ts} {x} to {td}")

    def bitcast(self, x: str, src: D.DType, dst: D.DType) -> str:
        raw = self.narrow(x, src)
        return self.widen(self.emit(f"bitcast {stype(src)} {raw} to {stype(dst)}"), dst)

    # -- statements --------------------------------------------------------------------------
    def value(self, v: KVal) -> None:
        op = v.op
        if op == "store":
            self.store(v)
            return
        if op == "reduce":
            self.names[v.id] = self.emit(f"load {ctype(v.dtype)}, ptr %acc{v.id}")
            return
        if op == "const":
            self.names[v.id] = literal(v.arg, v.dtype)
            return
        if op == "index":
            self.names[v.id] = self.expr(v.arg)
            return
        if op == "cond":
            self.names[v.id] = self.guard(v.arg)
            return
        if op == "load":
            self.names[v.id] = self.load(v)
            return
        args = [self.names[s.id] for s in v.srcs]
        if op == "cast":
            self.names[v.id] = self.cast(args[0], *v.arg)
            return
        if op == "bitcast":
            self.names[v.id] = self.bitcast(args[0], *v.arg)
            return
        dt = v.srcs[-1].dtype if op != "where" else v.dtype
        res = ALU[op](self, dt, ctype(dt), *args)
        self.names[v.id] = res if res.startswith("%") or not _is_instr(res) else self.emit(res)

    def loop(self, lp: Loop) -> None:
        name = lp.var.name
        r = lp.reduce
        first = r is not None and r.arg[1][0][0] == lp.var
        last = r is not None and r.arg[1][-1][0] == lp.var
        if first:  # initialise the accumulator
            ty = ctype(r.dtype)
            self.entry.append(f"  %acc{r.id} = alloca {ty}")
            from ..lower import _identity
            self.lines.append(f"  store {ty} {literal(_identity(r.arg[0], r.dtype), r.dtype)}, ptr %acc{r.id}")
        start, end = self.partition(lp) if lp.kind == "parallel" else ("0", str(lp.size))
        if id(lp) in self.streams:
            start = self.tiles(lp, start, end)   # whole tiles streamed; the plain loop does the rest
        self.open(name, start, end)
        self.stmts(lp.body)
        if last:  # fold the body's value into the accumulator
            ty = ctype(r.dtype)
            cur = self.emit(f"load {ty}, ptr %acc{r.id}")
            comb = ALU[REDUCE_COMBINE[r.arg[0]]](self, r.dtype, ty, cur, self.names[r.srcs[0].id])
            if r.dtype.is_float and comb.startswith(("fadd", "fmul")):
                comb = comb.replace(" float", " reassoc float", 1).replace(" double", " reassoc double", 1)
            comb = comb if not _is_instr(comb) else self.emit(comb)
            self.lines.append(f"  store {ty} {comb}, ptr %acc{r.id}")
        self.close(name)

    def open(self, tag: str, start: str, end: str) -> str:
        """Open the counted loop `%tag` over [start, end); its body follows, then `close`."""
        pred = self.label
        self.lines.append(f"  br label %{tag}.head")
        self.lines.append(f"{tag}.head:")
        self.lines.append(f"  %{tag} = phi i64 [ {start}, %{pred} ], [ %{tag}.next, %{tag}.latch ]")
        self.lines.append(f"  %{tag}.c = icmp slt i64 %{tag}, {end}")
        self.lines.append(f"  br i1 %{tag}.c, label %{tag}.body, label %{tag}.exit")
        self.lines.append(f"{tag}.body:")
        self.label = f"{tag}.body"
        return f"%{tag}"

    def close(self, tag: str, step: int = 1) -> None:
        self.lines.append(f"  br label %{tag}.latch")
        self.lines.append(f"{tag}.latch:")
        self.lines.append(f"  %{tag}.next = add nuw nsw i64 %{tag}, {step}")
        self.lines.append(f"  br label %{tag}.head")
        self.lines.append(f"{tag}.exit:")
        self.label = f"{tag}.exit"

    def tiles(self, lp: Loop, start: str, end: str) -> str:
        """Run [start, start + k*TILE) of `lp` a tile at a time: the loop body (vectorized as
        usual) writes each streamed value into a stack tile, then the tile goes out as whole cache
        lines with non-temporal stores. (The loop vectorizer refuses a loop whose scalar stores
        carry `!nontemporal` without vector alignment, hence the tile.) Returns the index where the
        plain loop takes over, for the last partial tile.

        The line stores claim 64-byte alignment. It holds by construction — kernel outputs are
        pool buffers (64-byte aligned), every other term of a streamed index is a multiple of a
        line (`streams`) and parallel loops split on 64 elements — and it is checked here: if
        the first tile of a streamed output does not start a line, no tile runs at all."""
        name, stores = lp.var.name, self.streams[id(lp)]
        count = self.emit(f"lshr i64 {self.emit(f'sub i64 {end}, {start}')}, {TILE.bit_length() - 1}")
        self.var_names[lp.var] = start
        for s in stores:
            first = self.emit(f"getelementptr inbounds {stype(self.k.params[s.arg[0]].dtype)}, "
                              f"ptr %p{s.arg[0]}, i64 {self.expr(s.arg[1])}")
            off = self.emit(f"and i64 {self.emit(f'ptrtoint ptr {first} to i64')}, {LINE - 1}")
            count = self.emit(f"select i1 {self.emit(f'icmp eq i64 {off}, 0')}, i64 {count}, i64 0")
        stop = self.emit(f"add i64 {start}, {self.emit(f'shl i64 {count}, {TILE.bit_length() - 1}')}")
        base = self.open(f"{name}.tb", start, stop)
        inner = self.open(f"{name}.tj", "0", str(TILE))
        self.var_names[lp.var] = self.emit(f"add nsw i64 {base}, {inner}")
        for s in stores:
            nbytes = TILE * self.k.params[s.arg[0]].dtype.itemsize
            self.entry.append(f"  %tile{s.id} = alloca [{nbytes} x i8], align {LINE}")
            self.redirect[s.id] = (f"%tile{s.id}", inner)
        self.stmts(lp.body)
        self.redirect.clear()
        self.close(f"{name}.tj")
        self.var_names[lp.var] = base
        for s in stores:   # <16 x float> is one cache line: any dtype's bits, copied unchanged
            dt = self.k.params[s.arg[0]].dtype
            dst = self.emit(f"getelementptr inbounds {stype(dt)}, ptr %p{s.arg[0]}, i64 {self.expr(s.arg[1])}")
            off = self.open(f"{name}.s{s.id}", "0", str(TILE * dt.itemsize))
            src = self.emit(f"getelementptr inbounds i8, ptr %tile{s.id}, i64 {off}")
            line = self.emit(f"load <16 x float>, ptr {src}, align {LINE}")
            out = self.emit(f"getelementptr inbounds i8, ptr {dst}, i64 {off}")
            self.lines.append(f"  store <16 x float> {line}, ptr {out}, align {LINE}, !nontemporal !0")
            self.close(f"{name}.s{s.id}", LINE)
        self.close(f"{name}.tb", TILE)
        del self.var_names[lp.var]
        return stop

    def partition(self, lp: Loop) -> tuple[str, str]:
        """This thread's share [start, end) of a parallel loop: every nest splits itself over
        all threads, so one launch runs several independent nests on every core. Shares start
        on 16 elements (cache lines), or on 64 when the loop streams (a line in every dtype)."""
        n = lp.size
        align = 64 if id(lp) in self.streams else 16 if n >= 1024 else 1

        def bound(t):
            b = self.emit(f"udiv i64 {self.emit(f'mul i64 {n}, {t}')}, %nt")
            return self.emit(f"and i64 {b}, {-align}") if align > 1 else b
        nxt = self.emit("add i64 %tid, 1")
        last = self.emit("icmp eq i64 %s, %%nt" % nxt)
        return bound("%tid"), self.emit(f"select i1 {last}, i64 {n}, i64 {bound(nxt)}")

    def stmts(self, stmts) -> None:
        for s in stmts:
            if isinstance(s, Loop):
                self.loop(s)
            else:
                self.value(s)

    def render(self) -> str:
        self.stmts(self.k.body)
        params = ", ".join(f"ptr noalias nocapture %p{i}" for i in range(len(self.k.params)))
        head = f"define void @{self.symbol}({params}{', ' if params else ''}i64 %tid, i64 %nt) #0 {{"
        fence = []
        if self.streams:   # streamed lines are weakly ordered: make them visible before returning
            fence = ["  " + self.call("llvm.x86.sse.sfence", "void", [], [])]
        body = [head, "entry:"] + self.entry + self.lines + fence + ["  ret void", "}"]
        decls = [d for d in self.decls.values() if d] + llvm_math.definitions(self.decls)
        meta = ["!0 = !{i32 1}"] if self.streams else []
        return "\n".join([f"; kernel {self.k.name}", *body, *decls,
                          'attributes #0 = { nounwind "frame-pointer"="none" }', *meta, ""])


def _is_instr(s: str) -> bool:
    return " " in s and not s.startswith("%")


def render(kernel: Kernel, symbol: str) -> str:
    return Renderer(kernel, symbol).render()
