"""Exception types. Each is two built-in types at once: PyTorch raises RuntimeError (or
NotImplementedError) where Python code conventionally expects ValueError, IndexError or TypeError,
so either `except` works."""


class ShapeError(ValueError, RuntimeError):
    """Shapes that do not fit (broadcasting, reshape, matmul, ...)."""


class IndexRangeError(IndexError, RuntimeError):
    """An index out of range in gather/index_select: PyTorch raises RuntimeError there, while
    Python code expects IndexError."""


class DTypeError(TypeError, NotImplementedError):
    """An op does not support a dtype. PyTorch raises NotImplementedError (a RuntimeError);
    Python code conventionally expects TypeError."""
