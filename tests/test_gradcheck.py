"""Every differentiable op of the Tensor API against float64 central finite differences.

Each case draws shapes (from small pools, so a kernel compiles once per op and shape rather than
once per example), arguments (dims, indices, masks, paddings) and a seed for the values. Values are
drawn away from the points where the op is not differentiable (ties of max/min, integer points of
floor-like ops, zero for |x|, ...). Inputs reach the op as contiguous tensors or as permuted,
strided or flipped views of a storage buffer, and the gradient must find its way back into that
buffer (tests/gradcheck.py). A representative set is also checked to second order.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

import ember
from ember.ops_movement import pad as F_pad  # nn.functional.pad's implementation
from gradcheck import gradcheck

# Ops whose gradient is wrong or missing today (the bug is in the op's forward composition, not in
# autograd): strict xfails, so a fix shows up as XPASS; then delete the entry and the op joins the
# hypothesis tests below.
KNOWN_GAPS: dict = {}
SETTINGS = settings(max_examples=10, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
LAYOUTS = ["contiguous", "permuted", "strided", "flipped"]
I64 = lambda a: ember.tensor(np.asarray(a, dtype=np.int64))  # noqa: E731
BOOL = lambda a: ember.tensor(np.asarray(a, dtype=bool))      # noqa: E731


# ---- value domains: float64 arrays of a shape, away from the op's kinks ---------------------

def real(rng, s):
    return rng.uniform(-2.0, 2.0, s)


def positive(rng, s):
    return rng.uniform(0.2, 2.0, s)


def nonzero(rng, s):
    return rng.choice([-1.0, 1.0], s) * rng.uniform(0.2, 2.0, s)


def above_minus_one(rng, s):
    return rng.uniform(-0.8, 2.0, s)


def small(rng, s):  # tan's domain
    return rng.uniform(-1.2, 1.2, s)


def nonint(rng, s):
    """Away from integers and half-integers, where floor/ceil/round/trunc jump."""
    return rng.integers(-3, 3, s) + rng.choice([0.25, 0.75], s) + rng.uniform(-0.1, 0.1, s)


def off_multiples(step):
    """Away from the multiples of `step`, where x % step jumps."""
    return lambda rng, s: (rng.integers(-4, 4, s) + rng.uniform(0.1, 0.9, s)) * step


def grid(offset):
    """Values (k + offset) * 0.3: inputs drawn with different offsets never come within 0.07 of
    each other (max/min/clamp ties), while repeats within one input are allowed."""
    return lambda rng, s: (rng.integers(-6, 7, s) + offset) * 0.3 + rng.uniform(-0.02, 0.02, s)


def distinct(rng, s):
    """Pairwise distinct, also in absolute value, and away from 0 (extrema, inf-norms)."""
    n = math.prod(s)
    return (rng.permutation(n) + 1.0).reshape(s) * 0.2 * rng.choice([-1.0, 1.0], s) + rng.uniform(-0.02, 0.02, s)


def with_zeros(rng, s):
    """Some exact zeros (prod/cumprod must not divide by them)."""
    return rng.uniform(-2.0, 2.0, s) * (rng.random(s) < 0.7)


def draw_values(rng, shapes, domains, valid=None):
    """Arrays of `shapes` from `domains`, redrawn until `valid(*arrays)` holds."""
    for _ in range(200):
        arrays = [np.asarray(dom(rng, s), dtype=np.float64) for dom, s in zip(domains, shapes)]
        if valid is None or valid(*arrays):
            return arrays
    assume(False)


def run(d, fn, arrays, second_order=False):
    """gradcheck with every input in a drawn layout (0-d inputs stay plain). Second-order checks
    take contiguous inputs: views are covered to first order, and each layout compiles kernels."""
    layouts = None if second_order else [
        d.draw(st.sampled_from(LAYOUTS), label="layout") if a.ndim else "contiguous" for a in arrays]
    gradcheck(fn, *arrays, layouts=layouts, second_order=second_order)


def params(cases: dict, family: str) -> list:
    """The case names to run under hypothesis: all but the known gaps (tested in test_known_gaps)."""
    return [n for n in cases if f"{family}:{n}" not in KNOWN_GAPS]


# ---- elementwise ----------------------------------------------------------------------------

UNARY_SHAPES = [(), (5,), (2, 3), (2, 1, 3), (0, 3)]

UNARY = {
    "neg": (lambda x: -x, real),
    "positive": (lambda x: +x, real),
    "abs": (lambda x: x.abs(), nonzero),
    "sign_times_x": (lambda x: x.sign() * x, nonzero),
    "reciprocal": (lambda x: x.reciprocal(), nonzero),
    "square": (lambda x: x.square(), real),
    "exp": (lambda x: x.exp(), real),
    "exp2": (lambda x: x.exp2(), real),
    "expm1": (lambda x: x.expm1(), real),
    "log": (lambda x: x.log(), positive),
    "log1p": (lambda x: x.log1p(), above_minus_one),
    "log2": (lambda x: x.log2(), positive),
    "log10": (lambda x: x.log10(), positive),
    "sqrt": (lambda x: x.sqrt(), positive),
    "rsqrt": (lambda x: x.rsqrt(), positive),
    "sin": (lambda x: x.sin(), real),
    "cos": (lambda x: x.cos(), real),
    "tan": (lambda x: x.tan(), small),
    "tanh": (lambda x: x.tanh(), real),
    "sigmoid": (lambda x: x.sigmoid(), real),
    "relu": (lambda x: x.relu(), nonzero),
    "erf": (lambda x: x.erf(), real),
    "floor": (lambda x: x.floor() * x, nonint),
    "ceil": (lambda x: x.ceil() * x, nonint),
    "trunc": (lambda x: x.trunc() * x, nonint),
    "round": (lambda x: x.round() * x, nonint),
    "round_decimals": (lambda x: ember.round(x / 10, decimals=1) + x, nonint),
    "clamp": (lambda x: x.clamp(-0.45, 0.75), grid(0.0)),
    "clamp_min": (lambda x: x.clamp_min(0.15), grid(0.0)),
    "clamp_max": (lambda x: ember.clamp_max(x, -0.15), grid(0.0)),
    "pow_2": (lambda x: x ** 2, real),
    "pow_3": (lambda x: x ** 3, real),
    "pow_4": (lambda x: x.pow(4), real),
    "pow_0": (lambda x: x ** 0.0 * x, with_zeros),
    "pow_half": (lambda x: x ** 0.5, positive),
    "pow_-1": (lambda x: x ** -1, nonzero),
    "pow_-2": (lambda x: x ** -2, nonzero),
    "pow_-half": (lambda x: x ** -0.5, positive),
    "pow_1.7": (lambda x: x ** 1.7, positive),
    "rpow": (lambda x: 2.5 ** x, real),
    "add_scalar": (lambda x: x + 2 + (3 - x) * 2, real),
    "div_scalar": (lambda x: x / 4 + 3 / x, nonzero),
    "remainder_scalar": (lambda x: (x % 0.7) * (x % -0.7) + ember.fmod(x, 0.7), off_multiples(0.7)),
    "clone_contiguous": (lambda x: x.clone().contiguous() * x, real),
    "to_same_dtype": (lambda x: x.to(ember.float64).double() * x, real),
}


@pytest.mark.parametrize("name", params(UNARY, "unary"))
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_unary(name, d, seed):
    fn, dom = UNARY[name]
    shape = d.draw(st.sampled_from(UNARY_SHAPES), label="shape")
    run(d, fn, draw_values(np.random.default_rng(seed), [shape], [dom]))


# pairs that broadcast every way: equal, trailing, both-sided, 0-d, rank-changing
BROADCAST_PAIRS = [((2, 3), (2, 3)), ((2, 3), (3,)), ((3, 1), (1, 4)), ((), (2, 3)), ((2, 1, 3), (4, 1)),
                   ((4,), ()), ((1, 3), (2, 1, 1))]


def _far_from_integer_quotient(x, y):
    q = x / y
    return np.all(np.abs(q - np.round(q)) > 0.05)


BINARY = {
    "add": (lambda x, y: x + y, real, real, None),
    "add_alpha": (lambda x, y: ember.add(x, y, alpha=-1.5), real, real, None),
    "sub": (lambda x, y: x - y, real, real, None),
    "sub_alpha": (lambda x, y: x.sub(y, alpha=2), real, real, None),
    "mul": (lambda x, y: x * y, real, real, None),
    "div": (lambda x, y: x / y, real, nonzero, None),
    "true_divide": (lambda x, y: ember.true_divide(y, x), nonzero, real, None),
    "pow": (lambda x, y: x ** y, positive, real, None),
    "maximum": (lambda x, y: ember.maximum(x, y), grid(0.0), grid(0.5), None),
    "minimum": (lambda x, y: ember.minimum(x, y), grid(0.0), grid(0.5), None),
    "max_binary": (lambda x, y: ember.max(x, y) - y.min(x), grid(0.0), grid(0.5), None),
    "fmod": (lambda x, y: ember.fmod(x, y), real, nonzero, _far_from_integer_quotient),
    "remainder": (lambda x, y: x % y, real, nonzero, _far_from_integer_quotient),
    "floor_divide": (lambda x, y: (x // y) * x + ember.div(x, y, rounding_mode="trunc") * y, real, nonzero,
                     _far_from_integer_quotient),
    "where": (lambda x, y: ember.where(x > 0, x, y) * ember.where(y < 0.5, 2.0, y), nonzero, grid(0.0), None),
}


@pytest.mark.parametrize("name", params(BINARY, "binary"))
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_binary_broadcasting(name, d, seed):
    fn, dx, dy, valid = BINARY[name]
    sx, sy = d.draw(st.sampled_from(BROADCAST_PAIRS), label="shapes")
    if d.draw(st.booleans(), label="swap"):
        sx, sy = sy, sx
    run(d, fn, draw_values(np.random.default_rng(seed), [sx, sy], [dx, dy], valid))


TERNARY = {
    "lerp_scalar_low": (lambda x, y, w: ember.lerp(x, y, 0.3) * w, [real, real, real]),
    "lerp_scalar_high": (lambda x, y, w: x.lerp(y, 0.8) + w, [real, real, real]),
    "lerp_tensor": (lambda x, y, w: ember.lerp(x, y, w), [real, real, real]),
    "addcmul": (lambda x, y, z: ember.addcmul(x, y, z, value=-0.5), [real, real, real]),
    "addcdiv": (lambda x, y, z: x.addcdiv(y, z, value=2), [real, real, nonzero]),
    "clamp_tensors": (lambda x, lo, hi: x.clamp(lo, hi), [grid(0.0), grid(1 / 3), grid(2 / 3)]),
    "clamp_min_tensor": (lambda x, lo, w: ember.clamp(x, min=lo) * w, [grid(0.0), grid(0.5), real]),
    "where_broadcast_cond": (lambda c, x, y: ember.where(c > 0, x, y), [nonzero, real, real]),
}
TERNARY_SHAPES = [((2, 3), (2, 3), (2, 3)), ((2, 3), (3,), (2, 1)), ((), (2, 1), (3,)), ((1, 3), (2, 1), ())]


@pytest.mark.parametrize("name", params(TERNARY, "ternary"))
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_ternary_broadcasting(name, d, seed):
    fn, doms = TERNARY[name]
    shapes = list(d.draw(st.permutations(d.draw(st.sampled_from(TERNARY_SHAPES), label="shapes"))))
    run(d, fn, draw_values(np.random.default_rng(seed), shapes, doms))


def test_masked_fill_gradient_reaches_a_tensor_value():
    v0, x0 = np.array(0.7), np.random.default_rng(0).uniform(-1, 1, (2, 3))
    gradcheck(lambda x, v: x.masked_fill(BOOL([True, False, True]), v) * x, x0, v0, second_order=True)


# ---- reductions -----------------------------------------------------------------------------

REDUCE_SHAPES = [(), (5,), (2, 3), (3, 1, 2), (2, 2, 3)]


def dims_of(d, shape, multi: bool):
    """A dim argument: an int, or (multi) None or a tuple of dims; 0-d tensors take 0 or -1."""
    nd = len(shape)
    if nd == 0:
        return d.draw(st.sampled_from([0, -1] + ([None] if multi else [])), label="dim")
    one = st.integers(-nd, nd - 1)
    if not multi:
        return d.draw(one, label="dim")
    return d.draw(st.one_of(one, st.none(), st.sets(st.integers(0, nd - 1), min_size=1).map(tuple)), label="dim")


def _count(shape, dim):
    if dim is None or not shape:
        return math.prod(shape)
    dims = dim if isinstance(dim, tuple) else (dim,)
    return math.prod(shape[k] for k in dims)


def _all(dim, shape):
    return tuple(range(len(shape))) if dim is None else dim


# name: (fn(x, dim, keepdim, shape), domain, dims may be several)
REDUCE = {
    "sum": (lambda x, dim, kd, s: x.sum(dim, keepdim=kd), real, True),
    "mean": (lambda x, dim, kd, s: x.mean(dim, kd), real, True),
    "nansum": (lambda x, dim, kd, s: ember.nansum(x, dim, keepdim=kd), real, True),
    "prod": (lambda x, dim, kd, s: x.prod(dim, keepdim=kd), with_zeros, False),
    "prod_all": (lambda x, dim, kd, s: x.prod(), with_zeros, False),
    "max_all": (lambda x, dim, kd, s: x.max() * x.min(), distinct, False),
    "max_dim": (lambda x, dim, kd, s: x.max(dim, keepdim=kd).values, distinct, False),
    "min_dim": (lambda x, dim, kd, s: x.min(dim, kd)[0], distinct, False),
    "amax": (lambda x, dim, kd, s: x.amax(_all(dim, s), kd), distinct, True),
    "amin": (lambda x, dim, kd, s: ember.amin(x, _all(dim, s), kd), distinct, True),
    "aminmax": (lambda x, dim, kd, s: ember.aminmax(x, dim=dim, keepdim=kd), distinct, False),
    "var": (lambda x, dim, kd, s: x.var(dim, keepdim=kd, correction=int(_count(s, dim) > 1)), real, True),
    "std": (lambda x, dim, kd, s: x.std(dim, keepdim=kd, correction=0), real, True),
    "var_mean": (lambda x, dim, kd, s: ember.var_mean(x, dim, keepdim=kd, correction=0), real, True),
    "std_mean": (lambda x, dim, kd, s: ember.std_mean(x, dim, keepdim=kd, correction=0), real, True),
    "logsumexp": (lambda x, dim, kd, s: x.logsumexp(_all(dim, s), kd), real, True),
    "softmax": (lambda x, dim, kd, s: x.softmax(dim), real, False),
    "log_softmax": (lambda x, dim, kd, s: x.log_softmax(dim), real, False),
    "cumsum": (lambda x, dim, kd, s: x.cumsum(dim), real, False),
    "cumprod": (lambda x, dim, kd, s: x.cumprod(dim), with_zeros, False),
    "norm_2": (lambda x, dim, kd, s: x.norm(dim=dim, keepdim=kd), nonzero, True),
    "norm_1": (lambda x, dim, kd, s: x.norm(1, dim, kd), nonzero, True),
    "norm_3": (lambda x, dim, kd, s: ember.norm(x, 3, dim, kd), nonzero, True),
    "norm_inf": (lambda x, dim, kd, s: x.norm(math.inf, dim, kd) - x.norm(-math.inf, dim, kd), distinct, True),
}


@pytest.mark.parametrize("name", params(REDUCE, "reduce"))
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_reduction(name, d, seed):
    fn, dom, multi = REDUCE[name]
    shape = d.draw(st.sampled_from(REDUCE_SHAPES), label="shape")
    dim, kd = dims_of(d, shape, multi), d.draw(st.booleans(), label="keepdim")
    if name.startswith("std"):
        assume(_count(shape, dim) > 1)  # sqrt(var) is not differentiable where var = 0
    run(d, lambda x: fn(x, dim, kd, shape), draw_values(np.random.default_rng(seed), [shape], [dom]))


def test_prod_gradient_with_one_two_and_three_zeros():
    x = np.array([[0.0, 2.0, -1.5, 3.0], [0.5, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.5], [1.0, -2.0, 0.5, 3.0]])
    g = gradcheck(lambda t: t.prod(1), x, second_order=True)
    # d/dx_i = product of the others: exact values, not 0/0
    assert g[0] is not None and np.isfinite(g[0]).all()
    gradcheck(lambda t: t.prod(), x[:2, :2] + np.eye(2), second_order=True)
    gradcheck(lambda t: t.cumprod(0), x, second_order=True)


# ---- matrix products ------------------------------------------------------------------------

MATMUL_RANKS = [(1, 1), (1, 2), (2, 1), (2, 2), (1, 3), (3, 1), (3, 2), (2, 3), (3, 3), (4, 3), (2, 4)]
BATCHES = [((), ()), ((2,), (2,)), ((2,), (1,)), ((1,), (2,)), ((2, 1), (3,))]


def _operand_shape(rank, batch, matrix, k):
    """A matmul operand: the vector (k,), `matrix`, or `matrix` behind `batch` fitted to rank - 2 dims."""
    if rank == 1:
        return (k,)
    return (((1,) * rank + batch)[-(rank - 2):] if rank > 2 else ()) + matrix


@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_matmul_every_rank_combination(d, seed):
    ra, rb = d.draw(st.sampled_from(MATMUL_RANKS), label="ranks")
    n, k, m = (d.draw(st.integers(1, 3), label=c) for c in "nkm")
    ba, bb = d.draw(st.sampled_from(BATCHES), label="batch")
    sa, sb = _operand_shape(ra, ba, (n, k), k), _operand_shape(rb, bb, (k, m), k)
    run(d, lambda a, b: a @ b, draw_values(np.random.default_rng(seed), [sa, sb], [real, real]))


MATMUL_FAMILY = {
    "mm": (lambda a, b: ember.mm(a, b), [(2, 3), (3, 2)]),
    "bmm": (lambda a, b: a.bmm(b), [(2, 2, 3), (2, 3, 1)]),
    "mv": (lambda a, b: ember.mv(a, b), [(2, 3), (3,)]),
    "dot": (lambda a, b: a.dot(b), [(4,), (4,)]),
    "outer": (lambda a, b: ember.outer(a, b), [(3,), (2,)]),
    "inner": (lambda a, b: ember.inner(a, b), [(2, 3), (4, 3)]),
    "matmul_of_transposes": (lambda a, b: (a.T @ b.mT).T, [(3, 2), (4, 3)]),
}


@pytest.mark.parametrize("name", params(MATMUL_FAMILY, "matmul_family"))
@settings(SETTINGS, max_examples=4)
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_matmul_family(name, d, seed):
    fn, shapes = MATMUL_FAMILY[name]
    run(d, fn, draw_values(np.random.default_rng(seed), shapes, [real, real]))


# ---- movement -------------------------------------------------------------------------------
# each case draws its arguments for an input of `shape` (from MOVE_SHAPES) and returns fn(x)

MOVE_SHAPES = [(5,), (2, 3), (3, 1, 2), (2, 2, 3), (1, 4, 1)]
MOVEMENT = {}


def case(registry, name):
    def register(f):
        registry[name] = f
        return f
    return register


def _dim(d, nd, extra=0):
    return d.draw(st.integers(-nd - extra, nd - 1 + extra), label="dim")


def _ramp(shape):
    """Distinct weights, so a gradient sent to the wrong position shows."""
    return ember.arange(math.prod(shape), dtype=ember.float64).reshape(shape)


@case(MOVEMENT, "reshape")
def _movement_reshape(d, s):
    n = math.prod(s)
    a = d.draw(st.sampled_from([f for f in range(1, n + 1) if n % f == 0]), label="factor")
    target = d.draw(st.sampled_from([(a, n // a), (n // a, -1), (-1,), (a, 1, n // a)]), label="target")
    return lambda x: x.reshape(target) * _ramp((n,)).reshape(target)


@case(MOVEMENT, "view_flatten_unflatten")
def _movement_view_flatten_unflatten(d, s):
    return lambda x: x.view(-1).unflatten(0, s).flatten(min(1, len(s) - 1)).ravel() * _ramp((math.prod(s),))


@case(MOVEMENT, "permute")
def _movement_permute(d, s):
    p = tuple(d.draw(st.permutations(range(len(s))), label="perm"))
    return lambda x: x.permute(p) * x.permute(p).exp()


@case(MOVEMENT, "transpose_T_mT")
def _movement_transpose_T_mT(d, s):
    a, b = _dim(d, len(s)), _dim(d, len(s))
    return lambda x: [x.transpose(a, b).exp(), x.T * 2] + ([x.mT.sin()] if len(s) >= 2 else [])


@case(MOVEMENT, "movedim")
def _movement_movedim(d, s):
    a, b = _dim(d, len(s)), _dim(d, len(s))
    return lambda x: x.movedim(a, b).exp()


@case(MOVEMENT, "expand_broadcast_to")
def _movement_expand_broadcast_to(d, s):
    return lambda x: [x.unsqueeze(1).expand(s[:1] + (3,) + s[1:]) * x.unsqueeze(1), x.broadcast_to((2,) + s).sin()]


@case(MOVEMENT, "squeeze_unsqueeze")
def _movement_squeeze_unsqueeze(d, s):
    k = _dim(d, len(s), 1)
    return lambda x: x.unsqueeze(k).squeeze().unsqueeze(-1).squeeze(-1).exp()


@case(MOVEMENT, "cat_split")
def _movement_cat_split(d, s):
    k = _dim(d, len(s))
    cuts = sorted(d.draw(st.lists(st.integers(0, s[k]), min_size=1, max_size=3), label="cuts"))
    sizes = [b - a for a, b in zip([0] + cuts, cuts + [s[k]])]  # some may be 0
    return lambda x: ember.cat([p * (i + 1) for i, p in enumerate(reversed(x.split(sizes, k)))], k)


@case(MOVEMENT, "stack")
def _movement_stack(d, s):
    k = _dim(d, len(s), 1)
    return lambda x: ember.stack([x, x.exp(), x * 2], k)


@case(MOVEMENT, "hstack_vstack")
def _movement_hstack_vstack(d, s):
    return lambda x: [ember.hstack([x, x * 2]), ember.vstack([x.sin(), x])]


@case(MOVEMENT, "split_chunk_tensor_split_unbind")
def _movement_split_chunk_tensor_split_unbind(d, s):
    k, c = _dim(d, len(s)), d.draw(st.integers(1, 3), label="pieces")
    return lambda x: [p * (i + 1) for i, p in enumerate(
        x.split(c, k) + x.chunk(c, k) + ember.tensor_split(x, c, k) + x.unbind(k))]


@case(MOVEMENT, "flip")
def _movement_flip(d, s):
    dims = tuple(d.draw(st.sets(st.integers(0, len(s) - 1)), label="dims"))
    return lambda x: x.flip(dims) * _ramp(s)


@case(MOVEMENT, "roll")
def _movement_roll(d, s):
    n, k, flat = d.draw(st.integers(-4, 4)), _dim(d, len(s)), d.draw(st.booleans())
    return lambda x: (x.roll(n) if flat else x.roll(n, k)) * _ramp(s)


@case(MOVEMENT, "pad_constant")
def _movement_pad_constant(d, s):
    widths = d.draw(st.lists(st.integers(-1, 2), min_size=1, max_size=len(s)).map(
        lambda w: tuple(v for v in w for _ in range(2))), label="pad")  # (before, after) per trailing dim
    assume(all(s[-1 - i] + min(widths[2 * i], 0) + min(widths[2 * i + 1], 0) >= 0 for i in range(len(widths) // 2)))
    value = d.draw(st.sampled_from([0.0, 1.5]), label="value")
    return lambda x: F_pad(x, widths, value=value).exp()


def _pad_mode(mode):
    def make(d, s):
        hi = s[-1] - 1 if mode == "reflect" else s[-1]
        widths = (d.draw(st.integers(0, hi)), d.draw(st.integers(0, hi)))
        return lambda x: F_pad(x, widths, mode=mode) * _ramp(s[:-1] + (s[-1] + sum(widths),))
    return make


for _mode in ("reflect", "replicate", "circular"):
    MOVEMENT[f"pad_{_mode}"] = _pad_mode(_mode)


@case(MOVEMENT, "repeat_tile")
def _movement_repeat_tile(d, s):
    reps = tuple(d.draw(st.lists(st.integers(1, 2), min_size=len(s), max_size=len(s) + 1), label="reps"))
    return lambda x: [x.repeat(reps).cos(), x.tile((2,)).exp()]


@case(MOVEMENT, "narrow_select")
def _movement_narrow_select(d, s):
    k = _dim(d, len(s))
    return lambda x: x.narrow(k, s[k] // 3, s[k] - s[k] // 3).exp() + x.select(k, -1).unsqueeze(k)


@case(MOVEMENT, "tril_triu")
def _movement_tril_triu(d, s):
    k = d.draw(st.integers(-2, 2), label="diagonal")
    return lambda x: x.reshape(-1, s[-1]).tril(k) + x.reshape(-1, s[-1]).triu(-k).exp()


@case(MOVEMENT, "slice_steps_and_flips")
def _movement_slice_steps_and_flips(d, s):
    items = []
    for n in s:
        start, stop = sorted(d.draw(st.lists(st.integers(0, n), min_size=2, max_size=2)))
        items.append(slice(start, stop, d.draw(st.integers(1, 3))))
    flips = tuple(d.draw(st.sets(st.integers(0, len(s) - 1)), label="flips"))
    return lambda x: x.flip(flips)[tuple(items)].exp()


@case(MOVEMENT, "views_of_views")
def _movement_views_of_views(d, s):
    p = tuple(d.draw(st.permutations(range(len(s))), label="perm"))
    return lambda x: x.permute(p).flip(-1)[..., ::2].reshape(-1)[1::2].unsqueeze(0).expand(2, -1) * x.sum()


@pytest.mark.parametrize("name", params(MOVEMENT, "movement"))
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_movement(name, d, seed):
    shape = d.draw(st.sampled_from(MOVE_SHAPES), label="shape")
    fn = MOVEMENT[name](d, shape)
    run(d, fn, draw_values(np.random.default_rng(seed), [shape], [real]))


# ---- indexing -------------------------------------------------------------------------------

INDEX_SHAPES = [(4,), (2, 3), (3, 1, 2), (2, 2, 3)]


def basic_index(d, shape):
    """ints, stepped slices, None and an Ellipsis."""
    items = []
    for n in shape:
        kind = d.draw(st.sampled_from(["int", "slice", "all"]), label="kind")
        if kind == "int":
            items.append(d.draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            bound = st.none() | st.integers(-n - 1, n + 1)
            items.append(slice(d.draw(bound), d.draw(bound), d.draw(st.sampled_from([None, 1, 2, 3]))))
        else:
            items.append(slice(None))
    for _ in range(d.draw(st.integers(0, 2))):
        items.insert(d.draw(st.integers(0, len(items))), None)
    if d.draw(st.booleans()):  # an Ellipsis swallows a run of items (those dims are taken whole)
        a = d.draw(st.integers(0, len(items)))
        b = d.draw(st.integers(a, len(items)))
        items[a:b] = [Ellipsis]
    return tuple(items)


def advanced_index(d, rng, shape):
    """Integer index tensors (with repeats and negative values) on some dims, broadcasting together,
    between full/stepped slices and ints."""
    nd = len(shape)
    adv = sorted(d.draw(st.permutations(range(nd)))[:d.draw(st.integers(1, min(2, nd)))])
    bshape = d.draw(st.sampled_from([(3,), (2, 1), (1, 3), (5,), ()]), label="bshape")
    items = []
    for k, n in enumerate(shape):
        if k in adv:
            ishape = bshape if d.draw(st.booleans()) else tuple(1 for _ in bshape)
            values = rng.integers(-n, n, ishape)
            items.append(I64(values) if d.draw(st.booleans()) else values.tolist())  # a tensor or a list
        else:
            items.append(d.draw(st.sampled_from([slice(None), slice(None, None, 2), 0, -1])))
    return tuple(items)


def _mask_of(rng, shape):
    return rng.random(shape) < 0.5


def _random_index(d, rng, shape, kind):
    if kind == "basic":
        return basic_index(d, shape)
    if kind == "advanced":
        return advanced_index(d, rng, shape)
    k = d.draw(st.integers(1, len(shape)), label="mask dims")
    mask = _mask_of(rng, shape[:k])
    return BOOL(mask) if d.draw(st.booleans()) else mask


INDEX_KINDS = ["basic", "advanced", "mask"]


@pytest.mark.parametrize("kind", INDEX_KINDS)
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_getitem(kind, d, seed):
    rng = np.random.default_rng(seed)
    shape = d.draw(st.sampled_from(INDEX_SHAPES), label="shape")
    index = _random_index(d, rng, shape, kind)
    run(d, lambda x: x[index] * 2, draw_values(rng, [shape], [real]))


@pytest.mark.parametrize("kind", INDEX_KINDS)
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_setitem_on_non_leaf(kind, d, seed):
    """z[index] = value on a computed z: the overwritten elements' old values reach the result only
    through `early` (recorded before the write); with repeated indices the last write wins."""
    rng = np.random.default_rng(seed)
    shape = d.draw(st.sampled_from(INDEX_SHAPES), label="shape")
    index = _random_index(d, rng, shape, kind)
    with ember.no_grad():
        target = tuple(ember.zeros(shape)[index].shape)
    vshape = d.draw(st.sampled_from([target, target[-1:], ()]), label="value shape")

    def fn(x, y):
        z = x.sin()
        early = z * 3
        z[index] = y * 2
        return z * early + z
    run(d, fn, draw_values(rng, [shape, vshape], [real, real]))


def test_setitem_scalar_and_chained_writes():
    def fn(x, y):
        z = x * 1.0
        z[0] = 5.0                  # a constant: cuts x[0]'s gradient through z
        z[1:, ::2] = y              # then a tensor value
        z[:, 1] = z[:, 1] * z[:, 0]  # a value that reads z itself
        z[BOOL([[True, False, True]] * 3)] = 0.5
        return z * x
    rng = np.random.default_rng(3)
    gradcheck(fn, rng.uniform(-1, 1, (3, 3)), rng.uniform(-1, 1, (2, 2)), second_order=True)


GATHERS = {}


def _index(rng, n, shape, negative=False):
    return I64(rng.integers(-n if negative else 0, n, shape))


@case(GATHERS, "gather")
def _gathers_gather(d, rng, s):
    k, m = _dim(d, len(s)) % len(s), d.draw(st.integers(1, 4), label="size")
    idx = _index(rng, s[k], s[:k] + (m,) + s[k + 1:])
    return lambda x: x.gather(k, idx)


@case(GATHERS, "gather_smaller_index")
def _gathers_gather_smaller_index(d, rng, s):
    idx = _index(rng, s[-1], tuple(max(1, n - 1) for n in s))
    return lambda x: ember.gather(x, -1, idx)


@case(GATHERS, "index_select")
def _gathers_index_select(d, rng, s):
    k, m = _dim(d, len(s)) % len(s), d.draw(st.integers(0, 5), label="size")
    idx = _index(rng, s[k], (m,))
    return lambda x: x.index_select(k, idx)


@case(GATHERS, "take_along_dim")
def _gathers_take_along_dim(d, rng, s):
    k = _dim(d, len(s)) % len(s)
    idx, flat = _index(rng, s[k], s[:k] + (3,) + s[k + 1:], negative=True), _index(rng, math.prod(s), (6,))
    return lambda x: [ember.take_along_dim(x, idx, k), x.take_along_dim(flat)]


@case(GATHERS, "masked_fill_where")
def _gathers_masked_fill_where(d, rng, s):
    m = BOOL(_mask_of(rng, s[d.draw(st.integers(0, len(s)), label="mask dims"):]))
    return lambda x: [x.masked_fill(m, -1.0) * x, ember.where(m, x.exp(), x * 3)]


@pytest.mark.parametrize("name", params(GATHERS, "gathers"))
@SETTINGS
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_gather_family_accumulates_repeated_indices(name, d, seed):
    rng = np.random.default_rng(seed)
    shape = d.draw(st.sampled_from(INDEX_SHAPES), label="shape")
    run(d, GATHERS[name](d, rng, shape), draw_values(rng, [shape], [real]))


# ---- in-place updates on non-leaf tensors ---------------------------------------------------

INPLACE = {
    "add_": lambda z, y: z.add_(y, alpha=0.5),
    "sub_": lambda z, y: z.sub_(y),
    "mul_": lambda z, y: z.mul_(y),
    "div_": lambda z, y: z.div_(y),
    "pow_": lambda z, y: z.pow_(y),
    "iadd_isub_imul_itruediv": lambda z, y: z.__iadd__(y).__imul__(y).__isub__(1.0).__itruediv__(y),
    "ipow": lambda z, y: z.__ipow__(2),
    "exp_log_": lambda z, y: z.exp_().log_(),
    "sqrt_rsqrt_": lambda z, y: z.sqrt_().rsqrt_(),
    "sin_tanh_sigmoid_": lambda z, y: z.sin_().tanh_().sigmoid_(),
    "neg_reciprocal_square_": lambda z, y: z.neg_().reciprocal_().square_(),
    "clamp_": lambda z, y: z.clamp_(0.8, 1.6),
    "lerp_": lambda z, y: z.lerp_(y, 0.25),
    "addcmul_addcdiv_": lambda z, y: z.addcmul_(y, y, value=0.5).addcdiv_(y, y + 1),
    "masked_fill_": lambda z, y: z.masked_fill_(y > 1.0, 0.0),
    "relu_": lambda z, y: z.sub_(1.0).relu_(),
}


@pytest.mark.parametrize("name", params(INPLACE, "inplace"))
@settings(SETTINGS, max_examples=6)
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_inplace_on_non_leaf_keeps_old_value_for_earlier_uses(name, d, seed):
    sx, sy = d.draw(st.sampled_from([((2, 3), (2, 3)), ((2, 3), (3,)), ((4,), ())]), label="shapes")

    def fn(x, y):
        z = x * 1.25
        early = z.cos()          # recorded before the update: must see the old value
        out = INPLACE[name](z, y)
        assert out is z
        return z * early + x

    def valid(x, y):  # away from the kinks of clamp_(0.8, 1.6), relu_(z - 1) and the mask y > 1
        gaps = [np.abs(x * 1.25 - c) for c in (0.8, 1.0, 1.6)] + [np.abs(y - 1)]
        return all(g.min(initial=1) > 0.02 for g in gaps)
    run(d, fn, draw_values(np.random.default_rng(seed), [sx, sy], [positive, positive], valid))


# ---- second derivatives ---------------------------------------------------------------------

SECOND = {
    "unary": ["exp", "log", "sqrt", "tanh", "sigmoid", "erf", "reciprocal", "pow_1.7", "pow_0", "expm1",
              "clamp"],
    "binary": ["mul", "div", "pow", "maximum", "where", "fmod"],
    "reduce": ["prod", "cumprod", "softmax", "log_softmax", "logsumexp", "var", "std", "norm_2", "amax",
               "max_dim"],
    "movement": ["cat_split", "pad_reflect", "views_of_views", "repeat_tile"],
    "gather": ["gather", "index_select"],
}


def _squared(f):
    """Linear ops have a zero second derivative; squaring their outputs makes it informative."""
    def fn(x):
        out = f(x)
        return [o * o for o in (out if isinstance(out, list) else [out])]
    return fn


@pytest.mark.parametrize("family,name", [(f, n) for f, names in SECOND.items() for n in names])
@settings(SETTINGS, max_examples=3)
@given(d=st.data(), seed=st.integers(0, 2**32 - 1))
def test_second_derivative(family, name, d, seed):
    rng = np.random.default_rng(seed)
    if family == "unary":
        fn, dom = UNARY[name]
        arrays = draw_values(rng, [(2, 3)], [dom])
    elif family == "binary":
        fn, dx, dy, valid = BINARY[name]
        arrays = draw_values(rng, [(2, 3), (3,)], [dx, dy], valid)
    elif family == "reduce":
        f, dom, multi = REDUCE[name]
        shape = (2, 3)
        dim = dims_of(d, shape, multi)
        if name.startswith("std"):
            assume(_count(shape, dim) > 1)
        fn, arrays = (lambda x: f(x, dim, False, shape)), draw_values(rng, [shape], [dom])
    elif family == "movement":
        fn, arrays = _squared(MOVEMENT[name](d, (2, 3))), draw_values(rng, [(2, 3)], [real])
    else:
        fn, arrays = _squared(GATHERS[name](d, rng, (2, 3))), draw_values(rng, [(2, 3)], [real])
    run(d, fn, arrays, second_order=True)


def test_second_derivative_of_matmul_and_setitem():
    rng = np.random.default_rng(5)

    def fn(a, b):
        z = (a @ b).tanh()
        z[0, I64([1, 1])] = a[1, :2] * b[0, 0]
        return z * z
    gradcheck(fn, rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, (3, 2)), second_order=True)


# ---- gradient conventions -------------------------------------------------------------------

ZERO_GRAD = {
    "floor": lambda x: x.floor(), "ceil": lambda x: x.ceil(), "trunc": lambda x: x.trunc(),
    "round": lambda x: x.round(), "floor_divide": lambda x: x // 0.7, "sign": lambda x: x.sign(),
}


@pytest.mark.parametrize("name", params(ZERO_GRAD, "zero_grad"))
def test_piecewise_constant_ops_have_zero_gradient(name):
    """As in PyTorch: a zero gradient, not 'unused' (grad() reaches x; x.grad becomes zeros)."""
    x = ember.tensor([0.3, -1.6, 2.2], dtype=ember.float64, requires_grad=True)
    (g,) = ember.autograd.grad(ZERO_GRAD[name](x).sum(), x)
    np.testing.assert_array_equal(g.numpy(), np.zeros(3))


# gradients where finite differences cannot look (kinks, zeros, overflow): PyTorch is the spec
POINTS = np.array([0.0, -0.0, 1e-20, -1e-20, 1e-8, 0.5, -1.0, 2.0, 30.0, -30.0, 800.0, -800.0])
SPECIAL = {name: (lambda name: lambda x: getattr(x, name)())(name) for name in [
    "exp", "expm1", "exp2", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "sin", "cos", "tan", "tanh",
    "sigmoid", "relu", "erf", "reciprocal", "square", "neg"]}
SPECIAL.update({
    "pow_2.5": lambda x: x ** 2.5, "pow_0": lambda x: x ** 0.0, "rpow": lambda x: 2.0 ** x,
    "softmax": lambda x: x.softmax(0)[:3], "log_softmax": lambda x: x.log_softmax(0)[:3],
    "logsumexp": lambda x: x.logsumexp(0), "prod": lambda x: x[:6].prod(), "cumprod": lambda x: x[:6].cumprod(0),
    "norm_of_zeros": lambda x: (x[:2] * 0.0).norm() + x.sum(), "std_of_equal_values": lambda x: x[:1].expand(3).std(),
    "max_ties_split": lambda x: x[:2].max(), "max_dim_ties": lambda x: x[:2].reshape(1, 2).max(1).values,
    "clamp_at_bounds": lambda x: x.clamp(-1.0, 2.0),
})


@pytest.mark.parametrize("name", params(SPECIAL, "special"))
def test_gradient_at_special_points_is_torchs(name):
    import torch
    x = ember.tensor(POINTS, requires_grad=True)
    t = torch.tensor(POINTS, requires_grad=True)
    SPECIAL[name](x).sum().backward()
    out = SPECIAL[name](t)
    out.sum().backward()
    # elementwise ops are compared where they are defined (log of a negative number is NaN); the
    # tolerance allows for torch's own rounding in tiny gradients (sigmoid'(30) from s * (1 - s))
    keep = ~torch.isnan(out).numpy() if out.shape == t.shape else np.ones(len(POINTS), bool)
    np.testing.assert_allclose(x.grad.numpy()[keep], t.grad.numpy()[keep], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float16, ember.bfloat16])
def test_gradient_dtype_follows_the_input_through_float64_compute(dtype):
    x = ember.tensor([0.5, -1.25, 2.0], dtype=dtype, requires_grad=True)
    w = np.array([1.5, -0.25, 3.0])
    (x.double() * ember.tensor(w)).sum().backward()
    assert x.grad.dtype is dtype
    np.testing.assert_array_equal(x.grad.float().numpy(), w.astype(np.float32))
    y = ember.tensor(w, requires_grad=True)  # promotion: float64 * low precision
    (y * x.detach()).sum().backward()
    assert y.grad.dtype is ember.float64
    np.testing.assert_array_equal(y.grad.numpy(), x.detach().double().numpy())


if KNOWN_GAPS:  # defined only while there are gaps: an empty parametrization would show as a skip
    @pytest.mark.parametrize("gap", [pytest.param(k, marks=pytest.mark.xfail(reason=v, strict=True))
                                     for k, v in KNOWN_GAPS.items()])
    def test_known_gaps(gap):
        family, name = gap.split(":")
        x = np.random.default_rng(0).uniform(0.5, 2.0, (2, 3)) * np.array([1.0, -1.0, 1.0])
        check = {"unary": lambda n: gradcheck(UNARY[n][0], x), "special": test_gradient_at_special_points_is_torchs,
                 "zero_grad": test_piecewise_constant_ops_have_zero_gradient}[family]
        check(name)
