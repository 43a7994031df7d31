"""Parallel kernel compilation (compiler/runtime/cpu_compile.py): helper processes produce the
same object code as this process, every failure falls back to compiling here, damaged cache
entries are never used, and forked children get helpers of their own."""
import os
import uuid

import numpy as np
import pytest

import ember
from ember.compiler.runtime import cpu, cpu_compile


def _module(symbol: str, value: int, pad: int = 0) -> str:
    """A kernel-shaped function (ptr, tid, nt) storing `value` at *ptr, with `pad` dead-ish
    arithmetic so modules can be made large."""
    body = "".join(f"  %x{i} = add i64 %x{i - 1}, {i}\n" for i in range(1, pad + 1))
    last = f"%x{pad}" if pad else "0"
    return (f"define void @{symbol}(ptr %p, i64 %tid, i64 %nt) {{\nentry:\n  %x0 = add i64 %tid, 0\n{body}"
            f"  %z = mul i64 {last}, 0\n  %v = add i64 %z, {value}\n  store i64 %v, ptr %p\n  ret void\n}}\n")


def _modules(n, pad=0):
    tag = uuid.uuid4().hex[:8]   # fresh symbols: the process-wide JIT engine already has others
    return [(f"jobs_{tag}_{k}", 1000 + 7 * k) for k in range(n)], [_module(f"jobs_{tag}_{k}", 1000 + 7 * k, pad)
                                                                   for k in range(n)]


def _call(obj: bytes, symbol: str) -> int:
    out = np.zeros(1, np.int64)
    cpu.compiler().load(obj, symbol, 1)(out.ctypes.data, 0, 1)
    return int(out[0])


@pytest.fixture
def pool(monkeypatch, tmp_path):
    """Two compile jobs even on one core, helpers started for any size, a private cache dir, and
    no helpers left over from (or leaked to) other tests."""
    monkeypatch.setenv("EMBER_COMPILE_JOBS", "2")
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_compile, "START_MIN_S", 0)
    monkeypatch.setattr(cpu_compile, "_stillborn", 0)
    saved = list(cpu_compile._helpers)
    cpu_compile._helpers.clear()
    yield cpu_compile
    for h in cpu_compile._helpers:
        h.close()
    cpu_compile._helpers[:] = saved


def _counting(monkeypatch):
    done = []
    orig = cpu_compile._Helper.compile

    def compile(self, ir):
        out = orig(self, ir)
        done.append(out is not None)
        return out
    monkeypatch.setattr(cpu_compile._Helper, "compile", compile)
    return done


def test_helpers_compile_the_same_bytes_as_this_process(pool, monkeypatch):
    done = _counting(monkeypatch)
    names, irs = _modules(6, pad=300)
    c = cpu.compiler()
    parallel = pool.compile_all(irs, c._compile)
    assert any(done) and all(done)   # the helper did part of the work, and none of it failed
    assert parallel == [c._compile(ir) for ir in irs]
    assert [_call(obj, sym) for obj, (sym, _) in zip(parallel, names)] == [v for _, v in names]


def test_a_helper_that_dies_or_cannot_start_falls_back_to_this_process(pool, monkeypatch):
    c = cpu.compiler()
    names, irs = _modules(4)
    monkeypatch.setattr(cpu_compile, "_BOOT", "import sys; sys.exit(3)")   # starts, then dies
    done = _counting(monkeypatch)
    objs = pool.compile_all(irs, c._compile)
    assert done and not any(done)
    assert [_call(o, s) for o, (s, _) in zip(objs, names)] == [v for _, v in names]
    for _ in range(2):                       # a second one dies too; then no third is started
        names, irs = _modules(4)
        objs = pool.compile_all(irs, c._compile)
        assert [_call(o, s) for o, (s, _) in zip(objs, names)] == [v for _, v in names]
    assert done == [False, False] and not pool._can_start()
    monkeypatch.setattr(cpu_compile, "_stillborn", 0)
    monkeypatch.setattr(cpu_compile.sys, "executable", "/nonexistent/python")   # cannot start
    names, irs = _modules(3)
    objs = pool.compile_all(irs, c._compile)
    assert [_call(o, s) for o, (s, _) in zip(objs, names)] == [v for _, v in names]


def test_invalid_ir_raises_here_and_helpers_stay_usable(pool, monkeypatch):
    c = cpu.compiler()
    names, irs = _modules(5)
    bad = irs[:2] + ["define void @broken(ptr %p) {\nentry:\n  store i64 %nope, ptr %p\n  ret void\n}\n"] + irs[2:]
    with pytest.raises(RuntimeError, match="nope"):
        pool.compile_all(bad, c._compile)
    done = _counting(monkeypatch)
    names, irs = _modules(5)
    objs = pool.compile_all(irs, c._compile)
    assert any(done) and all(done)   # the helper's pipe protocol is still in step
    assert [_call(o, s) for o, (s, _) in zip(objs, names)] == [v for _, v in names]


def test_object_cache_entries_are_checked_and_shared_by_duplicates(pool, tmp_path):
    c = cpu.compiler()
    names, irs = _modules(3)
    first = c.object_codes(irs + irs[:1])          # a module listed twice compiles once
    assert [hit for _, hit in first] == [False] * 4 and first[3][0] == first[0][0]
    assert [hit for _, hit in c.object_codes(irs)] == [True] * 3
    entry = tmp_path / (c.object_key(irs[1]) + ".o")
    data = bytearray(entry.read_bytes())
    data[-3] ^= 0xFF
    entry.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="corrupt cache entry"):
        again = c.object_codes(irs)
    assert [hit for _, hit in again] == [True, False, True]
    assert [o for o, _ in again] == [o for o, _ in first[:3]]
    assert _call(again[1][0], names[1][0]) == names[1][1]


def test_a_plan_with_many_new_kernels_computes_the_same_as_numpy(pool, monkeypatch):
    done = _counting(monkeypatch)
    rng = np.random.default_rng(1)
    a = rng.standard_normal((9, 13)).astype(np.float32)   # shapes no other test uses: new kernels
    b = rng.standard_normal((13, 11)).astype(np.float32)
    x, y = ember.tensor(a), ember.tensor(b)
    outs = [(x @ y).exp().sum(0), (x * 2).tanh().sum(1), x.max(0).values + 1, (x @ y).relu().sum()]
    ember.realize(*outs)
    prod = a.astype(np.float64) @ b
    np.testing.assert_allclose(outs[0].numpy(), np.exp(prod).sum(0), rtol=1e-4)
    np.testing.assert_allclose(outs[1].numpy(), np.tanh(a * 2.0).sum(1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outs[2].numpy(), a.max(0) + 1, rtol=1e-6)
    np.testing.assert_allclose(outs[3].numpy(), np.maximum(prod, 0).sum(), rtol=1e-4)
    assert done and all(done)   # helpers compiled some of the plan's kernels


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_helpers_and_the_parent_keeps_its_own(pool, monkeypatch):
    c = cpu.compiler()
    names, irs = _modules(3)
    pool.compile_all(irs, c._compile)
    parent_helpers = list(pool._helpers)
    assert parent_helpers
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: new helpers, correct code
        ok = False
        try:
            cn, cirs = _modules(4)
            objs = pool.compile_all(cirs, c._compile)
            ok = (not set(map(id, pool._helpers)) & set(map(id, parent_helpers))
                  and [_call(o, s) for o, (s, _) in zip(objs, cn)] == [v for _, v in cn])
        finally:
            os.write(w, b"1" if ok else b"0")
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)
    done = _counting(monkeypatch)
    names, irs = _modules(4)
    objs = pool.compile_all(irs, c._compile)
    assert pool._helpers == parent_helpers and any(done) and all(done)
    assert [_call(o, s) for o, (s, _) in zip(objs, names)] == [v for _, v in names]


def test_replays_launch_every_kind_of_kernel_like_eager():
    """The replay launch list (realize.Arena.program): a kernel with one parameter (an output and
    no inputs), an empty result, a kernel big enough to split across threads and chained small
    ones, replayed several times with new inputs, against numpy."""
    def f(x, big):
        ramp = ember.arange(7).float() * 2                    # one pointer: its output
        empty = x[:0] * 3                                      # nothing to compute
        y = x
        for k in range(4):                                     # a chain of small kernels
            y = (y @ x.T).tanh() + k
        return ramp, empty, y, (big * 2 + 1).exp().sum(0)    # 2^17 elements: split across cores

    g = ember.compile(f)
    rng = np.random.default_rng(3)
    for _ in range(5):
        xn = rng.standard_normal((5, 5)).astype(np.float32)
        bn = rng.standard_normal((512, 256)).astype(np.float32) * 0.1
        ramp, empty, y, s = g(ember.tensor(xn), ember.tensor(bn))
        ref = xn.astype(np.float64)
        for k in range(4):
            ref = np.tanh(ref @ xn.T) + k
        np.testing.assert_array_equal(ramp.numpy(), np.arange(7) * 2.0)
        assert empty.shape == (0, 5) and empty.numpy().size == 0
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(s.numpy(), np.exp(bn.astype(np.float64) * 2 + 1).sum(0), rtol=1e-4)
    assert g.cache_info()["hits"] >= 2
    ramp = ember.compile(lambda: ember.arange(7).float() * 2)    # its kernel's only pointer: the output
    empty = ember.compile(lambda x: (x[:0] * 3).exp())           # a kernel with nothing to compute
    for _ in range(4):
        np.testing.assert_array_equal(ramp().numpy(), np.arange(7) * 2.0)
        assert empty(ember.ones(5, 5)).shape == (0, 5)
    assert ramp.cache_info()["hits"] >= 1 and empty.cache_info()["hits"] >= 1
