"""DataLoader: batches from a dataset, optionally fetched by worker processes (torch.utils.data).

Worker processes. ember tensors do not pickle (their values live in the parent's graph and
buffers), so a worker turns every tensor of the batch it made into a numpy array before sending
it, and the main process wraps the arrays back into tensors (one buffer each, no copy). Workers
are started with the 'fork' method by default, so the dataset (which may hold ember tensors) is
inherited rather than pickled; with 'spawn' or 'forkserver' the dataset must be picklable. A
worker computes whatever lazy tensors its samples are with the same compiled kernels as the main
process (the CPU runtime resets its thread pool in a forked child, compiler/runtime/cpu.py), on one
thread (EMBER_NUM_THREADS=1 inside the worker, as PyTorch sets one thread per worker), so a batch
is bit for bit what the main process would make. Each worker is
seeded with `base_seed + worker_id` (ember.manual_seed and random.seed), where base_seed is drawn
from the loader's generator; `get_worker_info()` tells dataset code which worker it runs in.

    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, num_workers=2)
    for xb, yb in loader:
        ...
"""
from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import queue
import random
import traceback
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._generator import as_generator, resolve
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader", "get_worker_info", "WorkerInfo"]


@dataclass(frozen=True)
class WorkerInfo:
    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """Inside a DataLoader worker process: its id, the number of workers, its seed and its copy of
    the dataset. None in the main process."""
    return _worker_info


class _InfiniteConstantSampler(Sampler):
    """The 'sampler' of an IterableDataset: yields None forever (the dataset decides the end)."""

    def __iter__(self):
        while True:
            yield None


# ---- fetching: indices -> a batch (same code in the main process and in workers) ----------------

class _MapFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn: Callable, drop_last: bool):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn
        fast = getattr(dataset, "_collated_batch", None) if collate_fn is default_collate else None
        self.fast = fast if auto_collation else None

    def fetch(self, index):
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        if self.fast is not None:
            return self.fast(index)
        getitems = getattr(self.dataset, "__getitems__", None)
        data = getitems(index) if callable(getitems) else [self.dataset[i] for i in index]
        return self.collate_fn(data)


class _IterableFetcher:
    def __init__(self, dataset, auto_collation: bool, collate_fn: Callable, drop_last: bool):
        self.dataset_iter, self.auto_collation = iter(dataset), auto_collation
        self.collate_fn, self.drop_last, self.ended = collate_fn, drop_last, False

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.dataset_iter))
        data = []
        for _ in index:
            try:
                data.append(next(self.dataset_iter))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


def _make_fetcher(kind: str, dataset, auto_collation, collate_fn, drop_last):
    cls = _IterableFetcher if kind == "iterable" else _MapFetcher
    return cls(dataset, auto_collation, collate_fn, drop_last)


# ---- carrying tensors across the process boundary --------------------------------------------------

class _TensorPayload:
    """An ember tensor's value on its way from a worker to the main process."""
    __slots__ = ("array",)

    def __init__(self, array: np.ndarray):
        self.array = array

    def __reduce__(self):
        return (_TensorPayload, (self.array,))


def _map(obj, kind: type, fn):
    """obj with fn applied to every `kind` inside it, through tuples (namedtuples keep their type),
    lists and dicts."""
    if isinstance(obj, kind):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_map(o, kind, fn) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(o, kind, fn) for o in obj)
    if isinstance(obj, dict):
        return type(obj)((k, _map(v, kind, fn)) for k, v in obj.items())
    return obj


def _pack(obj):
    from ...tensor import Tensor
    return _map(obj, Tensor, lambda t: _TensorPayload(t.detach().numpy()))


def _unpack(obj):
    from ...creation import from_numpy
    return _map(obj, _TensorPayload, lambda p: from_numpy(p.array))


class _WorkerError:
    """An exception raised in a worker, re-raised in the main process with the worker's traceback."""

    def __init__(self, worker_id: int, exc: BaseException):
        self.exc_type = type(exc)
        self.msg = (f"Caught {type(exc).__name__} in DataLoader worker process {worker_id}.\nOriginal "
                    + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def reraise(self):
        try:
            err = self.exc_type(self.msg)
        except Exception:
            err = RuntimeError(self.msg)
        raise err


class _EndOfStream:
    """A worker's iterable dataset is exhausted."""

    def __init__(self, worker_id: int):
        self.worker_id = worker_id


def _worker_loop(kind, dataset, index_q, result_q, auto_collation, collate_fn, drop_last, seed, init_fn,
                 worker_id, num_workers):
    """The body of a worker process: fetch batches for (epoch, task id, indices) messages until None."""
    global _worker_info
    os.environ["EMBER_NUM_THREADS"] = "1"   # the workers already use the cores (see module doc)
    import ember
    random.seed(seed)
    ember.manual_seed(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    try:
        if init_fn is not None:
            init_fn(worker_id)
    except BaseException as e:  # reported with the first task
        init_error = _WorkerError(worker_id, e)
    else:
        init_error = None
    fetcher, epoch = None, None
    while True:
        msg = index_q.get()
        if msg is None:
            break
        ep, task, index = msg
        if init_error is not None:
            result_q.put((ep, task, init_error))
            continue
        if ep != epoch:  # a new epoch: an iterable dataset starts over
            epoch, fetcher = ep, _make_fetcher(kind, dataset, auto_collation, collate_fn, drop_last)
        try:
            data = _pack(fetcher.fetch(index))
        except StopIteration:
            data = _EndOfStream(worker_id)
        except BaseException as e:
            data = _WorkerError(worker_id, e)
        result_q.put((ep, task, data))


# ---- iterators --------------------------------------------------------------------------------

class _SingleProcessIter:
    def __init__(self, loader: "DataLoader"):
        self.loader = loader
        # a base seed is drawn (and unused) as with workers, so a generator gives the same shuffles
        self.base_seed = resolve(loader.generator).random_seed()
        self.index_iter = iter(loader._index_sampler)
        self.fetcher = _make_fetcher(loader._dataset_kind, loader.dataset, loader._auto_collation,
                                     loader.collate_fn, loader.drop_last)

    def __iter__(self):
        return self

    def __next__(self):
        return self.fetcher.fetch(next(self.index_iter))

    def __len__(self):
        return len(self.loader)


class _MultiProcessIter:
    """Keeps up to prefetch_factor * num_workers tasks in flight; yields results in task order."""

    def __init__(self, loader: "DataLoader"):
        self.loader = loader
        ctx = loader.multiprocessing_context
        if ctx is None:
            ctx = "fork" if "fork" in mp.get_all_start_methods() else None
        ctx = mp.get_context(ctx) if isinstance(ctx, str) or ctx is None else ctx
        n = loader.num_workers
        base_seed = resolve(loader.generator).random_seed()  # one draw per epoch, as in the 0-worker case
        self.result_q = ctx.Queue()
        self.index_qs, self.workers = [], []
        for w in range(n):
            iq = ctx.Queue()
            p = ctx.Process(target=_worker_loop, daemon=True,
                            args=(loader._dataset_kind, loader.dataset, iq, self.result_q, loader._auto_collation,
                                  loader.collate_fn, loader.drop_last, base_seed + w, loader.worker_init_fn, w, n))
            p.start()
            self.index_qs.append(iq)
            self.workers.append(p)
        # the finalizer holds the queues and processes, not self: when the iterator dies in a
        # reference cycle, the queues are then still alive (not collected with it) to stop the workers
        self._finalizer = weakref.finalize(self, _stop_workers, self.workers, self.index_qs)
        self.epoch = -1
        self._reset()

    def _reset(self, first: bool = True):
        """Start an epoch (again, with persistent workers)."""
        if not first:
            resolve(self.loader.generator).random_seed()  # keep the generator in step with the 0-worker case
        self.epoch += 1
        self.index_iter = iter(self.loader._index_sampler)
        self.active = [True] * len(self.workers)
        self.next_worker = itertools.cycle(range(len(self.workers)))
        self.sent = self.received = 0
        self.buffer: dict[int, Any] = {}
        self.exhausted = False
        for _ in range(self.loader.prefetch_factor * len(self.workers)):
            self._dispatch()

    def _dispatch(self) -> None:
        if self.exhausted or not any(self.active):
            return
        try:
            index = next(self.index_iter)
        except StopIteration:
            self.exhausted = True
            return
        for _ in range(len(self.workers)):
            w = next(self.next_worker)
            if self.active[w]:
                break
        self.index_qs[w].put((self.epoch, self.sent, index))
        self.sent += 1

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def _get(self):
        timeout = self.loader.timeout if self.loader.timeout > 0 else None
        while True:
            try:
                return self.result_q.get(timeout=5.0 if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None:
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None
                dead = [p for p in self.workers if not p.is_alive()]
                if dead:
                    self._shutdown()
                    raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(str(p.pid) for p in dead)}) exited "
                                       "unexpectedly") from None

    def __next__(self):
        while True:
            if self.received in self.buffer:
                data = self.buffer.pop(self.received)
                self.received += 1
                self._dispatch()
                if isinstance(data, _EndOfStream):
                    self.active[data.worker_id] = False
                    continue
                if isinstance(data, _WorkerError):
                    if not self.loader.persistent_workers:
                        self._shutdown()
                    data.reraise()
                return _unpack(data)
            if self.received >= self.sent:
                if not self.loader.persistent_workers:
                    self._shutdown()
                raise StopIteration
            ep, task, data = self._get()
            if ep == self.epoch:
                self.buffer[task] = data

    def _shutdown(self):
        self._finalizer()
        self.workers, self.index_qs, self.active = [], [], []


def _stop_workers(workers: list, index_qs: list) -> None:
    for q in index_qs:
        try:
            q.put(None)
        except (OSError, ValueError):
            pass
    for p in workers:
        p.join(timeout=2.0)
        if p.is_alive():
            p.terminate()
    for q in index_qs:
        q.close()


class DataLoader:
    """Iterate over a dataset in batches (PyTorch's DataLoader).

    `generator` (used for shuffling and the workers' base seed) may be None (ember's global RNG), an
    int seed, a numpy Generator or an `ember.utils.data.Generator`. `pin_memory` is accepted and
    ignored (CPU). See the module docstring for how worker processes carry tensors.

    >>> loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, drop_last=True)
    >>> len(loader), next(iter(loader))[0].shape
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False, drop_last: bool = False, timeout: float = 0,
                 worker_init_fn: Callable | None = None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False, pin_memory_device: str = "",
                 in_order: bool = True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        generator = as_generator(generator)
        if isinstance(dataset, IterableDataset):
            kind = "iterable"
            if shuffle not in (False, None):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler option, but got "
                                 f"sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified batch_sampler option, but "
                                 f"got batch_sampler={batch_sampler}")
        else:
            kind = "map"
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, and "
                                 "drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        if sampler is None:
            if kind == "iterable":
                sampler = _InfiniteConstantSampler()
            elif shuffle:
                sampler = RandomSampler(dataset, generator=generator)
            else:
                sampler = SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.sampler, self.batch_sampler, self.generator = sampler, batch_sampler, generator
        self.num_workers, self.timeout, self.worker_init_fn = num_workers, timeout, worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.prefetch_factor = 2 if num_workers > 0 and prefetch_factor is None else prefetch_factor
        self.persistent_workers, self.pin_memory, self.in_order = persistent_workers, pin_memory, in_order
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_sampler is not None else default_convert)
        self._dataset_kind = kind
        self._iterator = None

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self._auto_collation else self.sampler

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if self.persistent_workers:
            if self._iterator is None or not self._iterator.workers:
                self._iterator = _MultiProcessIter(self)
            else:
                self._iterator._reset(first=False)
            return self._iterator
        return _MultiProcessIter(self)

    def __len__(self) -> int:
        if self._dataset_kind == "iterable":
            n = len(self.dataset)
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
            return n
        return len(self._index_sampler)
