"""A native thread pool that runs launch lists: one call from Python runs a whole list of kernels,
every thread walking it in step, with a spinning barrier after each kernel.

Why not Python threads: handing one kernel to a Python worker (a lock released, the worker woken
by the OS, the GIL passed over and back) costs ~25 us, more than a 256x512 elementwise kernel
takes on one core (~19 us), so most kernels of a training step used to run slower on two cores
than on one. Here the workers wait for work spinning on a generation counter (then sleeping on a
futex once idle for SPIN_ROUNDS), so a hand-off costs about as much as a cache line moving between
cores, and a compiled replay is one ctypes call for its whole launch list.

The pool's code is LLVM IR generated below and compiled like a kernel (cached on disk). The
workers are Python threads that call `worker(state, tid)` once and stay in native code for good
(ctypes released the GIL); a forked child, which has none of them, builds a new pool with a new
state block (`reset`).

A launch list is an int64 array of entries `[fn, nargs, parallel, arg0 .. arg{nargs-1}]`: `fn` is a
kernel entry `void(ptr x nargs, i64 tid, i64 nt)`; a parallel entry runs on every thread with
(tid, nt), another on thread 0 alone with (0, 1).
"""
from __future__ import annotations

import ctypes
import functools
import operator
import platform
import threading

import llvmlite.binding as llvm
import numpy as np

MAX_ARGS = 96            # kernels with more buffer parameters run through Python (none do today)
SPIN_ROUNDS = 1 << 12    # pause instructions a worker spins (~0.2 ms on Zen 3) before sleeping
_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}   # SYS_futex
_PAUSE = {"x86_64": "call void @llvm.x86.sse2.pause()", "amd64": "call void @llvm.x86.sse2.pause()"}

# state block: one 64-byte line per word that threads write, so they do not share lines
GEN, SLEEPERS, TICKET, FIN, ACTIVE, CLOSED, PROG, COUNT, NT = 0, 8, 16, 24, 32, 40, 48, 49, 50
STATE_WORDS = 56


def supported() -> bool:
    return platform.system() == "Linux" and platform.machine().lower() in _FUTEX


def _call_switch() -> str:
    """@call(entry, tid, nt): the kernel of one entry, with its nargs pointer arguments."""
    lines = ["define internal void @call(ptr %e, i64 %tid, i64 %nt) {",
             "  %fnw = load i64, ptr %e",
             "  %fn = inttoptr i64 %fnw to ptr",
             "  %nap = getelementptr i64, ptr %e, i64 1",
             "  %na = load i64, ptr %nap",
             "  %args = getelementptr i64, ptr %e, i64 3",
             "  switch i64 %na, label %done [ " + " ".join(f"i64 {k}, label %c{k}" for k in range(MAX_ARGS + 1)) + " ]"]
    for k in range(MAX_ARGS + 1):
        lines.append(f"c{k}:")
        names = []
        for j in range(k):
            lines.append(f"  %p{k}_{j} = getelementptr ptr, ptr %args, i64 {j}")
            lines.append(f"  %a{k}_{j} = load ptr, ptr %p{k}_{j}")
            names.append(f"ptr %a{k}_{j}")
        lines.append(f"  call void %fn({', '.join(names + ['i64 %tid', 'i64 %nt'])})")
        lines.append("  br label %done")
    lines += ["done:", "  ret void", "}"]
    return "\n".join(lines)


def source(machine: str | None = None) -> str:
    machine = (machine or platform.machine()).lower()
    sys_futex = _FUTEX[machine]
    pause = _PAUSE.get(machine, "")

    def word(name, idx):
        return f"  %{name} = getelementptr i64, ptr %st, i64 {idx}"

    def spin(label, ptr, pred, bound, then):
        """Block `label`: wait (pausing) while `*ptr pred bound`, then go to `then`."""
        return (f"{label}:\n  %{label}.v = load atomic i64, ptr {ptr} seq_cst, align 8\n"
                f"  %{label}.c = icmp {pred} i64 %{label}.v, {bound}\n"
                f"  br i1 %{label}.c, label %{label}.p, label %{then}\n{label}.p:\n  {pause}\n  br label %{label}")
    return f"""; ember native thread pool (compiler/runtime/cpu_pool.py)
declare i64 @syscall(i64, ...)
{"declare void @llvm.x86.sse2.pause()" if pause else ""}

{_call_switch()}

; work(state): claim shares (tickets numbered across the list) until none is left; a share of
; entry i starts once every share of the entries before it has finished (`fin` counts them)
define internal void @work(ptr %st) {{
entry:
{word("progp", PROG)}
  %progw = load i64, ptr %progp
  %prog = inttoptr i64 %progw to ptr
{word("np", COUNT)}
  %n = load i64, ptr %np
{word("ntp", NT)}
  %nt = load i64, ptr %ntp
{word("ticket", TICKET)}
{word("fin", FIN)}
  br label %claim
claim:
  %e0 = phi ptr [ %prog, %entry ], [ %e, %exec ]
  %b0 = phi i64 [ 0, %entry ], [ %base, %exec ]
  %i0 = phi i64 [ 0, %entry ], [ %i, %exec ]
  %s = atomicrmw add ptr %ticket, i64 1 acq_rel
  br label %find
find:
  %e = phi ptr [ %e0, %claim ], [ %e1, %skip ]
  %base = phi i64 [ %b0, %claim ], [ %end, %skip ]
  %i = phi i64 [ %i0, %claim ], [ %i1, %skip ]
  %more = icmp ult i64 %i, %n
  br i1 %more, label %look, label %exit
look:
  %parp = getelementptr i64, ptr %e, i64 2
  %par = load i64, ptr %parp
  %isp = icmp ne i64 %par, 0
  %sh = select i1 %isp, i64 %nt, i64 1
  %end = add i64 %base, %sh
  %mine = icmp ult i64 %s, %end
  br i1 %mine, label %ready, label %skip
skip:
  %nap = getelementptr i64, ptr %e, i64 1
  %na = load i64, ptr %nap
  %words = add i64 %na, 3
  %e1 = getelementptr i64, ptr %e, i64 %words
  %i1 = add i64 %i, 1
  br label %find
{spin("ready", "%fin", "ult", "%base", "exec")}
exec:
  %share = sub i64 %s, %base
  call void @call(ptr %e, i64 %share, i64 %sh)
  %x = atomicrmw add ptr %fin, i64 1 acq_rel
  br label %claim
exit:
  ret void
}}

; run(state, prog, n, nt, shares, nworkers): the caller is one of the threads; returns when every
; share has run and no worker is still inside the list
define void @ember_pool_run(ptr %st, ptr %prog, i64 %n, i64 %nt, i64 %shares, i64 %nworkers) {{
entry:
{word("progp", PROG)}
  %progw = ptrtoint ptr %prog to i64
  store i64 %progw, ptr %progp
{word("np", COUNT)}
  store i64 %n, ptr %np
{word("ntp", NT)}
  store i64 %nt, ptr %ntp
{word("ticket", TICKET)}
  store i64 0, ptr %ticket
{word("fin", FIN)}
  store i64 0, ptr %fin
{word("closed", CLOSED)}
  store atomic i64 0, ptr %closed seq_cst, align 8
  %any = icmp ugt i64 %nworkers, 0
  br i1 %any, label %wake, label %mine
wake:
{word("gen", GEN)}
  %g = atomicrmw add ptr %gen, i32 1 seq_cst
{word("sl", SLEEPERS)}
  %s = load atomic i32, ptr %sl seq_cst, align 4
  %asleep = icmp ne i32 %s, 0
  br i1 %asleep, label %futex, label %mine
futex:
  %r = call i64 (i64, ...) @syscall(i64 {sys_futex}, ptr %gen, i32 129, i32 2147483647, ptr null, ptr null, i32 0)
  br label %mine
mine:
  call void @work(ptr %st)
  br label %finish
{spin("finish", "%fin", "ult", "%shares", "close")}
close:
  store atomic i64 1, ptr %closed seq_cst, align 8
{word("active", ACTIVE)}
  br label %leave
{spin("leave", "%active", "ne", "0", "exit")}
exit:
  ret void
}}

; worker(state): never returns. Joins the current list unless it is closed (a worker that wakes
; late finds the caller gone and waits for the next one).
define void @ember_pool_worker(ptr %st) {{
entry:
{word("gen", GEN)}
{word("sl", SLEEPERS)}
{word("active", ACTIVE)}
{word("closed", CLOSED)}
  %g0 = load atomic i32, ptr %gen seq_cst, align 4
  br label %wait
wait:
  %seen = phi i32 [ %g0, %entry ], [ %seen, %woke ], [ %g, %left ]
  br label %spin
spin:
  %k = phi i64 [ 0, %wait ], [ %k1, %pause ]
  %g = load atomic i32, ptr %gen acquire, align 4
  %new = icmp ne i32 %g, %seen
  br i1 %new, label %join, label %pause
pause:
  {pause}
  %k1 = add i64 %k, 1
  %long = icmp uge i64 %k1, {SPIN_ROUNDS}
  br i1 %long, label %sleep, label %spin
sleep:
  %x = atomicrmw add ptr %sl, i32 1 seq_cst
  %g2 = load atomic i32, ptr %gen seq_cst, align 4
  %still = icmp eq i32 %g2, %seen
  br i1 %still, label %futex, label %woke
futex:
  %r = call i64 (i64, ...) @syscall(i64 {sys_futex}, ptr %gen, i32 128, i32 %seen, ptr null, ptr null, i32 0)
  br label %woke
woke:
  %y = atomicrmw sub ptr %sl, i32 1 seq_cst
  br label %wait
join:
  %z = atomicrmw add ptr %active, i64 1 seq_cst
  %c = load atomic i64, ptr %closed seq_cst, align 8
  %open = icmp eq i64 %c, 0
  br i1 %open, label %doit, label %left
doit:
  call void @work(ptr %st)
  br label %left
left:
  %w = atomicrmw sub ptr %active, i64 1 seq_cst
  br label %wait
}}
"""


class Pool:
    """`nworkers` native worker threads plus the calling thread."""

    def __init__(self, nworkers: int):
        self._run, self._worker = _functions()
        self.state = np.zeros(STATE_WORDS + 8, np.int64)
        base = self.state.ctypes.data
        self.st = base + (-base % 64)
        self.nworkers = nworkers
        self.scratch = np.zeros(MAX_ARGS + 3, np.int64)   # launch()'s one-entry list
        self.scratch_addr = self.scratch.ctypes.data
        self.lock = threading.Lock()    # one launch list at a time (user threads may realize at once)
        for t in range(1, nworkers + 1):
            threading.Thread(target=self._worker, args=(self.st,), name=f"ember-{t}", daemon=True).start()

    def launch(self, fn, ptrs: list, nt: int) -> None:
        """One kernel on nt shares."""
        with self.lock:
            words = [address(fn), len(ptrs), 1, *ptrs]
            self.scratch[:len(words)] = words
            self._run(self.st, self.scratch_addr, 1, nt, nt, self.nworkers)

    def run(self, prog_addr: int, n: int, nt: int, shares: int) -> None:
        """Run the n entries at prog_addr; `shares`: the parallel entries times nt plus the others."""
        with self.lock:   # with nt == 1 the workers are not woken: it all runs on this thread
            self._run(self.st, prog_addr, n, nt, shares, self.nworkers if nt > 1 else 0)


@functools.cache   # loaded once per process; a forked child keeps a copy of the code
def _functions():
    from . import cpu
    c = cpu.compiler()
    obj, _ = c.object_code(source())
    with c.lock:
        c.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        c.engine.finalize_object()
        run = c.engine.get_function_address("ember_pool_run")
        worker = c.engine.get_function_address("ember_pool_worker")
    return (ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                             ctypes.c_int64)(run),
            ctypes.CFUNCTYPE(None, ctypes.c_void_p)(worker))


_addresses: dict = {}


def address(fn) -> int:
    """A ctypes kernel's entry address."""
    a = _addresses.get(id(fn))
    if a is None:   # (ctypes functions are not hashable; the entry keeps fn alive, so its id stays its own)
        a = _addresses[id(fn)] = (fn, ctypes.cast(fn, ctypes.c_void_p).value)
    return a[1]


class LaunchList:
    """A launch list over a slot array of buffer addresses: the entries are written once; `run`
    patches in the addresses of the slots that change between runs (`variable`) and makes one call.

    steps: [(fn, arg slots, parallel)]; fixed: {slot: address} for the slots that never change."""

    def __init__(self, steps: list, fixed: dict, variable: set):
        words, self.pos, slots = [], [], []
        self.shares_per_nt = sum(1 for _, _, par in steps if par)
        self.serial = len(steps) - self.shares_per_nt
        for fn, args, par in steps:
            words += [address(fn), len(args), int(par)]
            for s in args:
                if s in variable:
                    self.pos.append(len(words))
                    slots.append(s)
                words.append(fixed.get(s, 0))
        self.words = np.array(words, np.int64)
        self.addr, self.n = self.words.ctypes.data, len(steps)
        self.pick = operator.itemgetter(*slots) if len(slots) > 1 else (lambda p, s=tuple(slots): tuple(p[i] for i in s))
        self.pos = np.array(self.pos, np.intp)

    def run(self, pool: "Pool", slot_ptrs: list, nt: int) -> None:
        self.words[self.pos] = self.pick(slot_ptrs)
        pool.run(self.addr, self.n, nt, self.shares_per_nt * nt + self.serial)
