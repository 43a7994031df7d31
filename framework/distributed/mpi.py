"""The MPI backend: collectives on host arrays through mpi4py, with deadlines instead of hangs.

A backend moves flat, contiguous numpy arrays (the storage of realized ember buffers, shared, not
copied); ember tensors never reach this module. Every collective is issued NONBLOCKING
(`Iallreduce`, `Ibcast`, ...) and completed by `wait`, which polls the requests against the
process group's deadline. MPI itself has no timeout: a blocking `Allreduce` whose peer died or hung
waits forever.

When a deadline passes, `wait` asks every other rank whether it is alive on a second communicator
(a duplicate of COMM_WORLD, so the probe never matches collective traffic): ranks waiting inside
ember.distributed answer with the collective they are waiting in; the ranks that do not answer
are named in the error. The group is then broken: later collectives raise at once, and at exit the
process calls MPI_Abort instead of MPI_Finalize (which could wait forever for the dead peer), so
mpiexec tears the whole job down.
"""
from __future__ import annotations

import atexit
import os
import time

import numpy as np

from .errors import DistBackendError, backend_missing
from .reduce_op import ReduceOp

_PING, _PONG = 11, 12
_PROBE_GRACE_S = 2.0     # how long a timed-out rank waits for its peers' answers


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise backend_missing("mpi", "mpi4py", "mpich", str(e)) from None
    return MPI


class MPIBackend:
    name = "mpi"

    def __init__(self, timeout_s: float):
        MPI = self.MPI = _import_mpi()
        self.timeout_s = timeout_s
        world = MPI.COMM_WORLD
        self.comm, self.ctrl = world.Dup(), world.Dup()    # collectives / liveness probes
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.seq = 0                 # collectives issued so far (named in timeout messages)
        self.current = None          # (seq, name) of the collective being waited on
        self.broken: str | None = None
        self._sent = []              # probe messages in flight (their pickled payloads must live)
        self._ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD, ReduceOp.MIN: MPI.MIN,
                     ReduceOp.MAX: MPI.MAX, ReduceOp.BAND: MPI.BAND, ReduceOp.BOR: MPI.BOR,
                     ReduceOp.BXOR: MPI.BXOR}
        self._bool_ops = {ReduceOp.SUM: MPI.LOR, ReduceOp.MAX: MPI.LOR, ReduceOp.BOR: MPI.LOR,
                          ReduceOp.PRODUCT: MPI.LAND, ReduceOp.MIN: MPI.LAND, ReduceOp.BAND: MPI.LAND,
                          ReduceOp.BXOR: MPI.LXOR}

    # -- collectives: each returns the MPI requests to wait on ----------------------------------
    def _op(self, op: ReduceOp, dtype: np.dtype):
        return (self._bool_ops if dtype == np.bool_ else self._ops)[op]

    def allreduce(self, send: np.ndarray, recv: np.ndarray, op: ReduceOp):
        src = self.MPI.IN_PLACE if send is recv else send
        return self._issue("all_reduce", lambda: self.comm.Iallreduce(src, recv, op=self._op(op, recv.dtype)))

    def broadcast(self, buf: np.ndarray, src: int):
        return self._issue("broadcast", lambda: self.comm.Ibcast([_bytes(buf), self.MPI.BYTE], root=src))

    def allgather(self, send: np.ndarray, recv: np.ndarray):
        return self._issue("all_gather", lambda: self.comm.Iallgather([_bytes(send), self.MPI.BYTE],
                                                                      [_bytes(recv), self.MPI.BYTE]))

    def reduce_scatter(self, send: np.ndarray, recv: np.ndarray, op: ReduceOp):
        return self._issue("reduce_scatter",
                           lambda: self.comm.Ireduce_scatter_block(send, recv, op=self._op(op, recv.dtype)))

    def barrier(self):
        return self._issue("barrier", self.comm.Ibarrier)

    def _issue(self, name: str, start):
        self._check_usable()
        self.seq += 1
        return [(self.seq, name, start())]

    # -- completion with a deadline -------------------------------------------------------------
    def test(self, pending) -> bool:
        return self.MPI.Request.Testall([r for _, _, r in pending])

    def wait(self, pending, timeout_s: float | None = None) -> None:
        """Complete `pending` (lists from the collectives above) or raise DistBackendError naming
        the ranks that did not answer. Polls MPI: progress on shared memory happens inside these
        calls, so the first second is a tight loop (as MPI_Wait is, but yielding the core every 256
        polls, which matters when ranks share cores with other work); after that, each ~5 ms of
        polling is followed by a 1 ms sleep, so a hung job does not burn its cores."""
        if not pending:
            return
        reqs = [r for _, _, r in pending]
        self.current = pending[-1][:2]
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        start = time.monotonic()
        deadline, next_ping_check, spins = start + timeout_s, start, 0
        testall = self.MPI.Request.Testall
        try:
            while not testall(reqs):
                spins += 1
                if spins & 255:
                    continue
                os.sched_yield()     # on a shared core, let the peer (or other work) run
                now = time.monotonic()
                if now >= next_ping_check:
                    self._answer_pings()
                    next_ping_check = now + 0.05
                if now >= deadline:
                    self._timed_out(*self.current, timeout_s)
                if now - start > 1.0 and spins & 0x3FFF == 0:
                    time.sleep(0.001)
        finally:
            self.current = None

    def _answer_pings(self) -> None:
        MPI = self.MPI
        status = MPI.Status()
        while self.ctrl.iprobe(source=MPI.ANY_SOURCE, tag=_PING, status=status):
            peer = status.Get_source()
            self.ctrl.recv(source=peer, tag=_PING)
            self._send(self.current, peer, _PONG)

    def _send(self, obj, peer: int, tag: int) -> None:
        self._sent = [r for r in self._sent if not r.Test()]
        self._sent.append(self.ctrl.isend(obj, dest=peer, tag=tag))

    def _timed_out(self, seq: int, name: str, timeout_s: float):
        peers = [r for r in range(self.size) if r != self.rank]
        for r in peers:
            self._send(self.rank, r, _PING)
        answers, recvs = {}, {r: self.ctrl.irecv(source=r, tag=_PONG) for r in peers}
        deadline = time.monotonic() + min(_PROBE_GRACE_S, max(timeout_s, 0.2))
        while recvs and time.monotonic() < deadline:
            self._answer_pings()
            for r, req in list(recvs.items()):
                done, value = req.test()
                if done:
                    answers[r] = value
                    del recvs[r]
            time.sleep(0.001)
        silent = sorted(recvs)
        here = f"{name} #{seq}"
        if silent:
            who = ", ".join(map(str, silent))
            msg = (f"ember.distributed: {here} did not complete within {timeout_s:g} s on rank {self.rank} "
                   f"(world size {self.size}): rank{'s' if len(silent) > 1 else ''} {who} did not respond "
                   f"(dead, hung, or busy outside ember.distributed)")
        else:
            msg = (f"ember.distributed: {here} did not complete within {timeout_s:g} s on rank {self.rank} "
                   f"(world size {self.size}), although every rank is alive")
        waiting = [f"rank {r} is in {a[1]} #{a[0]}" if a else f"rank {r} is between collectives"
                   for r, a in sorted(answers.items())]
        if waiting:
            msg += "; " + ", ".join(waiting) + " (a mismatch means the ranks issued different collectives)"
        self._break(msg)
        raise DistBackendError(msg + ". The process group is unusable now; at exit this process calls "
                               "MPI_Abort so that mpiexec stops the remaining ranks.")

    # -- lifecycle ------------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self.broken:
            raise DistBackendError(f"the process group is broken by an earlier failure: {self.broken}")

    def _break(self, reason: str) -> None:
        if self.broken is None:
            atexit.register(self.MPI.COMM_WORLD.Abort, 1)
        self.broken = reason

    def close(self) -> None:
        if self.broken is None:
            self.comm.Free()
            self.ctrl.Free()


def _bytes(a: np.ndarray) -> np.ndarray:
    """The same storage as bytes: broadcast and all_gather only move data, so any dtype (float16,
    bfloat16 from ml_dtypes) travels without an MPI datatype of its own."""
    return a.reshape(-1).view(np.uint8)
