"""The mechanism behind the suite: what a benchmark row is, how each framework runs one, how it is timed.

A benchmark (`Bench`) is data: numpy inputs, one function per framework written the way a user of
that framework would write it, the bytes and flops the operation must move/do at minimum, and the
targets it is judged by. A `Framework` says how to turn the shared numpy inputs into its tensors
(untimed), how to force a result to exist (timed), and how to read it back for the correctness
check (untimed). Adding a benchmark is adding a `Bench` to suite.py; adding a framework is adding a
`Framework` here.
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


# ---- benchmarks ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """A goal printed PASS/FAIL after the table (never asserted).

    kind "speedup": ember's time must be `threshold`x faster than framework `peer` (1.0 = no slower).
    kind "copy_fraction": ember's GB/s must reach `threshold` of the run's copy bandwidth.
    kind "fastest": ember must be faster than every other framework of the row.
    `issue` names the issue that sets the target.
    """
    kind: str
    threshold: float
    peer: str = ""
    issue: str = ""

    def describe(self) -> str:
        return (f"{self.issue} " if self.issue else "") + self._what()

    def _what(self) -> str:
        if self.kind == "speedup":
            peer = "PyTorch eager" if self.peer == "torch" else self.peer
            if self.threshold == 1.0:
                return f"ember no slower than {peer}"
            return f"ember >= {self.threshold:g}x faster than {peer}"
        if self.kind == "fastest":
            return "ember faster than every peer"
        return f"ember >= {self.threshold:.0%} of copy bandwidth"


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Bench:
    """One benchmark row of the registry.

    inputs(size) -> dict of numpy arrays, shared by every framework (same values everywhere).
    impls: framework impl key ("numpy", "torch", "ember") -> fn(**inputs) returning the result;
      "torch.compile" reuses the "torch" fn when `compile` is true. "numpy" is required: its result
      is the reference every other framework's result is checked against.
    bytes(size) / flops(size): the minimum memory traffic / arithmetic of the operation, from which
      GB/s (bound="memory") or GFLOP/s (bound="compute") are reported.
    sizes: {"full": ..., "quick": ...}; a size is whatever `inputs`, `bytes` and `flops` take.
    """
    name: str
    describe: str
    sizes: dict
    inputs: Callable[[Any], dict]
    impls: dict
    bytes: Callable[[Any], int]
    flops: Callable[[Any], int] = lambda size: 0
    bound: str = "memory"
    compile: bool = True
    targets: tuple = ()
    rtol: float = 1e-3
    atol: float = 1e-5
    notes: dict = field(default_factory=dict)  # framework -> fn() -> str, shown next to the row


# ---- frameworks ---------------------------------------------------------------------------------

def _identity(x):
    return x


def _nothing(out) -> None:
    return None


def _torch_from(arr: np.ndarray):
    import torch
    return torch.from_numpy(arr.copy())


def _torch_numpy(out) -> np.ndarray:
    return out.detach().numpy()


def _torch_compile(fn):
    import torch
    return torch.compile(fn, dynamic=False)


def _jax_from(arr: np.ndarray):
    import jax.numpy as jnp
    return jnp.asarray(arr.copy())


def _jax_sync(out) -> None:
    out.block_until_ready()


def _jax_jit(fn):
    import jax
    return jax.jit(fn)


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def _ember_from(arr: np.ndarray):
    import ember
    return ember.from_numpy(arr.copy())


def _ember_realize(out) -> None:
    import ember
    ember.realize(out)


def _ember_numpy(out) -> np.ndarray:
    return out.numpy()


@dataclass(frozen=True)
class Framework:
    """How one column of the table runs a benchmark's fn."""
    name: str                                   # column label, also the --frameworks key
    impl: str                                   # which Bench.impls entry it runs
    convert: Callable[[np.ndarray], Any]        # numpy input -> framework tensor (untimed)
    sync: Callable[[Any], None] = _nothing      # forces the result to exist (timed)
    to_numpy: Callable[[Any], np.ndarray] = np.asarray  # for the check (untimed)
    wrap: Callable[[Callable], Callable] = _identity     # e.g. torch.compile


FRAMEWORKS = (
    Framework("numpy", "numpy", np.copy),
    Framework("torch", "torch", _torch_from, to_numpy=_torch_numpy),
    Framework("torch.compile", "torch", _torch_from, to_numpy=_torch_numpy, wrap=_torch_compile),
    # An ember call builds its lazy graph anew every time, as eager user code does, so graph
    # building, scheduling and kernel-cache lookup are timed; realize() runs the kernels without
    # the copy that .numpy() would add.
    Framework("ember", "ember", _ember_from, sync=_ember_realize, to_numpy=_ember_numpy),
) + ((Framework("jax", "jax", _jax_from, sync=_jax_sync, wrap=_jax_jit),) if _has("jax") else ())
# JAX (jit-compiled, XLA's CPU backend) is a column when installed: `pip install jax`.


def applies(fw: Framework, bench: Bench) -> bool:
    if fw.name == "torch.compile" and not bench.compile:
        return False
    return fw.impl in bench.impls


# ---- timing -------------------------------------------------------------------------------------

@dataclass
class Timing:
    first_s: float      # the first call: includes torch.compile's compile, ember's JIT compile
    median_s: float     # median of the timed calls, after warm-up
    times_s: list
    out: Any            # the first call's result, for the correctness check


def measure(fn: Callable, inputs: dict, sync: Callable, warmup: int, repeat: int) -> Timing:
    """Time `sync(fn(**inputs))`: one first call (reported separately), `warmup` more, then the
    median of `repeat` timed calls."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn(**inputs)
    sync(out)
    first = time.perf_counter() - t0
    for _ in range(warmup):
        sync(fn(**inputs))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sync(fn(**inputs))
        times.append(time.perf_counter() - t0)
    return Timing(first, statistics.median(times), times, out)


# ---- machine facts ------------------------------------------------------------------------------

def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _cpuinfo() -> tuple[str, list[str]]:
    """CPU model and the vector-ISA flags that matter for generated kernels."""
    model, flags = None, []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = (part.strip() for part in line.partition(":"))
                if key == "model name" and model is None:
                    model = val
                elif key == "flags" and not flags:
                    flags = val.split()
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile") if f in flags]
    return model or platform.processor() or "unknown", isa


def _mem_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _git_commit() -> str:
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "0 (unknown)"


def machine_facts(torch_threads: int, load: str) -> dict:
    """What a reader needs to compare two results sections."""
    import llvmlite
    import torch
    model, isa = _cpuinfo()
    try:
        import ember
        ember_version = ember.__version__
    except Exception as e:  # the table still runs numpy/torch; the ember column reports the error
        ember_version = f"import failed: {e}"
    mem = _mem_gib()
    return {
        "cpu": model,
        "isa": ", ".join(isa) or "n/a",
        "cores": cpu_count(),
        "torch_threads": torch_threads,
        "load": load,
        "memory": f"{mem:.0f} GiB" if mem else "unknown",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "llvmlite": llvmlite.__version__,
        "ember": ember_version,
        "commit": _git_commit(),
        "backend": os.environ.get("EMBER_BACKEND", "compiled"),
    }
