"""ember.compiler: the lazy graph, its rewrites, the scheduler, kernel IR, code generators and runtimes.

The one entry point the framework uses to compute values is `realize(nodes)`.
"""
from __future__ import annotations

import os

from . import dtypes
from .buffer import Buffer
from .ir import Node, const, expand_to, toposort

__all__ = ["Node", "Buffer", "dtypes", "realize", "const", "expand_to", "toposort"]


def realize(nodes, device: str = "cpu") -> None:
    """Compute the values of `nodes` together on `device` ("cpu" or "cuda"); each becomes a
    `buffer` leaf holding its value.

    EMBER_BACKEND=interpret evaluates with the numpy reference interpreter instead of compiling.
    """
    nodes = [n for n in dict.fromkeys(nodes) if not n.realized]
    if not nodes:
        return
    if os.environ.get("EMBER_BACKEND") == "interpret":
        from .interpret import interpret
        for n, v in zip(nodes, interpret(nodes)):
            n.become_buffer(Buffer.from_array(v, device, copy=True))
        return
    from .realize import run
    run(nodes, device)
