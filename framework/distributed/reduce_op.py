"""ReduceOp: how all_reduce / reduce_scatter combine the ranks' values (torch.distributed.ReduceOp)."""
from __future__ import annotations

import enum


class ReduceOp(enum.Enum):
    """SUM, AVG, PRODUCT, MIN, MAX on numbers; BAND, BOR, BXOR on integers and bools.

    >>> dist.all_reduce(t, op=dist.ReduceOp.MAX)
    """
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"

    def __repr__(self) -> str:
        return f"<ReduceOp.{self.name}>"
