"""A plain elementwise expression: one kernel whose only buffer is the requested output."""
import numpy as np

import ember

x = ember.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
print((x * 2 + 1).numpy())
