"""Counter-based random numbers: Philox4x32-10, written with primitives only.

Random bits are a pure function of (key, counter), so they are computed inside the fused kernels,
need no stored state per element, and come out identical on every backend. The global state is
(seed, offset): a call that needs n values uses counters offset .. offset+n-1 and advances offset.
The seed and offset enter the graph as a small uint64 buffer rather than as constants, so every
call of the same shape reuses one compiled kernel.

Each element i draws one Philox block: counter = (offset + i) split into two 32-bit words (the
other two are 0), key = the seed's two 32-bit halves; the block's four 32-bit outputs feed the
distribution (24 bits for a float32 uniform, 53 for float64, two uniforms for Box-Muller).
"""
from __future__ import annotations

import math
import os

import numpy as np

from ember.compiler import Node, dtypes as D
from ember.compiler.ir import const

from .tensor import Tensor
from .tracing import host_input

# Philox4x32 constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11)
PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10

_DEFAULT_SEED = int.from_bytes(os.urandom(8), "little") >> 1  # PyTorch also seeds non-deterministically
_state = {"seed": _DEFAULT_SEED, "initial": _DEFAULT_SEED, "offset": 0}


def manual_seed(seed: int):
    """Reset the generator: the same seed gives the same sequence of random tensors.

    >>> ember.manual_seed(0); a = ember.rand(3); ember.manual_seed(0); b = ember.rand(3)
    """
    seed = int(seed)
    if not -0x8000_0000_0000_0000 <= seed <= 0xFFFF_FFFF_FFFF_FFFF:
        raise RuntimeError(f"Overflow when unpacking long: seed {seed} does not fit in 64 bits")
    seed &= 0xFFFF_FFFF_FFFF_FFFF
    _state.update(seed=seed, initial=seed, offset=0)


def seed() -> int:
    """Seed the generator non-deterministically and return the seed."""
    s = int.from_bytes(os.urandom(8), "little") >> 1
    manual_seed(s)
    return s


def initial_seed() -> int:
    """The seed the generator was last seeded with."""
    return _state["initial"]


def get_state() -> tuple[int, int]:
    return _state["seed"], _state["offset"]


def set_state(state: tuple[int, int]) -> None:
    _state["seed"], _state["offset"] = int(state[0]), int(state[1])


def _take(n: int) -> tuple[int, int]:
    """Reserve n counters; returns (seed, first counter)."""
    s, off = _state["seed"], _state["offset"]
    _state["offset"] = (off + n) & 0xFFFF_FFFF_FFFF_FFFF
    return s, off


# ---- Philox as primitives -----------------------------------------------------------------------

def _c(value: int, dtype: D.DType, n: int, device: str) -> Tensor:
    return Tensor._wrap(const(value, dtype, (n,)), device)


def _u32(x: Tensor) -> Tensor:
    return x._apply("cast", arg=D.uint32)  # truncates to the low 32 bits


def _mulhilo(m: int, x: Tensor) -> tuple[Tensor, Tensor]:
    """The high and low 32-bit words of the 64-bit product m * x."""
    p = x._apply("cast", arg=D.uint64)._apply("mul", _c(m, D.uint64, x.shape[0], x.device))
    return _u32(p._apply("shr", _c(32, D.uint64, x.shape[0], x.device))), _u32(p)


def philox4x32(ctr: list[Tensor], key: list[Tensor], rounds: int = ROUNDS) -> list[Tensor]:
    """Philox4x32 on uint32 tensors of one shape (n,): four counter words, two key words."""
    n, dev = ctr[0].shape[0], ctr[0].device
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(rounds):
        if r:  # the Weyl key schedule between rounds
            k0 = k0._apply("add", _c(PHILOX_W[0], D.uint32, n, dev))
            k1 = k1._apply("add", _c(PHILOX_W[1], D.uint32, n, dev))
        hi0, lo0 = _mulhilo(PHILOX_M[0], c0)
        hi1, lo1 = _mulhilo(PHILOX_M[1], c2)
        c0, c1, c2, c3 = (hi1._apply("xor", c1)._apply("xor", k0), lo1,
                          hi0._apply("xor", c3)._apply("xor", k1), lo0)
    return [c0, c1, c2, c3]


def random_bits(n: int, device: str = "cpu") -> list[Tensor]:
    """Four independent uint32 tensors of shape (n,), consuming n counters of the global state."""
    # a host input: under ember.compile, every replay takes its own counters again
    state = host_input("random", lambda: _take(n), D.uint64, (2,), device)

    def word(i: int) -> Tensor:  # state[i] broadcast to (n,)
        return state._apply("slice", arg=((i, 1, 1),))._apply("expand", arg=(n,))

    seed_w, ctr = word(0), word(1)
    ctr = ctr._apply("add", Tensor._wrap(Node.make("iota", arg=n, dtype=D.int64), device)
                     ._apply("cast", arg=D.uint64))
    hi = _c(32, D.uint64, n, device)
    zero = _c(0, D.uint32, n, device)
    return philox4x32([_u32(ctr), _u32(ctr._apply("shr", hi)), zero, zero],
                      [_u32(seed_w), _u32(seed_w._apply("shr", hi))])


# ---- distributions ----------------------------------------------------------------------------

def _unit(bits: list[Tensor], dtype: D.DType) -> Tensor:
    """Uniform in [0, 1) with exactly as many random bits as `dtype` has significand bits, so that
    rounding can never produce 1.0."""
    n, dev = bits[0].shape[0], bits[0].device
    if dtype is D.float64:
        hi = bits[0]._apply("shr", _c(5, D.uint32, n, dev))._apply("cast", arg=D.float64)
        lo = bits[1]._apply("shr", _c(6, D.uint32, n, dev))._apply("cast", arg=D.float64)
        x = hi._apply("mul", _c(2.0 ** 26, D.float64, n, dev))._apply("add", lo)
        return x._apply("mul", _c(2.0 ** -53, D.float64, n, dev))
    mant = {D.float32: 24, D.float16: 11, D.bfloat16: 8}[dtype]
    x = bits[0]._apply("shr", _c(32 - mant, D.uint32, n, dev))._apply("cast", arg=D.float32)
    x = x._apply("mul", _c(2.0 ** -mant, D.float32, n, dev))
    return x if dtype is D.float32 else x._apply("cast", arg=dtype)


def uniform(shape: tuple, dtype: D.DType, device: str = "cpu") -> Tensor:
    """Uniform [0, 1) samples of `shape` and float `dtype`."""
    n = math.prod(shape)
    return _unit(random_bits(n, device), dtype)._apply("reshape", arg=tuple(shape))


def normal(shape: tuple, dtype: D.DType, device: str = "cpu") -> Tensor:
    """Standard normal samples by Box-Muller: sqrt(-2 log u1) * cos(2 pi u2), u1 in (0, 1]."""
    n = math.prod(shape)
    bits = random_bits(n, device)
    work = D.float64 if dtype is D.float64 else D.float32
    u1 = _unit(bits[:2], work)
    u2 = _unit(bits[2:], work)
    one = _c(1.0, work, n, device)
    u1 = one._apply("add", u1._apply("neg"))  # (0, 1]: log never sees 0
    r = u1._apply("log")._apply("mul", _c(-2.0, work, n, device))._apply("sqrt")
    z = r._apply("mul", u2._apply("mul", _c(2 * math.pi, work, n, device))._apply("cos"))
    z = z if z.dtype is dtype else z._apply("cast", arg=dtype)
    return z._apply("reshape", arg=tuple(shape))


def integers(shape: tuple, low: int, high: int, dtype: D.DType, device: str = "cpu") -> Tensor:
    """Integers uniform in [low, high): 64 random bits reduced modulo the range (bias < range/2**64)."""
    n = math.prod(shape)
    b = random_bits(n, device)
    x = b[0]._apply("cast", arg=D.uint64)._apply(
        "or", b[1]._apply("cast", arg=D.uint64)._apply("shl", _c(32, D.uint64, n, device)))
    x = x._apply("mod", _c(high - low, D.uint64, n, device))._apply("cast", arg=D.int64)
    x = x._apply("add", _c(low, D.int64, n, device))
    x = x if dtype is D.int64 else x._apply("cast", arg=dtype)
    return x._apply("reshape", arg=tuple(shape))


def host_permutation(n: int) -> np.ndarray:
    """A permutation of range(n) drawn on the host, reproducible from (seed, offset)."""
    seed, offset = _take(n)
    rng = np.random.Generator(np.random.Philox(key=seed, counter=offset))
    return rng.permutation(n)
