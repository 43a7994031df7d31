"""ember.utils.data: datasets, samplers, collation and the DataLoader, with PyTorch's API.

    from ember.utils.data import DataLoader, TensorDataset, random_split
    train, test = random_split(TensorDataset(x, y), [0.8, 0.2], generator=0)
    for xb, yb in DataLoader(train, batch_size=32, shuffle=True):
        ...
"""
from ._generator import Generator
from .collate import default_collate, default_convert
from .dataloader import DataLoader, WorkerInfo, get_worker_info
from .dataset import ChainDataset, ConcatDataset, Dataset, IterableDataset, Subset, TensorDataset, random_split
from .sampler import (BatchSampler, DistributedSampler, RandomSampler, Sampler, SequentialSampler,
                      SubsetRandomSampler, WeightedRandomSampler)

__all__ = ["Dataset", "IterableDataset", "TensorDataset", "Subset", "ConcatDataset", "ChainDataset", "random_split",
           "Sampler", "SequentialSampler", "RandomSampler", "SubsetRandomSampler", "WeightedRandomSampler",
           "BatchSampler", "DistributedSampler", "DataLoader", "get_worker_info", "WorkerInfo", "default_collate",
           "default_convert", "Generator"]
