"""Algebraic rewrites (compiler/rewrite.py) keep values: each rewritten form against a float64 numpy
reference, including the special values the original form handles."""
import numpy as np
import pytest

import ember
from ember.compiler.rewrite import rewrite


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_plus_tanh_becomes_a_sigmoid_and_keeps_its_values(dtype):
    u = np.concatenate([np.linspace(-30, 30, 1001), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]]).astype(dtype)
    t = ember.tensor(u)
    y = 1 + t.tanh()
    [node] = rewrite([y.node])
    ops = set()
    stack = [node]
    while stack:
        n = stack.pop()
        ops.add(n.op)
        stack.extend(n.srcs)
    assert "tanh" not in ops and "exp" in ops           # the cheaper, exact-where-it-matters form
    got = y.numpy().astype(np.float64)
    x = u.astype(np.float64)
    with np.errstate(over="ignore"):
        want = 2.0 / (1.0 + np.exp(-2.0 * x))           # = 1 + tanh(x), without cancellation near -1
    np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps, atol=0, equal_nan=True)
    assert got[-5] == 2.0 and got[-4] == 0.0 and np.isnan(got[-3])   # +inf, -inf, nan


def test_gelu_tanh_form_matches_torch():
    import torch
    x = np.random.default_rng(0).standard_normal(4097).astype(np.float32) * 4
    got = ember.nn.functional.gelu(ember.tensor(x), approximate="tanh").numpy()
    want = torch.nn.functional.gelu(torch.tensor(x), approximate="tanh").numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
