"""Triton code generator: Kernel (kir.py) -> the Python source of one `@triton.jit` function.

The kernel IR is a list of loop nests; Triton programs work on blocks. The mapping:

- Each nest's outermost (parallel) loop is spread over programs: a program takes XBLOCK
  consecutive iterations as the lanes of axis 0 of its blocks.
- Every *leaf* loop inside it (a loop holding no loop: the row of a softmax, a reduction, the
  inner axis of a broadcast) is vectorized on axis 1, RBLOCK lanes at a time: one block when the
  loop fits (a row reduction is then a single `tl.sum`), a `for` over blocks otherwise. A
  reduction accumulates a [XBLOCK, RBLOCK] block and reduces it across axis 1 at the end.
- Loops that hold other loops stay scalar `for` loops.
So a value has the shape of the vectorized loops it depends on ([XB, 1], [1, RB], [XB, RB] or a
scalar) and Triton's broadcasting does the rest; nothing about fusion or indexing is re-derived.
A nest with no inner loop (elementwise work) uses 1-D blocks.

Several nests in one kernel (horizontal fusion) are one launch: program ids are split into one
range per nest, as each LLVM thread runs every nest one after another.

Types: every value carries exactly its kernel-IR compute type (constants are typed `tl.full`s,
never Python numbers, so Triton's promotion never widens a uint8 or an int16). Half types are
widened to float32 on load and rounded (to nearest even) on store; bool is int8 in memory. Index
arithmetic is int32 when every index provably fits, int64 otherwise.

Transcendentals that Triton's core lacks come from `libdevice`; under TRITON_INTERPRET the runtime
swaps that name for numpy equivalents (the interpreter cannot call device libraries).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import dtypes as D
from ..kir import Kernel, KVal, Loop
from ..symbolic import Expr, FloorDiv, Mod, Var

# Block-size heuristics (tests shrink them to exercise the looped paths).
LIMITS = {"xblock": 1024,     # lanes of a 1-D (elementwise) program
          "rblock": 4096,     # the longest loop vectorized in one block ("fits")
          "tile": 4096}       # XBLOCK * RBLOCK of a 2-D program

_TL = {"bool": "int1", "uint8": "uint8", "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
       "uint32": "uint32", "uint64": "uint64", "float16": "float16", "bfloat16": "bfloat16",
       "float32": "float32", "float64": "float64"}
_SIG = {"int1": "i1", "uint8": "u8", "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64", "uint32": "u32",
        "uint64": "u64", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}


def tl_type(dt: D.DType) -> str:
    """Triton type of a value in registers (compute type)."""
    return "tl." + _TL[D.compute_dtype(dt).name]


def tl_storage(dt: D.DType) -> str:
    """Triton element type of a buffer in memory."""
    return "tl.int8" if dt is D.bool_ else "tl." + _TL[dt.name]


def pointer_signature(dt: D.DType) -> str:
    return "*" + _SIG[tl_storage(dt)[3:]]


@dataclass
class Config:
    """One launch configuration: constexpr values, grid and Triton compile options."""
    constexprs: dict
    grid: tuple
    num_warps: int
    num_stages: int = 3


@dataclass
class TritonKernel:
    """Generated (or template) Triton source with what it takes to compile and launch it.
    Several configs mean "autotune among these" (templates); generated kernels have one."""
    name: str
    source: str
    signature: dict                      # parameter name -> Triton type ('*fp32', 'constexpr')
    configs: list
    attrs: dict = field(default_factory=dict)

    def rename(self, name: str) -> "TritonKernel":
        return TritonKernel(name, self.source.replace(f"def {self.name}(", f"def {name}(", 1), self.signature,
                            self.configs, self.attrs)


def _divisible_pointers(n: int) -> dict:
    # every buffer starts on an allocation boundary (>= 256 bytes): lets Triton vectorize loads
    return {(i,): [["tt.divisibility", 16]] for i in range(n)}


# ---- literals ---------------------------------------------------------------------------------

def literal(value, dt: D.DType) -> str:
    if dt.is_float:
        v = float(value)
        if v != v:
            return "_NAN"
        if math.isinf(v):
            return "_INF" if v > 0 else "_NINF"
        return repr(v)
    if dt is D.bool_:
        return "True" if value else "False"
    return str(int(value))


# ---- the per-primitive rendering table ----------------------------------------------------------
# Each entry: fn(r, dtype, *args) -> a Triton expression. `dtype` is the operands' dtype; `r` is the
# renderer (r.const for typed constants, r.let to name a subexpression).

def _op(sym, bool_sym=None):
    def f(r, dt, a, b):
        return f"({a} {bool_sym if bool_sym and dt is D.bool_ else sym} {b})"
    return f


def _neg(r, dt, a):
    return f"(-{a})" if dt.is_float else f"({r.const(0, dt)} - {a})"


def _minmax(which):
    def f(r, dt, a, b):
        if dt is D.bool_:
            return f"({a} {'|' if which == 'max' else '&'} {b})"
        nan = ", propagate_nan=tl.PropagateNan.ALL" if dt.is_float else ""   # NaN wins, as on the CPU
        return f"tl.{which}imum({a}, {b}{nan})"
    return f


def _intdiv(kind):
    """C semantics (truncation) that never trap: x/0 -> 0, x%0 -> 0, MIN/-1 wraps."""
    sym = "//" if kind == "div" else "%"

    def f(r, dt, a, b):
        if dt.is_float:  # mod of floats: C fmod (Triton's % on floats is frem)
            return f"({a} % {b})"
        zero, one = r.let(f"{b} == {r.const(0, dt)}"), r.const(1, dt)
        if dt.kind == "i":
            m1 = r.let(f"{b} == {r.const(-1, dt)}")
            q = r.let(f"{a} {sym} tl.where({zero} | {m1}, {one}, {b})")
            q = r.let(f"tl.where({m1}, {r.const(0, dt)} - {a}, {q})" if kind == "div"
                      else f"tl.where({m1}, {r.const(0, dt)}, {q})")
        else:
            q = r.let(f"{a} {sym} tl.where({zero}, {one}, {b})")
        return f"tl.where({zero}, {r.const(0, dt)}, {q})"
    return f


def _fn(name, f64=None):
    def f(r, dt, *a):
        return f"{f64 if f64 and dt is D.float64 else name}({', '.join(a)})"
    return f


def _div(r, dt, a, b):
    return f"tl.fdiv({a}, {b}, ieee_rounding=True)"


ALU = {
    "neg": _neg, "add": _op("+", "|"), "mul": _op("*", "&"), "div": _div,
    "idiv": _intdiv("div"), "mod": _intdiv("mod"),
    "max": _minmax("max"), "min": _minmax("min"),
    "pow": _fn("libdevice.pow"),
    "exp": _fn("tl.exp"), "log": _fn("tl.log"), "tanh": _fn("libdevice.tanh"),
    "sin": _fn("libdevice.sin"), "cos": _fn("libdevice.cos"), "sqrt": _fn("tl.sqrt_rn", "tl.sqrt"),
    "erf": _fn("tl.erf"), "floor": _fn("tl.floor"), "ceil": _fn("tl.ceil"),
    "trunc": _fn("libdevice.trunc"), "round": _fn("libdevice.rint"),   # rint: half to even
    "cmplt": _op("<"), "cmpeq": _op("=="),
    "and": _op("&"), "or": _op("|"), "xor": _op("^"),
    "shl": _op("<<"), "shr": _op(">>"),   # >> is logical on unsigned types, arithmetic on signed
    "where": lambda r, dt, c, a, b: f"tl.where({c}, {a}, {b})",
}

REDUCE_COMBINE = {"sum": "add", "prod": "mul", "rmax": "max", "rmin": "min"}

# helper jit functions (combine functions for tl.reduce, ...), emitted into a module when used
_HELPERS = {
    "_ember_mul": "(a, b):\n    return a * b",
    "_ember_fmax": "(a, b):\n    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)",
    "_ember_fmin": "(a, b):\n    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)",
    # float32 -> bfloat16 rounding to nearest even in integer arithmetic, as the CPU backend does
    # (Triton's interpreter truncates in .to(tl.bfloat16); on a GPU this is the same value)
    "_ember_bf16": "(x):\n"
                   "    u = x.to(tl.uint32, bitcast=True)\n"
                   "    u = u + (((u >> 16) & 1) + 0x7FFF)\n"
                   "    u = tl.where(x != x, tl.full([], 0x7FC00000, tl.uint32), u)\n"
                   "    return (u >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)",
}

HEADER = """import triton
import triton.language as tl
from triton.language.extra import libdevice

_INF = tl.constexpr(float("inf"))
_NINF = tl.constexpr(float("-inf"))
_NAN = tl.constexpr(float("nan"))
"""


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _is_leaf(lp: Loop) -> bool:
    return not any(isinstance(s, Loop) for s in lp.body)


class _Nest:
    """Rendering state of one loop nest: its vectorized loop variables and block sizes."""

    def __init__(self, stmts: list, par: Loop):
        self.par = par
        self.inner = [lp for s in stmts if isinstance(s, Loop) for lp in _walk(s) if lp is not par]
        self.two_d = bool(self.inner)
        self.rblock = {id(lp): min(_pow2(lp.size), LIMITS["rblock"]) for lp in self.inner if _is_leaf(lp)}
        if self.two_d:
            widest = max(self.rblock.values(), default=1)
            self.xb = min(_pow2(par.size), max(1, LIMITS["tile"] // widest))
        else:
            self.xb = min(_pow2(par.size), LIMITS["xblock"])
        self.grid = -(-par.size // self.xb)
        self.vec: dict = {}        # Var -> (axis, mask name | None, lanes)
        elems = self.xb * max(self.rblock.values(), default=1)
        self.num_warps = 8 if elems >= 4096 else 4 if elems >= 512 else 2 if elems >= 128 else 1

    def shape(self, vars_) -> str:
        if not self.two_d:
            return f"[{self.xb}]"
        dims = [1, 1]
        for v in vars_:
            axis, _, lanes = self.vec[v]
            dims[axis] = lanes
        return f"[{dims[0]}, {dims[1]}]"


def _walk(lp: Loop):
    yield lp
    for s in lp.body:
        if isinstance(s, Loop):
            yield from _walk(s)


def _split_nests(body: list) -> list[tuple[list, Loop]]:
    """Kernel.body is, per nest, its top-level statements then its parallel loop."""
    nests, pending = [], []
    for s in body:
        if isinstance(s, Loop) and s.kind == "parallel":
            nests.append((pending + [s], s))
            pending = []
        else:
            pending.append(s)
    assert not pending, "statements after the last loop nest"
    return nests


class Renderer:
    def __init__(self, kernel: Kernel, name: str):
        self.k, self.name = kernel, name
        self.lines: list[str] = []
        self.ind = "    "
        self.names: dict[int, str] = {}
        self.n = 0
        self.helpers: set = set()
        self.nest: _Nest | None = None
        self.i64 = _needs_int64(kernel)

    # -- helpers used by the ALU table ----------------------------------------------------
    def line(self, s: str) -> None:
        self.lines.append(self.ind + s)

    def let(self, expr: str) -> str:
        self.n += 1
        t = f"t{self.n}"
        self.line(f"{t} = {expr}")
        return t

    def const(self, value, dt: D.DType) -> str:
        return f"tl.full([], {literal(value, dt)}, {tl_type(dt)})"

    # -- index expressions ------------------------------------------------------------------
    def expr(self, e: Expr) -> str:
        parts = []
        for atom, c in e.terms:
            a = self.atom(atom)
            parts.append(a if c == 1 else f"{a} * {c}")
        if e.const or not parts:
            parts.append(str(e.const))
        return " + ".join(parts)

    def atom(self, a) -> str:
        if isinstance(a, Var):
            if a in self.k.bindings:
                return self.names[self.k.bindings[a].id]
            return a.name
        x = f"({self.expr(a.x)})"
        op = "//" if isinstance(a, FloorDiv) else "%"
        if a.x.lo >= 0:  # truncation == floor for non-negative dividends
            return f"({x} {op} {a.c})"
        # floor semantics for a dividend that may be negative (Triton's // and % truncate)
        r = self.let(f"{x} % {a.c}")
        if isinstance(a, Mod):
            return self.let(f"tl.where({r} < 0, {r} + {a.c}, {r})")
        return self.let(f"tl.where({r} < 0, {x} // {a.c} - 1, {x} // {a.c})")

    def evars(self, e: Expr) -> set:
        """The vectorized loop variables an index expression depends on (via gathers too)."""
        out = set()
        for v in e.vars():
            if v in self.k.bindings:
                out |= self.vdeps(self.k.bindings[v])
            elif v in self.nest.vec:
                out.add(v)
        return out

    def vdeps(self, v: KVal) -> set:
        return {x for x in v.deps if x in self.nest.vec}

    def guard(self, cons) -> str:
        parts = []
        for e, lo, hi in cons:
            x = self.expr(e)
            if e.lo < lo:
                parts.append(f"({x} >= {lo})")
            if e.hi > hi:
                parts.append(f"({x} <= {hi})")
        return " & ".join(parts) or self.const(True, D.bool_)

    def masks(self, vars_) -> list[str]:
        return [self.nest.vec[v][1] for v in sorted(vars_, key=lambda v: v.name) if self.nest.vec[v][1]]

    # -- memory -----------------------------------------------------------------------------
    def pointer(self, p: int, idx: Expr) -> str:
        off = self.expr(idx)
        return f"p{p}" if off == "0" else f"p{p} + {off}"

    def load(self, v: KVal) -> str:
        p, idx, guard = v.arg
        dt = self.k.params[p].dtype
        ptr = self.pointer(p, idx)
        mvars = self.vdeps(v)
        masks = self.masks(mvars) + ([self.guard(guard)] if guard else [])
        if masks:
            pvars = self.evars(idx)
            if not mvars <= pvars:  # the mask varies along an axis the address does not
                ptr = f"tl.broadcast_to({ptr}, {self.nest.shape(pvars | mvars)})"
            raw = f"tl.load({ptr}, mask={' & '.join(masks)}, other=0)"
        else:
            raw = f"tl.load({ptr})"
        return widen(raw, dt)

    def store(self, v: KVal) -> None:
        p, idx = v.arg
        dt = self.k.params[p].dtype
        val = self.narrow(self.names[v.srcs[0].id], dt)
        masks = self.masks(self.vdeps(v))
        self.line(f"tl.store({self.pointer(p, idx)}, {val}" + (f", mask={' & '.join(masks)})" if masks else ")"))

    # -- casts -----------------------------------------------------------------------------
    def cast(self, x: str, src: D.DType, dst: D.DType) -> str:
        cs, cd = D.compute_dtype(src), D.compute_dtype(dst)
        if dst is D.bool_:
            return f"({x} != {self.const(0, cs)})"
        y = x if cs is cd else f"{x}.to({tl_type(cd)})"
        if dst in (D.float16, D.bfloat16):  # round to the half type, keep computing in float32
            y = f"{self.narrow(y, dst)}.to(tl.float32)"
        return y

    def bitcast(self, x: str, src: D.DType, dst: D.DType) -> str:
        return widen(f"{self.narrow(x, src)}.to({tl_storage(dst)}, bitcast=True)", dst)

    def narrow(self, val: str, dt: D.DType) -> str:
        """Compute value -> storage representation (half types rounded to nearest even)."""
        if dt is D.bfloat16:
            self.helpers.add("_ember_bf16")
            return f"_ember_bf16({val})"
        if dt is D.float16 or dt is D.bool_:
            return f"{val}.to({tl_storage(dt)})"
        return val

    # -- statements --------------------------------------------------------------------------
    def value(self, v: KVal) -> None:
        op = v.op
        if op == "store":
            self.store(v)
            return
        if op == "reduce":
            expr = self.finish_reduce(v)
        elif op == "const":
            expr = self.const(v.arg, v.dtype)
        elif op == "index":
            e = self.expr(v.arg)
            # tl.cast, not .to: a scalar loop's variable is a Python int under the interpreter
            expr = f"tl.cast({e}, tl.int64)" if v.arg.terms else self.const(v.arg.const, D.int64)
        elif op == "cond":
            expr = self.guard(v.arg)
        elif op == "load":
            expr = self.load(v)
        else:
            args = [self.names[s.id] for s in v.srcs]
            if op == "cast":
                expr = self.cast(args[0], *v.arg)
            elif op == "bitcast":
                expr = self.bitcast(args[0], *v.arg)
            else:
                dt = v.srcs[-1].dtype if op != "where" else v.dtype
                expr = ALU[op](self, dt, *args)
        name = f"v{v.id}"
        self.line(f"{name} = {expr}")
        self.names[v.id] = name

    def index_var(self, name: str, lanes: str) -> None:
        self.line(f"{name} = {lanes}" if not self.i64 else f"{name} = ({lanes}).to(tl.int64)")

    def loop(self, lp: Loop) -> None:
        r = lp.reduce
        if r is not None and r.arg[1][0][0] == lp.var:
            self.init_reduce(r)
        name, n = lp.var.name, lp.size
        outer = self.ind
        if lp.kind == "parallel":
            xb = self.nest.xb
            lanes = f"tl.arange(0, {xb})" + ("[:, None]" if self.nest.two_d else "")
            self.index_var(name, f"pid{'.to(tl.int64)' if self.i64 else ''} * {xb} + {lanes}")
            mask = f"{name}_m" if n % xb else None
            self.nest.vec[lp.var] = (0, mask, xb)
        elif id(lp) in self.nest.rblock:  # a leaf loop: vectorized on axis 1
            rb = self.nest.rblock[id(lp)]
            base = "0"
            if n > rb:
                self.line(f"for {name}_b in range(0, {n}, {rb}):")
                self.ind += "    "
                base = f"{name}_b"
            self.index_var(name, f"{base} + tl.arange(0, {rb})[None, :]")
            mask = f"{name}_m" if n % rb else None
            self.nest.vec[lp.var] = (1, mask, rb)
        else:  # holds other loops: a scalar loop
            self.line(f"for {name}{'_s' if self.i64 else ''} in range(0, {n}):")
            self.ind += "    "
            if self.i64:
                self.line(f"{name} = {name}_s.to(tl.int64)")
            mask = None
        if mask:
            self.line(f"{mask} = {name} < {n}")
        self.stmts(lp.body)
        if r is not None and r.arg[1][-1][0] == lp.var:
            self.accumulate(r, mask)
        if lp.kind != "parallel":
            self.nest.vec.pop(lp.var, None)
        self.ind = outer

    # -- reductions ---------------------------------------------------------------------------
    def _acc_vectorized(self, r: KVal) -> bool:
        last = r.arg[1][-1][0]
        return any(lp.var == last and id(lp) in self.nest.rblock for lp in self.nest.inner)

    def init_reduce(self, r: KVal) -> None:
        from ..lower import _identity
        dims = [self.nest.xb if self.nest.par.var in r.deps else 1, 1]
        if self._acc_vectorized(r):
            last = r.arg[1][-1][0]
            dims[1] = next(self.nest.rblock[id(lp)] for lp in self.nest.inner if lp.var == last)
        ident = literal(_identity(r.arg[0], r.dtype), D.compute_dtype(r.dtype))
        self.line(f"acc{r.id} = tl.full({dims if dims != [1, 1] else []}, {ident}, {tl_type(r.dtype)})")

    def accumulate(self, r: KVal, mask: str | None) -> None:
        acc = f"acc{r.id}"
        comb = ALU[REDUCE_COMBINE[r.arg[0]]](self, r.dtype, acc, self.names[r.srcs[0].id])
        self.line(f"{acc} = tl.where({mask}, {comb}, {acc})" if mask else f"{acc} = {comb}")

    def finish_reduce(self, r: KVal) -> str:
        acc, op, dt = f"acc{r.id}", r.arg[0], r.dtype
        if not self._acc_vectorized(r):
            return acc
        # across the lanes of axis 1, per row ([XB, 1]); a reduction that no row depends on
        # ([1, RB]) becomes a scalar
        axis = "axis=1, keep_dims=True" if self.nest.par.var in r.deps else "axis=None"
        if dt is D.bool_:  # or / and over lanes
            fn = "tl.max" if op in ("sum", "rmax") else "tl.min"
            return f"({fn}({acc}.to(tl.int8), {axis}) != 0)"
        if op == "sum":
            out = f"tl.sum({acc}, {axis})"
        elif op == "prod" or dt.is_float:
            helper = {"prod": "_ember_mul", "rmax": "_ember_fmax", "rmin": "_ember_fmin"}[op]
            self.helpers.add(helper)
            out = f"tl.reduce({acc}, {'1' if 'keep' in axis else 'None'}, {helper}{', keep_dims=True' if 'keep' in axis else ''})"
        else:
            out = f"tl.{'max' if op == 'rmax' else 'min'}({acc}, {axis})"
        return f"{out}.to({tl_type(dt)})"  # Triton widens small integer sums: wrap back

    def stmts(self, stmts) -> None:
        for s in stmts:
            if isinstance(s, Loop):
                self.loop(s)
            else:
                self.value(s)

    # -- the kernel ---------------------------------------------------------------------------
    def render(self) -> TritonKernel:
        params = [f"p{i}" for i in range(len(self.k.params))]
        nests = _split_nests(self.k.body)
        self.lines = ["@triton.jit", f"def {self.name}({', '.join(params)}):",
                      f"    # kernel {self.k.name}"]
        start, warps = 0, 1
        for stmts, par in nests:
            self.nest = _Nest(stmts, par)
            end = start + self.nest.grid
            if len(nests) == 1:
                self.line("pid = tl.program_id(0)")
            else:  # one range of program ids per nest
                self.ind = "    "
                self.line(f"if (tl.program_id(0) >= {start}) & (tl.program_id(0) < {end}):")
                self.ind = "        "
                self.line(f"pid = tl.program_id(0) - {start}")
            self.stmts(stmts)
            start, warps = end, max(warps, self.nest.num_warps)
        helpers = [f"@triton.jit\ndef {h}{_HELPERS[h]}\n" for h in sorted(self.helpers)]
        source = "\n\n".join([HEADER] + helpers + ["\n".join(self.lines) + "\n"])
        signature = {p: pointer_signature(q.dtype) for p, q in zip(params, self.k.params)}
        return TritonKernel(self.name, source, signature, [Config({}, (start, 1, 1), warps)],
                            _divisible_pointers(len(params)))


def widen(raw: str, dt: D.DType) -> str:
    if dt in (D.float16, D.bfloat16):
        return f"{raw}.to(tl.float32)"
    if dt is D.bool_:
        return f"({raw} != 0)"
    return raw


def _needs_int64(k: Kernel) -> bool:
    """Whether some index (or a lane past a loop's end) may leave int32."""
    slack = max(LIMITS["xblock"], LIMITS["rblock"], LIMITS["tile"])

    def bound(e: Expr) -> int:
        t = abs(e.const)
        for a, c in e.terms:
            if isinstance(a, Var):
                t += abs(c) * (max(abs(a.lo), abs(a.hi)) + slack)
            else:
                t += abs(c) * max(bound(a.x), a.c)
        return t

    limit = 1 << 31
    if any(p.numel + slack >= limit for p in k.params):
        return True
    stack = list(k.body)
    while stack:
        s = stack.pop()
        if isinstance(s, Loop):
            stack.extend(s.body)
        elif any(bound(e) >= limit for e in _exprs(s)):
            return True
    return False


def _exprs(v: KVal):
    if v.op in ("load", "store"):
        yield v.arg[1]
    if v.op == "index":
        yield v.arg
    if v.op == "cond":
        yield from (e for e, _, _ in v.arg)
    if v.op == "load" and v.arg[2]:
        yield from (e for e, _, _ in v.arg[2])


# template kernel class name -> "module:function" rendering it as Triton (kernels/triton_*.py)
TEMPLATES = {"GemmKernel": "ember.kernels.triton_gemm:render",
             "AttentionKernel": "ember.kernels.triton_attention:render"}


def render(kernel, name: str) -> TritonKernel:
    """Triton source for a kernel-IR kernel, or for a template instance (e.g. a GemmKernel).

        tk = render(kernel, "ember_k0")
        print(tk.source)          # '@triton.jit\\ndef ember_k0(p0, p1):\\n    ...'
    """
    template = TEMPLATES.get(type(kernel).__name__)
    if template is not None:
        import importlib
        mod, fn = template.split(":")
        return getattr(importlib.import_module(mod), fn)(kernel, name)
    return Renderer(kernel, name).render()


STAGES = ("triton", "ttir", "ttgir", "llir", "ptx")


def stage(kernel, name: str, symbol: str = "kernel", target=None) -> str:
    """A kernel (kernel IR or template) at one Triton stage: 'triton' (the generated source), or
    compiled by Triton for `target` (default sm_90, so no GPU is needed): 'ttir', 'ttgir', 'llir',
    'ptx'. For the debug surface (`ember kernels --stage ptx`).

        print(stage(kernel, "ptx"))
    """
    tk = render(kernel, symbol)
    if name == "triton":
        return tk.source
    if name not in STAGES:
        raise KeyError(f"unknown Triton stage {name!r}; stages: {', '.join(STAGES)}")
    from triton.backends.compiler import GPUTarget
    from ..runtime.cuda import compile_config
    return compile_config(tk, tk.configs[0], target or GPUTarget("cuda", 90, 32)).asm[name]
