"""Symbolic integer index expressions with range-based simplification.

Views (reshape, permute, expand, pad, slice) lower to index arithmetic on loop variables. Every
expression is kept in one canonical form, a linear combination `Σ coeff·atom + const`, where an
atom is a variable, `x // c` or `x % c` (c a positive constant). Simplification uses each atom's
value range, so `(i*N + j) // N` becomes `i` when 0 <= j < N, and `(m//N)*N + m%N` becomes `m`:
that is what lets the scheduler merge loops and keeps div/mod out of inner loops.

Division is floor division. The simplifier keeps dividends non-negative, so codegen can use cheap
unsigned division; where a range still admits negative values, codegen emits true floor semantics.
"""
from __future__ import annotations

from math import gcd


class Atom:
    __slots__ = ("lo", "hi", "_h")

    def key(self):
        raise NotImplementedError

    def __hash__(self):
        return self._h

    def __eq__(self, other):
        return type(self) is type(other) and self.key() == other.key()


class Var(Atom):
    """A loop variable (or a data-dependent index) with an inclusive range [lo, hi]."""
    __slots__ = ("name",)

    def __init__(self, name: str, lo: int, hi: int):
        self.name, self.lo, self.hi = name, lo, hi
        self._h = hash(("v", name))

    def key(self):
        return (self.name,)

    def __repr__(self):
        return self.name


class FloorDiv(Atom):
    __slots__ = ("x", "c")

    def __init__(self, x: "Expr", c: int):
        self.x, self.c = x, c
        self.lo, self.hi = x.lo // c, x.hi // c
        self._h = hash(("d", x, c))

    def key(self):
        return (self.x, self.c)

    def __repr__(self):
        return f"({self.x!r})//{self.c}"


class Mod(Atom):
    __slots__ = ("x", "c")

    def __init__(self, x: "Expr", c: int):
        self.x, self.c = x, c
        self.lo, self.hi = (0, min(c - 1, x.hi) if x.lo >= 0 else c - 1)
        self._h = hash(("m", x, c))

    def key(self):
        return (self.x, self.c)

    def __repr__(self):
        return f"({self.x!r})%{self.c}"


class Expr:
    """Σ coeff·atom + const, immutable and hashable. Build with var(), const() and operators."""
    __slots__ = ("terms", "const", "lo", "hi", "_h")

    def __init__(self, terms: dict, const: int):
        terms = {a: c for a, c in terms.items() if c != 0}
        self.terms = tuple(sorted(terms.items(), key=lambda t: repr(t[0])))
        self.const = const
        lo = hi = const
        for a, c in self.terms:
            lo += c * (a.lo if c > 0 else a.hi)
            hi += c * (a.hi if c > 0 else a.lo)
        self.lo, self.hi = lo, hi
        self._h = hash((self.terms, const))

    def __hash__(self):
        return self._h

    def __eq__(self, other):
        return isinstance(other, Expr) and self.terms == other.terms and self.const == other.const

    @property
    def is_const(self) -> bool:
        return not self.terms

    def __repr__(self):
        parts = [(f"{a!r}" if c == 1 else f"{a!r}*{c}") for a, c in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return " + ".join(parts)

    # -- arithmetic ---------------------------------------------------------------------------
    def __add__(self, other):
        other = _lift(other)
        t = dict(self.terms)
        for a, c in other.terms:
            t[a] = t.get(a, 0) + c
        return _recombine(t, self.const + other.const)

    __radd__ = __add__

    def __sub__(self, other):
        return self + _lift(other) * -1

    def __rsub__(self, other):
        return _lift(other) - self

    def __mul__(self, k: int):
        assert isinstance(k, int)
        return Expr({a: c * k for a, c in self.terms}, self.const * k)

    __rmul__ = __mul__

    def __floordiv__(self, c: int) -> "Expr":
        assert isinstance(c, int) and c > 0
        if c == 1:
            return self
        if self.lo >= 0 and self.hi < c:
            return const(0)
        # pull out the part that divides exactly: (q*c + r) // c == q + r // c
        q, r = {}, {}
        for a, k in self.terms:
            (q if k % c == 0 else r)[a] = k // c if k % c == 0 else k
        kq, kr = divmod(self.const, c)
        rest = Expr(r, kr)
        quot = Expr(q, kq)
        if rest.lo < 0:  # keep dividends non-negative: (r + m*c)//c - m == r//c
            m = -(rest.lo // c)
            rest, quot = rest + m * c, quot - m
        if rest.lo >= 0 and rest.hi < c:
            return quot
        if rest.lo // c == rest.hi // c:  # the remainder part spans a single quotient
            return quot + rest.lo // c
        g = c
        for _, k in rest.terms:
            g = gcd(g, k)
        g = gcd(g, rest.const)
        if g > 1:
            rest, c = Expr({a: k // g for a, k in rest.terms}, rest.const // g), c // g
        if len(rest.terms) == 1 and rest.const == 0 and rest.terms[0][1] == 1 and isinstance(rest.terms[0][0], FloorDiv):
            inner = rest.terms[0][0]  # (x // a) // b == x // (a*b)
            return quot + inner.x // (inner.c * c)
        return quot + Expr({FloorDiv(rest, c): 1}, 0)

    def __mod__(self, c: int) -> "Expr":
        assert isinstance(c, int) and c > 0
        if c == 1:
            return const(0)
        r = {a: k % c for a, k in self.terms if k % c}
        rest = Expr(r, self.const % c)
        if rest.lo < 0:  # (r + m*c) % c == r % c, with a non-negative dividend
            rest = rest + (-(rest.lo // c)) * c
        if rest.lo >= 0 and rest.hi < c:
            return rest
        if len(rest.terms) == 1 and rest.terms[0][1] == 1 and isinstance(rest.terms[0][0], Mod):
            inner = rest.terms[0][0]
            if inner.c % c == 0:  # (x % (a*c) + k) % c == (x + k) % c
                return (inner.x + rest.const) % c
        return Expr({Mod(rest, c): 1}, 0)

    # -- queries ------------------------------------------------------------------------------
    def atoms(self):
        """Every atom in the expression, nested ones included."""
        out = []
        for a, _ in self.terms:
            out.append(a)
            if isinstance(a, (FloorDiv, Mod)):
                out.extend(a.x.atoms())
        return out

    def vars(self) -> set:
        return {a for a in self.atoms() if isinstance(a, Var)}

    def substitute(self, mapping: dict) -> "Expr":
        """Replace variables by expressions (used to try merging loops)."""
        out = const(self.const)
        for a, c in self.terms:
            if isinstance(a, Var):
                out = out + (mapping[a] if a in mapping else Expr({a: 1}, 0)) * c
            elif isinstance(a, FloorDiv):
                out = out + (a.x.substitute(mapping) // a.c) * c
            else:
                out = out + (a.x.substitute(mapping) % a.c) * c
        return out

    def evaluate(self, env: dict) -> int:
        """The value at concrete variable values {name: int} (floor division, Python's %)."""
        total = self.const
        for a, c in self.terms:
            if isinstance(a, Var):
                total += c * env[a.name]
            elif isinstance(a, FloorDiv):
                total += c * (a.x.evaluate(env) // a.c)
            else:
                total += c * (a.x.evaluate(env) % a.c)
        return total

    def nonlinear_in(self, v: Var) -> bool:
        """Whether v occurs inside a // or %."""
        return any(isinstance(a, (FloorDiv, Mod)) and v in a.x.vars() for a in self.atoms())


def _lift(x) -> Expr:
    return x if isinstance(x, Expr) else const(x)


def _recombine(t: dict, k: int) -> Expr:
    """Fold c·(x//n)·n + c·(x%n) back into c·x. x//n may also be written y//(m·n) when x is y//m
    (a flattened index split into three axes, then flattened again: ((i//512)%64)*512 + i//32768*32768
    is (i//512)*512, which then folds with i%512 into i)."""
    for a, c in list(t.items()):
        if isinstance(a, Mod) and c:
            d = FloorDiv(a.x, a.c)
            if t.get(d, 0) != c * a.c:
                inner = a.x.terms
                if a.x.const != 0 or len(inner) != 1:
                    continue
                (y, one), = inner
                if one != 1 or not isinstance(y, FloorDiv):
                    continue
                d = FloorDiv(y.x, y.c * a.c)
                if t.get(d, 0) != c * a.c:
                    continue
            del t[a], t[d]
            return Expr(t, k) + a.x * c
    return Expr(t, k)


def const(v: int) -> Expr:
    return Expr({}, int(v))


def var(name: str, lo: int, hi: int) -> Expr:
    if lo == hi:
        return const(lo)
    return Expr({Var(name, lo, hi): 1}, 0)
