"""Differential test of the compiler: random DAGs of primitives, realized through the whole
pipeline (rewrite, schedule, lower, LLVM codegen, JIT), must equal the plain numpy
interpretation of the same DAG (compiler/interpret.py)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ember.compiler import Buffer, Node, dtypes as D, realize
from ember.compiler.interpret import interpret
from ember.compiler.ir import const, expand_to, toposort

FLOAT_UNARY = ["neg", "exp", "log", "sin", "cos", "sqrt", "tanh", "erf", "floor", "ceil", "trunc", "round"]
NUM_BINARY = ["add", "mul", "max", "min", "cmplt", "cmpeq"]
DTYPES = [D.float32, D.float64, D.int32, D.int64]


def leaf(rng, shape, dt):
    if dt.is_float:
        a = rng.standard_normal(shape) * 3
    elif dt is D.bool_:
        a = rng.random(shape) < 0.5
    else:
        a = rng.integers(-20, 20, size=shape)
    return Node.make("buffer", arg=Buffer.from_array(np.asarray(a, dt.np)), dtype=dt, shape=shape)


def fit(node: Node, like: Node) -> Node:
    """Make `node` usable as a binary operand next to `like` (same dtype, same shape)."""
    if node.dtype is not like.dtype:
        if node.dtype.is_float and not like.dtype.is_float:
            node = Node.make("floor", [node])
        node = Node.make("cast", [node], like.dtype)
    if node.shape == like.shape:
        return node
    if node.numel == like.numel:
        return Node.make("reshape", [node], like.shape)
    s = Node.make("sum", [node], tuple(range(len(node.shape)))) if node.shape else node
    return expand_to(Node.make("reshape", [s], ()), like.shape) if like.shape else Node.make("reshape", [s], ())


@st.composite
def dags(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    nodes = []
    for _ in range(draw(st.integers(1, 3))):
        shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
        nodes.append(leaf(rng, shape, draw(st.sampled_from(DTYPES))))
    for _ in range(draw(st.integers(1, 12))):
        a = draw(st.sampled_from(nodes))
        kind = draw(st.sampled_from(["unary", "binary", "binary", "reduce", "move", "move", "where", "cast", "gather"]))
        if kind == "unary":
            if a.dtype.is_float:
                op = draw(st.sampled_from(FLOAT_UNARY))
                if op in ("log", "sqrt"):
                    a = Node.make("add", [Node.make("mul", [a, a]), const(0.5, a.dtype, a.shape)])
            elif a.dtype is D.bool_:
                continue
            else:
                op = "neg"
            n = Node.make(op, [a])
        elif kind == "binary":
            if a.dtype is D.bool_:
                continue
            b = fit(draw(st.sampled_from(nodes)), a)
            ops = NUM_BINARY + (["div", "pow"] if a.dtype.is_float else ["idiv", "mod", "and", "xor"])
            op = draw(st.sampled_from(ops))
            if op == "pow":
                a = Node.make("add", [Node.make("mul", [a, a]), const(0.25, a.dtype, a.shape)])
            n = Node.make(op, [a, b])
        elif kind == "reduce":
            if not a.shape or a.dtype is D.bool_ or a.numel == 0:
                continue
            axes = tuple(sorted(draw(st.sets(st.integers(0, len(a.shape) - 1), min_size=1))))
            n = Node.make(draw(st.sampled_from(["sum", "rmax", "rmin", "prod"] if a.dtype.is_float else ["sum", "rmax", "rmin"])), [a], axes)
        elif kind == "move":
            n = draw(movement(a))
        elif kind == "where":
            if a.dtype is D.bool_:
                continue
            b = fit(draw(st.sampled_from(nodes)), a)
            n = Node.make("where", [Node.make("cmplt", [a, b]), a, b])
        elif kind == "cast":
            target = draw(st.sampled_from([D.float32, D.float64] if not a.dtype.is_float else [D.float32, D.float64, D.float16]))
            n = Node.make("cast", [a], target)
            if target is D.float16:
                n = Node.make("cast", [n], D.float32)
        else:  # gather along a random axis with a random index buffer
            if not a.shape or a.numel == 0:
                continue
            axis = draw(st.integers(0, len(a.shape) - 1))
            ishape = list(a.shape)
            ishape[axis] = draw(st.integers(1, 4))
            idx = Node.make("buffer", arg=Buffer.from_array(rng.integers(0, a.shape[axis], size=ishape).astype(np.int64)),
                            dtype=D.int64, shape=tuple(ishape))
            n = Node.make("gather", [a, idx], axis)
        nodes.append(n)
    outs = draw(st.lists(st.sampled_from(nodes), min_size=1, max_size=3, unique_by=id))
    return outs


@st.composite
def movement(draw, a: Node):
    op = draw(st.sampled_from(["reshape", "permute", "expand", "pad", "slice"]))
    s = a.shape
    if op == "reshape":
        n = a.numel
        dims = []
        while n > 1 and len(dims) < 3:
            divs = [d for d in range(1, n + 1) if n % d == 0]
            d = draw(st.sampled_from(divs))
            dims.append(d)
            n //= d
        dims.append(n)
        return Node.make("reshape", [a], tuple(draw(st.permutations(dims))))
    if op == "permute" and len(s) > 1:
        return Node.make("permute", [a], tuple(draw(st.permutations(range(len(s))))))
    if op == "expand":
        ones = Node.make("reshape", [a], s + (1,))
        return Node.make("expand", [ones], s + (draw(st.integers(1, 4)),))
    if op == "pad" and s:
        return Node.make("pad", [a], tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in s))
    if op == "slice" and s and 0 not in s:
        arg = []
        for n in s:
            step = draw(st.sampled_from([1, 1, 2, -1, -2]))
            start = draw(st.integers(0, n - 1))
            room = (n - 1 - start) // step + 1 if step > 0 else start // -step + 1
            arg.append((start, step, draw(st.integers(0, room))))
        return Node.make("slice", [a], tuple(arg))
    return Node.make("reshape", [a], s)


def check_close(got, want, dt, itemsize=None):
    """`itemsize`: of the least precise float the value went through (a float32 exp cast to float64
    is only float32-accurate); defaults to dt's."""
    assert got.shape == want.shape, (got.shape, want.shape)
    if dt.is_float:
        scale = 1 + float(np.nanmax(np.abs(np.where(np.isfinite(want), want, 0)), initial=0))
        tol = {8: 1e-9, 4: 2e-4}.get(itemsize or dt.itemsize, 2e-2)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(dags())
def test_random_dag_matches_interpreter(outs):
    graph = dump(outs)
    want = interpret(outs)
    precision = {id(o): min((n.dtype.itemsize for n in toposort([o]) if n.dtype.is_float), default=None)
                 for o in outs}
    realize(outs)
    for o, w in zip(outs, want):
        got = o.arg.numpy().reshape(o.shape)
        try:
            check_close(got.astype(np.float64) if o.dtype.is_float else got,
                        w.astype(np.float64) if o.dtype.is_float else w, o.dtype, precision[id(o)])
        except AssertionError as e:
            raise AssertionError(f"{e}\ngraph:\n{graph}") from None


def dump(outs) -> str:
    from ember.compiler.ir import toposort
    order = toposort(outs)
    num = {id(n): k for k, n in enumerate(order)}
    return "\n".join(f"  %{num[id(n)]} = {n!r} <- {[num[id(s)] for s in n.srcs]}" for n in order)


def test_deep_chain_has_no_recursion_limit():
    a = np.arange(6, dtype=np.float32)
    x = Node.make("buffer", arg=Buffer.from_array(a), dtype=D.float32, shape=(6,))
    n = x
    for i in range(10_000):
        n = Node.make("add", [Node.make("mul", [n, const(0.5, D.float32, (6,))]), const(1.0, D.float32, (6,))])
    realize([n])
    want = a.astype(np.float64)
    for _ in range(10_000):
        want = want * 0.5 + 1.0
    np.testing.assert_allclose(n.arg.numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("dt", [D.float16, D.bfloat16])
def test_half_types_round_on_store(dt):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(257).astype(dt.np)
    x = Node.make("buffer", arg=Buffer.from_array(a), dtype=dt, shape=(257,))
    y = Node.make("mul", [Node.make("exp", [x]), const(3.0, dt, (257,))])
    want = (np.exp(a.astype(np.float32)) * 3).astype(dt.np)
    realize([y])
    got = y.arg.numpy()
    # compiled kernels round once, on store: exactly numpy's float32 computation rounded
    np.testing.assert_array_equal(got.astype(np.float32), want.astype(np.float32))


def test_integer_division_by_zero_does_not_trap():
    a = np.array([7, -7, 5, np.iinfo(np.int32).min], np.int32)
    b = np.array([0, 2, -1, -1], np.int32)
    x = Node.make("buffer", arg=Buffer.from_array(a), dtype=D.int32, shape=(4,))
    y = Node.make("buffer", arg=Buffer.from_array(b), dtype=D.int32, shape=(4,))
    q, r = Node.make("idiv", [x, y]), Node.make("mod", [x, y])
    want_q, want_r = interpret([q, r])
    realize([q, r])
    np.testing.assert_array_equal(q.arg.numpy(), want_q)
    np.testing.assert_array_equal(r.arg.numpy(), want_r)
    assert list(want_q[:3]) == [0, -3, -5] and list(want_r[:3]) == [0, -1, 0]


@pytest.mark.parametrize("shape,new,arg", [
    ((3, 2), (2, 3), ((1, -1, 2), (0, 1, 3))),      # reshape then flip rows
    ((2, 2), (4,), ((2, -1, 3),)),                   # reshape then reversed slice
    ((4, 3), (2, 6), ((1, -1, 2), (5, -2, 3))),      # flips with steps on both axes
])
def test_views_over_reshapes_index_with_floor_semantics(shape, new, arg):
    a = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    x = Node.make("buffer", arg=Buffer.from_array(a), dtype=D.float32, shape=shape)
    n = Node.make("slice", [Node.make("reshape", [x], new)], arg)
    want = interpret([n])[0]
    realize([n])
    np.testing.assert_array_equal(n.arg.numpy().reshape(n.shape), want)
