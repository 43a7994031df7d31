"""Fusion is real: kernel counts asserted through ember.debug.capture(), values against numpy."""
import os
import subprocess
import sys

import numpy as np
import pytest

import ember
from ember.compiler import cache

rng = np.random.default_rng(0)


def run(fn, *arrays):
    ts = [ember.tensor(a) for a in arrays]
    with ember.debug.capture() as cap:
        out = fn(*ts).numpy()
    return out, cap.kernels


def test_elementwise_chain_and_row_reduction_is_one_kernel():
    x, y = rng.standard_normal((64, 48), dtype=np.float32), rng.standard_normal((64, 48), dtype=np.float32)
    out, ks = run(lambda x, y: ((x * 2 + 1).exp() * y).sum(1), x, y)
    np.testing.assert_allclose(out, (np.exp(x * 2 + 1) * y).sum(1), rtol=1e-5, atol=1e-4)
    assert len(ks) == 1, [k.name for k in ks]
    assert {"mul", "add", "exp", "sum"} <= set(ks[0].ops)


def test_row_softmax_is_at_most_two_kernels():
    x = rng.standard_normal((33, 70), dtype=np.float32) * 5
    out, ks = run(lambda x: x.softmax(-1), x)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(out, e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    assert len(ks) <= 2, [k.name for k in ks]


def test_layernorm_composition_fuses():
    x = rng.standard_normal((16, 100), dtype=np.float32)
    w, b = rng.standard_normal(100, dtype=np.float32), rng.standard_normal(100, dtype=np.float32)

    def ln(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / (var + 1e-5).sqrt() * w + b
    out, ks = run(ln, x, w, b)
    mu = x.mean(-1, keepdims=True)
    want = (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    assert len(ks) == 1, [k.name for k in ks]


def test_long_elementwise_chain_is_one_kernel():
    a = rng.standard_normal(1000).astype(np.float32)

    def chain(x):
        for i in range(50):
            x = x * 0.99 + 0.01 * i
        return x
    out, ks = run(chain, a)
    want = a.astype(np.float64)
    for i in range(50):
        want = want * 0.99 + 0.01 * i
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert len(ks) == 1


def test_independent_outputs_share_one_kernel():
    x = ember.tensor(rng.standard_normal((8, 16), dtype=np.float32))
    a, b = x.exp(), x * 3
    with ember.debug.capture() as cap:
        ember.realize(a, b)
    assert len(cap.kernels) == 1
    np.testing.assert_allclose(a.numpy(), np.exp(x.numpy()), rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), x.numpy() * 3, rtol=1e-6)


def test_broadcast_column_sum_gets_its_own_kernel():
    # recomputing x.sum(0) for every row would be quadratic: the scheduler buffers it
    x = rng.random((40, 30), dtype=np.float32) + 0.5
    out, ks = run(lambda x: x / x.sum(0), x)
    np.testing.assert_allclose(out, x / x.sum(0), rtol=1e-5)
    assert len(ks) == 2


def test_same_graph_structure_reuses_the_compiled_plan():
    from ember.compiler import realize as R
    x = ember.tensor(rng.standard_normal(100, dtype=np.float32))
    (x.exp() + 1).numpy()
    n = len(R._plans)
    y = ember.tensor(rng.standard_normal(100, dtype=np.float32))
    np.testing.assert_allclose((y.exp() + 1).numpy(), np.exp(y.numpy()) + 1, rtol=1e-6)
    assert len(R._plans) == n


def test_corrupt_cache_entry_is_reported_and_discarded(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    cache.put("abc", b"machine code")
    assert cache.get("abc") == b"machine code"
    path = tmp_path / "abc.o"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt cache entry"):
        assert cache.get("abc") is None
    assert not path.exists()


def test_disk_cache_serves_a_second_process(tmp_path):
    code = ("import numpy as np, ember\n"
            "x = ember.tensor(np.arange(10, dtype=np.float32))\n"
            "with ember.debug.capture() as cap:\n"
            "    v = ((x * 3).tanh() + 7).numpy()\n"
            "assert np.allclose(v, np.tanh(np.arange(10) * 3) + 7, atol=1e-6)\n"
            "print(all(k.compiled.cache_hit for k in cap.kernels))\n")
    env = dict(os.environ, EMBER_CACHE_DIR=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "False" and second.stdout.strip() == "True"
    # a corrupted object file is rejected with a warning and rebuilt, and results stay right
    for p in tmp_path.glob("*.o"):
        p.write_bytes(p.read_bytes()[:-8] + b"garbage!")
    third = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert third.stdout.strip() == "False" and "corrupt cache entry" in third.stderr


def test_updates_of_many_differently_shaped_tensors_run_in_one_kernel():
    shapes = [(16, 8), (8,), (32, 16), (16,), (4, 4, 4), (1,), (100,), (7, 3), (3,), (64, 2), (2,), (5, 5)]
    ps = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    gs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    new_m = [0.1 * ember.tensor(g) for g in gs]
    new_v = [0.001 * ember.tensor(g) ** 2 for g in gs]
    new_p = [ember.tensor(p) - 0.01 * m / (v.sqrt() + 1e-8) for p, m, v in zip(ps, new_m, new_v)]
    with ember.debug.capture() as cap:
        ember.realize(*new_p, *new_m, *new_v)
    assert len(cap.kernels) == 1
    for p, g, got in zip(ps, gs, new_p):
        m, v = 0.1 * g, 0.001 * g * g
        np.testing.assert_allclose(got.numpy(), p - 0.01 * m / (np.sqrt(v) + 1e-8), rtol=1e-5, atol=1e-6)


def test_sum_of_a_broadcast_value_broadcast_again_terminates():
    # ones @ w rewrites to a sum over an expanded w that is itself broadcast over rows: the
    # reduction cannot avoid recomputation, and the scheduler must accept that rather than loop
    w = rng.standard_normal((3, 4), dtype=np.float32)
    got = ember.ones(30, 3).matmul(ember.tensor(w)).numpy()
    np.testing.assert_allclose(got, np.ones((30, 3), np.float32) @ w, rtol=1e-6)
