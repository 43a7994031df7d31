"""The default process group: which backend moves the bytes, this process's rank, the world size.

    import ember.distributed as dist
    dist.init_process_group("mpi")          # launched by: mpiexec -n 2 python train.py
    print(dist.get_rank(), dist.get_world_size())
    dist.destroy_process_group()

Only the default (world) group exists; `group=` arguments accept None or `dist.group.WORLD`.
"""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from .errors import DistError
from .launcher import launch_info, share_cores

DEFAULT_TIMEOUT = timedelta(minutes=30)       # PyTorch's default for CPU backends
BACKENDS = ("mpi", "nccl")

group = SimpleNamespace(WORLD=object())       # dist.group.WORLD: the only group there is
GroupMember = group


class _ProcessGroup:
    def __init__(self, backend, timeout_s: float):
        self.backend, self.timeout_s = backend, timeout_s
        self.rank, self.size = backend.rank, backend.size


_default: list[_ProcessGroup | None] = [None]


def is_available() -> bool:
    """ember.distributed is always built in; the backends need their packages (is_mpi_available)."""
    return True


def is_mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


def is_nccl_available() -> bool:
    from .nccl import find_libnccl
    return find_libnccl() is not None


def is_initialized() -> bool:
    return _default[0] is not None


def _timeout_seconds(timeout) -> float:
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    if not seconds > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    return seconds


def init_process_group(backend: str | None = None, init_method: str | None = None, timeout=None,
                       world_size: int = -1, rank: int = -1, store=None, group_name: str = "",
                       pg_options=None, device_id=None) -> None:
    """Join the job: every process of it calls this once, before any collective.

    backend: "mpi" (CPU processes; needs `pip install mpi4py mpich`; rank and size come from MPI,
    launch with `mpiexec -n N python script.py`) or "nccl" (NVIDIA GPUs; rank and size from the
    launcher's environment, e.g. torchrun's RANK/WORLD_SIZE/LOCAL_RANK). Default: "mpi".
    timeout: a timedelta or seconds; a collective that does not complete within it raises
    DistBackendError naming the ranks that did not answer, instead of hanging.
    world_size / rank: optional; when given (or set by torchrun in the environment) they must
    agree with what the backend sees, else DistError says so.

    >>> dist.init_process_group("mpi", timeout=datetime.timedelta(seconds=60))
    """
    if is_initialized():
        raise ValueError("trying to initialize the default process group twice!")
    backend = "mpi" if backend is None else str(backend).lower()
    if backend not in BACKENDS:
        raise ValueError(f"ember.distributed supports the backends {', '.join(map(repr, BACKENDS))}, "
                         f"got {backend!r}" + (" (use 'mpi' for CPU processes)" if backend == "gloo" else ""))
    if init_method not in (None, "env://"):
        raise ValueError(f"init_method={init_method!r} is not supported: ranks come from the launcher's "
                         f"environment (init_method='env://')")
    if store is not None:
        raise ValueError("store= is not supported: ranks come from the launcher (mpiexec or torchrun)")
    timeout_s = _timeout_seconds(timeout)
    info = launch_info()
    if backend == "mpi":
        from .mpi import MPIBackend
        impl = MPIBackend(timeout_s)
        _check_layout(impl, info, world_size, rank)
        local_size = impl.comm.Split_type(impl.MPI.COMM_TYPE_SHARED).Get_size()
    else:
        from .nccl import NCCLBackend
        if info is None and world_size not in (-1, None, 1):
            raise DistError(f"backend 'nccl' with world_size={world_size} needs the launcher's environment "
                            "(RANK and WORLD_SIZE, set by torchrun, or mpiexec's PMI_RANK/PMI_SIZE); none is set")
        impl = NCCLBackend(info, timeout_s, device_id)   # no launcher: a world of one
        _check_layout(impl, info, world_size, rank)
        local_size = info.local_world_size if info else 1
    share_cores(local_size)
    _default[0] = _ProcessGroup(impl, timeout_s)


def _check_layout(impl, info, world_size: int, rank: int) -> None:
    """The backend's view of the job must match what the caller and the launcher say."""
    def mismatch(what, told, source):
        impl.close()
        raise DistError(f"{what} mismatch: {source} says {told}, but the {impl.name} backend sees {what} "
                        f"{impl.size if what == 'world size' else impl.rank}"
                        + (" (the processes were not started by mpiexec? launch with `mpiexec -n N python "
                           "script.py`)" if impl.name == "mpi" and impl.size == 1 else ""))
    if world_size not in (-1, None) and world_size != impl.size:
        mismatch("world size", world_size, "init_process_group(world_size=...)")
    if rank not in (-1, None) and rank != impl.rank:
        mismatch("rank", rank, "init_process_group(rank=...)")
    if info is not None:
        if info.world_size != impl.size:
            mismatch("world size", info.world_size, f"the launcher's environment ({info.source})")
        if info.rank != impl.rank:
            mismatch("rank", info.rank, f"the launcher's environment ({info.source})")


def _get(grp=None) -> _ProcessGroup:
    pg = _default[0]
    if pg is None:
        raise ValueError("Default process group has not been initialized, please make sure to call "
                         "init_process_group.")
    if grp is not None and grp is not group.WORLD:
        raise ValueError("only the default group (None or dist.group.WORLD) is supported")
    return pg


def get_rank(group=None) -> int:
    """This process's rank in [0, world_size)."""
    return _get(group).rank


def get_world_size(group=None) -> int:
    """The number of processes in the job."""
    return _get(group).size


def get_backend(group=None) -> str:
    return _get(group).backend.name


def destroy_process_group(group=None) -> None:
    """Leave the job (all ranks call it); init_process_group may then be called again."""
    pg = _get(group)
    pg.backend.close()
    _default[0] = None


def local_rank() -> int:
    """This process's index among the ranks on its machine (torchrun's LOCAL_RANK): pick a GPU with it."""
    info = launch_info()
    return info.local_rank if info else 0

