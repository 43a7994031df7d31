"""Random numbers: the Philox generator against an independent numpy implementation and the
Random123 known-answer vectors, exact values of each distribution's bit recipe, reproducibility,
ranges and (with fixed seeds and loose bounds) statistics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import ember
from ember import random as er
from ember.compiler import dtypes as D

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = np.uint64(0xFFFFFFFF)


def philox_numpy(ctr, key, rounds=10):
    """Reference Philox4x32 (Salmon et al. 2011) in numpy: ctr is 4 uint32 arrays, key 2."""
    c = [np.asarray(x, dtype=np.uint64) for x in ctr]
    k0, k1 = (np.asarray(x, dtype=np.uint64) for x in key)
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK, (k1 + W1) & MASK
        p0, p1 = np.uint64(M0) * c[0], np.uint64(M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & MASK, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & MASK]
    return [x.astype(np.uint32) for x in c]


# Random123's kat_vectors for philox4x32_R(10): (counter, key, expected)
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    ([0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_numpy_reference_matches_random123_vectors(ctr, key, want):
    assert [int(x) for x in philox_numpy(ctr, key)] == want


@pytest.mark.parametrize("ctr,key,want", KAT)
def test_ember_philox_matches_random123_vectors(ctr, key, want):
    def u32(v):
        return ember.tensor(np.array([v], dtype=np.uint32))
    got = er.philox4x32([u32(v) for v in ctr], [u32(v) for v in key])
    assert [int(g.numpy()[0]) for g in got] == want


def _expected_bits(seed, offset, n):
    ctr = np.uint64(offset) + np.arange(n, dtype=np.uint64)
    zero = np.zeros(n, np.uint64)
    return philox_numpy([ctr & MASK, ctr >> np.uint64(32), zero, zero],
                        [np.uint64(seed) & MASK, np.uint64(seed) >> np.uint64(32)])


def test_random_bits_are_philox_of_seed_and_counters():
    seed, offset = 0x0123456789ABCDEF, 2**32 - 3  # the counter crosses into its high word
    er.set_state((seed, offset))
    got = er.random_bits(7)
    want = _expected_bits(seed, offset, 7)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w)
    assert er.get_state() == (seed, offset + 7)


def test_rand_values_follow_the_bit_recipe():
    ember.manual_seed(1234)
    b = _expected_bits(1234, 0, 12)
    want32 = (b[0] >> 8).astype(np.float64) * 2.0**-24
    np.testing.assert_array_equal(ember.rand(3, 4).numpy(), want32.reshape(3, 4).astype(np.float32))
    b = _expected_bits(1234, 12, 5)
    want64 = ((b[0] >> 5).astype(np.float64) * 2.0**26 + (b[1] >> 6)) * 2.0**-53
    np.testing.assert_array_equal(ember.rand(5, dtype=ember.float64).numpy(), want64)
    b = _expected_bits(1234, 17, 6)
    u1 = 1.0 - (b[0] >> 8).astype(np.float32) * np.float32(2.0**-24)
    u2 = (b[2] >> 8).astype(np.float32) * np.float32(2.0**-24)
    want_n = np.sqrt(-2 * np.log(u1.astype(np.float64))) * np.cos(2 * np.pi * u2.astype(np.float64))
    np.testing.assert_allclose(ember.randn(6).numpy(), want_n, rtol=1e-5, atol=1e-5)
    b = _expected_bits(1234, 23, 8)
    bits64 = b[0].astype(np.uint64) | (b[1].astype(np.uint64) << np.uint64(32))
    want_i = (bits64 % np.uint64(13)).astype(np.int64) - 6
    np.testing.assert_array_equal(ember.randint(-6, 7, (8,)).numpy(), want_i)


def test_manual_seed_reproduces_and_calls_differ():
    ember.manual_seed(7)
    a, b = ember.rand(100), ember.randn(10)
    ember.manual_seed(7)
    a2, b2 = ember.rand(100), ember.randn(10)
    np.testing.assert_array_equal(a.numpy(), a2.numpy())
    np.testing.assert_array_equal(b.numpy(), b2.numpy())
    assert not np.array_equal(a.numpy()[:10], ember.rand(10).numpy())
    ember.manual_seed(8)
    assert not np.array_equal(a.numpy(), ember.rand(100).numpy())
    assert ember.initial_seed() == 8


def test_split_calls_continue_one_stream():
    ember.manual_seed(3)
    whole = ember.rand(10).numpy()
    ember.manual_seed(3)
    parts = np.concatenate([ember.rand(4).numpy(), ember.rand(6).numpy()])
    np.testing.assert_array_equal(whole, parts)


def test_seed_returns_the_new_seed():
    s = ember.seed()
    assert ember.initial_seed() == s
    a = ember.rand(5).numpy()
    ember.manual_seed(s)
    np.testing.assert_array_equal(a, ember.rand(5).numpy())
    ember.manual_seed(-1)  # negative seeds wrap like PyTorch's
    assert ember.initial_seed() == 2**64 - 1


@pytest.mark.parametrize("dt", [D.float32, D.float64, D.float16, D.bfloat16])
def test_rand_range_and_dtype(dt):
    ember.manual_seed(0)
    x = ember.rand(4000, dtype=dt)
    v = x.numpy().astype(np.float64)
    assert x.dtype is dt and v.min() >= 0 and v.max() < 1
    assert abs(v.mean() - 0.5) < 0.03


def _ks(sample, cdf):
    """Kolmogorov-Smirnov statistic of a sample against a continuous CDF."""
    x = np.sort(sample)
    f = cdf(x)
    n = len(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def test_uniform_and_normal_distributions():
    ember.manual_seed(2024)
    n = 20000
    bound = 1.95 / math.sqrt(n)  # KS critical value at the 0.1% level
    u = ember.rand(n).numpy().astype(np.float64)
    assert _ks(u, lambda x: x) < bound
    assert abs(u.var() - 1 / 12) < 0.005
    z = ember.randn(200, 100).numpy().astype(np.float64).ravel()
    normal_cdf = np.vectorize(lambda v: 0.5 * (1 + math.erf(v / math.sqrt(2))))
    assert _ks(z, normal_cdf) < bound
    assert abs(z.mean()) < 0.03 and abs(z.var() - 1) < 0.05
    z64 = ember.randn(n, dtype=ember.float64).numpy()
    assert _ks(z64, normal_cdf) < bound


@pytest.mark.parametrize("low,high,dtype", [(0, 10, None), (-5, 5, ember.int8), (0, 2, ember.bool),
                                             (-(2**40), 2**40, None), (3, 4, ember.float32), (0, 256, ember.uint8)])
def test_randint_range(low, high, dtype):
    ember.manual_seed(5)
    x = ember.randint(low, high, (3000,), dtype=dtype)
    assert x.dtype is (dtype or ember.int64)
    v = x.numpy().astype(np.float64)
    assert v.min() >= low and v.max() <= high - 1
    if high - low <= 256:
        assert len(np.unique(v)) == high - low  # every value is hit
    else:
        assert abs(v.mean() - (low + high - 1) / 2) < 0.05 * (high - low)


def test_randint_forms_and_errors():
    assert ember.randint(5, (2, 3)).shape == (2, 3)
    assert ember.randint(2, 5, size=(4,)).shape == (4,)
    assert ember.randint(3, (0,)).shape == (0,)
    with pytest.raises(RuntimeError, match="from=5 >= to=5"):
        ember.randint(5, 5, (2,))
    with pytest.raises(NotImplementedError):
        torch.rand(2, dtype=torch.int64)
    with pytest.raises(NotImplementedError):
        ember.rand(2, dtype=ember.int64)


def test_randperm():
    ember.manual_seed(11)
    p = ember.randperm(50)
    assert p.dtype is ember.int64 and sorted(p.tolist()) == list(range(50))
    ember.manual_seed(11)
    assert ember.randperm(50).tolist() == p.tolist()
    assert ember.randperm(50).tolist() != p.tolist()
    assert ember.randperm(0).shape == (0,)
    assert ember.randperm(5, dtype=ember.int32).dtype is ember.int32


def test_like_variants_and_shapes():
    x = ember.zeros(2, 3, dtype=ember.float64)
    for f in (ember.rand_like, ember.randn_like):
        y = f(x)
        assert y.shape == (2, 3) and y.dtype is ember.float64
    r = ember.randint_like(x, 4)
    assert r.dtype is ember.float64 and set(r.numpy().ravel()) <= {0.0, 1.0, 2.0, 3.0}
    assert ember.randint_like(x, 2, 4).numpy().min() >= 2
    assert ember.rand(()).shape == () and ember.randn(0, 3).shape == (0, 3)
    assert ember.rand(2, requires_grad=True).requires_grad
    assert ember.randn((2, 2)).shape == (2, 2)


def test_random_graph_reuses_structure_across_calls():
    """Seed and offset enter as buffer data, not constants: two calls build identical graphs
    up to the state buffer (so one compiled kernel serves every call of a shape)."""
    from ember.compiler.ir import toposort

    def structure(t):
        return [(n.op, None if n.op == "buffer" else n.arg, n.dtype, n.shape) for n in toposort([t.node])]
    a, b = ember.rand(8), ember.rand(8)
    assert structure(a) == structure(b)


def test_generator_objects_are_rejected_clearly():
    with pytest.raises(NotImplementedError, match="global random generator"):
        ember.rand(2, generator=object())
