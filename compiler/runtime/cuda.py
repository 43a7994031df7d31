"""CUDA runtime: the "cuda" device — memory, copies and Triton kernel launches.

Two ways to serve the device, decided once per process:

- an NVIDIA GPU: memory through NVIDIA's `cuda-bindings` (driver API: primary context, a caching
  allocator, host<->device copies, synchronisation); kernels are compiled by `triton.compile` for
  the current device and launched with raw device pointers (no torch anywhere);
- `EMBER_TRITON_INTERPRET=1`, a test mode: Triton's interpreter runs the very same kernels on
  the CPU. Buffers are then torch CPU tensors, because the interpreter needs them; this is the
  only place ember imports torch.

Nothing here is imported by `import ember`; it loads on first use of "cuda". Without a GPU and
without the variable, `require()` raises a RuntimeError naming what is missing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import time

import numpy as np

from .. import dtypes as D

INTERPRET_ENV = "EMBER_TRITON_INTERPRET"
_state: dict = {}


# ---- availability -----------------------------------------------------------------------------

def _driver():
    """NVIDIA's driver-API bindings (cuda-bindings >= 12.6 or the older cuda-python layout)."""
    try:
        from cuda.bindings import driver
    except ImportError:
        try:
            from cuda import cuda as driver
        except ImportError:
            return None
    return driver


def _probe() -> tuple[str | None, str]:
    if os.environ.get(INTERPRET_ENV) == "1":
        missing = [m for m in ("triton", "torch") if importlib.util.find_spec(m) is None]
        if missing:
            return None, f"{INTERPRET_ENV}=1 needs the package(s) {', '.join(missing)}"
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported, as its interpreter expects
        return "interpret", ""
    if importlib.util.find_spec("triton") is None:
        return None, "the 'triton' package is not installed"
    drv = _driver()
    if drv is None:
        return None, "the 'cuda-bindings' package (NVIDIA's CUDA Python bindings) is not installed"
    err = drv.cuInit(0)[0]
    if err != drv.CUresult.CUDA_SUCCESS:
        return None, f"no usable NVIDIA GPU or driver (cuInit returned {err.name})"
    err, n = drv.cuDeviceGetCount()
    if err != drv.CUresult.CUDA_SUCCESS or n == 0:
        return None, "no NVIDIA GPU found"
    return "gpu", ""


def mode() -> str | None:
    """'gpu', 'interpret' (EMBER_TRITON_INTERPRET=1) or None when "cuda" cannot be served."""
    if "mode" not in _state:
        _state["mode"], _state["reason"] = _probe()
    return _state["mode"]


def is_available() -> bool:
    return mode() is not None


def require() -> None:
    if mode() is None:
        raise RuntimeError(f"device 'cuda' is not available: {_state['reason']}. ember's CUDA runtime needs an "
                           "NVIDIA GPU with its driver and the 'triton' and 'cuda-bindings' packages "
                           f"(or {INTERPRET_ENV}=1 to run the CUDA path in Triton's CPU interpreter, a test mode)")


def device_count() -> int:
    m = mode()
    if m == "gpu":
        return _check(_driver().cuDeviceGetCount())
    return 1 if m == "interpret" else 0


def synchronize() -> None:
    if mode() == "gpu":
        _memory()  # makes the context current
        _check(_driver().cuCtxSynchronize())


def device_name() -> str:
    if mode() == "interpret":
        return "Triton interpreter (CPU)"
    require()
    drv = _driver()
    dev = _check(drv.cuDeviceGet(0))
    return _check(drv.cuDeviceGetName(64, dev)).split(b"\0")[0].decode()


def _check(res):
    err, *rest = res if isinstance(res, tuple) else (res,)
    drv = _driver()
    if err != drv.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"CUDA driver error {err.name}")
    return rest[0] if len(rest) == 1 else tuple(rest) if rest else None


# ---- memory -----------------------------------------------------------------------------------

class _DeviceMemory:
    """Caching allocator over cuMemAlloc: freed blocks are kept by (rounded) size and reused, as a
    training loop allocates the same sizes every step; the cache is emptied and the allocation
    retried when the device runs out. Frees are stream-ordered: everything runs on one stream."""

    def __init__(self):
        drv = _driver()
        self.drv = drv
        dev = _check(drv.cuDeviceGet(0))
        self.ctx = _check(drv.cuDevicePrimaryCtxRetain(dev))   # the context Triton launches in
        _check(drv.cuCtxSetCurrent(self.ctx))
        self.free: dict[int, list[int]] = {}
        self.live = self.cached = self.peak = 0

    def alloc(self, nbytes: int) -> tuple[int, int]:
        size = max(512, -(-nbytes // 512) * 512)
        lst = self.free.get(size)
        if lst:
            self.cached -= size
            ptr = lst.pop()
        else:
            err, ptr = self.drv.cuMemAlloc(size)
            if err == self.drv.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
                self.empty_cache()
                ptr = _check(self.drv.cuMemAlloc(size))
            elif err != self.drv.CUresult.CUDA_SUCCESS:
                raise RuntimeError(f"CUDA driver error {err.name} allocating {size} bytes")
            ptr = int(ptr)
        self.live += size
        self.peak = max(self.peak, self.live)
        return ptr, size

    def release(self, ptr: int, size: int) -> None:
        self.live -= size
        self.cached += size
        self.free.setdefault(size, []).append(ptr)

    def empty_cache(self) -> None:
        self.synchronize()
        for ptrs in self.free.values():
            for p in ptrs:
                self.drv.cuMemFree(p)
        self.free.clear()
        self.cached = 0

    def synchronize(self) -> None:
        _check(self.drv.cuCtxSynchronize())


def _memory() -> _DeviceMemory:
    if "memory" not in _state:
        _state["memory"] = _DeviceMemory()
    return _state["memory"]


_TORCH_NAME = {"bool": "int8", "bfloat16": "bfloat16"}   # bool is one byte (int8) in kernels


def _torch_dtype(dt: D.DType):
    import torch
    return getattr(torch, _TORCH_NAME.get(dt.name, dt.name))


class CudaBuffer:
    """Flat storage on the "cuda" device; the same interface as compiler.buffer.Buffer.
    `ptr()` is what a kernel launch takes: a device address, or (interpreter) a torch tensor."""
    __slots__ = ("device", "dtype", "numel", "_arg", "_raw", "_size", "__weakref__")

    def __init__(self, dtype: D.DType, numel: int):
        self.device, self.dtype, self.numel = "cuda", dtype, numel
        nbytes = numel * dtype.itemsize
        if mode() == "interpret":
            import torch
            self._raw = torch.empty(max(nbytes, 1), dtype=torch.uint8)
            self._arg = self._raw[:nbytes].view(_torch_dtype(dtype))
            self._size = 0
        else:
            require()
            self._raw = None
            self._arg, self._size = _memory().alloc(nbytes)

    def __del__(self):
        if self._size and "memory" in _state:
            try:
                _state["memory"].release(self._arg, self._size)
            except Exception:  # interpreter shutdown
                pass

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def ptr(self):
        return self._arg

    def numpy(self) -> np.ndarray:
        """A host copy of the contents (flat)."""
        if self._raw is not None:
            return self._raw.numpy()[:self.nbytes].view(self.dtype.np).copy()
        out = np.empty(self.numel, self.dtype.np)
        if self.nbytes:
            _check(_memory().drv.cuMemcpyDtoH(out.ctypes.data, self._arg, self.nbytes))
        return out

    def to(self, device: str):
        if device == "cuda":
            return self
        from ..buffer import Buffer
        return Buffer.from_array(self.numpy())

    def __repr__(self) -> str:
        return f"Buffer(cuda, {self.dtype.name}, {self.numel})"


def upload(buf) -> CudaBuffer:
    """A device copy of a host Buffer."""
    out = CudaBuffer(buf.dtype, buf.numel)
    if out._raw is not None:
        out._raw.numpy()[:buf.nbytes] = buf.numpy().view(np.uint8)
    elif buf.nbytes:
        _check(_memory().drv.cuMemcpyHtoD(out._arg, buf.ptr(), buf.nbytes))
    return out


def memory_stats() -> dict:
    m = _state.get("memory")
    return {"live_bytes": m.live if m else 0, "peak_bytes": m.peak if m else 0, "cached_bytes": m.cached if m else 0}


def empty_cache() -> None:
    if "memory" in _state:
        _state["memory"].empty_cache()


# ---- Triton source -> callable ------------------------------------------------------------------

class _NumpyLibdevice:
    """libdevice stand-ins for Triton's interpreter, which cannot call device libraries."""
    _FNS = {"tanh": np.tanh, "sin": np.sin, "cos": np.cos, "pow": np.power, "trunc": np.trunc, "rint": np.rint,
            "exp": np.exp, "log": np.log}

    def __getattr__(self, name):
        f = self._FNS[name]

        def call(*xs):
            import triton.language as tl
            from triton.runtime.interpreter import TensorHandle
            with np.errstate(all="ignore"):
                out = f(*(x.handle.data for x in xs)).astype(xs[0].handle.data.dtype)
            dt = xs[0].dtype
            block = any(x.type.is_block() for x in xs)
            return tl.tensor(TensorHandle(out, dt), tl.block_type(dt, list(out.shape)) if block else dt)
        return call


def load(tk, interpret: bool):
    """Import generated Triton source as a module (a file under the cache dir, so Triton can read
    the function's source) and return its jit function: a JITFunction to compile, or an
    InterpretedFunction when `interpret`."""
    from ..cache import cache_dir
    stem = f"{tk.name}_{hashlib.sha256(tk.source.encode()).hexdigest()[:12]}"
    modname = f"ember_triton_{stem}{'_interp' if interpret else ''}"
    mod = sys.modules.get(modname)
    if mod is not None:
        return getattr(mod, tk.name)
    d = cache_dir() / "triton"
    d.mkdir(exist_ok=True, mode=0o700)
    path = d / f"{stem}.py"
    if not path.exists() or path.read_text() != tk.source:
        tmp = d / f".{stem}.{os.getpid()}.tmp"
        tmp.write_text(tk.source)
        os.replace(tmp, path)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    old = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1" if interpret else "0"   # read by @triton.jit when decorating
    try:
        spec.loader.exec_module(mod)
    finally:
        if old is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = old
    if interpret:
        mod.libdevice = _NumpyLibdevice()
    sys.modules[modname] = mod
    return getattr(mod, tk.name)


def compile_config(tk, cfg, target=None):
    """triton.compile one configuration of `tk` (for the current GPU, or `target`, e.g.
    GPUTarget("cuda", 90, 32) to get PTX without a GPU). Returns Triton's CompiledKernel."""
    import triton
    from triton.compiler import ASTSource
    fn = load(tk, interpret=False)
    src = ASTSource(fn, tk.signature, cfg.constexprs, tk.attrs)
    return triton.compile(src, target=target, options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages,
                                                       "enable_fp_fusion": False})


def _gpu_launcher(tk):
    """A launch function over device pointers; several configs are timed once and the fastest kept."""
    _memory()   # the primary context, current in this thread, before Triton loads the binaries
    compiled = []
    for cfg in tk.configs:
        ck = compile_config(tk, cfg)
        ck._init_handles()
        compiled.append((cfg, ck.run, ck.function, ck.packed_metadata, tuple(cfg.constexprs.values())))

    def launcher(choice):
        cfg, run, function, packed, consts = choice
        g0, g1, g2 = cfg.grid

        def launch(args):
            run(g0, g1, g2, 0, function, packed, None, None, None, *args, *consts)
        return launch

    if len(compiled) == 1:
        return launcher(compiled[0])
    best: list = []

    def autotune(args):
        if not best:
            times = []
            for choice in compiled:
                f = launcher(choice)
                f(args)
                synchronize()
                t = time.perf_counter()
                for _ in range(3):
                    f(args)
                synchronize()
                times.append(time.perf_counter() - t)
            best.append(launcher(compiled[times.index(min(times))]))
        best[0](args)
    return autotune


def _fast_interpreter() -> None:
    """Skip the interpreter's int32 overflow checks: they only feed device asserts, which are off
    without TRITON_DEBUG, and they double the cost of index arithmetic."""
    import dataclasses
    from triton.runtime import interpreter
    b = getattr(interpreter, "interpreter_builder", None)
    if b is not None and getattr(b.options, "sanitize_overflow", False) and not b.options.debug:
        b.options = dataclasses.replace(b.options, sanitize_overflow=False)


def _interpret_launcher(tk):
    _fast_interpreter()
    fn = load(tk, interpret=True)
    cfg = tk.configs[0]   # no timing in the interpreter: the first (largest) configuration
    grid, consts = cfg.grid, cfg.constexprs

    def launch(args):
        fn[grid](*args, **consts)
    return launch


_compiled: dict = {}


def compile_kernel(kernel, reasons):
    """Generate Triton source for a kernel (or template) and make it launchable; identical
    kernels are compiled once per process. Returns realize.CompiledKernel."""
    from ..codegen import triton as tg
    from ..realize import CompiledKernel
    probe = tg.render(kernel, "KERNEL")
    key = probe.source + repr(probe.configs)
    ck = _compiled.get(key)
    if ck is None:
        symbol = "ember_" + hashlib.sha256(key.encode()).hexdigest()[:16]
        tk = probe.rename(symbol)
        fn = _interpret_launcher(tk) if mode() == "interpret" else _gpu_launcher(tk)
        ck = _compiled[key] = CompiledKernel(kernel.name, symbol, kernel, tk.source, fn, False, reasons, "triton")
        ck.triton = tk
    return ck


class CudaBackend:
    """What realize needs from a device: compile, allocate, launch, move buffers, wait."""
    name = "cuda"

    def __init__(self):
        require()

    compile = staticmethod(compile_kernel)

    @staticmethod
    def alloc(dtype: D.DType, numel: int) -> CudaBuffer:
        return CudaBuffer(dtype, numel)

    @staticmethod
    def launch(fn, args, work: int) -> None:
        fn(args)

    upload = staticmethod(upload)
    synchronize = staticmethod(synchronize)


__all__ = ["mode", "is_available", "require", "device_count", "synchronize", "CudaBuffer", "upload",
           "compile_kernel", "compile_config", "load", "CudaBackend", "memory_stats", "empty_cache"]
