"""ember.distributed on this machine: all-reduce bandwidth over MPI, and DDP step time vs one process.

    .venv/bin/python -m benchmarks.distributed              # runs the single-process baseline, then
                                                            # launches itself under mpiexec -n 2
    .venv/bin/python -m benchmarks.distributed --ranks 2 --quick

All-reduce: float32 buffers of several sizes, SUM over the ranks; per size the median over
`--repeat` calls of the slowest rank's time (each call starts after a barrier). Columns: raw mpi4py
`Allreduce` on numpy arrays (MPI's own cost), and `ember.distributed.all_reduce` on a realized ember
tensor (adds the result buffer's allocation and the rebind). Bandwidth as NCCL's tests report it:
algbw = bytes / time, busbw = algbw * 2 (n - 1) / n (what each rank's link carries in a ring).

DDP step: the digits MLP (784-128-10, Adam) on a global batch of 64: one process with every core
on the whole batch, vs N ranks each with its 64/N share and cores/N kernel threads. The DDP time
is split into the gradient reduction (realizing forward+backward+flattened buckets, the
all-reduce) and the rest; both are also timed with the step under ember.compile. Nothing is written to RESULTS.md: run it on an idle machine and record
the numbers there by hand.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZES = [1 << 8, 1 << 12, 1 << 16, 1 << 20, 1 << 22, 1 << 24]      # float32 elements
QUICK_SIZES = [1 << 8, 1 << 16, 1 << 20]


def _mlp_step_setup(batch: int, seed: int = 0):
    import ember
    from ember import nn
    ember.manual_seed(seed)
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    rng = np.random.default_rng(seed)
    x = ember.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = ember.tensor(rng.integers(0, 10, batch))
    return model, x, y


def _time_steps(model, opt, x, y, steps: int, warmup: int = 5, compiled: bool = False) -> list[float]:
    import ember
    from ember import nn

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    if compiled:
        step = ember.compile(step)
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        step(x, y).item()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def single_process(global_batch: int, steps: int, compiled: bool = False) -> float:
    import ember
    model, x, y = _mlp_step_setup(global_batch)
    opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    return statistics.median(_time_steps(model, opt, x, y, steps, compiled=compiled))


def worker(args) -> None:
    import ember
    import ember.distributed as dist
    from mpi4py import MPI
    from ember.nn import parallel
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    comm = MPI.COMM_WORLD

    def slowest(fn) -> float:
        times = []
        for _ in range(args.repeat):
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        return statistics.median(times)

    rows = []
    for n in (QUICK_SIZES if args.quick else SIZES):
        a = np.random.default_rng(rank).standard_normal(n).astype(np.float32)
        out = np.empty_like(a)
        raw = slowest(lambda: comm.Allreduce(a, out, op=MPI.SUM))
        t = ember.tensor(a)
        ours = slowest(lambda: dist.all_reduce(t))
        rows.append((n * 4, raw, ours))

    # DDP step, with the reduction timed separately
    spent = []
    reduce = parallel._Reducer.reduce

    def timed_reduce(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return reduce(self, *a, **k)
        finally:
            spent.append(time.perf_counter() - t0)
    parallel._Reducer.reduce = timed_reduce
    model, x, y = _mlp_step_setup(args.batch // world, seed=rank)
    ddp = parallel.DistributedDataParallel(model)
    opt = ember.optim.Adam(ddp.parameters(), lr=1e-3)
    step = _time_steps(ddp, opt, x, y, args.steps)
    step_t = comm.allreduce(statistics.median(step), op=MPI.MAX)
    red_t = comm.allreduce(statistics.median(spent[-args.steps:]), op=MPI.MAX)
    parallel._Reducer.reduce = reduce
    # the same DDP step under ember.compile: the bucket all-reduces are host steps of the program
    model, x, y = _mlp_step_setup(args.batch // world, seed=rank)
    ddp_c = parallel.DistributedDataParallel(model)
    opt = ember.optim.Adam(ddp_c.parameters(), lr=1e-3)
    comp_t = comm.allreduce(statistics.median(_time_steps(ddp_c, opt, x, y, args.steps, compiled=True)), op=MPI.MAX)
    if rank == 0:
        print(f"\nall-reduce, float32 SUM, {world} ranks (median of {args.repeat}, slowest rank)")
        print(f"{'bytes':>12} {'mpi4py us':>11} {'ember us':>11} {'algbw GB/s':>11} {'busbw GB/s':>11}")
        for nbytes, raw, ours in rows:
            bus = 2 * (world - 1) / world
            print(f"{nbytes:>12,} {raw * 1e6:>11.1f} {ours * 1e6:>11.1f} {nbytes / ours / 1e9:>11.2f} "
                  f"{nbytes / ours / 1e9 * bus:>11.2f}")
        print(f"\nDDP step, MLP 784-128-10 + Adam, global batch {args.batch} ({args.batch // world} per rank, "
              f"EMBER_NUM_THREADS={os.environ.get('EMBER_NUM_THREADS')})")
        print(f"  DDP step       {step_t * 1e3:8.2f} ms   of which gradient reduction "
              f"(realize fwd+bwd+buckets, all-reduce) {red_t * 1e3:.2f} ms")
        print(f"  DDP step, ember.compile {comp_t * 1e3:8.2f} ms")
        print(f"  buckets        {len(ddp._reducer.buckets)}  ({sum(p.numel() for p in model.parameters()):,} "
              f"parameters)", flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke test)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.steps = 5, 5
    if args.worker:
        return worker(args)
    load = os.getloadavg()[0]
    print(f"load average {load:.2f}" + ("  (busy machine: timings are noisy)" if load > 0.5 else ""))
    t = single_process(args.batch, args.steps)
    tc = single_process(args.batch, args.steps, compiled=True)
    print(f"single process: MLP step on the global batch of {args.batch}: {t * 1e3:.2f} ms, under ember.compile "
          f"{tc * 1e3:.2f} ms (all {os.cpu_count()} cores)")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec), "-n", str(args.ranks), sys.executable, "-m", "benchmarks.distributed", "--worker",
           "--repeat", str(args.repeat), "--steps", str(args.steps), "--batch", str(args.batch)]
    subprocess.run(cmd + (["--quick"] if args.quick else []), check=True, cwd=Path(__file__).resolve().parents[1])


if __name__ == "__main__":
    main()
