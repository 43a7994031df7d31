"""ember: a JIT-compiling tensor framework with PyTorch's eager API.

    import ember
    x = ember.randn(1024, 1024)
    y = (x * 2 + 1).exp().sum(1)     # lazy: builds a graph
    print(y[:4])                     # realizes: one fused, generated LLVM kernel
"""
from ember.compiler import dtypes as _D
from ember.compiler.dtypes import DType as dtype

from .autograd_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .errors import ShapeError
from .tensor import Size, Tensor, broadcast_shapes, get_default_dtype, realize, set_default_dtype
# Each ops module defines module-level functions (its __all__, e.g. ember.exp, ember.cat) and
# attaches the matching methods and operators to Tensor.
from .creation import *  # noqa: F401,F403
from .ops_elementwise import *  # noqa: F401,F403
from .ops_reduce import *  # noqa: F401,F403
from .ops_movement import *  # noqa: F401,F403
from . import cuda, debug

bool = _D.bool_  # noqa: A001  (PyTorch's name)
uint8, int8, int16, int32, int64 = _D.uint8, _D.int8, _D.int16, _D.int32, _D.int64
float16, bfloat16, float32, float64 = _D.float16, _D.bfloat16, _D.float32, _D.float64
half, float, double, long, int, short = float16, float32, float64, int64, int32, int16  # noqa: A001

__version__ = "0.1.0"
from . import nn  # noqa: E402
from . import optim, utils  # noqa: E402
from .serialization import save, load  # noqa: E402
from .compile import compile  # noqa: E402,A001  (PyTorch's name)
