"""A matrix product big enough for the GEMM template, between two fused elementwise kernels."""
import numpy as np

import ember

rng = np.random.default_rng(0)
a = ember.tensor(rng.standard_normal((256, 128), dtype=np.float32))
b = ember.tensor(rng.standard_normal((128, 64), dtype=np.float32))
print(f"result {((a * 2) @ b).sum().item():.6e}")
