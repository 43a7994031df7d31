"""LLVM IR -> object code for the CPU backend: the one optimisation pipeline, and helper processes
that run it in parallel.

llvmlite serialises every LLVM call behind one process-wide lock, so compiling a plan's kernels on
threads gains nothing. A plan with several kernels missing from the cache (a training step's
first call: ~27 kernels, a GEMM 0.05-0.2 s each) is compiled by this process and by helper
processes at once (`compile_all`), longest first.

A helper is this file run as a script by the same Python. It imports nothing but llvmlite, builds
the same target machine from the CPU name and features the parent sends, so its object code is
byte-identical to the parent's, and answers length-prefixed IR on stdin with a status byte and
length-prefixed object code on stdout. Helpers start when a plan has enough to compile
(START_MIN_S; a start takes ~0.15 s, while the parent is already compiling), are retired after
RETIRE_S idle seconds, and exit by themselves when their stdin closes (the parent exited) or after
twice that. Any failure (no helper could start, it crashed, a reply was cut short, LLVM rejected
the IR there) compiles that kernel in this process, which reports LLVM's real error if there is
one. EMBER_COMPILE_JOBS=1 turns helpers off.
"""
from __future__ import annotations

import os
import struct
import sys
import threading
import time

import llvmlite.binding as llvm

RETIRE_S = 60.0          # a helper idle this long is closed (it waits 2x this long on its own)
MAX_HELPERS = 7          # beyond this, starting helpers costs more than a plan's kernels gain
START_MIN_S = 0.3        # estimated LLVM seconds worth starting a helper for (a start costs ~0.15 s)


def target_machine(cpu: str, features: str):
    """The target machine every kernel is compiled for (the host CPU)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=cpu, features=features, opt=3, reloc="default",
                                        codemodel="jitdefault")


# A module may choose its IR optimisation pipeline with a first line `; ember-llvm-passes: O<n>`
# (`passes_marker`); otherwise it gets -O3. -O0 skips the IR passes and goes straight to code
# generation (which still runs at -O3: instruction selection, LSR, scheduling, register
# allocation): for generators that already emit vectorized, unrolled, register-blocked IR (the
# affine GEMM template), where the IR passes make the code no faster and take ~3/4 of the compile
# time. Measurements: docs/architecture.md, LLVM backend.
_MARKER = "; ember-llvm-passes: O"


def passes_marker(level: int) -> str:
    """The first line that makes a module's IR pipeline -O`level` (0-3)."""
    return f"{_MARKER}{level}\n"


def speed_level(ir: str) -> int:
    return int(ir[len(_MARKER)]) if ir.startswith(_MARKER) else 3


def optimize(tm, mod, level: int = 3) -> None:
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pto.loop_vectorization = level >= 2
    # SLP is off: llvmlite's LLVM (built with assertions) aborts in the SLP vectorizer on
    # some index patterns (RAUW assertion in Value.cpp); our inner loops vectorize anyway.
    pto.slp_vectorization = False
    pto.loop_unrolling = level >= 2
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


def cost(ir: str) -> float:
    """Estimated seconds to compile a module (measured on the MLP step's kernels, znver3: ~20 ms
    per module, ~5 us per byte of IR through the O3 pipeline, ~1.5 us through O0/O1, ~3 at O2)."""
    return 0.02 + len(ir) * (1.5e-6, 1.5e-6, 3e-6, 5e-6)[speed_level(ir)]


def object_code(tm, ir: str) -> bytes:
    """Parse, verify, optimise and emit one module."""
    mod = llvm.parse_assembly(ir)
    mod.verify()
    optimize(tm, mod, speed_level(ir))
    return tm.emit_object(mod)


# -- the parent side ------------------------------------------------------------------------------

def jobs() -> int:
    """How many kernels compile at once: EMBER_COMPILE_JOBS, else the cores this process may use."""
    env = os.environ.get("EMBER_COMPILE_JOBS")
    if env:
        return max(1, int(env))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Started by a plain `python -c`: the helper must not import ember (slow, and a user's program
# could be __main__), and the script's own folder must not shadow a standard module.
_BOOT = "import sys; del sys.path[0]; import runpy; runpy.run_path(sys.argv[1], run_name='__ember_helper__')"


class _Helper:
    """One helper process and its pipes (unbuffered: a forked child can drop them without
    flushing half a request into the parent's pipe)."""

    def __init__(self, cpu: str, features: str):
        import subprocess
        self.proc = subprocess.Popen([sys.executable, "-c", _BOOT, os.path.abspath(__file__), cpu, features],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     bufsize=0, close_fds=True)
        self.used = time.monotonic()
        self.served = 0

    def compile(self, ir: str) -> bytes | None:
        """Object code for `ir`, or None if the helper failed (it is then closed)."""
        global _stillborn
        try:
            data = ir.encode()
            _write_all(self.proc.stdin, struct.pack("<Q", len(data)) + data)
            head = _read_exact(self.proc.stdout, 9)
            ok, n = head[0], struct.unpack("<Q", head[1:])[0]
            payload = _read_exact(self.proc.stdout, n)
        except (OSError, ValueError, EOFError):
            _stillborn += self.served == 0   # it never answered: helpers may not work here at all
            self.close()
            return None
        self.used = time.monotonic()
        self.served += 1
        return payload if ok == 1 else None   # LLVM failed there: the parent compiles it and reports

    def alive(self) -> bool:
        return self.proc.poll() is None and time.monotonic() - self.used < RETIRE_S

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=0.5)   # it exits on EOF
        except Exception:
            self.proc.kill()


_helpers: list = []
_pool_lock = threading.Lock()
_stillborn = 0          # helpers that died before their first answer; after 2, none are started


def _can_start() -> bool:
    """Whether this process can run a helper: a plain Python interpreter (not an application
    embedding one, not a frozen program), and helpers have not kept dying here."""
    exe = os.path.basename(sys.executable or "")
    return exe.startswith("python") and not getattr(sys, "frozen", False) and _stillborn < 2


def compile_all(irs: list[str], local) -> list[bytes]:
    """Object code of every module in `irs`: `local(ir)` compiles in this process, helpers take the
    rest concurrently. The same bytes as compiling each with `local` (tests/test_compile_jobs.py)."""
    n_help = min(jobs(), len(irs), MAX_HELPERS + 1) - 1
    if n_help <= 0 or not _pool_lock.acquire(blocking=False):   # in use by another thread: serial
        return [local(ir) for ir in irs]
    try:
        costs = [cost(ir) for ir in irs]
        helpers = _get_helpers(n_help, start=sum(costs) >= START_MIN_S)
        if not helpers:
            return [local(ir) for ir in irs]
        out: list = [None] * len(irs)
        todo = sorted(range(len(irs)), key=lambda i: -costs[i])   # longest first: balanced finish
        take = threading.Lock()
        stop = []

        def next_job():
            with take:
                return todo.pop(0) if todo and not stop else None

        def serve(h):
            i = next_job()
            while i is not None:
                out[i] = h.compile(irs[i])
                if out[i] is None:   # compiled here below
                    return
                i = next_job()

        threads = [threading.Thread(target=serve, args=(h,), daemon=True) for h in helpers]
        for t in threads:
            t.start()
        try:
            i = next_job()
            while i is not None:
                out[i] = local(irs[i])
                i = next_job()
        finally:
            stop.append(True)
            for t in threads:
                t.join()
        return [o if o is not None else local(ir) for o, ir in zip(out, irs)]
    finally:
        _pool_lock.release()


def _get_helpers(n: int, start: bool) -> list:
    """Up to n helpers: the running ones, and new ones if `start`."""
    from . import cpu
    c = cpu.compiler()
    for h in [h for h in _helpers if not h.alive()]:
        h.close()
        _helpers.remove(h)
    while start and len(_helpers) < n and _can_start():
        try:
            _helpers.append(_Helper(c.cpu, c.features))
        except OSError:   # no processes here (a sandbox, a limit): compile in this process
            break
    return _helpers[:n]


def _after_fork_in_child() -> None:
    global _pool_lock
    _pool_lock = threading.Lock()
    for h in _helpers:   # the parent's helpers: drop this copy of their pipes (nothing buffered)
        for f in (h.proc.stdin, h.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        h.proc.returncode = 0   # not our child: never wait for it
    _helpers.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _write_all(f, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = f.write(view)
        view = view[n:]


def _read_exact(f, n: int) -> bytes:
    parts = []
    while n:
        b = f.read(n)
        if not b:
            raise EOFError("helper closed its pipe")
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


# -- the helper side ------------------------------------------------------------------------------

def _serve(cpu: str, features: str) -> None:
    import select
    tm = target_machine(cpu, features)
    inp, outp = open(0, "rb", buffering=0, closefd=False), open(1, "wb", buffering=0, closefd=False)
    while True:
        if not select.select([inp], [], [], 2 * RETIRE_S)[0]:
            return   # idle too long: the parent has retired us or forgotten us
        try:
            head = _read_exact(inp, 8)
        except EOFError:
            return   # the parent closed the pipe (or exited)
        ir = _read_exact(inp, struct.unpack("<Q", head)[0]).decode()
        try:
            obj, ok = object_code(tm, ir), 1
        except Exception:
            obj, ok = b"", 0
        _write_all(outp, bytes([ok]) + struct.pack("<Q", len(obj)) + obj)


if __name__ == "__ember_helper__":   # argv: -c, this file, cpu, features
    _serve(sys.argv[2], sys.argv[3])
