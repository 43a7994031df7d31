"""ember.distributed: multi-process data parallelism with torch.distributed's API, on MPI or NCCL.

    # mpiexec -n 2 python train.py
    import ember, ember.distributed as dist
    dist.init_process_group("mpi")
    t = ember.ones(3) * dist.get_rank()
    dist.all_reduce(t)                      # in place, every rank: [1., 1., 1.]
    dist.destroy_process_group()

Backends: "mpi" (CPU processes, `pip install mpi4py mpich`) and "nccl" (NVIDIA GPUs; untested, see
docs/distributed.md). Collectives realize their input, hand its storage to the backend and rebind
the tensor to the result; every wait has a deadline (init_process_group(timeout=...)), after which
the ranks that did not answer are named in a DistBackendError instead of hanging.
"""
from .collectives import (Work, all_gather, all_gather_into_tensor, all_reduce, barrier, broadcast,  # noqa: F401
                          reduce_scatter, reduce_scatter_tensor)
from .errors import DistBackendError, DistError, DistNetworkError  # noqa: F401
from .launcher import LaunchInfo, launch_info  # noqa: F401
from .process_group import (GroupMember, destroy_process_group, get_backend, get_rank, get_world_size,  # noqa: F401
                            group, init_process_group, is_available, is_initialized, is_mpi_available,
                            is_nccl_available)
from .reduce_op import ReduceOp  # noqa: F401

__all__ = ["init_process_group", "destroy_process_group", "is_available", "is_initialized", "is_mpi_available",
           "is_nccl_available", "get_rank", "get_world_size", "get_backend", "group", "GroupMember", "ReduceOp",
           "Work", "all_reduce", "broadcast", "all_gather", "all_gather_into_tensor", "reduce_scatter",
           "reduce_scatter_tensor", "barrier", "DistError", "DistBackendError", "DistNetworkError",
           "launch_info", "LaunchInfo"]
