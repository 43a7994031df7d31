"""One fused kernel: mul, add, exp and sum over N elements (N = argv[1], default 1000)."""
import sys

import numpy as np

import ember

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
x = ember.tensor(np.linspace(-1, 1, n, dtype=np.float32))
print(f"result {((x * 3 + 1).exp()).sum().item():.6e}")
