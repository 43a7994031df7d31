"""Streaming (non-temporal) stores for outputs far larger than the caches (codegen/llvm.py: streams,
tiles): which kernels get them, that they really are `vmovntps` in the machine code, and that
results stay exact for every size, thread split, dtype and layout (tile edges, partial tiles,
thread shares, rows that do or do not start on a cache line). References are numpy values computed
with the same float32 roundings, so equality is exact."""
import ctypes
import platform
import re

import numpy as np
import pytest

import ember
from ember.compiler.codegen import llvm

pytestmark = pytest.mark.skipif(not llvm.STREAMING, reason="streaming stores are emitted on x86-64 only")

F32_MIN = llvm.STREAM_MIN_BYTES // 4      # float32 elements of the smallest streamed output


def _rng(seed=0):
    return np.random.default_rng(seed)


def _run(fn, *arrays):
    """fn(*tensors) realized under a capture: (numpy result, the kernel records)."""
    with ember.debug.capture() as cap:
        out = fn(*[ember.tensor(a) for a in arrays])
        got = out.numpy()
    return got, cap.kernels


def _nt_stores(rec) -> int:
    return len(re.findall(r"\bvmovnt(ps|pd|dq)\b", rec.source("asm")))


def test_large_elementwise_output_streams_small_does_not():
    r = _rng()
    for n, streamed in ((F32_MIN + 5, True), (F32_MIN // 4, False)):
        x, a, b = (r.standard_normal(n).astype(np.float32) for _ in range(3))
        got, recs = _run(lambda x, a, b: x * a + b, x, a, b)
        np.testing.assert_array_equal(got, x * a + b)
        (rec,) = recs
        asm = rec.source("asm")
        assert (_nt_stores(rec) > 0) == streamed, n
        assert ("sfence" in asm) == streamed
        assert ("!nontemporal" in rec.source("llvm")) == streamed
        if streamed:   # whole 32-byte vectors out, not split into scalar streaming stores
            assert "vmovntps\t%ymm" in asm and "movntss" not in asm and "movnti" not in asm


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("extra", [0, 1, 7, 255, 257, 1000])
def test_exact_for_odd_sizes_and_thread_splits(monkeypatch, threads, extra):
    """Sizes that are not multiples of the vector width or tile, split over 1-3 threads (shares
    of odd sizes: each thread streams whole tiles from a 64-element boundary, then its tail)."""
    monkeypatch.setenv("EMBER_NUM_THREADS", threads)
    n = F32_MIN + 64 * 3 + extra
    r = _rng(extra)
    x, a = r.standard_normal(n).astype(np.float32), r.standard_normal(n).astype(np.float32)
    got, (rec,) = _run(lambda x, a: x * a + 0.25, x, a)
    assert _nt_stores(rec) > 0
    np.testing.assert_array_equal(got, x * a + np.float32(0.25))


@pytest.mark.parametrize("width, streamed", [(4096, True), (4112, True), (4100, False), (4104, False)])
def test_rows_stream_when_each_row_starts_a_line(width, streamed):
    """A broadcast (rows x width) + (width,) kernel streams its inner loop when every row starts
    on a cache line (width a multiple of 16 floats); other widths keep plain stores."""
    rows = F32_MIN // width + 3          # an odd number of rows, split over the threads
    r = _rng(width)
    x = r.standard_normal((rows, width)).astype(np.float32)
    bias = r.standard_normal(width).astype(np.float32)
    got, (rec,) = _run(lambda x, b: x + b, x, bias)
    assert (_nt_stores(rec) > 0) == streamed
    np.testing.assert_array_equal(got, x + bias)


def test_softmax_rows_stream_and_match():
    x = _rng(3).standard_normal((F32_MIN // 1024 + 1, 1024)).astype(np.float32)
    got, recs = _run(lambda t: t.softmax(-1), x)
    assert any(_nt_stores(rec) > 0 for rec in recs)
    e = np.exp(x.astype(np.float64) - x.max(-1, keepdims=True))
    np.testing.assert_allclose(got, e / e.sum(-1, keepdims=True), rtol=2e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32, np.int8])
def test_other_dtypes_stream_whole_lines(dtype):
    """Tiles are 256 elements of any size (1..8 bytes: whole lines each); the lines are copied
    bit for bit, so half types (rounded in registers) and integers come out exact."""
    n = llvm.STREAM_MIN_BYTES // np.dtype(dtype).itemsize + 77
    r = _rng(5)
    x = r.standard_normal(n) if np.dtype(dtype).kind == "f" else r.integers(-40, 40, n)
    x = x.astype(dtype)
    want = (x * dtype(2) + dtype(1)).astype(dtype)   # x*2 is exact: one rounding, as in numpy
    got, (rec,) = _run(lambda t: t * 2 + 1, x)
    assert _nt_stores(rec) > 0
    np.testing.assert_array_equal(got, want)


def test_several_streamed_outputs_in_one_kernel():
    r = _rng(7)
    n = F32_MIN + 300
    x, a = r.standard_normal(n).astype(np.float32), r.standard_normal(n).astype(np.float32)
    X, A = ember.tensor(x), ember.tensor(a)
    with ember.debug.capture() as cap:
        p, q = X * A, X + A
        ember.realize(p, q)
    assert len(cap.kernels) == 1 and _nt_stores(cap.kernels[0]) > 0
    np.testing.assert_array_equal(p.numpy(), x * a)
    np.testing.assert_array_equal(q.numpy(), x + a)
    # the next kernel reads the streamed values (made visible by the kernel's sfence)
    np.testing.assert_array_equal(((p + q) * 2).numpy(), (x * a + (x + a)) * np.float32(2))


def test_misaligned_output_falls_back_to_plain_stores():
    """Kernel outputs come from the 64-byte aligned pool; called directly with an output that is
    not on a cache line, the kernel must skip its tiles (no faulting vmovntps) and be exact."""
    n = F32_MIN + 19
    r = _rng(9)
    x = r.standard_normal(n).astype(np.float32)
    _, (rec,) = _run(lambda t: t * 2 + 1, x)
    assert _nt_stores(rec) > 0 and [p.role for p in rec.compiled.kernel.params] == ["out", "in"]
    for shift in (1, 4, 15):            # 4, 16, 60 bytes past a line
        raw = np.zeros(n + 32, np.float32)
        start = (-raw.ctypes.data % 64) // 4 + shift
        out = raw[start:start + n]
        assert out.ctypes.data % 64 == 4 * shift
        for tid, nt in ((0, 1), (0, 2), (1, 2)):
            rec.compiled.fn(ctypes.c_void_p(out.ctypes.data), ctypes.c_void_p(x.ctypes.data), tid, nt)
        np.testing.assert_array_equal(out, x * np.float32(2) + np.float32(1))


def test_not_streamed_when_the_kernel_reads_its_output_or_loop_is_short():
    """The decision itself (codegen/llvm.py: streams), on kernels built by the real pipeline."""
    r = _rng(11)
    x = r.standard_normal((F32_MIN // 128 + 1, 128)).astype(np.float32)
    _, (rec,) = _run(lambda t: t * 2, x)   # 128-wide rows, merged into one flat loop: streamed
    assert llvm.streams(rec.compiled.kernel)
    y = r.standard_normal((F32_MIN // 16 + 1, 16)).astype(np.float32)
    got, recs = _run(lambda t: t + t.sum(0), y)   # inner loop of 16 < one tile
    assert not any(llvm.streams(rec.compiled.kernel) for rec in recs)
    np.testing.assert_allclose(got, y + y.sum(0, dtype=np.float64), rtol=1e-5, atol=1e-2)


def test_platform_gate():
    assert llvm.STREAMING == (platform.machine().lower() in ("x86_64", "amd64"))


# ---- the compute side of bandwidth-bound kernels: float32 tanh (codegen/llvm_math.py) ----------

def test_tanh_float32_accuracy():
    """tanh's large-|x| path uses a bare exponential clamped at 2|x| = 20 (tanh is 1.0f from
    |x| ~ 9.1): checked against float64 numpy on every float32 exponent, both sides of the
    0.625 path switch and the clamp, and the special values. The worst case, ~1.3 ulp, is just
    above the switch (1 - 2/(e^2|x| + 1) loses a little to cancellation there); the error falls
    to ~1 ulp at |x| = 1 and to half an ulp (correct rounding, nearly) from |x| = 2."""
    r = _rng(13)
    mags = np.concatenate([
        2.0 ** r.uniform(-149, 7, 400_000),                  # denormals .. 128
        r.uniform(0.55, 0.7, 100_000), r.uniform(8.5, 10.5, 100_000),
        np.nextafter(np.float32([0.625, 9.0, 9.1, 10.0]), np.float32(np.inf)),
        np.float32([0.625, 9.0, 9.1, 10.0, 1e-45, 3e38])]).astype(np.float32)
    x = np.concatenate([mags, -mags])
    got = ember.tensor(x).tanh().numpy()
    ref = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    err = np.abs(got - ref) / ulp
    assert err.max() <= 1.5
    assert err[np.abs(x) >= 2].max() <= 0.55
    np.testing.assert_array_equal(np.signbit(got), np.signbit(x))
    sp = ember.tensor(np.float32([0.0, -0.0, np.inf, -np.inf, np.nan])).tanh().numpy()
    assert sp[:4].tolist() == [0.0, -0.0, 1.0, -1.0] and np.signbit(sp[1]) and np.isnan(sp[4])
