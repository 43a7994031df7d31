"""Plans on disk: a fresh process running the same program loads its plans instead of building
them, gets the same numbers, and a damaged entry is reported and rebuilt, never used."""
import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = """
import json, sys
import numpy as np
import ember
import importlib
realize = importlib.import_module("ember.compiler.realize")
rng = np.random.default_rng(0)
a = ember.tensor(rng.standard_normal((37, 19)).astype(np.float32))
b = ember.tensor(rng.standard_normal((19, 23)).astype(np.float32))
y = ((a @ b).relu() + 1).log().softmax(-1).sum(0)
out = y.numpy()
print(json.dumps({"y": out.tolist(), "from_disk": [p.from_disk for p in realize._plans.values()]}))
"""


def _run(cache_dir) -> dict:
    r = subprocess.run([sys.executable, "-W", "always", "-c", SCRIPT], capture_output=True, text=True,
                       env={**os.environ, "EMBER_CACHE_DIR": str(cache_dir), "EMBER_DEBUG": "0"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["stderr"] = r.stderr
    return out


def _reference():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 19)).astype(np.float64)
    b = rng.standard_normal((19, 23)).astype(np.float64)
    z = np.log(np.maximum(a @ b, 0) + 1)
    e = np.exp(z - z.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).sum(0)


def test_a_second_process_loads_the_plan_and_computes_the_same(tmp_path):
    first, second = _run(tmp_path), _run(tmp_path)
    assert first["from_disk"] and not any(first["from_disk"])
    assert second["from_disk"] and all(second["from_disk"])
    np.testing.assert_allclose(first["y"], _reference(), rtol=1e-5)
    assert second["y"] == first["y"]


def test_a_corrupt_plan_or_a_missing_kernel_is_rebuilt(tmp_path):
    _run(tmp_path)
    [plan] = list(tmp_path.glob("*.plan"))
    data = bytearray(plan.read_bytes())
    data[-5] ^= 0xFF                     # one flipped byte in the payload: the checksum catches it
    plan.write_bytes(bytes(data))
    out = _run(tmp_path)
    assert "corrupt cache entry" in out["stderr"] and not any(out["from_disk"])
    np.testing.assert_allclose(out["y"], _reference(), rtol=1e-5)
    for obj in tmp_path.glob("*.o"):     # the plan is intact now, but its kernels are gone
        obj.unlink()
    out = _run(tmp_path)
    assert not any(out["from_disk"])
    np.testing.assert_allclose(out["y"], _reference(), rtol=1e-5)
