"""The classic MNIST CNN (PyTorch's examples/mnist) on handwritten digits: PyTorch code with only
the imports changed.

Two 3x3 convolutions, max-pooling, dropout, two linear layers, log_softmax + nll_loss, SGD with
momentum 0.9, on scikit-learn's digits upsampled to 28x28. Prints loss and test accuracy.

    python examples/cnn_digits.py
"""
import argparse
import time

import ember as torch                                   # was: import torch
import ember.nn as nn                                   # was: import torch.nn as nn
import ember.nn.functional as F                         # was: import torch.nn.functional as F
import ember.optim as optim                             # was: import torch.optim as optim
from ember.utils.data import DataLoader, TensorDataset  # was: from torch.utils.data import ...

from digits import load_digits_split


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def train(model, device, loader, optimizer, epoch):
    model.train()
    total, count = 0.0, 0
    for data, target in loader:
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(data), target)
        loss.backward()
        optimizer.step()
        total += loss.item() * target.shape[0]
        count += target.shape[0]
    return total / count


def test(model, device, loader):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for data, target in loader:
            pred = model(data.to(device)).argmax(dim=1)
            correct += (pred == target.to(device)).sum().item()
            total += target.shape[0]
    return correct / total


def main(epochs: int = 3):
    torch.manual_seed(1)
    device = "cpu"
    x_train, y_train, x_test, y_test = load_digits_split()
    train_loader = DataLoader(TensorDataset(torch.tensor(x_train), torch.tensor(y_train)), batch_size=32,
                              shuffle=True)
    test_loader = DataLoader(TensorDataset(torch.tensor(x_test), torch.tensor(y_test)), batch_size=128)
    model = Net().to(device)
    optimizer = optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        loss = train(model, device, train_loader, optimizer, epoch)
        acc = test(model, device, test_loader)
        print(f"epoch {epoch}: train loss {loss:.4f}  test accuracy {acc:.2%}  ({time.perf_counter() - start:.1f}s)")
    print(f"final test accuracy {acc:.4f}")
    return acc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    main(parser.parse_args().epochs)
