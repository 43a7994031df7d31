"""The "cuda" device without a GPU.

- Without a GPU and without EMBER_TRITON_INTERPRET, "cuda" fails with a clear error and nothing
  else changes.
- With EMBER_TRITON_INTERPRET=1, "cuda" is served by Triton's interpreter on the CPU, running the
  same generated Triton kernels a GPU would. Those tests live in cuda_interp_cases.py and run in a
  subprocess started by `test_interpreter_suite`, since the interpreter must be chosen before
  triton loads.
References are numpy / torch (CPU), never ember's own output.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

INTERP = os.environ.get("EMBER_TRITON_INTERPRET") == "1"


# ---- without the interpreter ------------------------------------------------------------------

def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


@pytest.mark.skipif(INTERP, reason="checks the plain (no-GPU) configuration")
def test_without_a_gpu_cuda_errors_clearly_and_imports_nothing():
    p = _run("import sys, ember\n"
             "assert 'triton' not in sys.modules and 'torch' not in sys.modules, 'imported at import ember'\n"
             "print(ember.cuda.is_available(), ember.cuda.device_count())\n"
             "for make in (lambda: ember.zeros(2, device='cuda'), lambda: ember.ones(2).cuda(),\n"
             "             lambda: ember.tensor([1.0], device='cuda:0'), lambda: ember.nn.Linear(2, 2).to('cuda')):\n"
             "    try:\n"
             "        make()\n"
             "    except RuntimeError as e:\n"
             "        print('ERR', e)\n"
             "assert 'torch' not in sys.modules\n"
             "print((ember.ones(3) * 2).numpy())\n",
             EMBER_TRITON_INTERPRET="0", EMBER_BACKEND="")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    if lines[0] == "True 1":
        pytest.skip("this machine has a usable GPU")
    assert lines[0] == "False 0"
    errs = [ln for ln in lines if ln.startswith("ERR")]
    assert len(errs) == 4
    for e in errs:
        assert "device 'cuda' is not available" in e and "EMBER_TRITON_INTERPRET=1" in e
        assert "cuda-bindings" in e or "GPU" in e   # names what is missing
    assert lines[-1] == "[2. 2. 2.]"


@pytest.mark.skipif(INTERP, reason="this is the driver of the interpreter run")
def test_interpreter_suite():
    """Every test of cuda_interp_cases.py, in a subprocess with EMBER_TRITON_INTERPRET=1."""
    pytest.importorskip("triton")
    cases = Path(__file__).with_name("cuda_interp_cases.py")
    p = subprocess.run([sys.executable, "-m", "pytest", "-x", "-p", "no:cacheprovider", "-p", "no:warnings", str(cases)],
                       capture_output=True, text=True, timeout=600, cwd=cases.parent.parent,
                       env={**os.environ, "EMBER_TRITON_INTERPRET": "1"})
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert " passed" in p.stdout and "failed" not in p.stdout


