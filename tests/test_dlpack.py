"""DLPack exchange on the CPU: zero-copy both ways with PyTorch and numpy, for every dtype DLPack
and both sides support, and for non-contiguous ember views (exported as their values)."""
import numpy as np
import pytest
import torch

import ember

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8, np.bool_]


@pytest.mark.parametrize("dt", DTYPES)
def test_import_from_torch_and_numpy_shares_memory(dt):
    a = (np.arange(12) % 5).astype(dt).reshape(3, 4)
    t = torch.from_numpy(a.copy())
    e = ember.from_dlpack(t)
    assert e.dtype.np == a.dtype and tuple(e.shape) == (3, 4)
    np.testing.assert_array_equal(e.numpy(), a)
    t[0, 0] = 1                        # shared storage: the producer's write is visible
    assert e[0, 0].item() == 1
    n = ember.from_dlpack(a)
    np.testing.assert_array_equal(n.numpy(), a)


@pytest.mark.parametrize("dt", DTYPES)
def test_export_to_torch_and_numpy_zero_copy(dt):
    x = ember.tensor((np.arange(6) % 3).astype(dt).reshape(2, 3))
    t = torch.from_dlpack(x)
    np.testing.assert_array_equal(t.numpy(), x.numpy())
    n = np.from_dlpack(x)
    assert np.shares_memory(n, x.node.arg.numpy())
    y = (x.to(ember.float32) * 2 + 1) if dt is not np.bool_ else x
    np.testing.assert_array_equal(np.from_dlpack(y), y.numpy())   # a lazy value is realized first


def test_export_of_a_non_contiguous_view_gives_its_values():
    x = ember.arange(12.0).reshape(3, 4).T[::2]
    np.testing.assert_array_equal(torch.from_dlpack(x).numpy(), np.arange(12.0).reshape(3, 4).T[::2])


def test_round_trip_and_device_errors():
    a = torch.randn(5)
    np.testing.assert_array_equal(torch.from_dlpack(ember.from_dlpack(a)).numpy(), a.numpy())
    assert ember.ones(2).__dlpack_device__() == (1, 0)
