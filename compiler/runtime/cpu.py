"""CPU runtime: LLVM IR -> optimised machine code (llvmlite MCJIT) -> ctypes launches.

Compiled object code is cached in memory and on disk (compiler/cache.py). A kernel runs as one
call per core when it does enough work to pay for the hand-off (each call takes its share of every
loop nest); ctypes releases the GIL during the call, so the calls run in parallel on a thread pool.

Fork safety: a forked child (a DataLoader worker) has only the thread that forked, so the pool it
inherits has no threads behind it and anything submitted to it would wait forever; the child drops
it (and re-creates the compiler's lock, which another thread may have held) and builds a fresh pool
on its first parallel launch. Kernels already loaded stay callable (the child has a copy of their
code); new ones compile and load into the inherited MCJIT engine as usual, since no LLVM call can be
in progress in the forking thread.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import llvmlite
import llvmlite.binding as llvm

from .. import cache

PARALLEL_MIN_WORK = 1 << 15   # iterations; below this one core is faster than the hand-off


def num_threads() -> int:
    env = os.environ.get("EMBER_NUM_THREADS")
    if env:
        return max(1, int(env))
    return _cores()


@functools.lru_cache(maxsize=None)   # asked at every launch; cleared in a forked child
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class CPUCompiler:
    def __init__(self):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        self.cpu = llvm.get_host_cpu_name()
        self.features = llvm.get_host_cpu_features().flatten()
        self.triple = llvm.get_process_triple()
        self.tm = target.create_target_machine(cpu=self.cpu, features=self.features, opt=3,
                                               reloc="default", codemodel="jitdefault")
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.tm)
        self.lock = threading.Lock()
        self.fingerprint = f"{self.triple}|{self.cpu}|{self.features}|llvmlite {llvmlite.__version__}"

    def optimize(self, mod) -> None:
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        # SLP is off: llvmlite's LLVM (built with assertions) aborts in the SLP vectorizer on
        # some index patterns (RAUW assertion in Value.cpp); our inner loops vectorize anyway.
        pto.slp_vectorization = False
        pto.loop_unrolling = True
        pb = llvm.create_pass_builder(self.tm, pto)
        pm = pb.getModulePassManager()
        pm.run(mod, pb)

    def object_key(self, ir: str) -> str:
        return cache.key("llvm-object", self.fingerprint, ir)

    def object_code(self, ir: str) -> tuple[bytes, bool]:
        """Machine code for `ir`, from the disk cache when possible. Returns (code, cache_hit)."""
        k = self.object_key(ir)
        obj = cache.get(k)
        if obj is not None:
            return obj, True
        mod = llvm.parse_assembly(ir)
        mod.verify()
        self.optimize(mod)
        obj = self.tm.emit_object(mod)
        cache.put(k, obj)
        return obj, False

    def load(self, obj: bytes, symbol: str, nparams: int):
        with self.lock:
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self.engine.finalize_object()
            addr = self.engine.get_function_address(symbol)
        if not addr:
            raise RuntimeError(f"ember: symbol {symbol} missing from compiled object")
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nparams), ctypes.c_int64, ctypes.c_int64)
        return proto(addr)

    def optimized_ir(self, ir: str) -> str:
        mod = llvm.parse_assembly(ir)
        self.optimize(mod)
        return str(mod)

    def assembly(self, ir: str) -> str:
        mod = llvm.parse_assembly(ir)
        self.optimize(mod)
        return self.tm.emit_assembly(mod)


_compiler: CPUCompiler | None = None
_pool: ThreadPoolExecutor | None = None


def compiler() -> CPUCompiler:
    global _compiler
    if _compiler is None:
        _compiler = CPUCompiler()
    return _compiler


def _threads():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, num_threads() - 1), thread_name_prefix="ember")
    return _pool


def _after_fork_in_child() -> None:
    global _pool
    _pool = None
    _cores.cache_clear()
    if _compiler is not None:
        _compiler.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def launch(fn, ptrs: list[int], work: int) -> None:
    """Run a kernel: one call per thread (each takes its share of every nest), or one call."""
    if work < PARALLEL_MIN_WORK:
        fn(*ptrs, 0, 1)
        return
    nt = num_threads()
    if nt == 1:
        fn(*ptrs, 0, 1)
        return
    futures = [_threads().submit(fn, *ptrs, t, nt) for t in range(1, nt)]
    fn(*ptrs, 0, nt)
    for f in futures:
        f.result()
