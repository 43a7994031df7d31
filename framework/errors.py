"""Exception types. Shape errors are both ValueError and RuntimeError: PyTorch raises RuntimeError
for shape mismatches, and Python code conventionally expects ValueError; either `except` works."""


class ShapeError(ValueError, RuntimeError):
    pass
