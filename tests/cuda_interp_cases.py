"""The "cuda" device under Triton's interpreter (EMBER_TRITON_INTERPRET=1): the Triton kernels a GPU
would run, against numpy / torch. Not collected on its own (no test_ prefix): test_cuda_device.py's
`test_interpreter_suite` runs this file in a subprocess with the variable set, since the
interpreter must be chosen before triton loads. By hand:
`EMBER_TRITON_INTERPRET=1 .venv/bin/pytest tests/cuda_interp_cases.py`.

The rest of the original description, for context:

- Without a GPU and without EMBER_TRITON_INTERPRET, "cuda" fails with a clear error and nothing
  else changes.
- With EMBER_TRITON_INTERPRET=1, "cuda" is served by Triton's interpreter on the CPU, running the
  same generated Triton kernels a GPU would. Those tests (marked `interp`) run in a subprocess
  started by `test_interpreter_suite`, since the interpreter must be chosen before triton loads;
  run them directly with `EMBER_TRITON_INTERPRET=1 pytest tests/test_cuda_device.py`.
References are numpy / torch (CPU), never ember's own output.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import ember
from ember.compiler import dtypes as D
from strategies import FLOATS, INTS, arrays, assert_matches, shapes, to_torch, torch_dtype

INTERP = os.environ.get("EMBER_TRITON_INTERPRET") == "1"
if not INTERP:
    raise RuntimeError("run with EMBER_TRITON_INTERPRET=1 (test_cuda_device.py's test_interpreter_suite does)")
FEW = settings(max_examples=10, deadline=None)


# ---- under the interpreter: the Triton kernels against numpy / torch ---------------------------

def cuda_tensor(arr: np.ndarray, layout: str = "contiguous") -> ember.Tensor:
    """`arr` on "cuda", stored as `layout`: a view over a differently laid out device buffer."""
    if layout == "contiguous" or arr.ndim == 0:
        return ember.tensor(arr, device="cuda")
    if layout == "permuted":
        order = tuple(reversed(range(arr.ndim)))
        return ember.tensor(np.ascontiguousarray(arr.transpose(order)), device="cuda").permute(*order)
    if layout == "strided":
        big = np.zeros(arr.shape[:-1] + (2 * arr.shape[-1] + 1,), dtype=arr.dtype)
        big[..., 1::2] = arr
        return ember.tensor(big, device="cuda")[..., 1::2]
    return ember.tensor(np.ascontiguousarray(arr[::-1]), device="cuda").flip(0)


LAYOUTS = st.sampled_from(["contiguous", "permuted", "strided", "flipped"])
UNARY = ["exp", "log", "tanh", "sin", "cos", "sqrt", "erf", "floor", "ceil", "trunc", "round", "neg", "abs",
         "sigmoid", "reciprocal"]


def _on_cuda(t: ember.Tensor) -> ember.Tensor:
    assert t.device == "cuda"
    return t


@FEW
@given(st.data(), st.sampled_from(UNARY), st.sampled_from(FLOATS), shapes(max_dims=3), LAYOUTS)
def test_unary_math(data, op, dt, shape, layout):
    a = data.draw(arrays(dt, shape, lo=-20, hi=20))
    got = _on_cuda(getattr(cuda_tensor(a, layout), op)())
    want = getattr(to_torch(a), op)()
    rtol = {D.float32: 2e-5}.get(dt)
    assert_matches(got, want, rtol=rtol)


BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
          "maximum": lambda a, b: a.maximum(b), "minimum": lambda a, b: a.minimum(b), "lt": lambda a, b: a < b,
          "eq": lambda a, b: a == b}


@FEW
@given(st.data(), st.sampled_from(sorted(BINARY)), st.sampled_from(FLOATS + INTS + [D.bool_]),
       st.sampled_from([((2, 3), (3,)), ((4, 1, 5), (3, 1)), ((), (4,)), ((0, 3), (1, 3)), ((5,), (5,))]))
def test_binary_with_broadcasting(data, op, dt, shapes2):
    if dt is D.bool_ and op == "sub":
        return
    a = data.draw(arrays(dt, shapes2[0]))
    b = data.draw(arrays(dt, shapes2[1]))
    got = BINARY[op](cuda_tensor(a), cuda_tensor(b))
    assert_matches(_on_cuda(got), BINARY[op](to_torch(a), to_torch(b)))


@FEW
@given(st.data(), st.sampled_from(INTS), shapes(min_dims=1, max_dims=2, min_side=1))
def test_integer_division_has_c_semantics(data, dt, shape):
    """idiv/mod primitives: truncation, x/0 -> 0, MIN/-1 wraps, uint wraparound (compiler/ops.py)."""
    info = np.iinfo(dt.np)
    a = data.draw(arrays(dt, shape))
    b = data.draw(arrays(dt, shape))
    a.flat[0], b.flat[0] = (info.min, -1) if dt.is_signed else (info.max, 0)
    if a.size > 1:
        b.flat[1] = 0
    x, y = cuda_tensor(a), cuda_tensor(b)
    for op in ("idiv", "mod"):
        np.testing.assert_array_equal(x._apply(op, y).numpy(), _c_division(op, a, b))
    np.testing.assert_array_equal((x * y).numpy(), (a.astype(np.int64) * b).astype(dt.np))  # wraps
    np.testing.assert_array_equal((x >> y.abs() % 4).numpy(), a >> (np.abs(b.astype(np.int64)) % 4).astype(dt.np))


def _c_division(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C's truncating / and % in exact Python integers (0 for a zero divisor), wrapped to the type."""
    out = []
    for x, y in zip(a.ravel().tolist(), b.ravel().tolist()):
        q = 0 if y == 0 else abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
        out.append(q if op == "idiv" else (0 if y == 0 else x - q * y))
    bits = a.dtype.itemsize * 8
    wrapped = [v % (1 << bits) for v in out]
    return np.array(wrapped, dtype=np.uint64).astype(a.dtype).reshape(a.shape)


REDUCE = {"sum": "sum", "prod": "prod", "amax": "amax", "amin": "amin", "mean": "mean"}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data(), st.sampled_from(sorted(REDUCE)), st.sampled_from([D.float32, D.float64, D.float16, D.int32, D.int8]),
       shapes(min_dims=1, max_dims=3, min_side=1, max_side=6), st.booleans(), LAYOUTS, st.booleans())
def test_reductions_fit_and_looped(monkeypatch_limits, data, op, dt, shape, keepdim, layout, small_blocks):
    if op == "mean" and not dt.is_float:
        return
    monkeypatch_limits(small_blocks)
    a = data.draw(arrays(dt, shape, lo=-3, hi=3, specials=False))
    dims = data.draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape), unique=True))
    dim = dims[0] if op == "prod" else tuple(sorted(dims))   # torch.prod takes one dim
    got = getattr(cuda_tensor(a, layout), REDUCE[op])(dim, keepdim=keepdim)
    want = getattr(to_torch(a), REDUCE[op])(dim, keepdim=keepdim)
    assert_matches(_on_cuda(got), want, rtol=1e-4 if dt is D.float32 else None)


@pytest.fixture
def monkeypatch_limits(monkeypatch):
    """Shrink the Triton block sizes (so every vectorized loop becomes a loop over blocks)."""
    from ember.compiler import realize
    from ember.compiler.codegen import triton as tg
    from ember.compiler.runtime import cuda
    default = dict(tg.LIMITS)

    def apply(small: bool):
        monkeypatch.setattr(tg, "LIMITS", dict(xblock=16, rblock=4, tile=16) if small else default)
        monkeypatch.setattr(realize, "_plans", {})     # kernels generated under other limits
        monkeypatch.setattr(cuda, "_compiled", {})
    return apply


@pytest.mark.parametrize("small", [False, True])
def test_softmax_layernorm_rows_that_fit_and_rows_that_loop(monkeypatch_limits, small):
    monkeypatch_limits(small)
    a = np.random.default_rng(1).standard_normal((5, 37)).astype(np.float32)
    x = cuda_tensor(a)
    assert_matches(x.softmax(1), torch.from_numpy(a).softmax(1))
    assert_matches(x.log_softmax(0), torch.from_numpy(a).log_softmax(0))
    assert_matches(ember.nn.functional.layer_norm(x, (37,)),
                   torch.nn.functional.layer_norm(torch.from_numpy(a), (37,)), rtol=1e-4, atol=1e-5)


def test_views_pad_gather_and_several_outputs_at_once():
    a = np.random.default_rng(2).standard_normal((6, 13)).astype(np.float32)
    x, ta = cuda_tensor(a), torch.from_numpy(a)
    idx = np.random.default_rng(3).integers(0, 13, (6, 4))
    outs = [x.T[::2, 1:] * 2, x.flip(1) - x.flip(0), x.unsqueeze(0).expand(3, 6, 13) + 1,
            ember.nn.functional.pad(x, (2, 3, 1, 1), value=0.5), x[ember.tensor([0, 3, 5], device="cuda")],
            x.gather(1, ember.tensor(idx, device="cuda")), x.exp(), x.sum(0), (x * 3).mean()]
    wants = [ta.T[::2, 1:] * 2, ta.flip(1) - ta.flip(0), ta.unsqueeze(0).expand(3, 6, 13) + 1,
             torch.nn.functional.pad(ta, (2, 3, 1, 1), value=0.5), ta[[0, 3, 5]], ta.gather(1, torch.from_numpy(idx)),
             ta.exp(), ta.sum(0), (ta * 3).mean()]
    ember.realize(*outs)   # one schedule: horizontally fused kernels with several loop nests
    for o, w in zip(outs, wants):
        assert_matches(_on_cuda(o), w)


@FEW
@given(st.data(), st.sampled_from(FLOATS + INTS + [D.bool_]), st.sampled_from(FLOATS + INTS + [D.bool_]),
       shapes(max_dims=2))
def test_casts_between_every_dtype(data, src, dst, shape):
    a = data.draw(arrays(src, shape, lo=-100, hi=100, specials=False))
    if src.is_float and dst.is_int and not dst.is_signed:
        a = np.abs(a)   # negative float -> unsigned is undefined (C, PyTorch)
    assert_matches(_on_cuda(cuda_tensor(a).to(dst)), to_torch(a).to(torch_dtype(dst)))


def test_random_numbers_are_philox_and_equal_the_cpu_ones():
    from test_random import _expected_bits
    ember.manual_seed(1234)
    got = ember.rand(3, 4, device="cuda").numpy()
    b = _expected_bits(1234, 0, 12)
    np.testing.assert_array_equal(got, ((b[0] >> 8).astype(np.float64) * 2.0**-24).reshape(3, 4).astype(np.float32))
    for make in (lambda d: ember.randint(-6, 7, (9,), device=d), lambda d: ember.rand(4, dtype=ember.float64, device=d),
                 lambda d: ember.rand(6, dtype=ember.bfloat16, device=d), lambda d: ember.randn(5, 7, device=d)):
        ember.manual_seed(7)
        g = make("cuda").numpy()
        ember.manual_seed(7)
        c = make("cpu").numpy()
        if g.dtype == np.float32:   # normals go through log/cos/sqrt: each backend's libm, to an ulp
            np.testing.assert_allclose(g, c, rtol=1e-6, atol=1e-7)
        else:                       # same seed, same bits, on every backend
            np.testing.assert_array_equal(g, c)


@pytest.mark.parametrize("dt", [D.float32, D.float64], ids=lambda d: d.name)
def test_matmul_runs_the_triton_gemm_template(dt):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((3, 40, 64)).astype(dt.np)
    b = rng.standard_normal((64, 72)).astype(dt.np)
    x, y = cuda_tensor(a), cuda_tensor(b, "permuted")
    with ember.debug.capture() as cap:
        c = x @ y
        d = x.transpose(1, 2) @ x
        ember.realize(c, d)
    assert sum(k.name.startswith("gemm_") for k in cap.kernels) == 2
    tol = dict(rtol=1e-4, atol=1e-4) if dt is D.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(c.numpy(), a @ b, **tol)
    np.testing.assert_allclose(d.numpy(), a.transpose(0, 2, 1) @ a, **tol)


def test_conv2d_through_the_gemm_template():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    got = ember.nn.functional.conv2d(cuda_tensor(a), cuda_tensor(w), padding=1)
    want = torch.nn.functional.conv2d(torch.from_numpy(a), torch.from_numpy(w), padding=1)
    assert_matches(_on_cuda(got), want, rtol=1e-4, atol=1e-4)


def test_mlp_forward_backward_and_sgd_step_match_torch():
    rng = np.random.default_rng(6)
    xs = rng.standard_normal((64, 32)).astype(np.float32)
    ys = rng.integers(0, 10, 64)
    model = ember.nn.Sequential(ember.nn.Linear(32, 64), ember.nn.ReLU(), ember.nn.Linear(64, 10))
    ref = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    with torch.no_grad():
        for p, q in zip(model.parameters(), ref.parameters()):
            q.copy_(torch.from_numpy(p.detach().numpy()))
    model.to("cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ropt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    x, y = ember.tensor(xs).cuda(), ember.tensor(ys).to("cuda")
    for _ in range(2):
        opt.zero_grad()
        loss = ember.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        ropt.zero_grad()
        rloss = torch.nn.functional.cross_entropy(ref(torch.from_numpy(xs)), torch.from_numpy(ys))
        rloss.backward()
        ropt.step()
        assert loss.item() == pytest.approx(rloss.item(), rel=1e-5)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert p.device == "cuda"
        np.testing.assert_allclose(p.detach().cpu().numpy(), q.detach().numpy(), rtol=1e-4, atol=1e-5)


def test_device_plumbing():
    assert ember.cuda.is_available() and ember.cuda.device_count() == 1
    ember.cuda.synchronize()
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = ember.tensor(a)
    g = x.cuda()
    assert g.device == "cuda" and x.device == "cpu"
    assert "device='cuda'" in repr(g)
    np.testing.assert_array_equal(g.numpy(), a)
    h = (g * 2).to("cpu")
    assert h.device == "cpu"
    np.testing.assert_array_equal(h.numpy(), a * 2)
    d = g.to(ember.float64).to("cpu", ember.int32)
    assert d.dtype is ember.int32 and d.device == "cpu"
    np.testing.assert_array_equal(d.numpy(), a.astype(np.int32))
    with pytest.raises(RuntimeError, match="same device"):
        x + g
    with pytest.raises(RuntimeError, match="ordinal"):
        ember.zeros(2, device="cuda:1")
    z = ember.zeros(2, 2, device="cuda") + ember.ones(2, device="cuda:0")
    assert z.device == "cuda" and z.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    m = ember.nn.Linear(3, 2).cuda()
    assert m.weight.device == "cuda" and m(g).device == "cuda"
    m.cpu()
    assert m.weight.device == "cpu" and m(x).device == "cpu"


def test_gradients_flow_back_through_a_device_copy():
    a = np.array([1.0, -2.0, 3.0], np.float32)
    x = ember.tensor(a, requires_grad=True)
    y = x.cuda()
    (y * y).sum().backward()
    assert x.grad.device == "cpu"      # the leaf's device, as in PyTorch
    np.testing.assert_allclose(x.grad.numpy(), 2 * a)


def test_gradients_of_fused_ops_match_torch():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((4, 9)).astype(np.float32)
    w = rng.standard_normal((4, 9)).astype(np.float32)
    x = ember.tensor(a, device="cuda", requires_grad=True)
    tx = torch.from_numpy(a).requires_grad_()
    for f in ((lambda t, c: (t.softmax(1) * c).sum() + t.tanh().pow(2).mean(1).sum()),
              (lambda t, c: (t * c).logsumexp(0).sum() + (t.abs() + 1).log().amax(1).sum())):
        f(x, ember.tensor(w, device="cuda")).backward()
        f(tx, torch.from_numpy(w)).backward()
        assert x.grad.device == "cuda"
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)
        x.grad, tx.grad = None, None
