"""The digits MLP trained data-parallel: PyTorch DDP code with only the imports changed.

    mpiexec -n 2 .venv/bin/python examples/ddp_train.py [--epochs N]    # ember: 2 CPU processes over MPI

Every rank builds the model with its own seed; DistributedDataParallel broadcasts rank 0's weights,
each rank trains on its share of every epoch (DistributedSampler), and the gradients are averaged
over the ranks in each backward, so every rank takes the same optimizer step. The global batch is
32, as in mlp_digits.py, split evenly over the ranks. Rank 0 evaluates and prints. The same file,
with its imports turned back into PyTorch's, runs under `torchrun --nproc_per_node=2` (gloo).
"""
import argparse
import time

import ember as torch                                          # was: import torch
import ember.distributed as dist                               # was: import torch.distributed as dist
import ember.nn as nn                                          # was: import torch.nn as nn
import ember.optim as optim                                    # was: import torch.optim as optim
from ember.nn.parallel import DistributedDataParallel as DDP   # was: from torch.nn.parallel import ...
from ember.utils.data import DataLoader, DistributedSampler, TensorDataset  # was: from torch.utils.data ...

from digits import load_digits_split
from mlp_digits import MLP, evaluate


def main(epochs: int = 8, global_batch: int = 32):
    dist.init_process_group()                     # ember: MPI (mpiexec); PyTorch on CPU: gloo (torchrun)
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(rank)                       # different on purpose: DDP starts every rank from rank 0's
    x_train, y_train, x_test, y_test = load_digits_split()
    train = TensorDataset(torch.tensor(x_train), torch.tensor(y_train))
    sampler = DistributedSampler(train, shuffle=True, seed=0)
    loader = DataLoader(train, batch_size=max(1, global_batch // world), sampler=sampler)
    test_loader = DataLoader(TensorDataset(torch.tensor(x_test), torch.tensor(y_test)), batch_size=256)

    model = DDP(MLP())
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    acc = 0.0
    for epoch in range(1, epochs + 1):
        sampler.set_epoch(epoch)                  # a new shuffle, the same on every rank
        model.train()
        total = torch.zeros(2, dtype=torch.float64)
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()                       # gradients averaged over the ranks here
            optimizer.step()
            total += torch.tensor([loss.item() * y.shape[0], y.shape[0]], dtype=torch.float64)
        dist.all_reduce(total)                    # the loss over every rank's samples
        if rank == 0:
            acc = evaluate(model.module, test_loader, "cpu")
            print(f"epoch {epoch}: train loss {(total[0] / total[1]).item():.4f}  test accuracy {acc:.2%}  "
                  f"({time.perf_counter() - start:.1f}s, {world} ranks)", flush=True)

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    same = bool((hi == lo).all())
    if rank == 0:
        print(f"parameters identical on all {world} ranks: {same}")
        print(f"final test accuracy {acc:.4f}")
    dist.destroy_process_group()
    return acc, same


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    main(parser.parse_args().epochs)
