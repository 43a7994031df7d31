"""Host random numbers for shuffling: a small Generator, seeded from ember's global RNG by default.

Samplers draw permutations on the host (indices are host data, like PyTorch's CPU generator).
Wherever PyTorch takes a `torch.Generator`, ember takes any of: None (derive a seed from ember's
global RNG, so `ember.manual_seed` makes shuffling reproducible), an int seed, a
`numpy.random.Generator` (its state is shared and advanced), or `ember.utils.data.Generator`.
The sequences are not PyTorch's (a different bit generator), only the semantics are.
"""
from __future__ import annotations

import numpy as np


class Generator:
    """A seeded source of permutations and integer draws (stands in for torch.Generator).

    >>> g = ember.utils.data.Generator().manual_seed(42)
    >>> loader = DataLoader(ds, batch_size=32, shuffle=True, generator=g)
    """

    def __init__(self, seed: int | None = None, *, _rng: np.random.Generator | None = None):
        self._seed = None
        if _rng is not None:
            self._rng = _rng
        else:
            self.manual_seed(_seed_from_global() if seed is None else seed)

    def manual_seed(self, seed: int) -> "Generator":
        self._seed = int(seed) & 0xFFFF_FFFF_FFFF_FFFF
        self._rng = np.random.Generator(np.random.Philox(key=self._seed))
        return self

    def seed(self) -> int:
        s = int.from_bytes(np.random.bytes(8), "little") >> 1
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        return self._rng.bit_generator.state

    def set_state(self, state: dict) -> "Generator":
        self._rng.bit_generator.state = state
        return self

    # -- draws the samplers use --
    def permutation(self, n: int) -> list[int]:
        return self._rng.permutation(n).tolist()

    def integers(self, high: int, size: int) -> list[int]:
        return self._rng.integers(0, high, size=size, dtype=np.int64).tolist()

    def choice(self, n: int, size: int, replace: bool, p: np.ndarray) -> list[int]:
        return self._rng.choice(n, size=size, replace=replace, p=p).tolist()

    def random_seed(self) -> int:
        return int(self._rng.integers(0, 2 ** 63 - 1))


def _seed_from_global() -> int:
    """A seed drawn from ember's global RNG state (advancing it), like torch's default generator."""
    from ember import random as _random
    seed, offset = _random._take(1)
    return int(np.random.Generator(np.random.Philox(key=seed, counter=offset)).integers(0, 2 ** 63 - 1))


def as_generator(generator) -> Generator | None:
    """Normalise the accepted generator forms; None stays None (a fresh seed is drawn per use)."""
    if generator is None or isinstance(generator, Generator):
        return generator
    if isinstance(generator, np.random.Generator):
        return Generator(_rng=generator)
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return Generator(int(generator))
    raise TypeError(f"generator must be None, an int seed, a numpy.random.Generator or an "
                    f"ember.utils.data.Generator, not {type(generator).__name__}")


def resolve(generator: Generator | None) -> Generator:
    """The generator to draw from now: the given one, or a fresh one seeded from ember's RNG."""
    return generator if generator is not None else Generator(_seed_from_global())
