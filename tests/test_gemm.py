"""The generated GEMM kernel (kernels/gemm.py), compiled through the CPU runtime, against a float64
numpy matmul: edge sizes around the register and cache tiles, transposed and strided operands,
broadcast batches (stride 0), offsets, float32 and float64, and the thread split (every element
of C written by exactly one thread for any thread count)."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ember.compiler import dtypes as D
from ember.kernels import gemm

# Small blockings make the multi-block paths (several KC steps accumulating into C, several MC and
# NC blocks, edge slivers) reachable with shapes that compile and run fast.
TINY = {dt: gemm.Config(mr=c.mr, nr=c.nr, vec=c.vec, mc=2 * c.mr, kc=8, nc=2 * c.nr)
        for dt, c in ((dt, gemm.default_config(dt)) for dt in (D.float32, D.float64))}

SIZES = st.one_of(st.sampled_from([1, 2, 3, 5, 6, 7, 8, 13, 16, 17, 31, 33]), st.integers(1, 80))
LAYOUTS = ["row", "col", "gapped"]


def operand(rng, dtype, batch, rows, cols, layout, broadcast, offset):
    """A (batch, rows, cols) operand stored in a flat buffer at `offset` with the given layout:
    returns (buffer, element strides, the logical float64 view for the reference)."""
    if layout == "row":
        inner = (cols, 1)
    elif layout == "col":      # a transposed view
        inner = (1, rows)
    elif layout == "gapped":   # every other element of rows with a padded leading dimension
        inner = (2 * cols + 3, 2)
    if layout in ("interleaved", "interleavedT"):   # the batches' rows (columns) side by side,
        # as attention reads heads out of a (seq, batch*heads, head_dim) array: rows far apart
        strides = (cols, batch * cols, 1) if layout == "interleaved" else (rows, 1, batch * rows)
        strides = (0, *strides[1:]) if broadcast else strides
        size = offset + sum((n - 1) * st for n, st in zip((batch, rows, cols), strides)) + 1
    else:
        matrix = (rows - 1) * inner[0] + (cols - 1) * inner[1] + 1
        strides = (0 if broadcast else matrix, *inner)
        size = offset + (batch - 1) * strides[0] + matrix
    buf = rng.standard_normal(size).astype(dtype.np)
    view = np.lib.stride_tricks.as_strided(buf[offset:], (batch, rows, cols),
                                           [s * buf.itemsize for s in strides], writeable=False)
    return buf, strides, view.astype(np.float64)


def run_threads(fn, c, a, b, nt, concurrent=True):
    ptrs = (c.ctypes.data, a.ctypes.data, b.ctypes.data)
    if not concurrent:
        for t in range(nt):
            fn(*ptrs, t, nt)
        return
    threads = [threading.Thread(target=fn, args=(*ptrs, t, nt)) for t in range(nt)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def check(dtype, batch, M, N, K, la, lb, ba, bb, oa, ob, config, nt, seed=0):
    rng = np.random.default_rng(seed)
    a, sa, ra = operand(rng, dtype, batch, M, K, la, ba, oa)
    b, sb, rb = operand(rng, dtype, batch, K, N, lb, bb, ob)
    fn = gemm.compile_gemm(dtype, batch, M, N, K, sa, sb, oa, ob, config=config)
    c = np.full((batch, M, N), np.nan, dtype.np)
    run_threads(fn, c, a, b, nt)
    ref = ra @ rb
    eps = np.finfo(dtype.np).eps
    tol = (K + 2) * eps * (np.abs(ra) @ np.abs(rb)) + np.finfo(dtype.np).tiny
    err = np.abs(c - ref)
    assert not np.isnan(c).any(), "some elements of C were never written"
    assert (err <= tol).all(), f"max error {err.max():.3g} (tolerance there {tol.flat[err.argmax()]:.3g})"
    return fn, (a, b)


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from([D.float32, D.float64]), batch=st.integers(1, 3), M=SIZES, N=SIZES, K=SIZES,
       la=st.sampled_from(LAYOUTS), lb=st.sampled_from(LAYOUTS), ba=st.booleans(), bb=st.booleans(),
       oa=st.integers(0, 3), ob=st.integers(0, 3), tiny=st.booleans(), nt=st.integers(1, 4))
def test_gemm_matches_numpy(dtype, batch, M, N, K, la, lb, ba, bb, oa, ob, tiny, nt):
    check(dtype, batch, M, N, K, la, lb, ba, bb, oa, ob, TINY[dtype] if tiny else None, nt)


@pytest.mark.parametrize("dtype", [D.float32, D.float64])
@pytest.mark.parametrize("la,lb", [("row", "row"), ("row", "col"), ("col", "row"), ("col", "col")])
def test_gemm_full_tiles_and_edges_across_blocks(dtype, la, lb):
    """Several MC/KC/NC blocks with full register tiles and a ragged edge in every dimension."""
    cfg = TINY[dtype]
    check(dtype, 2, 3 * cfg.mc + 1, 3 * cfg.nc + 5, 5 * cfg.kc + 3, la, lb, False, True, 1, 0, cfg, 3)


@pytest.mark.parametrize("nt", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("shape", [(1, 5, 300, 7), (4, 20, 20, 20), (1, 200, 9, 30), (3, 1, 1, 1)])
def test_gemm_threads_partition_the_output(shape, nt):
    """Each thread writes a disjoint part of C and together they write all of it (rows or columns,
    whichever the split picks), also with more threads than work."""
    batch, M, N, K = shape
    fn, (a, b) = check(D.float32, batch, M, N, K, "row", "row", False, False, 0, 0, TINY[D.float32], nt)
    owner = np.zeros((batch, M, N), np.int64)
    for t in range(nt):
        c = np.full((batch, M, N), np.nan, np.float32)
        fn(c.ctypes.data, a.ctypes.data, b.ctypes.data, t, nt)
        owner += ~np.isnan(c)
    assert (owner == 1).all(), f"elements written by {sorted(set(owner.flat))} threads"


@pytest.mark.parametrize("shape", [(1, 4, 5, 0), (2, 3, 1, 0), (1, 0, 4, 3), (0, 2, 2, 2), (1, 3, 0, 2)])
def test_gemm_degenerate_sizes(shape):
    """K = 0 gives zeros (the empty sum); empty C is a no-op that touches nothing."""
    batch, M, N, K = shape
    fn = gemm.compile_gemm(D.float32, batch, M, N, K, (M * K, K, 1), (K * N, N, 1))
    a, b = np.ones(max(batch * M * K, 1), np.float32), np.ones(max(batch * K * N, 1), np.float32)
    c = np.full(batch * M * N + 1, np.nan, np.float32)  # one guard element past the end
    run_threads(fn, c, a, b, 2)
    assert (c[:-1] == 0).all() and np.isnan(c[-1])


def test_gemm_large_default_blocking():
    """One product bigger than the default blocks (several KC steps, partial MC block) on 2 threads."""
    check(D.float32, 1, 300, 200, 600, "row", "col", False, False, 0, 0, None, 2)


def test_gemm_rejects_integer_dtypes():
    with pytest.raises(TypeError, match="float32 and float64"):
        gemm.render_gemm("g", D.int32, 1, 2, 2, 2, (4, 2, 1), (4, 2, 1))


def test_gemm_flops():
    assert gemm.gemm_flops(3, 4, 5, 6) == 2 * 3 * 4 * 5 * 6


def test_autotune_picks_a_candidate_and_caches_it(monkeypatch):
    monkeypatch.setattr(gemm, "_tuned", {})
    cands = gemm.candidates(D.float32)[:2]
    cfg = gemm.autotune(D.float32, 40, 40, 40, configs=cands, repeat=1)
    assert cfg in cands
    assert gemm.tuned_config(D.float32, 40, 40, 40) is cfg
    check(D.float32, 1, 40, 40, 40, "row", "row", False, False, 0, 0, None, 2)


@pytest.mark.parametrize("isa", sorted(gemm.VECTOR_BYTES))
@pytest.mark.parametrize("dtype", [D.float32, D.float64])
def test_gemm_register_tiles_of_every_isa(isa, dtype):
    """Each ISA's tile shape (wider vectors are split by LLVM on a narrower host) gives exact
    results, including row/column edges of the register tile and of the blocks."""
    base = gemm.default_config(dtype, isa)
    cfg = gemm.Config(mr=base.mr, nr=base.nr, vec=base.vec, mc=2 * base.mr, kc=16, nc=2 * base.nr)
    check(dtype, 1, 2 * cfg.mc + 3, cfg.nc + base.nr + 1, 2 * cfg.kc + 5, "row", "col", False, False, 0, 0, cfg, 2)


@pytest.mark.parametrize("dtype", [D.float32, D.float64])
@pytest.mark.parametrize("M,N,la,lb", [(5, 3 * 16 + 7, "row", "row"),     # B read in place + packed edge
                                       (1, 40, "col", "row"),              # both operands in place
                                       (50, 9, "row", "col"), (50, 20, "col", "gapped")])  # A in place
def test_gemm_unpacked_operand_paths(dtype, M, N, la, lb):
    """The shapes where the micro-kernel reads A (few columns) or B (one panel of rows) in place."""
    check(dtype, 2, M, N, 3 * TINY[dtype].kc + 1, la, lb, True, False, 2, 1, TINY[dtype], 2)


# The packing paths that matter for the mid-size products of training steps (kernels/gemm_pack.py):
# A^T packed k-major by vector copies whose extra lanes spill into the next k's slots (so M around
# MR..2 MR + VEC and the last k matter), B read in place for up to two panels of rows, B^T packed
# by transposes that read whole cache lines (K around multiples of 2 VEC), rows far apart
# (attention's interleaved heads), on default and small blockings, float32 and float64.
MID = {dt: gemm.Config(mr=c.mr, nr=c.nr, vec=c.vec, mc=3 * c.mr, kc=40, nc=4 * c.nr)
       for dt, c in ((dt, gemm.default_config(dt)) for dt in (D.float32, D.float64))}
PATH_LAYOUTS = ["row", "col", "interleaved", "interleavedT"]


@settings(max_examples=30, deadline=None)
@given(dtype=st.sampled_from([D.float32, D.float64]), batch=st.integers(1, 4),
       M=st.one_of(st.integers(1, 24), st.integers(25, 70)), N=st.one_of(st.integers(1, 40), st.integers(41, 90)),
       K=st.one_of(st.sampled_from([15, 16, 17, 31, 32, 33, 48, 64, 81]), st.integers(1, 100)),
       la=st.sampled_from(PATH_LAYOUTS), lb=st.sampled_from(PATH_LAYOUTS), ba=st.booleans(),
       config=st.sampled_from(["default", "mid", "tiny"]), nt=st.integers(1, 3))
def test_gemm_packing_paths_match_numpy(dtype, batch, M, N, K, la, lb, ba, config, nt):
    cfg = {"default": None, "mid": MID[dtype], "tiny": TINY[dtype]}[config]
    check(dtype, batch, M, N, K, la, lb, ba, False, 1, 2, cfg, nt)


@pytest.mark.parametrize("dtype", [D.float32, D.float64])
@pytest.mark.parametrize("M", [6, 7, 8, 9, 12, 13, 14, 20, 23, 50, 51, 56, 97])
def test_gemm_kmajor_packing_spill(dtype, M):
    """A^T packed k-major: full slivers by vector copies, the ones near the block's end and the
    last k element by element; every sliver row and k must land exactly once."""
    check(dtype, 1, M, 37, 19, "col", "row", False, False, 0, 0, None, 1)
    check(dtype, 2, M, 21, 2 * MID[dtype].kc + 3, "col", "col", False, False, 3, 0, MID[dtype], 2)


@pytest.mark.parametrize("dtype", [D.float32, D.float64])
@pytest.mark.parametrize("M", [7, 11, 12])
def test_gemm_b_in_place_two_panels(dtype, M):
    """Two panels of rows read B in place (a full one and the ragged one), with a packed ragged sliver."""
    cfg = gemm.default_config(dtype)
    assert gemm._Spec("g", "float", 4, 1, M, 3 * cfg.nr + 5, 9, (0, 9, 1), (0, 3 * cfg.nr + 5, 1), 0, 0, cfg).b_direct
    for la in ("row", "col"):
        check(dtype, 2, M, 3 * cfg.nr + 5, 70, la, "row", True, False, 0, 1, None, 2)


# The products of the benchmarks' training steps with their strides as ember's matcher finds them
# (`ember.debug.capture()` on benchmarks.training): linear layers forward and backward, and the
# batched attention products reading heads out of a (seq, batch*heads, head_dim) layout.
TRAINING = [(1, 256, 512, 784, (0, 784, 1), (0, 1, 784)), (1, 512, 784, 256, (0, 1, 512), (0, 784, 1)),
            (1, 10, 512, 256, (0, 1, 10), (0, 512, 1)), (1, 256, 10, 512, (0, 512, 1), (0, 1, 512)),
            (1, 128, 512, 1024, (0, 1, 128), (0, 512, 1)), (64, 64, 64, 32, (32, 2048, 1), (32, 1, 2048)),
            (64, 64, 32, 64, (4096, 64, 1), (32, 2048, 1)), (64, 32, 64, 64, (32, 1, 2048), (4096, 64, 1))]


@pytest.mark.parametrize("batch,M,N,K,sa,sb", TRAINING)
def test_gemm_training_step_shapes(batch, M, N, K, sa, sb):
    rng = np.random.default_rng(1)
    span = [1 + sum((n - 1) * st for n, st in zip(dims, strides)) for dims, strides in
            (((batch, M, K), sa), ((batch, K, N), sb))]
    a, b = (rng.standard_normal(n).astype(np.float32) for n in span)
    fn = gemm.compile_gemm(D.float32, batch, M, N, K, sa, sb)
    c = np.full((batch, M, N), np.nan, np.float32)
    run_threads(fn, c, a, b, 2)
    view = lambda x, shape, st: np.lib.stride_tricks.as_strided(x, shape, [v * 4 for v in st]).astype(np.float64)
    ra, rb = view(a, (batch, M, K), sa), view(b, (batch, K, N), sb)
    tol = (K + 2) * np.finfo(np.float32).eps * (np.abs(ra) @ np.abs(rb))
    assert (np.abs(c - ra @ rb) <= tol).all()
