"""An MLP (784 -> 128 -> 10) on handwritten digits: PyTorch code with only the imports changed.

Trains with Adam and CrossEntropyLoss on scikit-learn's digits upsampled to 28x28, prints the
loss and test accuracy per epoch, then saves the weights, loads them into a fresh model and checks
that it predicts the same.

    python examples/mlp_digits.py [--epochs N]
"""
import argparse
import os
import tempfile
import time

import ember as torch                                   # was: import torch
import ember.nn as nn                                   # was: import torch.nn as nn
import ember.optim as optim                             # was: import torch.optim as optim
from ember.utils.data import DataLoader, TensorDataset  # was: from torch.utils.data import ...

from digits import load_digits_split


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(28 * 28, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.flatten(x))))


def evaluate(model, loader, device):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            pred = model(x.to(device)).argmax(dim=1)
            correct += (pred == y.to(device)).sum().item()
            total += y.shape[0]
    return correct / total


def main(epochs: int = 8):
    torch.manual_seed(0)
    device = "cpu"
    x_train, y_train, x_test, y_test = load_digits_split()
    train_loader = DataLoader(TensorDataset(torch.tensor(x_train), torch.tensor(y_train)), batch_size=32,
                              shuffle=True)
    test_loader = DataLoader(TensorDataset(torch.tensor(x_test), torch.tensor(y_test)), batch_size=256)

    model = MLP().to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total_loss = 0.0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * y.shape[0]
        acc = evaluate(model, test_loader, device)
        print(f"epoch {epoch}: train loss {total_loss / len(x_train):.4f}  test accuracy {acc:.2%}  "
              f"({time.perf_counter() - start:.1f}s)")

    path = os.path.join(tempfile.mkdtemp(), "mlp.pt")
    torch.save(model.state_dict(), path)
    restored = MLP()
    restored.load_state_dict(torch.load(path))
    restored_acc = evaluate(restored, test_loader, device)
    print(f"restored from {path}: test accuracy {restored_acc:.2%}")
    print(f"final test accuracy {acc:.4f} restored {restored_acc:.4f}")
    return acc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    main(parser.parse_args().epochs)
