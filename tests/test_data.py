"""ember.utils.data against torch.utils.data: datasets, samplers, collation and the DataLoader give
the same batches (values, dtypes, structure, counts), and worker processes give the same batches as
loading in the main process."""
import collections
import importlib
import math
import warnings

import numpy as np
import pytest
import torch
import torch.utils.data as tud
from hypothesis import given, settings, strategies as st

import ember
import ember.utils.data as eud

_realize = importlib.import_module("ember.compiler.realize")


def _np(x):
    """A batch (nested containers of tensors/values) as comparable plain data: (dtype name, array)."""
    if isinstance(x, (ember.Tensor, torch.Tensor)):
        arr = x.numpy()
        return ("tensor", str(x.dtype).split(".")[-1], arr.tolist())
    if isinstance(x, dict):
        return {k: _np(v) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (type(x).__name__,) + tuple(_np(v) for v in x)
    if isinstance(x, (list, tuple)):
        return type(x).__name__, [_np(v) for v in x]
    return x


def _data(n, rng=None):
    rng = rng or np.random.default_rng(n)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.integers(0, 10, n)


def _loaders(n, **kw):
    x, y = _data(n)
    e = eud.DataLoader(eud.TensorDataset(ember.tensor(x), ember.tensor(y)), **kw)
    t = tud.DataLoader(tud.TensorDataset(torch.tensor(x), torch.tensor(y)), **kw)
    return e, t


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 12), drop_last=st.booleans())
def test_batches_without_shuffle_equal_torch(n, batch_size, drop_last):
    e, t = _loaders(n, batch_size=batch_size, drop_last=drop_last)
    assert len(e) == len(t)
    eb, tb = [_np(b) for b in e], [_np(b) for b in t]
    assert len(eb) == len(t) and eb == tb


def test_explicit_sampler_order_equals_torch():
    order = [7, 3, 3, 0, 9, 1, 5]
    e, t = _loaders(10, batch_size=3, sampler=order)
    assert [_np(b) for b in e] == [_np(b) for b in t]


@settings(max_examples=10, deadline=None)
@given(n=st.integers(1, 50), batch_size=st.integers(1, 16), seed=st.integers(0, 2 ** 32))
def test_shuffle_visits_every_index_once_per_epoch(n, batch_size, seed):
    x, y = _data(n)
    ds = eud.TensorDataset(ember.tensor(x), ember.arange(n))
    loader = eud.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=seed)
    epochs = [np.concatenate([b[1].numpy() for b in loader]) for _ in range(2)]
    for ep in epochs:
        assert sorted(ep.tolist()) == list(range(n))
    assert len(loader) == math.ceil(n / batch_size)
    xs = np.concatenate([b[0].numpy() for b in eud.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                                             generator=seed)])
    np.testing.assert_array_equal(xs, x[epochs[0]])   # rows stay paired with their labels
    if n >= 8:
        assert not np.array_equal(epochs[0], epochs[1])   # a new permutation each epoch


def test_shuffle_is_reproducible_from_seeds_and_generators():
    ds = eud.TensorDataset(ember.arange(30))
    order = lambda **kw: [b[0].numpy().tolist() for b in eud.DataLoader(ds, batch_size=7, shuffle=True, **kw)]  # noqa
    assert order(generator=5) == order(generator=5) == order(generator=eud.Generator().manual_seed(5))
    assert order(generator=np.random.default_rng(1)) == order(generator=np.random.default_rng(1))
    ember.manual_seed(3)
    a = order()
    ember.manual_seed(3)
    assert order() == a
    assert order(generator=5) != order(generator=6)


def test_a_tensor_dataset_batch_is_one_gather_whose_plan_is_reused():
    x, y = _data(64)
    loader = eud.DataLoader(eud.TensorDataset(ember.tensor(x), ember.tensor(y)), batch_size=16, shuffle=True,
                            generator=0)
    grown = []
    for _ in range(2):
        for xb, yb in loader:
            n = len(_realize._plans)
            (xb * 2).sum().numpy()
            grown.append(len(_realize._plans) - n)
    assert sum(grown[1:]) == 0, grown


def test_batch_size_none_converts_each_sample_like_torch():
    x, y = _data(5)
    e = eud.DataLoader(eud.TensorDataset(ember.tensor(x), ember.tensor(y)), batch_size=None)
    t = tud.DataLoader(tud.TensorDataset(torch.tensor(x), torch.tensor(y)), batch_size=None)
    assert [_np(b) for b in e] == [_np(b) for b in t]
    arrays = [np.arange(3) * i for i in range(4)]
    assert [_np(b) for b in eud.DataLoader(arrays, batch_size=None)] == \
        [_np(b) for b in tud.DataLoader(arrays, batch_size=None)]


Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize("samples", [
    [1.5, 2.0, -3.25],
    [1, 2, 3],
    [True, False],
    ["a", "bc"],
    [np.float32(1.5), np.float32(2)],
    [np.arange(6, dtype=np.int16).reshape(2, 3), np.ones((2, 3), np.int16)],
    [(np.zeros(2, np.float32), 1), (np.ones(2, np.float32), 2)],
    [[1.0, 2], [3.0, 4]],
    [{"a": 1.0, "b": np.arange(2), "c": "s"}, {"a": 2.0, "b": np.arange(2) + 5, "c": "t"}],
    [Point(1, np.float64(2.5)), Point(3, np.float64(4.5))],
    [{"nested": [(1, 2.0), (3, 4.0)]}, {"nested": [(5, 6.0), (7, 8.0)]}],
])
def test_default_collate_equals_torch(samples):
    assert _np(eud.default_collate(samples)) == _np(tud.default_collate(samples))


def test_default_collate_stacks_tensors_and_reports_errors_like_torch():
    rng = np.random.default_rng(0)
    arrs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(4)]
    lazy = [ember.tensor(a) * 2 for a in arrs]             # lazy samples are stacked in the graph
    stored = [ember.tensor(a) for a in arrs]               # realized samples are stacked on the host
    for batch in (lazy, stored):
        out = eud.default_collate(batch)
        np.testing.assert_allclose(out.numpy(), tud.default_collate([torch.tensor(a) for a in arrs]).numpy()
                                   * (2 if batch is lazy else 1))
    with pytest.raises(RuntimeError, match="equal size"):
        eud.default_collate([[1, 2], [3]])
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        eud.default_collate([ember.zeros(2), ember.zeros(3)])
    with pytest.raises(TypeError, match="default_collate: batch must contain"):
        eud.default_collate([object(), object()])
    with pytest.raises(TypeError):
        eud.default_collate([np.array(["a"]), np.array(["b"])])


def test_default_convert_equals_torch():
    data = {"a": np.arange(3), "b": (np.float32(1.5), [np.ones(2)]), "c": "text", "d": 4}
    assert _np(eud.default_convert(data)) == _np(tud.default_convert(data))


# ---- samplers ---------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(n=st.integers(0, 30), batch_size=st.integers(1, 8), drop_last=st.booleans())
def test_sequential_and_batch_samplers_equal_torch(n, batch_size, drop_last):
    es = eud.BatchSampler(eud.SequentialSampler(range(n)), batch_size, drop_last)
    ts = tud.BatchSampler(tud.SequentialSampler(range(n)), batch_size, drop_last)
    assert list(es) == list(ts) and len(es) == len(ts)


def test_random_samplers():
    s = eud.RandomSampler(range(10), replacement=True, num_samples=50, generator=0)
    draws = list(s)
    assert len(draws) == len(s) == 50 and set(draws) <= set(range(10)) and len(set(draws)) > 5
    s = eud.RandomSampler(range(7), num_samples=17, generator=1)
    draws = list(s)
    assert len(draws) == 17 and collections.Counter(draws[:14]) == collections.Counter(list(range(7)) * 2)
    sub = [3, 8, 11, 20]
    assert sorted(eud.SubsetRandomSampler(sub, generator=2)) == sub
    w = eud.WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], num_samples=200, generator=3)
    counts = collections.Counter(w)
    assert set(counts) == {1, 3} and counts[3] > counts[1]
    assert sorted(eud.WeightedRandomSampler([1, 1, 1, 1], 4, replacement=False, generator=4)) == [0, 1, 2, 3]


@pytest.mark.parametrize("make", [
    lambda m: m.RandomSampler(range(3), num_samples=0),
    lambda m: m.RandomSampler(range(3), replacement=1),
    lambda m: m.BatchSampler(range(3), 0, False),
    lambda m: m.BatchSampler(range(3), 2, None),
    lambda m: m.WeightedRandomSampler([1.0, 2.0], num_samples=-1),
    lambda m: m.DataLoader(range(3), batch_size=None, drop_last=True),
    lambda m: m.DataLoader(range(3), sampler=[0, 1], shuffle=True),
    lambda m: m.DataLoader(range(3), batch_sampler=[[0]], batch_size=2),
    lambda m: m.DataLoader(range(3), num_workers=-1),
    lambda m: m.DataLoader(range(3), persistent_workers=True),
    lambda m: m.DataLoader(range(3), prefetch_factor=2),
    lambda m: m.random_split(range(10), [3, 3]),
    lambda m: m.ConcatDataset([range(3)])[-5],
    lambda m: m.ConcatDataset([]),
])
def test_invalid_arguments_raise_like_torch(make):
    with pytest.raises(Exception) as te:
        make(tud)
    with pytest.raises(type(te.value)) as ee:
        make(eud)
    assert str(ee.value) == str(te.value)


# ---- datasets ---------------------------------------------------------------------------------

def test_tensor_dataset_subset_and_concat_equal_torch():
    x, y = _data(6)
    e = eud.TensorDataset(ember.tensor(x), ember.tensor(y))
    t = tud.TensorDataset(torch.tensor(x), torch.tensor(y))
    assert len(e) == len(t) == 6 and _np(e[2]) == _np(t[2]) and _np(e[-1]) == _np(t[-1])
    with pytest.raises(AssertionError, match="Size mismatch"):
        eud.TensorDataset(ember.zeros(3), ember.zeros(4))
    es, ts = eud.Subset(e, [5, 0, 3]), tud.Subset(t, [5, 0, 3])
    assert [_np(es[i]) for i in range(3)] == [_np(ts[i]) for i in range(3)]
    ec, tc = eud.ConcatDataset([e, es]), tud.ConcatDataset([t, ts])
    assert ec.cumulative_sizes == tc.cumulative_sizes == [6, 9]
    assert [_np(ec[i]) for i in range(-9, 9)] == [_np(tc[i]) for i in range(-9, 9)]
    assert isinstance(e + es, eud.ConcatDataset) and len(e + es) == 9
    # the batch fast path through a Subset equals per-sample loading
    loader = lambda ds: [_np(b) for b in (eud if ds is es else tud).DataLoader(ds, batch_size=2)]  # noqa: E731
    assert loader(es) == loader(ts)


@pytest.mark.parametrize("lengths", [[3, 7], [0.3, 0.7], [0.33, 0.33, 0.34], [10]])
def test_random_split_lengths_match_torch_and_partition(lengths):
    e = eud.random_split(range(10), lengths, generator=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = tud.random_split(range(10), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in e] == [len(s) for s in t]
    assert sorted(i for s in e for i in s) == list(range(10))
    assert [list(s) for s in eud.random_split(range(10), lengths, generator=0)] == [list(s) for s in e]


class Stream(eud.IterableDataset):
    """0..n-1, split between workers by stride; torch twin below."""

    def __init__(self, n, info):
        self.n, self.info = n, info

    def __iter__(self):
        w = self.info()
        start, step = (0, 1) if w is None else (w.id, w.num_workers)
        return iter(range(start, self.n, step))

    def __len__(self):
        return self.n


class TorchStream(tud.IterableDataset):
    __init__, __iter__, __len__ = Stream.__init__, Stream.__iter__, Stream.__len__


@pytest.mark.parametrize("num_workers", [0, 2])
def test_iterable_dataset_batches_equal_torch(num_workers):
    kw = dict(batch_size=4, num_workers=num_workers)
    e = eud.DataLoader(Stream(19, eud.get_worker_info), **kw)
    t = tud.DataLoader(TorchStream(19, tud.get_worker_info), **kw)
    assert [_np(b) for b in e] == [_np(b) for b in t]
    assert len(e) == len(t) == 5
    e = eud.DataLoader(Stream(19, eud.get_worker_info), batch_size=4, drop_last=True)
    assert [b.numpy().tolist() for b in e] == [list(range(i, i + 4)) for i in range(0, 16, 4)]


# ---- worker processes -------------------------------------------------------------------------

class Noted(eud.Dataset):
    """Samples carry the id of the worker that made them, and a lazily computed tensor."""

    def __len__(self):
        return 23

    def __getitem__(self, i):
        info = eud.get_worker_info()
        return {"x": ember.arange(3, dtype=ember.float32) * i + 0.5, "i": i, "w": -1 if info is None else info.id}


def test_workers_give_the_same_batches_as_the_main_process():
    x, y = _data(37)
    ds = eud.TensorDataset(ember.tensor(x), ember.tensor(y))
    for kw in (dict(batch_size=5), dict(batch_size=4, shuffle=True, drop_last=True, generator=11)):
        main = [_np(b) for b in eud.DataLoader(ds, num_workers=0, **kw)]
        workers = [_np(b) for b in eud.DataLoader(ds, num_workers=2, **kw)]
        assert workers == main
    # a map-style dataset with lazy samples and plain values; workers really made the batches
    batches = list(eud.DataLoader(Noted(), batch_size=4, num_workers=2))
    assert [b["i"].numpy().tolist() for b in batches] == [list(range(i, min(i + 4, 23))) for i in range(0, 23, 4)]
    np.testing.assert_allclose(batches[1]["x"].numpy(), np.arange(3) * np.arange(4, 8)[:, None] + 0.5)
    assert {int(w) for b in batches for w in b["w"].numpy()} == {0, 1}


def _init(worker_id):
    import os
    os.environ["EMBER_TEST_WORKER"] = str(worker_id * 10)


class InitSeen(eud.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        import os
        return int(os.environ.get("EMBER_TEST_WORKER", "-1")), eud.get_worker_info().seed


def test_worker_init_fn_seeds_and_persistent_workers():
    loader = eud.DataLoader(InitSeen(), batch_size=1, num_workers=2, worker_init_fn=_init, persistent_workers=True,
                            generator=3)
    first = [(int(a), int(s)) for a, s in loader]
    second = [(int(a), int(s)) for a, s in loader]
    assert sorted({a for a, _ in first}) == [0, 10]
    seeds = {s for _, s in first}
    assert len(seeds) == 2 and max(seeds) - min(seeds) == 1          # base_seed + worker_id
    assert second == first and loader._iterator.workers               # the same processes served epoch 2


class Failing(eud.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 5:
            raise KeyError("sample 5 is broken")
        return i


def test_worker_errors_reach_the_main_process():
    with pytest.raises(KeyError, match="DataLoader worker process") as e:
        list(eud.DataLoader(Failing(), batch_size=2, num_workers=2))
    assert "sample 5 is broken" in str(e.value)


def test_training_loop_over_a_loader_learns():
    """The issue's usage: DataLoader(TensorDataset(...), batch_size=32, shuffle=True) feeding SGD."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 4)).astype(np.float32)
    w_true = np.array([1.5, -2.0, 0.5, 3.0], np.float32)
    y = x @ w_true
    w = ember.zeros(4, requires_grad=True)
    opt = ember.optim.SGD([w], lr=0.1)
    loader = eud.DataLoader(eud.TensorDataset(ember.tensor(x), ember.tensor(y)), batch_size=32, shuffle=True,
                            generator=0)
    for _ in range(5):
        for xb, yb in loader:
            opt.zero_grad()
            ((xb @ w - yb) ** 2).mean().backward()
            opt.step()
    np.testing.assert_allclose(w.detach().numpy(), w_true, atol=1e-2)
