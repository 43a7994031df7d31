"""The native thread pool (compiler/runtime/cpu_pool.py): launch lists of dependent kernels give
numpy's values for any thread and share count, from several Python threads at once, and after the
workers went to sleep."""
import importlib
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
from ember.compiler.runtime import cpu, cpu_pool

pytestmark = pytest.mark.skipif(not cpu_pool.supported(), reason="native pool: Linux x86-64 / aarch64 only")


def _kernel(expr, n):
    """The compiled kernel of `expr(x)` for an n-element float32 x: (fn, work)."""
    realize = importlib.import_module("ember.compiler.realize")   # (ember.compiler.realize is also a function)
    x = ember.tensor(np.zeros(n, np.float32))
    out = expr(x).node
    key, leaves = realize.structure_key([out])
    plan, _ = realize.get_plan(key, [out], leaves)
    (step,) = plan.steps
    return step.fn, step.work


@pytest.fixture(scope="module")
def kernels():
    n = 1 << 15
    return n, _kernel(lambda x: x * 2 + 1, n), _kernel(lambda x: (x - 3).abs(), n)


def _chain(kernels, length, parallel):
    """A list of `length` kernels alternating affine / abs, each reading the previous one's output."""
    n, (f1, _), (f2, _) = kernels
    bufs = [np.random.default_rng(0).standard_normal(n).astype(np.float32)] + [np.empty(n, np.float32) for _ in range(length)]
    steps, expect = [], bufs[0].astype(np.float64)
    for k in range(length):
        fn = (f1, f2)[k % 2]
        steps.append((fn, [k + 1, k], parallel[k % len(parallel)]))
        expect = expect * 2 + 1 if k % 2 == 0 else np.abs(expect - 3)
    ptrs = [b.ctypes.data for b in bufs]
    return bufs, steps, ptrs, expect


@settings(max_examples=15, deadline=None)
@given(length=st.integers(1, 12), nt=st.integers(1, 5),
       parallel=st.lists(st.booleans(), min_size=1, max_size=3))
def test_launch_list_matches_numpy(kernels, length, nt, parallel):
    bufs, steps, ptrs, expect = _chain(kernels, length, parallel)
    ll = cpu_pool.LaunchList(steps, {}, set(range(len(ptrs))))
    ll.run(cpu.pool(), ptrs, nt)
    np.testing.assert_allclose(bufs[-1], expect, rtol=1e-5, atol=1e-5)


def test_fixed_slots_and_reruns_with_new_buffers(kernels):
    """Fixed slots keep their addresses; variable ones are patched in at every run."""
    n = kernels[0]
    bufs, steps, ptrs, expect = _chain(kernels, 4, [True])
    fixed = {k: ptrs[k] for k in (1, 2, 3)}
    ll = cpu_pool.LaunchList(steps, fixed, {0, 4})
    for _ in range(3):
        src = np.random.default_rng(1).standard_normal(n).astype(np.float32)
        out = np.empty(n, np.float32)
        ll.run(cpu.pool(), [src.ctypes.data, 0, 0, 0, out.ctypes.data], 2)
        e = src.astype(np.float64)
        for k in range(4):
            e = e * 2 + 1 if k % 2 == 0 else np.abs(e - 3)
        np.testing.assert_allclose(out, e, rtol=1e-5, atol=1e-5)


def test_concurrent_python_threads(kernels):
    errors = []

    def worker(seed):
        try:
            for _ in range(20):
                bufs, steps, ptrs, expect = _chain(kernels, 6, [True, False])
                cpu_pool.LaunchList(steps, {}, set(range(len(ptrs)))).run(cpu.pool(), ptrs, 2)
                np.testing.assert_allclose(bufs[-1], expect, rtol=1e-5, atol=1e-5)
        except Exception as e:   # reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_after_workers_sleep(kernels):
    """Workers idle past their spin go to sleep on a futex; the next list wakes them (or runs
    without them) and is still right."""
    bufs, steps, ptrs, expect = _chain(kernels, 5, [True])
    ll = cpu_pool.LaunchList(steps, {}, set(range(len(ptrs))))
    for _ in range(3):
        time.sleep(0.05)
        for b in bufs[1:]:
            b[:] = np.nan
        ll.run(cpu.pool(), ptrs, 2)
        np.testing.assert_allclose(bufs[-1], expect, rtol=1e-5, atol=1e-5)


def test_single_launch_through_pool(kernels):
    n, (f1, work), _ = kernels
    x = np.arange(n, dtype=np.float32)
    out = np.empty_like(x)
    cpu.pool().launch(f1, [out.ctypes.data, x.ctypes.data], 3)
    np.testing.assert_array_equal(out, x * 2 + 1)
