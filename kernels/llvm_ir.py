"""A small LLVM IR text builder for hand-written kernel templates (kernels/gemm.py).

Values are SSA temporaries named by a counter; loops are counted `i64` loops with the induction
variable in a phi, which is all the templates need (anything else a loop carries lives in an
`alloca` that mem2reg promotes, or in phis the template writes itself).

    f = Function("add1", "void", [("ptr", "p"), ("i64", "n")])
    with f.loop("0", "%n") as i:
        q = f.gep("float", "%p", i)
        f.store("float", f(f"fadd float {f.load('float', q)}, 1.0"), q)
    text = f.render()
"""
from __future__ import annotations

from contextlib import contextmanager


class Function:
    def __init__(self, name: str, ret: str, params: list[tuple[str, str]], attrs: str = "",
                 linkage: str = "internal"):
        self.name, self.ret, self.params, self.attrs, self.linkage = name, ret, params, attrs, linkage
        self.lines: list[str] = []
        self.entry: list[str] = []     # allocas, placed at the top of the entry block
        self.n = 0
        self.block = "entry"

    # -- values and blocks --------------------------------------------------------------------
    def __call__(self, instr: str) -> str:
        """Emit `instr` as a new SSA value and return its name."""
        self.n += 1
        name = f"%v{self.n}"
        self.lines.append(f"  {name} = {instr}")
        return name

    def do(self, instr: str) -> None:
        """Emit an instruction without a result (store, call void, br, ret)."""
        self.lines.append(f"  {instr}")

    def fresh(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def label(self, name: str) -> None:
        self.lines.append(f"{name}:")
        self.block = name

    def alloca(self, ty: str, count: int = 1, align: int = 8) -> str:
        self.n += 1
        name = f"%s{self.n}"
        self.entry.append(f"  {name} = alloca {ty}, i64 {count}, align {align}")
        return name

    # -- shorthands ---------------------------------------------------------------------------
    def gep(self, ty: str, ptr: str, idx) -> str:
        if str(idx) == "0":
            return ptr
        return self(f"getelementptr {ty}, ptr {ptr}, i64 {idx}")

    def load(self, ty: str, ptr: str, align: int | None = None) -> str:
        return self(f"load {ty}, ptr {ptr}" + (f", align {align}" if align else ""))

    def store(self, ty: str, val: str, ptr: str, align: int | None = None) -> None:
        self.do(f"store {ty} {val}, ptr {ptr}" + (f", align {align}" if align else ""))

    def add(self, a, b) -> str:
        return str(int(a) + int(b)) if _const(a) and _const(b) else self(f"add i64 {a}, {b}")

    def sub(self, a, b) -> str:
        return str(int(a) - int(b)) if _const(a) and _const(b) else self(f"sub i64 {a}, {b}")

    def mul(self, a, b) -> str:
        if _const(a) and _const(b):
            return str(int(a) * int(b))
        if str(a) == "1" or str(b) == "0":
            return str(b)
        if str(b) == "1" or str(a) == "0":
            return str(a)
        return self(f"mul i64 {a}, {b}")

    def min(self, a, b) -> str:
        return self(f"select i1 {self(f'icmp slt i64 {a}, {b}')}, i64 {a}, i64 {b}")

    def max(self, a, b) -> str:
        return self(f"select i1 {self(f'icmp sgt i64 {a}, {b}')}, i64 {a}, i64 {b}")

    # -- control flow -------------------------------------------------------------------------
    @contextmanager
    def loop(self, start, end, step=1):
        """for (i = start; i < end; i += step) — yields i's name; the body may contain loops."""
        head, body, latch, done = (self.fresh(p) for p in ("head", "body", "latch", "done"))
        i = f"%i{self.n}"
        pred = self.block
        self.do(f"br label %{head}")
        self.label(head)
        self.lines.append(f"  {i} = phi i64 [ {start}, %{pred} ], [ {i}.next, %{latch} ]")
        self.do(f"br i1 {self(f'icmp slt i64 {i}, {end}')}, label %{body}, label %{done}")
        self.label(body)
        yield i
        self.do(f"br label %{latch}")
        self.label(latch)
        self.lines.append(f"  {i}.next = add nuw nsw i64 {i}, {step}")
        self.do(f"br label %{head}")
        self.label(done)

    @contextmanager
    def if_(self, cond: str):
        """if (cond) { body } — the body must fall through."""
        then, join = self.fresh("then"), self.fresh("join")
        self.do(f"br i1 {cond}, label %{then}, label %{join}")
        self.label(then)
        yield
        self.do(f"br label %{join}")
        self.label(join)

    def render(self) -> str:
        params = ", ".join(f"{t} %{n}" for t, n in self.params)
        head = f"define {self.linkage} {self.ret} @{self.name}({params}) {self.attrs} {{".replace("  ", " ")
        return "\n".join([head, "entry:", *self.entry, *self.lines, "}"])


def _const(x) -> bool:
    s = str(x)
    return s.lstrip("-").isdigit()
