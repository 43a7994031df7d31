"""Column normalisation x / x.sum(0): the column sum must be computed once, not once per row."""
import numpy as np

import ember

x = ember.tensor(np.arange(1, 65 * 33 + 1, dtype=np.float32).reshape(65, 33))
print((x / x.sum(0)).numpy().sum())
