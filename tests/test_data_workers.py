"""Compiled kernels in forked processes: the CPU runtime survives fork (its thread pool is rebuilt
in the child), so DataLoader workers compute lazy samples with the same compiled kernels as the
main process and their batches are bit for bit the main process's."""
import os
import signal

import numpy as np
import pytest

import ember
import ember.utils.data as eud

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

DATA = np.random.default_rng(0).standard_normal((40, 300)).astype(np.float32) * 3


class Computed(eud.Dataset):
    """Each sample is a lazy computation with transcendental functions (where the numpy interpreter
    and the compiled kernels differ in the last bits), and says which backend made it."""

    def __len__(self):
        return len(DATA)

    def __getitem__(self, i):
        row = ember.tensor(DATA[i])          # a buffer: every sample's graph has the same structure
        return (row.tanh() * row.exp()).softmax(0), os.environ.get("EMBER_BACKEND", "compiled")


def _batches(**kw):
    return [(x.numpy(), backend) for x, backend in eud.DataLoader(Computed(), batch_size=8, **kw)]


def test_worker_batches_are_the_main_process_batches_bit_for_bit():
    main = _batches(num_workers=0)
    workers = _batches(num_workers=2)
    shuffled_main = _batches(num_workers=0, shuffle=True, generator=5)
    shuffled_workers = _batches(num_workers=2, shuffle=True, generator=5, persistent_workers=True)
    for a, b in [(main, workers), (shuffled_main, shuffled_workers)]:
        assert len(a) == len(b) == 5
        for (xa, _), (xb, backend) in zip(a, b):
            assert backend == ["compiled"] * len(xb)
            assert xa.dtype == xb.dtype and xa.tobytes() == xb.tobytes()
    want = np.tanh(DATA.astype(np.float64)) * np.exp(DATA.astype(np.float64))
    want = np.exp(want - want.max(1, keepdims=True))
    np.testing.assert_allclose(np.concatenate([x for x, _ in workers]), want / want.sum(1, keepdims=True),
                               rtol=2e-5, atol=1e-30)


def test_a_forked_child_launches_parallel_kernels(monkeypatch):
    """The parent's pool has threads when it forks; the child must not submit to that (threadless)
    pool: it would wait forever. A new kernel with enough work to be split across threads runs."""
    monkeypatch.setenv("EMBER_NUM_THREADS", "2")
    x = ember.randn(256, 512)
    parent = (x.exp() * 2).sum(1).numpy()       # a parallel launch: the pool now has a thread
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        status = 1
        try:
            signal.alarm(60)
            same = (x.exp() * 2).sum(1).numpy()     # an inherited kernel
            new = (x * 3 + 1).tanh().sum(0).numpy()  # compiled and loaded in the child
            os.write(w, np.concatenate([same, new]).astype(np.float32).tobytes())
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"child exited with status {status}"
    got = np.frombuffer(b"".join(chunks), np.float32)
    assert got[:256].tobytes() == parent.tobytes()
    np.testing.assert_allclose(got[256:], np.tanh(x.numpy().astype(np.float64) * 3 + 1).sum(0), rtol=1e-4, atol=1e-3)
