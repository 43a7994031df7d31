"""The benchmark registry: one `Bench` per benchmark, each framework's fn written as its users would.

ember fns use Tensor methods only, so this module imports without ember: a broken ember shows up
as errors in the ember column, not as a failed run.

To add a benchmark (GEMM, a training step, ...), write its numpy inputs and one fn per framework,
state the bytes/flops it needs at minimum, and append a `Bench` to BENCHMARKS.
"""
from __future__ import annotations

import functools
import importlib

import numpy as np
import torch
import torch.nn.functional as F

from .harness import Bench, Target

F32 = 4  # bytes per float32
EPS = 1e-5


def _normal(shape, loc=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).normal(loc, scale, shape).astype(np.float32)


# ---- copy: the memory-bandwidth reference line --------------------------------------------------

def _copy_inputs(n):
    return {"src": _normal(n), "dst": np.zeros(n, np.float32)}


def _copy_numpy(src, dst):
    np.copyto(dst, src)  # single-threaded
    return dst


def _copy_torch(src, dst):
    return dst.copy_(src)  # multi-threaded over torch's intra-op pool


# ---- gelu(x*a+b), tanh form ---------------------------------------------------------------------
# a and b are full tensors, not scalars: the fused kernel then streams 3 inputs and 1 output, which
# is where fusion pays (eager frameworks write and re-read every intermediate).

def _gelu_inputs(n):
    return {"x": _normal(n, seed=1), "a": _normal(n, 1.0, 0.1, seed=2), "b": _normal(n, 0.0, 0.1, seed=3)}


def _gelu_numpy(x, a, b):
    y = x * a + b
    return 0.5 * y * (1 + np.tanh(0.7978845608 * (y + 0.044715 * y**3)))


def _gelu_torch(x, a, b):
    return F.gelu(x * a + b, approximate="tanh")


def _gelu_jax(x, a, b):
    import jax
    return jax.nn.gelu(x * a + b, approximate=True)


def _gelu_ember(x, a, b):
    y = x * a + b
    return 0.5 * y * (1 + (0.7978845608 * (y + 0.044715 * y**3)).tanh())


# ---- softmax over the last dim ------------------------------------------------------------------

def _rows_inputs(shape):
    return {"x": _normal(shape, seed=4)}


def _softmax_numpy(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_torch(x):
    return torch.softmax(x, -1)


def _softmax_jax(x):
    import jax
    return jax.nn.softmax(x, axis=-1)


def _softmax_ember(x):
    return x.softmax(-1)


# ---- layer_norm over the last dim, with weight and bias -----------------------------------------

def _layernorm_inputs(shape):
    d = shape[-1]
    return {"x": _normal(shape, seed=5), "w": _normal(d, 1.0, 0.1, seed=6), "b": _normal(d, 0.0, 0.1, seed=7)}


def _layernorm_numpy(x, w, b):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w + b


def _layernorm_torch(x, w, b):
    return F.layer_norm(x, (x.shape[-1],), w, b, EPS)


def _layernorm_jax(x, w, b):   # what flax.linen.LayerNorm computes
    import jax
    import jax.numpy as jnp
    mean = x.mean(-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + EPS) * w + b


@functools.cache
def _ember_layer_norm():
    """ember.nn.functional.layer_norm once it exists (then that is what is measured), else None."""
    try:
        return importlib.import_module("ember.nn.functional").layer_norm
    except (ImportError, AttributeError):
        return None


def _layernorm_ember(x, w, b):
    if _ember_layer_norm() is not None:
        return _ember_layer_norm()(x, (x.shape[-1],), w, b, EPS)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mean) * (var + EPS).rsqrt() * w + b


def _layernorm_ember_note():
    return "composed" if _ember_layer_norm() is None else "nn.functional.layer_norm"


def _numel(shape):
    return int(np.prod(shape))


BENCHMARKS = (
    Bench(
        name="copy",
        describe="memory copy bandwidth, the reference line (bytes = read + write)",
        sizes={"full": 2**24, "quick": 2**16},
        inputs=_copy_inputs,
        impls={"numpy": _copy_numpy, "torch": _copy_torch},
        bytes=lambda n: 2 * F32 * n,
        compile=False,
        atol=0.0, rtol=0.0,
    ),
    Bench(
        name="gelu",
        describe="fused gelu(x*a+b), tanh form; x, a, b float32 (bytes = 3 reads + 1 write)",
        sizes={"full": 2**24, "quick": 2**16},
        inputs=_gelu_inputs,
        impls={"numpy": _gelu_numpy, "torch": _gelu_torch, "ember": _gelu_ember, "jax": _gelu_jax},
        bytes=lambda n: 4 * F32 * n,
        flops=lambda n: 12 * n,  # 2 for x*a+b, 9 around tanh, tanh counted as 1
        targets=(Target("speedup", 2.0, "torch"), Target("copy_fraction", 0.8, issue="#8"),
                 Target("fastest", 1.0, issue="#8")),
    ),
    Bench(
        name="softmax",
        describe="softmax over the last dim of a float32 matrix (bytes = read + write)",
        sizes={"full": (4096, 4096), "quick": (256, 256)},
        inputs=_rows_inputs,
        impls={"numpy": _softmax_numpy, "torch": _softmax_torch, "ember": _softmax_ember, "jax": _softmax_jax},
        bytes=lambda s: 2 * F32 * _numel(s),
        flops=lambda s: 5 * _numel(s),  # max, sub, exp, sum, div
        targets=(Target("speedup", 1.3, "torch", "#8"), Target("fastest", 1.0, issue="#8")),
        atol=1e-7,
    ),
    Bench(
        name="layernorm",
        describe="layer_norm over the last dim with weight and bias, eps=1e-5 (bytes = read x + write y + w, b)",
        sizes={"full": (8192, 1024), "quick": (512, 128)},
        inputs=_layernorm_inputs,
        impls={"numpy": _layernorm_numpy, "torch": _layernorm_torch, "ember": _layernorm_ember,
               "jax": _layernorm_jax},
        bytes=lambda s: 2 * F32 * _numel(s) + 2 * F32 * s[-1],
        flops=lambda s: 8 * _numel(s),  # mean, var (sub, square, sum), normalise, scale, shift
        targets=(Target("speedup", 1.3, "torch", "#8"), Target("fastest", 1.0, issue="#8")),
        atol=1e-4,
        notes={"ember": _layernorm_ember_note},
    ),
)
BENCHMARKS += importlib.import_module(".gemm", __package__).BENCHMARKS  # GEMM rows live in gemm.py
BENCHMARKS += importlib.import_module(".cnn", __package__).BENCHMARKS  # conv2d and the CNN step: cnn.py
