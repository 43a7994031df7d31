"""CPU runtime: LLVM IR -> optimised machine code (llvmlite MCJIT) -> ctypes launches.

Compiled object code is cached in memory and on disk (compiler/cache.py); the optimisation
pipeline, and the helper processes that compile a plan's kernels in parallel, are in
cpu_compile.py. A kernel runs as one share per core when it does enough work to pay for the
hand-off (each share takes its part of every loop nest), on the native thread pool of
cpu_pool.py, which also runs a compiled replay's whole launch list in one call. Where that pool
is not supported (not Linux x86-64/aarch64), Python worker threads take the shares (ctypes
releases the GIL during the call), at ~25 us per hand-off.

Fork safety: a forked child (a DataLoader worker) has only the thread that forked, so the workers it
inherits have no threads behind them and work handed to them would wait forever; the child drops
them (and re-creates the compiler's lock, which another thread may have held) and starts fresh
ones on its first parallel launch. Kernels already loaded stay callable (the child has a copy of their
code); new ones compile and load into the inherited MCJIT engine as usual, since no LLVM call can be
in progress in the forking thread.
"""
from __future__ import annotations

import ctypes
import functools
import os
import threading

import llvmlite
import llvmlite.binding as llvm

from .. import cache
from . import cpu_compile, cpu_pool

PARALLEL_MIN_WORK = 1 << 14   # iterations; below this one core is faster than the ~1-2 us hand-off


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
        self.cpu = llvm.get_host_cpu_name()
        self.features = llvm.get_host_cpu_features().flatten()
        self.triple = llvm.get_process_triple()
        self.tm = cpu_compile.target_machine(self.cpu, self.features)
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.tm)
        self.lock = threading.Lock()
        self.fingerprint = f"{self.triple}|{self.cpu}|{self.features}|llvmlite {llvmlite.__version__}"

    def optimize(self, mod, level: int = 3) -> None:
        cpu_compile.optimize(self.tm, mod, level)

    def object_key(self, ir: str) -> str:
        return cache.key("llvm-object", self.fingerprint, ir)

    def object_code(self, ir: str) -> tuple[bytes, bool]:
        """Machine code for `ir`, from the disk cache when possible. Returns (code, cache_hit)."""
        return self.object_codes([ir])[0]

    def object_codes(self, irs: list[str]) -> list[tuple[bytes, bool]]:
        """object_code of several modules; those not in the disk cache compile in parallel
        (cpu_compile.compile_all: helper processes, since LLVM calls serialise within a process)."""
        keys = [self.object_key(ir) for ir in irs]
        objs = {k: None for k in keys}   # a module listed twice compiles once
        for k in objs:
            objs[k] = cache.get(k)
        missing = {k: ir for k, ir in zip(keys, irs) if objs[k] is None}
        for k, obj in zip(missing, cpu_compile.compile_all(list(missing.values()), self._compile)):
            cache.put(k, obj)
            objs[k] = obj
        return [(objs[k], k not in missing) for k in keys]

    def _compile(self, ir: str) -> bytes:
        return cpu_compile.object_code(self.tm, ir)

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
        self.optimize(mod, cpu_compile.speed_level(ir))
        return str(mod)

    def assembly(self, ir: str) -> str:
        mod = llvm.parse_assembly(ir)
        self.optimize(mod, cpu_compile.speed_level(ir))
        return self.tm.emit_assembly(mod)


_compiler: CPUCompiler | None = None


def compiler() -> CPUCompiler:
    global _compiler
    if _compiler is None:
        _compiler = CPUCompiler()
    return _compiler


class _Worker:
    """A thread that runs one kernel share at a time. Handing work over is two raw locks (`go`,
    `done`) released and acquired from C, not a future: a thread pool's submit/result costs
    ~50 us per launch, more than many kernels take. (ctypes releases the GIL during the call.)"""

    def __init__(self, k: int):
        self.go, self.done = threading.Lock(), threading.Lock()
        self.go.acquire()
        self.done.acquire()
        self.job, self.error = None, None
        threading.Thread(target=self._run, name=f"ember-{k}", daemon=True).start()

    def _run(self) -> None:
        while True:
            self.go.acquire()
            fn, args = self.job
            try:
                fn(*args)
            except BaseException as e:   # reported by the launching thread
                self.error = e
            self.done.release()


_workers: list = []


def _threads(n: int) -> list:
    while len(_workers) < n:
        _workers.append(_Worker(len(_workers) + 1))
    return _workers[:n]


def _after_fork_in_child() -> None:
    _workers.clear()   # the child has no threads behind the parent's workers
    _pool.clear()
    _cores.cache_clear()
    if _compiler is not None:
        _compiler.lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def launch(fn, ptrs: list[int], work: int) -> None:
    """Run a kernel: its shares on every core (native pool), or one call when it is small."""
    nt = num_threads()
    if work < PARALLEL_MIN_WORK or nt == 1:
        fn(*ptrs, 0, 1)
        return
    p = pool()
    if p is not None and len(ptrs) <= cpu_pool.MAX_ARGS:
        p.launch(fn, ptrs, nt)
        return
    workers = _threads(nt - 1)
    for t, w in enumerate(workers, 1):
        w.job = (fn, (*ptrs, t, nt))
        w.go.release()
    try:
        fn(*ptrs, 0, nt)
    finally:
        for w in workers:
            w.done.acquire()
    for w in workers:
        if w.error is not None:
            e, w.error = w.error, None
            raise e


_pool: list = []


def pool() -> "cpu_pool.Pool | None":
    """The process's native thread pool (None where it is not supported: Python workers then)."""
    if not _pool:
        _pool.append(cpu_pool.Pool(_cores() - 1) if cpu_pool.supported() and _cores() > 1 else None)
    return _pool[0]
