"""The NCCL backend: collectives between NVIDIA GPUs through libnccl (ctypes) and cuda-bindings.

UNTESTED: written without a GPU; on a machine without one, init_process_group("nccl") fails with a
clear message (which package or device is missing), which IS tested. See docs/distributed.md.

ember has no CUDA tensors yet (device "cuda" raises), so this backend stages: a collective copies
the host buffer to the GPU, runs the NCCL call on a private stream, and copies the result back
into the host buffer the frontend allocated; completion is an event polled against the deadline.
When ember's CUDA runtime lands, the staging copies disappear and the device pointers of realized
buffers are passed straight to NCCL. Ranks come from the launcher (torchrun's RANK/WORLD_SIZE/
LOCAL_RANK, or mpiexec's); NCCL's unique id goes from rank 0 to the others over MPI when the job was
started by mpiexec and mpi4py is installed, else over TCP at MASTER_ADDR:(MASTER_PORT + 1).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import socket
import time

import numpy as np

from .errors import DistBackendError, DistError, DistNetworkError, backend_missing
from .reduce_op import ReduceOp

_NCCL_TYPES = {np.dtype(np.int8): 0, np.dtype(np.uint8): 1, np.dtype(np.int32): 2, np.dtype(np.uint32): 3,
               np.dtype(np.int64): 4, np.dtype(np.uint64): 5, np.dtype(np.float16): 6, np.dtype(np.float32): 7,
               np.dtype(np.float64): 8, np.dtype(np.bool_): 1}
_NCCL_OPS = {ReduceOp.SUM: 0, ReduceOp.PRODUCT: 1, ReduceOp.MAX: 2, ReduceOp.MIN: 3}
_BOOL_OPS = {ReduceOp.SUM: 2, ReduceOp.MAX: 2, ReduceOp.BOR: 2, ReduceOp.MIN: 3, ReduceOp.PRODUCT: 3,
             ReduceOp.BAND: 3}


class _UniqueId(ctypes.Structure):
    _fields_ = [("internal", ctypes.c_byte * 128)]


def find_libnccl() -> str | None:
    """libnccl.so.2 from the nvidia-nccl-cu12/cu13 wheels, else from the system's library path."""
    try:
        import nvidia.nccl as pkg
        for base in pkg.__path__:
            hits = glob.glob(os.path.join(base, "lib", "libnccl.so*"))
            if hits:
                return sorted(hits)[0]
    except ImportError:
        pass
    return ctypes.util.find_library("nccl")


class NCCLBackend:
    name = "nccl"

    def __init__(self, info, timeout_s: float, device_id=None):
        try:
            from cuda.bindings import driver as cu
        except ImportError as e:
            raise backend_missing("nccl", "cuda-bindings", "nvidia-nccl-cu12", str(e)) from None
        self.cu, self.timeout_s, self.broken = cu, timeout_s, None
        err, = cu.cuInit(0)
        count = cu.cuDeviceGetCount()[1] if err == cu.CUresult.CUDA_SUCCESS else 0
        if count == 0:
            raise DistError(f"backend 'nccl' needs an NVIDIA GPU, but the CUDA driver found none ({err!r}); "
                            "use init_process_group('mpi') for CPU processes")
        path = find_libnccl()
        if path is None:
            raise backend_missing("nccl", "nvidia-nccl-cu12", "", "libnccl.so.2 was not found")
        self.lib = ctypes.CDLL(path)
        self.rank, self.size = (info.rank, info.world_size) if info else (0, 1)
        local = info.local_rank if info else 0
        self.device = int(getattr(device_id, "index", device_id) if device_id is not None else local) % count
        dev = self._ok(cu.cuDeviceGet(self.device))
        self.ctx = self._ok(cu.cuDevicePrimaryCtxRetain(dev))
        self._ok(cu.cuCtxSetCurrent(self.ctx))
        self.stream = self._ok(cu.cuStreamCreate(0))
        uid = _UniqueId()
        if self.rank == 0:
            self._nccl(self.lib.ncclGetUniqueId(ctypes.byref(uid)), "ncclGetUniqueId")
        if self.size > 1:
            ctypes.memmove(ctypes.addressof(uid), _share_unique_id(bytes(uid), self.rank, self.size, timeout_s), 128)
        self.comm = ctypes.c_void_p()
        self._nccl(self.lib.ncclCommInitRank(ctypes.byref(self.comm), self.size, uid, self.rank), "ncclCommInitRank")
        self._scratch: dict[int, int] = {}
        self.seq = 0

    # -- plumbing ---------------------------------------------------------------------------------
    def _ok(self, result):
        err, *rest = result
        if err != self.cu.CUresult.CUDA_SUCCESS:
            raise DistBackendError(f"CUDA driver call failed: {err!r}")
        return rest[0] if rest else None

    def _nccl(self, code: int, what: str) -> None:
        if code != 0:
            self.lib.ncclGetErrorString.restype = ctypes.c_char_p
            raise DistBackendError(f"{what} failed: {self.lib.ncclGetErrorString(code).decode()} (code {code})")

    def _device(self, slot: int, nbytes: int) -> int:
        """A cached device allocation of at least nbytes (slot 0: input, 1: output)."""
        key = (slot, nbytes)
        if key not in self._scratch:
            self._scratch[key] = int(self._ok(self.cu.cuMemAlloc(max(nbytes, 1))))
        return self._scratch[key]

    def _launch(self, name: str, send: np.ndarray | None, recv: np.ndarray, call):
        if self.broken:
            raise DistBackendError(f"the process group is broken by an earlier failure: {self.broken}")
        cu, s = self.cu, self.stream
        dsend = self._device(0, send.nbytes) if send is not None else None
        drecv = self._device(1, recv.nbytes)
        if send is not None:
            self._ok(cu.cuMemcpyHtoDAsync(dsend, send.ctypes.data, send.nbytes, s))
        self._nccl(call(ctypes.c_void_p(dsend if dsend is not None else drecv), ctypes.c_void_p(drecv)), name)
        self._ok(cu.cuMemcpyDtoHAsync(recv.ctypes.data, drecv, recv.nbytes, s))
        event = self._ok(cu.cuEventCreate(0))
        self._ok(cu.cuEventRecord(event, s))
        self.seq += 1
        return [(self.seq, name, event)]

    def _stream_ptr(self):
        return ctypes.c_void_p(int(self.stream))

    # -- collectives ------------------------------------------------------------------------------
    def _type(self, a: np.ndarray) -> int:
        if a.dtype not in _NCCL_TYPES:
            raise TypeError(f"NCCL cannot reduce {a.dtype} tensors")
        return _NCCL_TYPES[a.dtype]

    def _op(self, op: ReduceOp, dtype) -> int:
        table = _BOOL_OPS if dtype == np.bool_ else _NCCL_OPS
        if op not in table:
            raise RuntimeError(f"NCCL does not support {op} on {dtype}")
        return table[op]

    def allreduce(self, send, recv, op):
        t, o = self._type(recv), self._op(op, recv.dtype)
        return self._launch("all_reduce", send, recv, lambda s, r: self.lib.ncclAllReduce(
            s, r, ctypes.c_size_t(recv.size), t, o, self.comm, self._stream_ptr()))

    def broadcast(self, buf, src):
        return self._launch("broadcast", buf if self.rank == src else None, buf, lambda s, r: self.lib.ncclBroadcast(
            s, r, ctypes.c_size_t(buf.nbytes), 1, src, self.comm, self._stream_ptr()))

    def allgather(self, send, recv):
        return self._launch("all_gather", send, recv, lambda s, r: self.lib.ncclAllGather(
            s, r, ctypes.c_size_t(send.nbytes), 1, self.comm, self._stream_ptr()))

    def reduce_scatter(self, send, recv, op):
        t, o = self._type(recv), self._op(op, recv.dtype)
        return self._launch("reduce_scatter", send, recv, lambda s, r: self.lib.ncclReduceScatter(
            s, r, ctypes.c_size_t(recv.size), t, o, self.comm, self._stream_ptr()))

    def barrier(self):
        one = np.ones(1, np.int32)
        return self.allreduce(one, one, ReduceOp.SUM)

    # -- completion -------------------------------------------------------------------------------
    def test(self, pending) -> bool:
        return all(self.cu.cuEventQuery(ev)[0] == self.cu.CUresult.CUDA_SUCCESS for _, _, ev in pending)

    def wait(self, pending, timeout_s=None) -> None:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while not self.test(pending):
            if time.monotonic() >= deadline:
                seq, name, _ = pending[-1]
                self.broken = (f"{name} #{seq} did not complete within {timeout_s:g} s on rank {self.rank} "
                               f"(world size {self.size}); NCCL cannot tell which peer is missing: look for the "
                               f"rank that died or hung in the other ranks' output")
                self.lib.ncclCommAbort(self.comm)
                raise DistBackendError("ember.distributed: " + self.broken)
            time.sleep(0.0002)
        for _, _, ev in pending:
            self.cu.cuEventDestroy(ev)

    def close(self) -> None:
        if not self.broken:
            self.lib.ncclCommDestroy(self.comm)
        for ptr in self._scratch.values():
            self.cu.cuMemFree(ptr)
        self._scratch.clear()


def _share_unique_id(uid: bytes, rank: int, size: int, timeout_s: float) -> bytes:
    """Rank 0's NCCL unique id, on every rank: over MPI when mpiexec started the job, else TCP."""
    if "PMI_RANK" in os.environ or "OMPI_COMM_WORLD_RANK" in os.environ:
        try:
            from mpi4py import MPI
            return MPI.COMM_WORLD.bcast(uid, root=0)
        except ImportError:
            pass
    addr = os.environ.get("MASTER_ADDR")
    port = os.environ.get("MASTER_PORT")
    if not addr or not port:
        raise DistNetworkError("backend 'nccl' with several ranks needs MASTER_ADDR and MASTER_PORT (torchrun sets "
                               "them) or an mpiexec launch with mpi4py installed, to share NCCL's unique id")
    port = int(os.environ.get("EMBER_NCCL_PORT", int(port) + 1))
    deadline = time.monotonic() + timeout_s
    if rank == 0:
        with socket.create_server((addr, port)) as srv:
            srv.settimeout(timeout_s)
            for _ in range(size - 1):
                conn, _ = srv.accept()
                with conn:
                    conn.sendall(uid)
        return uid
    while True:
        try:
            with socket.create_connection((addr, port), timeout=5) as conn:
                data = b""
                while len(data) < 128:
                    chunk = conn.recv(128 - len(data))
                    if not chunk:
                        break
                    data += chunk
                if len(data) == 128:
                    return data
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DistNetworkError(f"rank {rank} could not get NCCL's unique id from rank 0 at {addr}:{port} "
                                   f"within {timeout_s:g} s")
        time.sleep(0.1)
