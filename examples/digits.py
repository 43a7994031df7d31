"""The data the examples train on: scikit-learn's handwritten digits (1797 8x8 images, shipped with
the package, no download), optionally upsampled to MNIST's 28x28, split into train and test sets."""
import numpy as np


def load_digits_split(size: int = 28, test_fraction: float = 0.2, seed: int = 0):
    """(x_train, y_train, x_test, y_test) as numpy arrays: float32 images in [0, 1] of shape
    (N, 1, size, size) (nearest-neighbour upsampling of the 8x8 originals), int64 labels."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    idx = np.arange(size) * 8 // size                     # nearest source pixel for each output pixel
    images = images[:, idx][:, :, idx][:, None]
    labels = digits.target.astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(len(labels) * test_fraction)
    test, train = perm[:n_test], perm[n_test:]
    return images[train], labels[train], images[test], labels[test]
