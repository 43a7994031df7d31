"""ember.distributed, DistributedDataParallel and DistributedSampler.

The multi-process tests launch THIS file under `mpiexec -n 2` on loopback (`python
tests/test_distributed.py SCENARIO OUTDIR`): each rank runs a scenario and writes what it saw into
OUTDIR; the test compares with references computed here (numpy for collectives, torch and a
single-process ember run for DDP). Inputs are made by `_input`, the same function on both sides.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

MPIEXEC = Path(sys.executable).parent / "mpiexec"
ROOT = Path(__file__).resolve().parents[1]

# ---- shared between the ranks and the references -------------------------------------------------

DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "int32", "int64", "uint8", "bool"]
SHAPES = [(), (0,), (7,), (3, 4), (2, 3, 5)]


def _np_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _input(case: int, rank: int, shape, dtype: str) -> np.ndarray:
    rng = np.random.default_rng(1000 * case + rank)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype in ("int8", "uint8", "int32", "int64"):
        lo, hi = (-100, 100) if dtype != "uint8" else (0, 200)   # int8/uint8 sums overflow: wrap-around
        return rng.integers(lo, hi, shape).astype(dtype)
    return (rng.standard_normal(shape) * 4).astype(_np_dtype(dtype))


def _reduce_cases():
    """(case id, shape, dtype, op) for all_reduce: every dtype, several shapes, each valid op."""
    cases, k = [], 0
    for di, dt in enumerate(DTYPES):
        ops = ["SUM", "MAX", "MIN"]
        ops += ["AVG", "PRODUCT"] if dt.startswith(("float", "bfloat")) else ["BXOR", "BAND", "BOR"]
        for oi, op in enumerate(ops):
            shape = SHAPES[(di + oi) % len(SHAPES)]
            cases.append((k, shape, dt, op))
            k += 1
    return cases


def _np_reduce(a: np.ndarray, b: np.ndarray, op: str, dtype: str) -> np.ndarray:
    half = dtype in ("float16", "bfloat16")
    x, y = (a.astype(np.float32), b.astype(np.float32)) if half else (a, b)
    if dtype == "bool":
        out = {"SUM": x | y, "MAX": x | y, "BOR": x | y, "MIN": x & y, "BAND": x & y, "BXOR": x ^ y}[op]
    else:
        with np.errstate(over="ignore"):
            out = {"SUM": lambda: x + y, "AVG": lambda: (x + y) / 2, "PRODUCT": lambda: x * y,
                   "MAX": lambda: np.maximum(x, y), "MIN": lambda: np.minimum(x, y), "BAND": lambda: x & y,
                   "BOR": lambda: x | y, "BXOR": lambda: x ^ y}[op]()
    return np.asarray(out).astype(_np_dtype(dtype))


def _mlp_data(steps: int, batch: int):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((steps, 2 * batch, 10)).astype(np.float32)
    y = rng.integers(0, 4, (steps, 2 * batch))
    return x, y


# ---- the worker side (runs under mpiexec) ---------------------------------------------------------

def _worker(scenario: str, out: Path) -> None:
    import ember
    import ember.distributed as dist
    if scenario == "main":
        _scenario_main(ember, dist, out)
    elif scenario == "errors":
        _scenario_errors(ember, dist, out)
    elif scenario == "hang":
        dist.init_process_group("mpi", timeout=2.0)
        if dist.get_rank() == 1:
            time.sleep(60)       # a rank stuck outside ember.distributed
        try:
            dist.all_reduce(ember.ones(3))
        except dist.DistBackendError as e:
            (out / "hang.txt").write_text(str(e))
            raise


def _scenario_main(ember, dist, out: Path) -> None:
    from ember import nn
    from ember.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    res: dict = {"rank": rank, "world": world, "backend": dist.get_backend()}
    # collectives
    for k, shape, dt, op in _reduce_cases():
        t = ember.tensor(_input(k, rank, shape, dt))
        dist.all_reduce(t, op=getattr(dist.ReduceOp, op))
        res[f"ar{k}"] = _save(t)
    base = ember.tensor(_input(100, rank, (4, 6), "float32"))
    t = base.t()                                  # a transposed view: realized, then reduced
    work = dist.all_reduce(t, async_op=True)
    work.wait()
    res["ar_view"], res["ar_view_base"] = _save(t), _save(base)   # base must keep its own value
    for k, dt in enumerate(["float32", "bfloat16", "int64", "bool"]):
        b = ember.tensor(_input(200 + k, rank, (3, 2), dt))
        dist.broadcast(b, src=1)
        res[f"bc{k}"] = _save(b)
        lst = [ember.zeros(2, 3, dtype=b.dtype) for _ in range(world)]
        dist.all_gather(lst, ember.tensor(_input(300 + k, rank, (2, 3), dt)))
        res[f"ag{k}"] = [_save(x) for x in lst]
        big = ember.zeros(world * 2, 3, dtype=b.dtype)
        dist.all_gather_into_tensor(big, ember.tensor(_input(300 + k, rank, (2, 3), dt)))
        res[f"agt{k}"] = _save(big)
    for k, dt in enumerate(["float32", "float16", "int32"]):
        o = ember.zeros(5, dtype=getattr(ember, dt))
        dist.reduce_scatter(o, [ember.tensor(_input(400 + 10 * k + i, rank, (5,), dt)) for i in range(world)])
        res[f"rs{k}"] = _save(o)
        o2 = ember.zeros(2, 5, dtype=getattr(ember, dt))
        dist.reduce_scatter_tensor(o2, ember.tensor(_input(500 + k, rank, (2 * world, 5), dt)),
                                   op=dist.ReduceOp.MAX)
        res[f"rst{k}"] = _save(o2)
    dist.barrier()
    # DDP: ranks start from different weights; DDP broadcasts rank 0's
    for name, opt_name, cap, accum in (("adam", "Adam", None, 1), ("sgd_accum", "SGD", 0.0005, 2)):
        ember.manual_seed(rank)
        model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 4))
        res[f"{name}_init"] = {k: _save(v) for k, v in model.state_dict().items()}
        ddp = DDP(model, bucket_cap_mb=cap)
        res[f"{name}_buckets"] = len(ddp._reducer.buckets)
        res["keys"] = list(ddp.state_dict())
        opt = getattr(ember.optim, opt_name)(ddp.parameters(), lr=0.05)
        x, y = _mlp_data(6, 4)
        for s in range(0, 6, accum):
            opt.zero_grad()
            for m in range(accum):
                xb, yb = x[s + m, rank * 4:(rank + 1) * 4], y[s + m, rank * 4:(rank + 1) * 4]
                ctx = ddp.no_sync() if m < accum - 1 else _null()
                with ctx:
                    nn.functional.cross_entropy(ddp(ember.tensor(xb)), ember.tensor(yb)).backward()
            opt.step()
        res[f"{name}_final"] = {k: _save(v) for k, v in model.state_dict().items()}
    # the Adam run again, its step under ember.compile: each bucket's all-reduce is a host step of
    # the captured program (a tiny bucket cap: several), replayed from the third step on
    ember.manual_seed(rank)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 4))
    ddp = DDP(model, bucket_cap_mb=0.0005)
    opt = ember.optim.Adam(ddp.parameters(), lr=0.05)

    @ember.compile
    def step(xb, yb):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(ddp(xb), yb)
        loss.backward()
        opt.step()
        return loss
    x, y = _mlp_data(6, 4)
    res["compiled_losses"] = [step(ember.tensor(x[s, rank * 4:(rank + 1) * 4]),
                                   ember.tensor(y[s, rank * 4:(rank + 1) * 4])).item() for s in range(6)]
    res["compiled_final"] = {k: _save(v) for k, v in model.state_dict().items()}
    res["compiled_info"] = step.cache_info()
    res["compiled_buckets"] = len(ddp._reducer.buckets)
    # a bare collective in a compiled function, its input changing every call
    f = ember.compile(lambda t: (lambda u: (dist.all_reduce(u), u * 1)[1])(t * 2))
    res["compiled_ar"] = [_save(f(ember.tensor(_input(600 + i, rank, (3,), "float32")))) for i in range(4)]
    # find_unused_parameters: rank 1 never uses `head2`
    ember.manual_seed(0)
    two = nn.ModuleDict({"body": nn.Linear(3, 3), "head2": nn.Linear(3, 1)})

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = two

        def forward(self, x, use2):
            h = self.m["body"](x)
            return h.sum() + (self.m["head2"](h).sum() if use2 else 0)
    ddp = DDP(Net(), find_unused_parameters=True)
    ddp(ember.ones(2, 3) * (rank + 1), use2=(rank == 0)).backward()
    res["unused_grads"] = {n: _save(p.grad) for n, p in ddp.named_parameters()}
    res["unused_init"] = {n: _save(p.detach()) for n, p in ddp.named_parameters()}
    (out / f"main{rank}.json").write_text(json.dumps(res))
    dist.destroy_process_group()


def _scenario_errors(ember, dist, out: Path) -> None:
    from ember import nn
    from ember.nn.parallel import DistributedDataParallel as DDP
    seen = {}

    def expect(name, fn):
        try:
            fn()
            seen[name] = "no error"
        except Exception as e:    # noqa: BLE001 - the test checks type and message
            seen[name] = f"{type(e).__name__}: {e}"
    expect("gloo", lambda: dist.init_process_group("gloo"))
    expect("size", lambda: dist.init_process_group("mpi", world_size=3))
    expect("uninit", lambda: dist.get_rank())
    dist.init_process_group("mpi", timeout=20)
    rank = dist.get_rank()
    expect("twice", lambda: dist.init_process_group("mpi"))
    expect("list_len", lambda: dist.all_gather([ember.zeros(2)], ember.zeros(2)))
    expect("list_shape", lambda: dist.all_gather([ember.zeros(2), ember.zeros(3)], ember.zeros(2)))
    expect("avg_int", lambda: dist.all_reduce(ember.ones(2, dtype=ember.int32), op=dist.ReduceOp.AVG))
    expect("band_float", lambda: dist.all_reduce(ember.ones(2), op=dist.ReduceOp.BAND))
    expect("src", lambda: dist.broadcast(ember.ones(2), src=5))
    expect("gather_shape", lambda: dist.all_gather_into_tensor(ember.zeros(3, 2), ember.zeros(2, 2)))
    width = 4 if rank == 0 else 5
    expect("model", lambda: DDP(nn.Linear(3, width)))
    unused = DDP(nn.Linear(3, 3), find_unused_parameters=True)
    expect("compile", lambda: ember.compile(lambda x: unused(x).sum().backward())(ember.ones(2, 3)))
    dist.barrier()
    (out / f"errors{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _save(t) -> dict:
    a = t.detach().numpy() if hasattr(t, "detach") else t.numpy()
    dt = str(t.dtype.name)
    if dt == "bfloat16":
        a = a.astype(np.float32)
    return {"dtype": dt, "shape": list(a.shape), "data": a.astype(object if a.dtype == bool else a.dtype).tolist()}


# ---- the pytest side ------------------------------------------------------------------------------

def _have_mpi() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return MPIEXEC.exists()


needs_mpi = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and mpiexec (pip install 'ember[distributed]')")


def _launch(scenario: str, out: Path, timeout: float = 120, n: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "examples"))
    return subprocess.run([str(MPIEXEC), "-n", str(n), sys.executable, __file__, scenario, str(out)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def _load(d: dict) -> np.ndarray:
    return np.array(d["data"], dtype=np.float32 if d["dtype"] == "bfloat16" else d["dtype"]).reshape(d["shape"])


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist_main")
    proc = _launch("main", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads((out / f"main{r}.json").read_text()) for r in range(2)]


@needs_mpi
def test_world(main_run):
    assert [(r["rank"], r["world"], r["backend"]) for r in main_run] == [(0, 2, "mpi"), (1, 2, "mpi")]


@needs_mpi
def test_all_reduce_matches_numpy(main_run):
    for k, shape, dt, op in _reduce_cases():
        want = _np_reduce(_input(k, 0, shape, dt), _input(k, 1, shape, dt), op, dt)
        for r in range(2):
            got = main_run[r][f"ar{k}"]
            assert got["dtype"] == dt and tuple(got["shape"]) == shape, (k, dt, op, got["dtype"], got["shape"])
            np.testing.assert_array_equal(_load(got), want.astype(np.float32) if dt == "bfloat16" else want,
                                          err_msg=f"all_reduce {op} {dt} {shape} rank {r}")


@needs_mpi
def test_all_reduce_view_and_aliasing(main_run):
    base = [_input(100, r, (4, 6), "float32") for r in range(2)]
    for r in range(2):
        np.testing.assert_array_equal(_load(main_run[r]["ar_view"]), (base[0] + base[1]).T)
        np.testing.assert_array_equal(_load(main_run[r]["ar_view_base"]), base[r])


@needs_mpi
def test_broadcast_and_gathers(main_run):
    for k, dt in enumerate(["float32", "bfloat16", "int64", "bool"]):
        f = (lambda a: a.astype(np.float32)) if dt == "bfloat16" else (lambda a: a)
        src = f(_input(200 + k, 1, (3, 2), dt))
        parts = [f(_input(300 + k, r, (2, 3), dt)) for r in range(2)]
        for r in range(2):
            np.testing.assert_array_equal(_load(main_run[r][f"bc{k}"]), src)
            for i in range(2):
                np.testing.assert_array_equal(_load(main_run[r][f"ag{k}"][i]), parts[i])
            np.testing.assert_array_equal(_load(main_run[r][f"agt{k}"]), np.concatenate(parts))


@needs_mpi
def test_reduce_scatter(main_run):
    for k, dt in enumerate(["float32", "float16", "int32"]):
        for r in range(2):
            want = _np_reduce(_input(400 + 10 * k + r, 0, (5,), dt), _input(400 + 10 * k + r, 1, (5,), dt), "SUM", dt)
            np.testing.assert_array_equal(_load(main_run[r][f"rs{k}"]), want)
            full = _np_reduce(_input(500 + k, 0, (4, 5), dt), _input(500 + k, 1, (4, 5), dt), "MAX", dt)
            np.testing.assert_array_equal(_load(main_run[r][f"rst{k}"]), full[2 * r:2 * r + 2])


def _torch_train(init: dict, opt_name: str, accum: int):
    """Single-process PyTorch training on the union of both ranks' batches (the reference)."""
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))
    model.load_state_dict({k: torch.tensor(_load(v)) for k, v in init.items()})
    opt = getattr(torch.optim, opt_name)(model.parameters(), lr=0.05)
    x, y = _mlp_data(6, 4)
    for s in range(0, 6, accum):
        opt.zero_grad()
        for m in range(accum):
            torch.nn.functional.cross_entropy(model(torch.tensor(x[s + m])), torch.tensor(y[s + m])).backward()
        opt.step()
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _ember_train(init: dict, opt_name: str, accum: int):
    """The same single-process training with ember."""
    import ember
    from ember import nn
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 4))
    model.load_state_dict({k: _load(v) for k, v in init.items()})
    opt = getattr(ember.optim, opt_name)(model.parameters(), lr=0.05)
    x, y = _mlp_data(6, 4)
    for s in range(0, 6, accum):
        opt.zero_grad()
        for m in range(accum):
            nn.functional.cross_entropy(model(ember.tensor(x[s + m])), ember.tensor(y[s + m])).backward()
        opt.step()
    return {k: v.numpy() for k, v in model.state_dict().items()}


@needs_mpi
@pytest.mark.parametrize("name,opt_name,accum", [("adam", "Adam", 1), ("sgd_accum", "SGD", 2)])
def test_ddp_equals_single_process_on_the_union(main_run, name, opt_name, accum):
    r0, r1 = main_run
    assert r0[f"{name}_init"]["0.weight"] != r1[f"{name}_init"]["0.weight"]      # different seeds per rank
    if name == "sgd_accum":
        assert r0["sgd_accum_buckets"] > 1                                       # a tiny bucket cap splits
    for k in r0[f"{name}_final"]:
        np.testing.assert_array_equal(_load(r0[f"{name}_final"][k]), _load(r1[f"{name}_final"][k]))
    init = r0[f"{name}_init"]
    for ref in (_torch_train(init, opt_name, accum), _ember_train(init, opt_name, accum)):
        for k, v in ref.items():
            np.testing.assert_allclose(_load(r0[f"{name}_final"][k]), v, rtol=2e-5, atol=2e-6, err_msg=k)
    assert r0["keys"] == ["module.0.weight", "module.0.bias", "module.2.weight", "module.2.bias"]


@needs_mpi
def test_ddp_step_under_compile_equals_eager_ddp(main_run):
    """A compiled DDP step (forward + backward, the bucket all-reduces as host steps, the update)
    trains exactly as the eager DDP step, replaying from the third call; a compiled function with
    a bare all_reduce gives the sum over ranks for every new input."""
    r0, r1 = main_run
    assert r0["compiled_buckets"] > 1
    assert r0["compiled_info"]["hits"] >= 3 and r0["compiled_info"]["variants"] == 1
    for k in r0["compiled_final"]:
        np.testing.assert_array_equal(_load(r0["compiled_final"][k]), _load(r1["compiled_final"][k]))
        np.testing.assert_allclose(_load(r0["compiled_final"][k]), _load(r0["adam_final"][k]), rtol=1e-5, atol=1e-6,
                                   err_msg=k)
    for i in range(4):
        want = 2 * (_input(600 + i, 0, (3,), "float32") + _input(600 + i, 1, (3,), "float32"))
        for r in (r0, r1):
            np.testing.assert_allclose(_load(r["compiled_ar"][i]), want, rtol=1e-6)


@needs_mpi
def test_ddp_find_unused_parameters(main_run):
    import torch
    init = {k: torch.tensor(_load(v), requires_grad=True) for k, v in main_run[0]["unused_init"].items()}
    grads = []
    for rank in range(2):
        for p in init.values():
            p.grad = None
        x = torch.ones(2, 3) * (rank + 1)
        h = x @ init["module.m.body.weight"].T + init["module.m.body.bias"]
        out = h.sum() + ((h @ init["module.m.head2.weight"].T + init["module.m.head2.bias"]).sum() if rank == 0 else 0)
        out.backward()
        grads.append({k: (p.grad.numpy() if p.grad is not None else np.zeros(p.shape, np.float32))
                      for k, p in init.items()})
    for r in range(2):
        for k, g in main_run[r]["unused_grads"].items():
            np.testing.assert_allclose(_load(g), (grads[0][k] + grads[1][k]) / 2, rtol=1e-6, atol=1e-6, err_msg=k)


@needs_mpi
def test_error_messages(tmp_path):
    proc = _launch("errors", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for r in range(2):
        seen = json.loads((tmp_path / f"errors{r}.json").read_text())
        assert seen["gloo"].startswith("ValueError") and "'mpi'" in seen["gloo"]
        assert seen["size"].startswith("DistError") and "world size mismatch" in seen["size"] and "3" in seen["size"]
        assert seen["uninit"].startswith("ValueError") and "init_process_group" in seen["uninit"]
        assert seen["twice"] == "ValueError: trying to initialize the default process group twice!"
        assert seen["list_len"].startswith("ValueError") and "world size 2" in seen["list_len"]
        assert seen["list_shape"].startswith("ShapeError") and "[3]" in seen["list_shape"]
        assert seen["avg_int"].startswith("RuntimeError") and "int32" in seen["avg_int"]
        assert seen["band_float"].startswith("RuntimeError")
        assert seen["src"].startswith("ValueError") and "5" in seen["src"]
        assert seen["gather_shape"].startswith("ShapeError") and "[3, 2]" in seen["gather_shape"]
        assert seen["model"].startswith("RuntimeError") and "differs between ranks" in seen["model"]
        if "compile" in seen:
            assert seen["compile"].startswith("TraceError") and "ember.compile" in seen["compile"]


@needs_mpi
def test_hung_rank_times_out_with_its_name(tmp_path):
    start = time.monotonic()
    proc = _launch("hang", tmp_path, timeout=60)
    elapsed = time.monotonic() - start
    msg = (tmp_path / "hang.txt").read_text()
    assert "all_reduce #1 did not complete within 2 s on rank 0" in msg and "rank 1 did not respond" in msg, msg
    assert proc.returncode != 0 and elapsed < 30     # rank 0 aborted the job instead of hanging with rank 1


@needs_mpi
def test_world_size_mismatch_from_launcher_env(tmp_path):
    env = dict(os.environ, RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")
    code = "import ember.distributed as d\ntry:\n d.init_process_group('mpi')\nexcept d.DistError as e:\n print(e)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert "world size mismatch: the launcher's environment (torchrun) says 2" in proc.stdout, proc.stdout + proc.stderr
    assert "mpiexec -n N" in proc.stdout


def test_missing_mpi4py_names_the_package(monkeypatch):
    import ember.distributed as dist
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(dist.DistError, match=r"pip install mpi4py mpich"):
        dist.init_process_group("mpi")
    assert not dist.is_initialized()


def test_nccl_without_gpu_is_a_clear_error():
    import ember.distributed as dist
    with pytest.raises(dist.DistError, match=r"nccl.*(cuda-bindings|NVIDIA GPU|nvidia-nccl)"):
        dist.init_process_group("nccl")
    assert not dist.is_initialized()


def test_launcher_environment_parsing():
    from ember.distributed import launch_info
    assert launch_info({}) is None
    info = launch_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.local_world_size) == (3, 4, 1, 4)
    info = launch_info({"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MPI_LOCALNRANKS": "2"})
    assert (info.rank, info.world_size, info.local_rank, info.source) == (1, 2, 1, "mpiexec (MPICH)")
    assert launch_info({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}).source == "mpiexec (Open MPI)"
    with pytest.raises(ValueError, match="rank must be in"):
        launch_info({"RANK": "2", "WORLD_SIZE": "2"})


# ---- DistributedSampler against torch -------------------------------------------------------------

@pytest.mark.parametrize("n,replicas,drop_last", [(10, 3, False), (10, 3, True), (7, 2, False), (2, 5, False),
                                                 (0, 2, False), (12, 4, True), (1, 3, True)])
def test_distributed_sampler_matches_torch(n, replicas, drop_last):
    from torch.utils.data import DistributedSampler as TorchDS

    from ember.utils.data import DistributedSampler
    for rank in range(replicas):
        ours = DistributedSampler(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        theirs = TorchDS(range(n), replicas, rank, shuffle=False, drop_last=drop_last)
        assert list(ours) == list(theirs) and len(ours) == len(theirs)
        # shuffled: ember's permutation is not torch's, but the positions each rank takes are
        sh = DistributedSampler(range(n), replicas, rank, shuffle=True, seed=3, drop_last=drop_last)
        sh.set_epoch(2)
        from ember.utils.data import Generator
        perm = Generator(5).permutation(n)
        assert list(sh) == [perm[i] for i in theirs]


def test_distributed_sampler_epochs_and_errors():
    from ember.utils.data import DistributedSampler
    a, b = (DistributedSampler(range(20), 2, r, seed=1) for r in range(2))
    e0 = list(a) + list(b)
    assert sorted(e0) == list(range(20)) and list(a) == list(DistributedSampler(range(20), 2, 0, seed=1))
    a.set_epoch(1)
    b.set_epoch(1)
    assert sorted(list(a) + list(b)) == list(range(20)) and list(a) + list(b) != e0
    with pytest.raises(ValueError, match=r"Invalid rank 2, rank should be in the interval \[0, 1\]"):
        DistributedSampler(range(4), 2, 2)
    with pytest.raises(RuntimeError, match="init_process_group"):
        DistributedSampler(range(4))


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
