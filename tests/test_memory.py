"""Memory of a training step (issue #3): a 20-layer MLP's forward + backward keeps no more buffers
alive than the shapes say it must, and leaves nothing behind but the gradients.

Measured with `ember.debug.memory_stats()` (bytes of kernel-made buffers, live and peak) after
`reset_peak_memory_stats()`. The bound is computed from the shapes alone:

    gradients            every parameter's size (all of them are alive at the end)
    saved activations    what backward must keep: one (B, W) activation per layer (the next
                         layer's input, whose sign is also the ReLU's mask; PyTorch keeps the same)
    transient            the gradient flowing down and the layer being processed: 4 x (B, W)

Measured (L=20, W=128, B=256, float32): the bound is 4,456,448 bytes; the peak is 2,949,632 bytes
above the parameters (ReLU's gradient is written in terms of its output, so each layer keeps one
(B, W) buffer; with the rule derived from the primitives, which reads the ReLU's input, the peak
was 5,308,928 bytes).
"""
import gc

import numpy as np
import pytest

import ember

L, W, B = 20, 128, 256
ACT = B * W * 4


def _step_memory():
    """(bytes live before, peak above that during forward+backward, live after, grad bytes)."""
    nn = ember.nn
    ember.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(L) for m in (nn.Linear(W, W), nn.ReLU())])
    ps = list(model.parameters())
    x = ember.randn(B, W)
    ember.realize(x, *ps)
    gc.collect()
    ember.debug.reset_peak_memory_stats()
    base = ember.debug.memory_stats()["live_bytes"]
    loss = model(x).square().mean()
    loss.backward()
    ember.realize(loss, *[p.grad for p in ps])
    stats = ember.debug.memory_stats()
    grads = sum(p.numel() * p.element_size() for p in ps)
    assert np.isfinite(loss.item())
    del loss
    gc.collect()
    after = ember.debug.memory_stats()["live_bytes"]
    for p in ps:
        p.grad = None
    gc.collect()
    released = ember.debug.memory_stats()["live_bytes"]
    return base, stats["peak_bytes"] - base, after - base, released - base, grads


@pytest.fixture(scope="module")
def measured():
    return _step_memory()


def test_only_the_gradients_stay_alive_after_the_step(measured):
    base, peak, after, released, grads = measured
    assert after == grads            # every intermediate buffer was released (the loss too, once dropped)
    assert released == 0            # and the gradients' buffers go when the gradients do
    assert peak >= grads


def test_peak_within_the_shape_bound(measured):
    _, peak, _, _, grads = measured
    bound = grads + L * ACT + 4 * ACT
    assert peak <= bound, f"peak {peak} bytes above the parameters, bound {bound}"


def test_peak_within_two_activations_per_layer(measured):
    """A looser bound, for a regression that keeps two activations per layer."""
    _, peak, _, _, grads = measured
    bound = grads + 2 * L * ACT + 4 * ACT
    assert peak <= bound, f"peak {peak} bytes above the parameters, bound {bound}"
