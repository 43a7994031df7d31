"""The index-expression simplifier must preserve values exactly: every simplified expression is
checked at every point of its variables' ranges against plain Python integer arithmetic."""
import itertools

from hypothesis import given, settings, strategies as st

from ember.compiler.symbolic import var

VARS = [("i", 4), ("j", 3), ("k", 5)]


@st.composite
def programs(draw):
    """A random expression built from + - * // % over small-range variables, as a list of steps
    applied to both the symbolic expression and a Python function."""
    steps = draw(st.lists(st.tuples(st.sampled_from(["add", "sub", "rsub", "mul", "div", "mod"]),
                                    st.integers(-7, 7), st.sampled_from(VARS)), min_size=1, max_size=8))
    return steps


def build(steps):
    env_vars = {n: var(n, 0, size - 1) for n, size in VARS}
    e = env_vars["i"]
    fns = [lambda env: env["i"]]
    for op, k, (name, _) in steps:
        v = env_vars[name]
        prev = fns[-1]
        if op == "add":
            e = e + v * k
            fns.append(lambda env, p=prev, k=k, n=name: p(env) + env[n] * k)
        elif op == "sub":
            e = e - k
            fns.append(lambda env, p=prev, k=k: p(env) - k)
        elif op == "rsub":
            e = k - e
            fns.append(lambda env, p=prev, k=k: k - p(env))
        elif op == "mul":
            e = e * k
            fns.append(lambda env, p=prev, k=k: p(env) * k)
        elif op == "div" and k > 0:
            e = e // k
            fns.append(lambda env, p=prev, k=k: p(env) // k)
        elif op == "mod" and k > 0:
            e = e % k
            fns.append(lambda env, p=prev, k=k: p(env) % k)
    return e, fns[-1]


@settings(max_examples=400, deadline=None)
@given(programs())
def test_simplified_expressions_keep_their_values(steps):
    e, f = build(steps)
    for point in itertools.product(*(range(size) for _, size in VARS)):
        env = dict(zip((n for n, _ in VARS), point))
        assert e.evaluate(env) == f(env), (steps, env, e)
        assert e.lo <= f(env) <= e.hi, ("range", steps, env, e)


def test_dividends_stay_non_negative():
    i = var("i", 0, 2)
    for e in ((2 - i) // 2, (2 - i) % 2, (i - 5) // 3, (i * -3 + 1) % 4):
        for a in e.atoms():
            if hasattr(a, "x"):
                assert a.x.lo >= 0, e


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 5), st.integers(-3, 3))
def test_a_three_way_split_index_flattens_back(a, b, n, c):
    """((i//a)%b)*a + (i//(a*b))*(a*b) + i%a is i (a flat index split into three axes and flattened
    again, as loop merging does); scaled by c, and its two-axis part alone is (i//a)*a. Values are
    checked at every point, and the forms must be the plain ones so inner loops carry no div/mod."""
    size = a * b * n
    i = var("i", 0, size - 1)
    whole = ((i // a) % b) * a * c + (i // (a * b)) * (a * b * c) + (i % a) * c
    part = ((i // a) % b) * a + (i // (a * b)) * (a * b)
    for v in range(size):
        assert whole.evaluate({"i": v}) == v * c and part.evaluate({"i": v}) == v // a * a
    if c:
        assert whole == i * c
    assert part == (i // a) * a
