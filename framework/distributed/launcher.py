"""Where a process learns its place in the job: rank, world size and local rank from the launcher.

Launchers announce the layout in the environment, each with its own names; they are read in this
order, the first complete set winning:

| launcher | rank | world size | local rank |
|---|---|---|---|
| torchrun / ember's own `RANK=...` | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` |
| MPICH / Intel MPI (hydra) | `PMI_RANK` | `PMI_SIZE` | `MPI_LOCALRANKID` |
| Open MPI | `OMPI_COMM_WORLD_RANK` | `OMPI_COMM_WORLD_SIZE` | `OMPI_COMM_WORLD_LOCAL_RANK` |
| Slurm (srun) | `SLURM_PROCID` | `SLURM_NTASKS` | `SLURM_LOCALID` |

The MPI backend takes rank and size from MPI itself and uses this only to check that the two agree
(a torchrun-launched process that calls MPI would otherwise silently be a world of one).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

_SOURCES = (
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"),
    ("mpiexec (MPICH)", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
    ("mpiexec (Open MPI)", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"),
    ("srun", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
)


@dataclass(frozen=True)
class LaunchInfo:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    source: str          # which launcher's variables were read ("default" when none were set)


def _int(env, name: str, source: str) -> int | None:
    value = env.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} (set by {source}) is not an integer") from None


def launch_info(env=None) -> LaunchInfo | None:
    """The layout the launcher announced, or None for a process started by hand.

    >>> launch_info({"RANK": "1", "WORLD_SIZE": "2"}).rank
    1
    """
    env = os.environ if env is None else env
    for source, r, w, lr, lw in _SOURCES:
        rank, size = _int(env, r, source), _int(env, w, source)
        if rank is None or size is None:
            continue
        local = _int(env, lr, source)
        local_size = _int(env, lw, source)
        if size < 1 or not 0 <= rank < size:
            raise ValueError(f"{source} set {r}={rank} and {w}={size}: the rank must be in [0, {size - 1}]")
        return LaunchInfo(rank, size, rank if local is None else local,
                          size if local_size is None else local_size, source)
    return None


def share_cores(local_world_size: int) -> None:
    """Give each of the ranks on this machine its share of the cores for ember's kernel threads
    (as torchrun sets OMP_NUM_THREADS=1): without it, every rank would start one thread per core
    and they would all fight for the same cores. A user's EMBER_NUM_THREADS is kept."""
    if local_world_size > 1 and not os.environ.get("EMBER_NUM_THREADS"):
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
        os.environ["EMBER_NUM_THREADS"] = str(max(1, cores // local_world_size))
