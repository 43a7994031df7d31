"""SimpleNet (Linear(10, 50) -> ReLU -> Linear(50, 10)) trained with MSELoss and SGD: PyTorch code
with only the imports changed.

The data: scikit-learn's handwritten digits reduced to their 10 leading principal components
(standardized), and the target is the one-hot digit, so the network learns a regression from 10
features to 10 class scores. Prints the loss as it falls and the accuracy of the argmax.

    python examples/simplenet.py [--epochs N]
"""
import argparse
import time

import numpy as np

import ember as torch                                   # was: import torch
import ember.nn as nn                                   # was: import torch.nn as nn
import ember.optim as optim                             # was: import torch.optim as optim
from ember.utils.data import DataLoader, TensorDataset  # was: from torch.utils.data import ...

from digits import load_digits_split


class SimpleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 50)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


def pca_features(x_train, x_test, k=10):
    """Project the 8x8 images on the top-k principal components of the training set."""
    a, b = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    mean = a.mean(0)
    _, _, vt = np.linalg.svd(a - mean, full_matrices=False)
    pa, pb = (a - mean) @ vt[:k].T, (b - mean) @ vt[:k].T
    scale = pa.std(0)
    return (pa / scale).astype(np.float32), (pb / scale).astype(np.float32)


def main(epochs: int = 15):
    torch.manual_seed(0)
    x_train, y_train, x_test, y_test = load_digits_split(size=8)
    f_train, f_test = pca_features(x_train, x_test)
    onehot = np.eye(10, dtype=np.float32)
    train_loader = DataLoader(TensorDataset(torch.tensor(f_train), torch.tensor(onehot[y_train])), batch_size=32,
                              shuffle=True)

    model = SimpleNet()
    criterion = nn.MSELoss()
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x_all, t_all = torch.tensor(f_train), torch.tensor(onehot[y_train])
    with torch.no_grad():
        first = criterion(model(x_all), t_all).item()
    print(f"initial loss {first:.4f}")
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for x, target in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), target)
            loss.backward()
            optimizer.step()
        if epoch % 5 == 0 or epoch == epochs:
            with torch.no_grad():
                train_loss = criterion(model(x_all), t_all).item()
                acc = (model(torch.tensor(f_test)).argmax(1) == torch.tensor(y_test)).float().mean().item()
            print(f"epoch {epoch}: loss {train_loss:.4f}  test accuracy {acc:.2%}  "
                  f"({time.perf_counter() - start:.1f}s)")
    print(f"loss fell {first / train_loss:.1f}x")
    print(f"final loss {train_loss:.6f} initial {first:.6f}")
    return first, train_loss


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    main(parser.parse_args().epochs)
