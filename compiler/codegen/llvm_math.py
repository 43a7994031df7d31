"""Vectorizable float32 transcendentals for the LLVM backend.

LLVM lowers `llvm.exp.v8f32` & co. to one scalar libm call per lane, which makes any fused
kernel with an exp or tanh compute-bound. These are straight-line (branch-free, call-free)
float32 implementations — Cody-Waite range reduction plus minimax polynomials, the classic
Cephes forms, accurate to a few ulp — emitted as `alwaysinline` functions so the loop
vectorizer sees through them. float64 keeps the exact libm/intrinsic versions.
"""
from __future__ import annotations


class _F:
    """A tiny straight-line IR builder for one float32 -> float32 function."""

    def __init__(self, name: str):
        self.name, self.lines, self.n = name, [], 0

    def op(self, text: str) -> str:
        self.n += 1
        self.lines.append(f"  %v{self.n} = {text}")
        return f"%v{self.n}"

    def c(self, x: float) -> str:
        import struct
        x = struct.unpack("f", struct.pack("f", x))[0]
        return "0x%016X" % struct.unpack("<Q", struct.pack("<d", x))[0]

    def fma(self, a, b, c):  # fmuladd: a fused multiply-add where the target has one
        return self.op(f"call float @llvm.fmuladd.f32(float {a}, float {b}, float {c})")

    def mul(self, a, b):
        return self.op(f"fmul float {a}, {b}")

    def add(self, a, b):
        return self.op(f"fadd float {a}, {b}")

    def sel(self, cond, a, b, ty="float"):
        return self.op(f"select i1 {cond}, {ty} {a}, {ty} {b}")

    def poly(self, x, coeffs):
        acc = self.c(coeffs[0])
        for k in coeffs[1:]:
            acc = self.fma(acc, x, self.c(k))
        return acc

    def done(self, result) -> str:
        body = "\n".join(self.lines)
        return (f"define internal float @{self.name}(float %x) alwaysinline nounwind readnone {{\n"
                f"{body}\n  ret float {result}\n}}")


def _pow2(f: _F, k: str) -> str:
    """2.0**k for an i32 k in the normal exponent range, built from its bits."""
    biased = f.op(f"add i32 {k}, 127")
    return f.op(f"bitcast i32 {f.op(f'shl i32 {biased}, 23')} to float")


def _exp_reduced(f: _F, xc: str) -> tuple[str, str]:
    """e**xc = y * 2**n with n = rint(xc / ln 2) (an i32) and y in [0.7, 1.42]: Cody-Waite
    reduction and the Cephes polynomial. xc must keep 2**n representable (the callers clamp)."""
    n = f.op(f"call float @llvm.rint.f32(float {f.mul(xc, f.c(1.44269504088896341))})")
    r = f.fma(n, f.c(-0.693359375), xc)
    r = f.fma(n, f.c(2.12194440e-4), r)
    p = f.poly(r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                   1.6666665459e-1, 5.0000001201e-1])
    r2 = f.mul(r, r)
    y = f.add(f.fma(p, r2, r), f.c(1.0))
    return y, f.op(f"fptosi float {n} to i32")


def _exp_body(f: _F, x: str) -> str:
    xc = f.sel(f.op(f"fcmp olt float {x}, {f.c(-104.0)}"), f.c(-104.0), x)
    xc = f.sel(f.op(f"fcmp ogt float {xc}, {f.c(89.0)}"), f.c(89.0), xc)
    y, ni = _exp_reduced(f, xc)
    # 2^n as two normal-range factors so results reach the denormal and overflow ranges exactly
    h = f.op(f"ashr i32 {ni}, 1")
    s1, s2 = _pow2(f, h), _pow2(f, f.op(f"sub i32 {ni}, {h}"))
    res = f.mul(f.mul(y, s1), s2)
    return f.sel(f.op(f"fcmp uno float {x}, 0.0"), x, res)


def _expf() -> str:
    f = _F("ember_expf")
    return f.done(_exp_body(f, "%x"))


def _logf() -> str:
    f = _F("ember_logf")
    x = "%x"
    tiny = f.op(f"fcmp olt float {x}, {f.c(1.17549435e-38)}")
    xs = f.sel(tiny, f.mul(x, f.c(8388608.0)), x)          # lift denormals by 2^23
    bits = f.op(f"bitcast float {xs} to i32")
    biased = f.op(f"and i32 {f.op(f'lshr i32 {bits}, 23')}, 255")
    e = f.op(f"sub i32 {biased}, 126")
    e = f.sel(tiny, f.op(f"sub i32 {e}, 23"), e, "i32")
    mant = f.op(f"and i32 {bits}, -2139095041")    # keep sign and mantissa bits
    m = f.op(f"bitcast i32 {f.op(f'or i32 {mant}, 1056964608')} to float")   # exponent of 0.5
    small = f.op(f"fcmp olt float {m}, {f.c(0.707106781186547524)}")
    e = f.sel(small, f.op(f"sub i32 {e}, 1"), e, "i32")
    m = f.sel(small, f.add(m, m), m)
    m = f.add(m, f.c(-1.0))
    ef = f.op(f"sitofp i32 {e} to float")
    z = f.mul(m, m)
    p = f.poly(m, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                   1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                   3.3333331174e-1])
    y = f.mul(f.mul(p, m), z)
    y = f.fma(ef, f.c(-2.12194440e-4), y)
    y = f.fma(z, f.c(-0.5), y)
    r = f.add(m, y)
    r = f.fma(ef, f.c(0.693359375), r)
    # special inputs: x<0 or NaN -> NaN, 0 -> -inf, +inf -> +inf
    r = f.sel(f.op(f"fcmp oeq float {x}, 0.0"), f.c(float("-inf")), r)
    r = f.sel(f.op(f"fcmp oeq float {x}, {f.c(float('inf'))}"), x, r)
    return f.done(f.sel(f.op(f"fcmp ult float {x}, 0.0"), f.c(float("nan")), r))


def _tanhf() -> str:
    """|x| < 0.625: odd polynomial; else sign(x) * (1 - 2 / (e**2|x| + 1)). Both are computed
    (vector lanes take either) and selected. The exponential here is the bare reduction with one
    scale factor: 2|x| is clamped to 20, where tanh already rounds to 1, so 2**n never leaves the
    normal range and exp's clamps, split scaling and NaN select (which `_exp_body` needs for
    any input) are dropped, with results bit for bit those of the general exp: ten fewer vector
    instructions per element, ~10% off tanh, which dominates a fused tanh-form gelu. Error:
    <= 1.31 ulp just above the switch, <= 0.55 ulp from |x| = 2 (tests/test_streaming_stores.py)."""
    f = _F("ember_tanhf")
    x = "%x"
    ax = f.op(f"call float @llvm.fabs.f32(float {x})")
    z = f.mul(x, x)
    p = f.poly(z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                   -3.33332819422e-1])
    small = f.fma(f.mul(p, z), x, x)
    t = f.mul(ax, f.c(2.0))
    t = f.sel(f.op(f"fcmp olt float {t}, {f.c(20.0)}"), t, f.c(20.0))   # one vminps; NaN -> 20
    y, n = _exp_reduced(f, t)
    e = f.mul(y, _pow2(f, n))
    q = f.op(f"fdiv float {f.c(2.0)}, {f.add(e, f.c(1.0))}")
    big = f.op(f"fsub float {f.c(1.0)}, {q}")
    res = f.sel(f.op(f"fcmp olt float {ax}, {f.c(0.625)}"), small, big)
    # the sign after the select: the polynomial has x's sign already, except that it gives +0
    # for -0 (x + x*(p*z) = -0 + +0)
    res = f.op(f"call float @llvm.copysign.f32(float {res}, float {x})")
    return f.done(f.sel(f.op(f"fcmp uno float {x}, 0.0"), x, res))


_DEFS = {"ember_expf": _expf, "ember_logf": _logf, "ember_tanhf": _tanhf}
_INTRINSICS = ["declare float @llvm.fmuladd.f32(float, float, float)", "declare float @llvm.rint.f32(float)",
               "declare float @llvm.fabs.f32(float)", "declare float @llvm.copysign.f32(float, float)"]


def _make(name32: str, exact64: str):
    def render(r, dt, ty, a):
        if ty == "float":
            r.decls[name32] = None  # defined below, not declared
            return f"call float @{name32}(float {a})"
        return r.call(exact64, ty, [ty], (a,))
    return render


exp = _make("ember_expf", "llvm.exp.f64")
log = _make("ember_logf", "llvm.log.f64")
tanh = _make("ember_tanhf", "tanh")


def definitions(used: dict) -> list[str]:
    """Bodies of the helper functions a kernel used, plus the intrinsics they call."""
    names = [n for n in _DEFS if n in used]
    if not names:
        return []
    declared = set(d for d in used.values() if d)
    return [d for d in _INTRINSICS if d not in declared] + [_DEFS[n]() for n in names]
