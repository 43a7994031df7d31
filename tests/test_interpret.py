"""The numpy reference interpreter (compiler/interpret.py) agrees with the compiled kernels on the
integer corner cases, and both agree with an independent Python-int model of C semantics:
constants outside a small dtype's range wrap (two's complement), and integer division and
remainder truncate toward zero, give 0 for a zero divisor and wrap at MIN / -1."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ember.compiler import Buffer, Node, dtypes as D
from ember.compiler.interpret import interpret
from ember.compiler.ir import const
from ember.compiler.realize import run as compiled

INTS = [D.int8, D.int16, D.int32, D.int64, D.uint8]


def _wrap(v: int, dt) -> int:
    bits = 8 * dt.itemsize
    v %= 1 << bits
    return v - (1 << bits) if dt.kind == "i" and v >= 1 << (bits - 1) else v


def _c_div(a: int, b: int) -> int:
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def _c_mod(a: int, b: int) -> int:
    return 0 if b == 0 else a - b * _c_div(a, b)


def _buffer(values, dt) -> Node:
    buf = Buffer.from_array(np.array(values, dtype=dt.np), copy=True)
    return Node.make("buffer", arg=buf, dtype=dt, shape=(len(values),))


def _both(make) -> tuple[np.ndarray, np.ndarray]:
    """The same graph evaluated by the interpreter and by the compiled backend (built twice: realizing
    turns the node into a buffer)."""
    ref = interpret([make()])[0]
    node = make()
    compiled([node])
    return ref, node.arg.numpy().reshape(node.shape)


def _edge_ints(dt):
    info = np.iinfo(dt.np)
    edges = [info.min, info.min + 1, -1, 0, 1, 2, 3, 7, info.max - 1, info.max]
    return st.one_of(st.sampled_from([e for e in edges if info.min <= e <= info.max]),
                     st.integers(int(info.min), int(info.max)))


@pytest.mark.parametrize("dt", INTS, ids=lambda d: d.name)
@pytest.mark.parametrize("op", ["idiv", "mod"])
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_integer_division_matches_c_on_both_backends(dt, op, data):
    pairs = data.draw(st.lists(st.tuples(_edge_ints(dt), _edge_ints(dt)), min_size=1, max_size=40))
    if dt.kind == "i":   # always include the MIN corner cases
        info = np.iinfo(dt.np)
        pairs += [(int(info.min), -1), (int(info.min), 3), (int(info.min), int(info.min)), (5, int(info.min)),
                  (int(info.min), 0), (-7, 2), (7, -2)]
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    model = _c_div if op == "idiv" else _c_mod
    want = np.array([_wrap(model(x, y), dt) for x, y in pairs], dtype=dt.np)
    ref, got = _both(lambda: Node.make(op, [_buffer(a, dt), _buffer(b, dt)]))
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dt", INTS, ids=lambda d: d.name)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_out_of_range_constants_wrap_on_both_backends(dt, data):
    bits = 8 * dt.itemsize
    lo = max(-(1 << bits), -(1 << 63))   # compiler/lower.py takes constants numpy can hold (int64 or uint64)
    value = data.draw(st.one_of(st.integers(lo, (1 << bits) - 1),
                                st.sampled_from([200, -129, 256, 300, -1, 1 << (bits - 1), max(lo, -(1 << bits) + 1)])))
    x = [0, 1, -1 if dt.kind == "i" else 2]
    want = np.array([_wrap(v + value, dt) for v in x], dtype=dt.np)
    ref, got = _both(lambda: Node.make("add", [_buffer(x, dt), const(value, dt, (3,))]))
    np.testing.assert_array_equal(ref, want)
    np.testing.assert_array_equal(got, want)


def test_examples_from_the_issue():
    ref, got = _both(lambda: Node.make("add", [_buffer([0], D.int8), const(200, D.int8, (1,))]))
    assert ref.tolist() == got.tolist() == [-56]
    mn = -2 ** 31
    ref, got = _both(lambda: Node.make("idiv", [_buffer([mn, mn, 5], D.int32), _buffer([-1, 3, mn], D.int32)]))
    assert ref.tolist() == got.tolist() == [mn, -715827882, 0]
    ref, got = _both(lambda: Node.make("mod", [_buffer([mn, mn, 5], D.int32), _buffer([-1, 3, mn], D.int32)]))
    assert ref.tolist() == got.tolist() == [0, -2, 5]


def test_constant_folding_uses_the_same_semantics():
    """A graph of constants only is folded by the rewriter with the interpreter's rules before any
    kernel runs: the folded value must be the one a kernel computes."""
    for dt in (D.int8, D.int32, D.int64):
        mn = int(np.iinfo(dt.np).min)
        for op, want in (("idiv", [_wrap(mn, dt), _c_div(mn, 3)]), ("mod", [0, _c_mod(mn, 3)])):
            def make():
                return Node.make(op, [const(mn, dt, (2,)), Node.make("reshape", [_buffer([-1, 3], dt)], (2,))])
            folded = Node.make(op, [const(mn, dt, (2,)), const(-1, dt, (2,))])
            compiled([folded])
            assert folded.arg.numpy().tolist() == [want[0]] * 2
            ref, got = _both(make)
            assert ref.tolist() == got.tolist() == want
