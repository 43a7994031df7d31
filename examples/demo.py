"""Demo: train a softmax classifier with ember's compiled CPU kernels.

Every step builds a lazy graph (forward, loss, hand-derived gradients, SGD update); `ember.realize`
fuses it into a few generated LLVM kernels. From the second step on the compiled plan is reused,
so a step costs little more than its kernels.

    python examples/demo.py
"""
import time

import numpy as np

import ember

rng = np.random.default_rng(0)
n_classes, n_features, n = 4, 16, 2048
centers = rng.normal(0, 3, size=(n_classes, n_features))
labels = rng.integers(0, n_classes, size=n)
features = (centers[labels] + rng.normal(0, 2.5, size=(n, n_features))).astype(np.float32)
split = n * 3 // 4

X, Xtest = ember.tensor(features[:split]), ember.tensor(features[split:])
Y = ember.tensor(np.eye(n_classes, dtype=np.float32)[labels[:split]])
W = ember.zeros(n_features, n_classes)
b = ember.zeros(n_classes)
lr = 0.05

with ember.debug.capture() as cap:
    t0 = time.perf_counter()
    for step in range(1, 201):
        logits = X @ W + b
        logp = logits.log_softmax(-1)
        loss = -(Y * logp).sum() / split
        g = (logp.exp() - Y) / split          # d loss / d logits
        W = W - lr * (X.T @ g)
        b = b - lr * g.sum(0)
        ember.realize(W, b, loss)
        if step % 40 == 0 or step == 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
    elapsed = time.perf_counter() - t0

accuracy = ((Xtest @ W + b).argmax(-1).numpy() == labels[split:]).mean()
launches = len(cap.kernels)
print(f"test accuracy {accuracy:.3f}")
print(f"{launches / 200:.1f} kernel launches per step, {elapsed / 200 * 1e3:.2f} ms per step")
print("kernels of the last step:")
for k in cap.kernels[-int(launches / 200):]:
    print(f"  {k.name:<50} fuses {', '.join(k.ops)}")
