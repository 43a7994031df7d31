"""ember.save / ember.load: safetensors-compatible files in both directions, nested state dicts,
bit-exact round trips (also into a fresh process), and clear errors for malformed files."""
import collections
import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
from hypothesis import given, settings, strategies as st

import ember

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int8, np.int16, np.int32, np.int64, np.uint8,
          np.bool_]


def _array(rng, shape, dt):
    if dt is np.bool_:
        return rng.random(shape) > 0.5
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)
    return (rng.standard_normal(shape) * 100).astype(dt)


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype.itemsize > 1 and a.dtype != np.bool_ else a


@settings(max_examples=15, deadline=None)
@given(shapes=st.lists(st.sampled_from([(), (0,), (3,), (2, 3), (4, 0, 2), (2, 3, 4)]), min_size=1, max_size=5),
       dts=st.lists(st.sampled_from(DTYPES), min_size=5, max_size=5), seed=st.integers(0, 2 ** 31))
def test_round_trip_is_bit_exact_and_readable_by_safetensors(tmp_path_factory, shapes, dts, seed):
    rng = np.random.default_rng(seed)
    arrays = {f"t{i}.w": _array(rng, s, dt) for i, (s, dt) in enumerate(zip(shapes, dts))}
    sd = {k: ember.tensor(v) for k, v in arrays.items()}
    if len(sd) > 1:  # a lazy value and a transposed view are saved by value
        k = next(iter(sd))
        sd[k] = sd[k].permute(*reversed(range(sd[k].ndim))).permute(*reversed(range(sd[k].ndim)))
    path = tmp_path_factory.mktemp("st") / "a.safetensors"
    ember.save(sd, path)
    back = ember.load(path)
    assert list(back) == list(sd)
    for k, a in arrays.items():
        assert back[k].dtype == sd[k].dtype and tuple(back[k].shape) == a.shape
        np.testing.assert_array_equal(_bits(back[k].numpy()), _bits(a))
    theirs = safetensors.torch.load_file(str(path))   # torch: the one reader with every dtype (bf16)
    assert set(theirs) == set(arrays)
    for k, a in arrays.items():
        t = theirs[k]
        got = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16) if t.dtype == torch.bfloat16 else t.numpy()
        np.testing.assert_array_equal(_bits(got), _bits(a))


def test_files_written_by_safetensors_load_in_ember(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"b": rng.standard_normal((2, 3)), "a": np.arange(5, dtype=np.int16), "z": np.zeros((0, 4), np.float32),
              "s": np.array(3.5, np.float32), "m": rng.random(7) > 0.5}
    safetensors.numpy.save_file(arrays, str(tmp_path / "np.safetensors"), metadata={"who": "numpy"})
    back = ember.load(tmp_path / "np.safetensors")
    assert set(back) == set(arrays)
    for k, a in arrays.items():
        assert back[k].numpy().dtype == a.dtype
        np.testing.assert_array_equal(back[k].numpy(), a)
    bf = torch.randn(3, 4).to(torch.bfloat16)
    safetensors.torch.save_file({"bf": bf}, str(tmp_path / "t.safetensors"))
    got = ember.load(str(tmp_path / "t.safetensors"))["bf"]
    assert got.dtype == ember.bfloat16
    np.testing.assert_array_equal(got.numpy().view(np.int16), bf.view(torch.int16).numpy())


def test_nested_objects_round_trip_with_their_types(tmp_path):
    w = ember.randn(3, 2)
    obj = {"state": {0: {"step": ember.tensor(3.0), "buf": w}, 1: {"step": ember.tensor(1.0), "buf": None}},
           "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "nesterov": False, "name": "g0", "params": [0, 1],
                             "limits": [math.inf, -math.inf], "huge": 2 ** 70, "maybe": None}],
           "tied": [w, w], "arr": np.arange(4, dtype=np.int32), "od": collections.OrderedDict(b=1, a=2),
           ("tuple", 1): "tuple key"}
    ember.save(obj, tmp_path / "o.safetensors")
    back = ember.load(tmp_path / "o.safetensors")
    assert back["param_groups"] == obj["param_groups"]
    assert isinstance(back["param_groups"][0]["betas"], tuple) and type(back["od"]) is collections.OrderedDict
    assert list(back["od"].items()) == [("b", 1), ("a", 2)] and back[("tuple", 1)] == "tuple key"
    assert list(back["state"]) == [0, 1] and back["state"][1]["buf"] is None
    np.testing.assert_array_equal(back["state"][0]["buf"].numpy(), w.numpy())
    assert back["tied"][0] is back["tied"][1] is back["state"][0]["buf"]   # one stored tensor, shared again
    assert isinstance(back["arr"], np.ndarray) and back["arr"].dtype == np.int32
    # the file is still a valid safetensors file, with the tensors under their key paths
    theirs = safetensors.numpy.load_file(str(tmp_path / "o.safetensors"))
    assert set(theirs) == {"state.0.step", "state.0.buf", "state.1.step", "arr"}


def test_optimizer_state_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3,)]]
    grads = [[rng.standard_normal(a.shape).astype(np.float32) for a in init] for _ in range(4)]
    ps = [ember.tensor(a, requires_grad=True) for a in init]
    opt = ember.optim.Adam(ps, lr=0.05, amsgrad=True)
    for g in grads[:2]:
        for p, gi in zip(ps, g):
            p.grad = ember.tensor(gi)
        opt.step()
    ember.save({"params": [p.detach() for p in ps], "opt": opt.state_dict()}, tmp_path / "ckpt.safetensors")
    ck = ember.load(tmp_path / "ckpt.safetensors")
    qs = [ember.tensor(t.numpy(), requires_grad=True) for t in ck["params"]]
    opt2 = ember.optim.Adam(qs, lr=1.0)
    opt2.load_state_dict(ck["opt"])
    for g in grads[2:]:
        for p, q, gi in zip(ps, qs, g):
            p.grad, q.grad = ember.tensor(gi), ember.tensor(gi)
        opt.step()
        opt2.step()
    for p, q in zip(ps, qs):
        np.testing.assert_array_equal(p.detach().numpy(), q.detach().numpy())


def test_file_objects_and_unsupported_values():
    buf = io.BytesIO()
    ember.save({"x": ember.arange(6).reshape(2, 3)}, buf)
    buf.seek(0)
    np.testing.assert_array_equal(ember.load(buf)["x"].numpy(), np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match="cannot store an object of type object"):
        ember.save({"x": object()}, io.BytesIO())
    with pytest.raises(TypeError, match="metadata"):
        ember.save({"x": ember.zeros(1)}, io.BytesIO(), metadata={"k": 1})


def test_loading_never_unpickles(tmp_path, monkeypatch):
    import pickle

    def forbidden(*a, **k):
        raise AssertionError("pickle used while loading")
    ember.save({"a": [ember.ones(2), {"b": 1}]}, tmp_path / "p.safetensors")
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert ember.load(tmp_path / "p.safetensors")["a"][1] == {"b": 1}


# ---- malformed files ----------------------------------------------------------------------------

def _file(header: dict, data: bytes = b"", length: int | None = None, raw_header: bytes | None = None) -> bytes:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


GOOD = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
CORRUPT = {
    "too short": (b"\x01\x02\x03", "too short"),
    "header length too large": (_file(GOOD, b"\0" * 8, length=10 ** 12), "bad header length"),
    "header length past the end": (_file(GOOD, b"\0" * 8, length=4000), "bad header length"),
    "bad JSON": (_file({}, raw_header=b"{not json!"), "not valid JSON"),
    "not UTF-8": (_file({}, raw_header=b"\xff\xfe{}"), "not valid JSON"),
    "header not an object": (_file({}, raw_header=b"[1, 2]"), "must be a JSON object"),
    "unknown dtype": (_file({"w": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
                      "unknown or unsupported dtype"),
    "bad shape": (_file({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8), "invalid shape"),
    "missing field": (_file({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "exactly dtype, shape"),
    "offsets out of range": (_file(GOOD, b"\0" * 4), "offsets out of range"),
    "offsets reversed": (_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8),
                         "offsets out of range"),
    "dtype/shape mismatch": (_file({"w": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
                             "dtype/shape mismatch"),
    "overlap": (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "overlaps"),
    "gap": (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "gap"),
    "trailing bytes": (_file(GOOD, b"\0" * 12), "not described by the header"),
    "metadata not strings": (_file({"__metadata__": {"a": 1}}), "__metadata__ must map strings to strings"),
    "skeleton names a missing tensor": (_file({"__metadata__": {"ember": '{"__tensor__": "nope"}'}}),
                                        "does not contain"),
    "skeleton is not JSON": (_file({"__metadata__": {"ember": "{oops"}}), "ember metadata is not valid JSON"),
    "skeleton has an unknown tag": (_file({"__metadata__": {"ember": '{"__reduce__": ["os.system", "ls"]}'}}),
                                    "unknown tag"),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_malformed_files_raise_clear_errors(name, tmp_path):
    data, message = CORRUPT[name]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as e:
        ember.load(path)
    assert "bad.safetensors" in str(e.value)
    if name in ("offsets out of range", "dtype/shape mismatch", "gap", "trailing bytes", "too short"):
        with pytest.raises(Exception):   # the safetensors library rejects these files too
            safetensors.numpy.load(data)


@settings(max_examples=25, deadline=None)
@given(cut=st.floats(0, 1, exclude_max=True))
def test_any_truncation_is_rejected(cut):
    buf = io.BytesIO()
    ember.save({"a": ember.arange(10, dtype=ember.float32), "b": {"c": ember.ones(3, dtype=ember.int16)}}, buf)
    data = buf.getvalue()
    with pytest.raises(ValueError, match="truncated|too short|bad header length|not valid JSON|offsets out"):
        ember.load(io.BytesIO(data[:int(cut * len(data))]))


# ---- a fresh process reproduces the model's outputs bit for bit ---------------------------------------

def test_save_then_load_in_a_fresh_process_reproduces_outputs_bit_for_bit(tmp_path):
    nn = ember.nn
    ember.manual_seed(0)
    make = lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))  # noqa: E731
    model = make()
    x = ember.randn(5, 6)
    out = model(x).detach()
    ember.save(model.state_dict(), tmp_path / "model.safetensors")
    ember.save({"x": x, "out": out}, tmp_path / "io.safetensors")
    script = textwrap.dedent(f"""
        import numpy as np, ember
        nn = ember.nn
        ember.manual_seed(123)   # different initial weights: the loaded ones must replace them
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
        print(model.load_state_dict(ember.load({str(tmp_path / "model.safetensors")!r})))
        io = ember.load({str(tmp_path / "io.safetensors")!r})
        got = model(io["x"]).detach().numpy()
        assert got.dtype == np.float32
        np.save({str(tmp_path / "got.npy")!r}, got)
    """)
    env = {k: v for k, v in os.environ.items()}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    got = np.load(tmp_path / "got.npy")
    assert got.tobytes() == out.numpy().tobytes()


def test_trained_model_with_buffers_and_optimizer_state_reload_bit_for_bit_in_a_fresh_process(tmp_path):
    """Conv + BatchNorm (running statistics and an int64 counter as buffers) after a few Adam steps:
    a fresh process that builds the model from scratch and loads the file computes the same eval
    outputs bit for bit, and gets the same optimizer state back."""
    nn = ember.nn
    build = textwrap.dedent("""
        def make():
            nn = ember.nn
            return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5),
                                 nn.LayerNorm(5))
    """)
    ns = {"ember": ember}
    exec(build, ns)
    ember.manual_seed(0)
    model = ns["make"]()
    opt = ember.optim.Adam(model.parameters(), lr=0.05)
    rng = np.random.default_rng(0)
    x = ember.tensor(rng.standard_normal((3, 2, 6, 6)).astype(np.float32))
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    model.eval()
    out = model(x).detach().numpy()
    ember.save({"model": model.state_dict(), "opt": opt.state_dict(), "x": x}, tmp_path / "ckpt.pt")
    expected_state = {f"{i}.{k}": v.numpy() for i, s in opt.state_dict()["state"].items() for k, v in s.items()}
    np.savez(tmp_path / "expected.npz", out=out, **expected_state)
    assert int(model[1].num_batches_tracked.item()) == 3
    script = "import numpy as np, ember\n" + build + textwrap.dedent(f"""
        ember.manual_seed(7)
        model = make()
        ck = ember.load({str(tmp_path / "ckpt.pt")!r})
        model.load_state_dict(ck["model"])
        model.eval()
        opt = ember.optim.Adam(model.parameters(), lr=1.0)
        opt.load_state_dict(ck["opt"])
        got = {{"out": model(ck["x"]).detach().numpy()}}
        got.update({{f"{{i}}.{{k}}": v.numpy() for i, s in opt.state_dict()["state"].items() for k, v in s.items()}})
        assert opt.param_groups[0]["lr"] == 0.05 and int(model[1].num_batches_tracked.item()) == 3
        np.savez({str(tmp_path / "got.npz")!r}, **got)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    expected, got = np.load(tmp_path / "expected.npz"), np.load(tmp_path / "got.npz")
    assert set(expected.files) == set(got.files) and len(got.files) == 1 + 3 * len(list(model.parameters()))
    for k in expected.files:
        assert expected[k].dtype == got[k].dtype and expected[k].tobytes() == got[k].tobytes(), k


@settings(max_examples=40, deadline=None)
@given(pos=st.integers(0, 10 ** 6), byte=st.integers(0, 255))
def test_a_corrupted_header_byte_is_rejected_or_harmless(pos, byte):
    """Any single byte of the length field or JSON header overwritten: ember.load either raises a
    ValueError naming the file, or (where the change keeps the header meaningful, e.g. a digit of a
    number in the metadata) loads; it never fails with some other exception."""
    buf = io.BytesIO()
    ember.save({"a": ember.arange(10, dtype=ember.float32), "b": {"c": ember.ones(3, dtype=ember.int16)},
                "meta": [1.5, "x"]}, buf)
    data = bytearray(buf.getvalue())
    n = struct.unpack("<Q", bytes(data[:8]))[0]
    pos %= 8 + n
    data[pos] = byte
    try:
        back = ember.load(io.BytesIO(bytes(data)))
    except ValueError as e:
        assert "ember.load" in str(e)
    else:
        assert isinstance(back, dict)
