"""ember.save / ember.load: checkpoints as safetensors files; loading never runs code.

The file is the safetensors layout: an 8-byte little-endian header length N, N bytes of JSON
(`{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}`, space-padded to a
multiple of 8), then the raw little-endian tensor bytes. Any safetensors reader opens an ember
checkpoint, and ember loads any safetensors file (returning `{name: tensor}`).

Objects other than a flat `{name: tensor}` dict (an optimizer's state_dict: nested dicts with int
keys, lists, tuples, numbers, strings, None) are flattened: each tensor is stored under its key
path joined by '.', and the structure with the non-tensor values is kept as JSON in the
`__metadata__` field under "ember", with every container tagged by its type, so `load` rebuilds
the same object. Nothing is unpickled or evaluated: a malformed file raises `ValueError` saying
what is wrong (too short, bad header length, bad JSON, unknown dtype, offsets out of range or
overlapping, size not matching dtype and shape).

    ember.save(model.state_dict(), "model.safetensors")
    model.load_state_dict(ember.load("model.safetensors"))
"""
from __future__ import annotations

import collections
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np

from ember.compiler import dtypes as D

from .tensor import Tensor, realize

__all__ = ["save", "load"]

_CODES = {D.bool_: "BOOL", D.uint8: "U8", D.int8: "I8", D.int16: "I16", D.int32: "I32", D.int64: "I64",
          D.uint32: "U32", D.uint64: "U64", D.float16: "F16", D.bfloat16: "BF16", D.float32: "F32",
          D.float64: "F64"}
_FROM_CODE = {v: k for k, v in _CODES.items()}
_MAX_HEADER = 100_000_000   # as the safetensors library: a larger header is not a real checkpoint
_FORMAT_KEY = "ember"


# ---- save -------------------------------------------------------------------------------------

class _Flattener:
    """Walks an object: tensors (and numpy arrays) go to `tensors`, the rest becomes a JSON skeleton."""

    def __init__(self):
        self.tensors: dict[str, object] = {}
        self._by_id: dict[int, str] = {}

    def name_for(self, path: list[str]) -> str:
        base = ".".join(path) or "tensor"
        name, k = base, 1
        while name in self.tensors or name == "__metadata__":
            k += 1
            name = f"{base}#{k}"
        return name

    def walk(self, obj, path: list[str]):
        if isinstance(obj, (Tensor, np.ndarray)):
            tag = "__tensor__" if isinstance(obj, Tensor) else "__ndarray__"
            name = self._by_id.get(id(obj))
            if name is None:  # one object saved twice (tied weights) is stored once
                name = self._by_id[id(obj)] = self.name_for(path)
                self.tensors[name] = obj
            return {tag: name}
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, (int, np.integer)):
            return int(obj)
        if isinstance(obj, (float, np.floating)):
            v = float(obj)
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(obj, dict):
            tag = "__odict__" if isinstance(obj, collections.OrderedDict) else "__dict__"
            return {tag: [[self.walk(k, path + ["key"]), self.walk(v, path + [str(k)])] for k, v in obj.items()]}
        if isinstance(obj, (list, tuple)):
            tag = "__tuple__" if isinstance(obj, tuple) else "__list__"
            return {tag: [self.walk(v, path + [str(i)]) for i, v in enumerate(obj)]}
        raise TypeError(f"ember.save cannot store an object of type {type(obj).__name__} (at "
                        f"'{'.'.join(path) or '<root>'}'): checkpoints hold tensors, numpy arrays, numbers, strings, "
                        "None, and dicts/lists/tuples of those")


def _le_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr)
    if sys.byteorder == "big" and arr.dtype.itemsize > 1:
        arr = arr.view(f"u{arr.dtype.itemsize}").byteswap()
    return arr.tobytes()


def _is_flat_state_dict(obj) -> bool:
    return type(obj) is dict and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())


def save(obj, f, *, metadata: dict[str, str] | None = None) -> None:
    """Write `obj` (a state dict, an optimizer state_dict, or any nest of dicts/lists/tuples of
    tensors, numpy arrays, numbers, strings, None) to the path or binary file `f`.

    `metadata` adds string entries to the safetensors `__metadata__`.

    >>> ember.save({"w": ember.ones(2, 3)}, "ckpt.safetensors")
    """
    flat = _Flattener()
    skeleton = flat.walk(obj, [])
    values = list(flat.tensors.values())
    realize(*[t for t in values if isinstance(t, Tensor)])   # all lazy values computed together
    arrays = {}
    for name, t in flat.tensors.items():
        arr = t.detach()._value() if isinstance(t, Tensor) else np.asarray(t)
        if D.from_numpy(arr.dtype) not in _CODES:
            raise TypeError(f"ember.save: dtype {arr.dtype} of '{name}' has no safetensors code")
        arrays[name] = arr
    header: dict = {}
    offset = 0
    # larger items first keeps every tensor aligned to its item size (as the safetensors writer does)
    order = sorted(arrays, key=lambda n: -arrays[n].dtype.itemsize)
    for name in order:
        arr = arrays[name]
        header[name] = {"dtype": _CODES[D.from_numpy(arr.dtype)], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    meta = {"format": "pt"}
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata must map str to str")
        if _FORMAT_KEY in metadata:
            raise ValueError(f"metadata key {_FORMAT_KEY!r} is reserved for the structure of the saved object")
        meta.update(metadata)
    if not _is_flat_state_dict(obj):
        meta[_FORMAT_KEY] = json.dumps(skeleton, separators=(",", ":"))
    ordered = {"__metadata__": meta, **{n: header[n] for n in arrays}}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    chunks = [struct.pack("<Q", len(text)), text] + [_le_bytes(arrays[n]) for n in order]
    _write(f, chunks)


def _write(f, chunks: list[bytes]) -> None:
    if hasattr(f, "write"):
        for c in chunks:
            f.write(c)
        return
    path = os.fspath(f)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".ember-save-")
    try:
        with os.fdopen(fd, "wb") as out:   # written whole, then renamed: a crash never leaves half a file
            for c in chunks:
                out.write(c)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)      # the permissions open() would have given (mkstemp uses 0600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---- load -------------------------------------------------------------------------------------

class _Corrupt(ValueError):
    pass


def _read(f) -> bytes:
    if hasattr(f, "read"):
        data = f.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("ember.load needs a file opened in binary mode")
        return bytes(data)
    with open(os.fspath(f), "rb") as fh:
        return fh.read()


def _parse_header(data: bytes, where: str) -> tuple[dict, dict, memoryview]:
    if len(data) < 8:
        raise _Corrupt(f"{where}: not a safetensors file: {len(data)} bytes is too short to hold the 8-byte "
                       "header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER:
        raise _Corrupt(f"{where}: bad header length {n} (more than {_MAX_HEADER} bytes): not a safetensors file")
    if 8 + n > len(data):
        raise _Corrupt(f"{where}: bad header length {n}: the file has only {len(data) - 8} bytes after the length "
                       "field (truncated file?)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Corrupt(f"{where}: the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise _Corrupt(f"{where}: the header must be a JSON object, got {type(header).__name__}")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise _Corrupt(f"{where}: __metadata__ must map strings to strings")
    return header, meta, memoryview(data)[8 + n:]


def _tensors(header: dict, body: memoryview, where: str) -> dict[str, np.ndarray]:
    spans = []
    out = {}
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"} or len(info) != 3:
            raise _Corrupt(f"{where}: entry '{name}' must have exactly dtype, shape and data_offsets")
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if code not in _FROM_CODE:
            raise _Corrupt(f"{where}: tensor '{name}' has an unknown or unsupported dtype {code!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                  for s in shape):
            raise _Corrupt(f"{where}: tensor '{name}' has an invalid shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and not isinstance(o, bool)
                                                                 for o in offs)):
            raise _Corrupt(f"{where}: tensor '{name}' has invalid data_offsets {offs!r}")
        begin, end = offs
        if not 0 <= begin <= end or end > len(body):
            raise _Corrupt(f"{where}: tensor '{name}' has offsets out of range: [{begin}, {end}] but the data "
                           f"section has {len(body)} bytes (truncated file?)")
        dt = _FROM_CODE[code]
        need = math.prod(shape) * dt.itemsize
        if end - begin != need:
            raise _Corrupt(f"{where}: dtype/shape mismatch for tensor '{name}': {code} of shape {shape} needs {need} "
                           f"bytes but its offsets span {end - begin}")
        spans.append((begin, end, name))
        arr = np.frombuffer(body, dtype=np.uint8, count=end - begin, offset=begin)
        if dt is D.bool_:
            arr = arr != 0   # any nonzero byte is True: never an invalid bool in memory
        elif dt.itemsize == 1:
            arr = arr.view(dt.np).copy()
        else:  # little-endian on disk -> native order, as a fresh array the tensor can own
            arr = arr.view(f"<u{dt.itemsize}").astype(f"=u{dt.itemsize}").view(dt.np)
        out[name] = arr.reshape(shape)
    pos = 0
    for begin, end, name in sorted(spans):
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a gap at byte {pos}"
            raise _Corrupt(f"{where}: tensor '{name}' at offsets [{begin}, {end}] {what}")
        pos = end
    if pos != len(body):
        raise _Corrupt(f"{where}: {len(body) - pos} bytes of data after the last tensor are not described by the "
                       "header")
    return out


def _rebuild(node, arrays: dict, make, made: dict, where: str):
    """The object the skeleton describes; `made` keeps one tensor per stored name (shared stays shared)."""
    if not isinstance(node, dict):
        if isinstance(node, list):
            raise _Corrupt(f"{where}: malformed ember metadata (bare list)")
        return node
    if len(node) != 1:
        raise _Corrupt(f"{where}: malformed ember metadata (object with keys {sorted(node)})")
    (tag, val), = node.items()
    if tag in ("__tensor__", "__ndarray__"):
        if not isinstance(val, str) or val not in arrays:
            raise _Corrupt(f"{where}: the metadata refers to tensor {val!r}, which the file does not contain")
        if tag == "__ndarray__":
            return arrays[val]
        if val not in made:
            made[val] = make(arrays[val])
        return made[val]
    if tag == "__float__":
        return float(val)
    if not isinstance(val, list):
        raise _Corrupt(f"{where}: malformed ember metadata ({tag} needs a list)")
    if tag in ("__dict__", "__odict__"):
        items = []
        for kv in val:
            if not isinstance(kv, list) or len(kv) != 2:
                raise _Corrupt(f"{where}: malformed ember metadata (dict item {kv!r})")
            k = _rebuild(kv[0], arrays, make, made, where)
            if isinstance(k, (list, dict)):
                raise _Corrupt(f"{where}: malformed ember metadata (unhashable key)")
            items.append((k, _rebuild(kv[1], arrays, make, made, where)))
        return collections.OrderedDict(items) if tag == "__odict__" else dict(items)
    if tag in ("__list__", "__tuple__"):
        items = [_rebuild(v, arrays, make, made, where) for v in val]
        return tuple(items) if tag == "__tuple__" else items
    raise _Corrupt(f"{where}: malformed ember metadata (unknown tag {tag!r})")


def load(f, map_location=None, *, weights_only: bool = True, mmap=None):
    """Read a checkpoint written by `ember.save` (the same object back) or any safetensors file
    (a `{name: tensor}` dict in the file's order). Never executes code from the file.

    `map_location` may be None or 'cpu'; `weights_only` and `mmap` are accepted for PyTorch
    compatibility (loading is always weights-only).

    >>> model.load_state_dict(ember.load("ckpt.safetensors"))
    """
    from .creation import from_numpy
    from .tensor import _canon_device
    device = _canon_device(map_location if isinstance(map_location, (str, type(None))) else str(map_location))
    where = f"ember.load({f!r})" if not hasattr(f, "read") else "ember.load(<file>)"
    data = _read(f)
    header, meta, body = _parse_header(data, where)
    arrays = _tensors(header, body, where)

    def make(arr):
        t = from_numpy(arr)
        return t if device == "cpu" else t.to(device)
    skeleton = meta.get(_FORMAT_KEY)
    if skeleton is None:
        return {name: make(arr) for name, arr in arrays.items()}
    try:
        skeleton = json.loads(skeleton)
    except json.JSONDecodeError as e:
        raise _Corrupt(f"{where}: the ember metadata is not valid JSON ({e})") from None
    return _rebuild(skeleton, arrays, make, {}, where)
