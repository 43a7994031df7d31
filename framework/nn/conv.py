"""Convolutions (Conv1d/2d/3d, ConvTranspose1d/2d/3d) and unfold/fold (im2col and back).

A convolution is pad + sliding-window view + one contraction: the weight viewed as (groups,
out_channels/groups, C/groups * kernel) times the windows regrouped as (N, groups, C/groups *
kernel, positions), which gives (N, out_channels, positions), already in NCHW order. The window
view is index arithmetic, and the compiler's GEMM template packs its panels straight from the
input (compiler/templates.py), so no im2col buffer is ever written.

The backward pass is written out (`_Conv`) rather than derived: the derived gradient of the
window view is a col2im, which materializes the (N, C * kernel, positions) column gradient and
then sums overlapping windows; the adjoint convolution (a transposed convolution of the output
gradient: one more GEMM over windows of the padded gradient) computes the same values without it.
The weight gradient is the product of the output gradient with the windows, summed over batch and
positions (one GEMM). Both are compositions of primitives, so higher derivatives still work.

A transposed convolution is a convolution of the stride-dilated input with the flipped,
transposed kernel.
"""
from __future__ import annotations

import math

from ..autograd import Function
from ..errors import ShapeError
from ..ops_movement import pad as _pad
from ..tensor import Tensor
from . import init
from ._sliding import batched, ntuple, out_size, windows
from .linear import _weight_and_bias
from .module import Module


def _padding_pairs(padding, nsp: int, kernel: tuple, stride: tuple, dilation: tuple) -> list[tuple[int, int]]:
    """Per spatial axis (before, after) zero padding; 'same' puts the odd extra element after."""
    if isinstance(padding, str):
        if padding == "valid":
            return [(0, 0)] * nsp
        if padding != "same":
            raise ValueError(f"Invalid padding string '{padding}', should be one of {{'valid', 'same'}}")
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]
    return [(p, p) for p in ntuple(padding, nsp, "padding")]


def _batched(input: Tensor, nsp: int, name: str) -> tuple[Tensor, bool]:
    return batched(input, nsp, f"Expected {nsp + 1}D (unbatched) or {nsp + 2}D (batched) input to {name}, but got "
                               "input of size: {shape}")


def _conv(input: Tensor, weight: Tensor, bias, stride, padding, dilation, groups: int, nsp: int,
          name: str) -> Tensor:
    x, unbatched = _batched(input, nsp, name)
    if weight.ndim != nsp + 2:
        raise RuntimeError(f"Expected {nsp + 2}-dimensional weight for {nsp + 2}-dimensional input "
                           f"{list(x.shape)}, but got {weight.ndim}-dimensional weight of size {list(weight.shape)}")
    kernel = tuple(weight.shape[2:])
    stride, dilation = ntuple(stride, nsp, "stride"), ntuple(dilation, nsp, "dilation")
    c = x.shape[1]
    o, cg = weight.shape[0], weight.shape[1]
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if o % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size {list(weight.shape)} instead")
    if c != cg * groups:
        raise ShapeError(f"Given groups={groups}, weight of size {list(weight.shape)}, expected input"
                         f"{list(x.shape)} to have {cg * groups} channels, but got {c} channels instead")
    if x.dtype is not weight.dtype:
        raise RuntimeError(f"Input type ({x.dtype.name}) and weight type ({weight.dtype.name}) should be the same")
    pads = _padding_pairs(padding, nsp, kernel, stride, dilation)
    padded = tuple(s + b + a for s, (b, a) in zip(x.shape[2:], pads))
    if any(d * (k - 1) + 1 > p for p, k, d in zip(padded, kernel, dilation)):
        raise ShapeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel size: "
                         f"({' x '.join(str(d * (k - 1) + 1) for k, d in zip(kernel, dilation))}). Kernel size "
                         f"can't be greater than actual input size")
    y = _Conv.apply(x, weight, bias, _Geometry(kernel, stride, dilation, tuple(pads), groups, name))
    return y.squeeze(0) if unbatched else y


class _Geometry:
    """Everything about a convolution but its operands: kernel, stride, dilation, (before, after)
    padding per spatial axis, groups."""

    def __init__(self, kernel, stride, dilation, pads, groups, name):
        self.kernel, self.stride, self.dilation, self.pads, self.groups, self.name = (
            kernel, stride, dilation, pads, groups, name)

    def columns(self, x: Tensor) -> Tensor:
        """(N, C, *spatial) -> the windows as (N, groups, C/groups * kernel, positions): a view."""
        if any(b or a for b, a in self.pads):
            x = x._apply("pad", arg=((0, 0), (0, 0)) + tuple(self.pads))
        n, c, nsp = x.shape[0], x.shape[1], len(self.kernel)
        cols = windows(x, self.kernel, self.stride, self.dilation)          # (N, C, *out, *kernel)
        positions, ksize = math.prod(cols.shape[2:2 + nsp]), math.prod(self.kernel)
        cols = cols.reshape(n, self.groups, c // self.groups, positions, ksize).permute(0, 1, 2, 4, 3)
        return cols.reshape(n, self.groups, c // self.groups * ksize, positions)


def _forward(x: Tensor, weight: Tensor, geo: _Geometry) -> Tensor:
    cols = geo.columns(x)                                        # (N, groups, C/groups * k, P)
    n, g, ck, _ = cols.shape
    o = weight.shape[0]
    y = weight.reshape(g, o // g, ck).matmul(cols)              # (N, groups, O/groups, P)
    out = tuple(out_size(s + b + a, k, st, d) for s, (b, a), k, st, d in
                zip(x.shape[2:], geo.pads, geo.kernel, geo.stride, geo.dilation))
    return y.reshape((n, o) + out)


def _input_grad(g: Tensor, weight: Tensor, shape: tuple, geo: _Geometry, padded: Tensor | None = None) -> Tensor:
    """d(loss)/d(input): the transposed convolution of the output gradient, cropped to the input
    (the padding) and zero where no window reached (a stride remainder). With stride 1 that is a
    convolution of `padded`, g zero-padded by the kernel's reach, with the adjoint weight."""
    nsp = len(geo.kernel)
    if padded is not None:
        full = _conv(padded, _adjoint_weight(weight, geo.groups, nsp), None, 1, 0, geo.dilation, geo.groups, nsp,
                     geo.name)
    else:
        full = _conv_transpose(g, weight, None, geo.stride, 0, 0, geo.groups, geo.dilation, nsp, geo.name)
    widths = []
    for size, (b, _), length in reversed(list(zip(shape[2:], geo.pads, full.shape[2:]))):
        widths += [-b, size + b - length]
    return _pad(full, widths) if any(widths) else full


def _weight_grad(x: Tensor, g: Tensor, shape: tuple, geo: _Geometry) -> Tensor:
    """d(loss)/d(weight)[group, o, c*k] = Σ over batch and positions of g[n, group, o, p] *
    windows[n, group, c*k, p]: one product, summed over two axes."""
    cols = geo.columns(x)                                        # (N, groups, C/groups * k, P)
    n, grp, ck, p = cols.shape
    og = shape[0] // grp
    wide = (n, grp, og, ck, p)
    lhs = g.reshape(n, grp, og, 1, p)._apply("expand", arg=wide)
    rhs = cols.reshape(n, grp, 1, ck, p)._apply("expand", arg=wide)
    return lhs._apply("mul", rhs)._apply("sum", arg=(0, 4)).reshape(shape)


class _Conv(Function):
    """A convolution (plus bias) with its backward written as two more GEMM-shaped products (see
    the module docstring).

    With stride 1 the input gradient's product reads g zero-padded by the kernel's reach, a buffer
    of its own (GEMM operands are buffers). That buffer is made explicitly and the weight and bias
    gradients read g as its interior, so the kernel computing g writes the padded layout directly
    and g is never stored unpadded, then copied (MNIST CNN: 9.4 MB less written and read)."""

    @staticmethod
    def forward(ctx, x, weight, bias, geo):
        ctx.save_for_backward(x, weight)
        ctx.geo = geo
        y = _forward(x, weight, geo)
        return y if bias is None else y + bias.reshape((1, weight.shape[0]) + (1,) * len(geo.kernel))

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        geo = ctx.geo
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        reach = [d * (k - 1) for k, d in zip(geo.kernel, geo.dilation)]
        padded = None
        if need_x and all(s == 1 for s in geo.stride) and any(reach):
            padded = _pad(g, [w for r in reversed(reach) for w in (r, r)])._apply("contiguous")
            g = padded._apply("slice", arg=((0, 1, g.shape[0]), (0, 1, g.shape[1]))
                              + tuple((r, 1, n) for r, n in zip(reach, g.shape[2:])))
        gx = _input_grad(g, weight, tuple(x.shape), geo, padded) if need_x else None
        gw = _weight_grad(x, g, tuple(weight.shape), geo) if need_w else None
        # the padding is zeros: summing the whole padded buffer reads it contiguously, where its
        # interior's rows, merged into one reduced axis, would cost a division per element
        gb = (g if padded is None else padded).sum((0,) + tuple(range(2, g.ndim))) if need_b else None
        return gx, gw, gb, None


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """1-D convolution of (N, C, L) input with (O, C/groups, k) weight."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 1, "conv1d")


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """2-D convolution (cross-correlation, as in PyTorch) of (N, C, H, W) input with
    (O, C/groups, kh, kw) weight; padding may be an int, a pair, 'valid' or 'same'.

    >>> F.conv2d(ember.ones(1, 1, 5, 5), ember.ones(2, 1, 3, 3), padding=1).shape
    ember.Size([1, 2, 5, 5])
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, 2, "conv2d")


def conv3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1,
           groups: int = 1) -> Tensor:
    """3-D convolution of (N, C, D, H, W) input."""
    return _conv(input, weight, bias, stride, padding, dilation, groups, 3, "conv3d")


def _dilate(x: Tensor, stride: tuple) -> Tensor:
    """Insert stride-1 zeros between neighbouring elements of each spatial axis."""
    nsp = len(stride)
    for i, s in enumerate(stride):
        if s == 1:
            continue
        axis = x.ndim - nsp + i
        n = x.shape[axis]
        shape = tuple(x.shape)
        x = x.reshape(shape[:axis + 1] + (1,) + shape[axis + 1:])
        x = x._apply("pad", arg=tuple((0, s - 1) if a == axis + 1 else (0, 0) for a in range(x.ndim)))
        x = x.reshape(shape[:axis] + (n * s,) + shape[axis + 1:])
        x = x.narrow(axis, 0, (n - 1) * s + 1) if n else x
    return x


def _adjoint_weight(weight: Tensor, groups: int, nsp: int) -> Tensor:
    """(Cin, Cout/g, *k) -> (Cout, Cin/g, *k), flipped: the adjoint of the forward convolution."""
    cin, cog, kernel = weight.shape[0], weight.shape[1], tuple(weight.shape[2:])
    w = weight.reshape((groups, cin // groups, cog) + kernel).transpose(1, 2)
    return w.reshape((groups * cog, cin // groups) + kernel).flip(tuple(range(2, 2 + nsp)))


def _conv_transpose(input: Tensor, weight: Tensor, bias, stride, padding, output_padding, groups: int,
                    dilation, nsp: int, name: str) -> Tensor:
    x, unbatched = _batched(input, nsp, name)
    if isinstance(padding, str):
        raise ValueError(f"{name}: padding must be an int or a tuple of ints, not '{padding}'")
    stride, dilation = ntuple(stride, nsp, "stride"), ntuple(dilation, nsp, "dilation")
    padding, output_padding = ntuple(padding, nsp, "padding"), ntuple(output_padding, nsp, "output_padding")
    cin = weight.shape[0]
    if x.shape[1] != cin:
        raise ShapeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected input{list(x.shape)} "
                         f"to have {cin} channels, but got {x.shape[1]} channels instead")
    if cin % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} at dimension 0, "
                           f"but got weight of size {list(weight.shape)} instead")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise RuntimeError("output padding must be smaller than either stride or dilation, but got "
                               f"output_padding={list(output_padding)}, stride={list(stride)}, "
                               f"dilation={list(dilation)}")
    kernel = tuple(weight.shape[2:])
    x = _dilate(x, stride)
    widths = []
    for k, d, p, op in reversed(list(zip(kernel, dilation, padding, output_padding))):
        edge = d * (k - 1) - p
        widths += [edge, edge + op]
    x = _pad(x, widths)  # negative widths crop (padding larger than the kernel's reach)
    y = _conv(x, _adjoint_weight(weight, groups, nsp), bias, 1, 0, dilation, groups, nsp, name)
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 1-D convolution; weight is (C_in, C_out/groups, k)."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 1,
                           "conv_transpose1d")


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 2-D convolution (the gradient of conv2d with respect to its input); weight is
    (C_in, C_out/groups, kh, kw).

    >>> F.conv_transpose2d(ember.ones(1, 2, 3, 3), ember.ones(2, 4, 3, 3), stride=2).shape
    ember.Size([1, 4, 7, 7])
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2,
                           "conv_transpose2d")


def conv_transpose3d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """Transposed 3-D convolution."""
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 3,
                           "conv_transpose3d")


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """im2col: (N, C, H, W) -> (N, C * kh * kw, L), one column per sliding-window position.

    >>> F.unfold(ember.ones(1, 2, 4, 4), 2).shape
    ember.Size([1, 8, 9])
    """
    if input.ndim not in (3, 4):
        raise NotImplementedError(f"Input Error: Only 3D or 4D input Tensors are supported (got {input.ndim}D)")
    x, unbatched = _batched(input, 2, "unfold")
    kernel, dilation = ntuple(kernel_size, 2, "kernel_size"), ntuple(dilation, 2, "dilation")
    padding, stride = ntuple(padding, 2, "padding"), ntuple(stride, 2, "stride")
    if any(padding):
        x = x._apply("pad", arg=((0, 0), (0, 0)) + tuple((p, p) for p in padding))
    cols = windows(x, kernel, stride, dilation)                  # (N, C, oh, ow, kh, kw)
    n, c, oh, ow = cols.shape[:4]
    cols = cols.permute(0, 1, 4, 5, 2, 3).reshape(n, c * kernel[0] * kernel[1], oh * ow)
    return cols.squeeze(0) if unbatched else cols


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    """col2im, the adjoint of unfold: (N, C * kh * kw, L) -> (N, C, H, W), summing overlaps.
    Computed as a grouped transposed convolution with one-hot kernels."""
    from ..creation import eye
    x, unbatched = (input.unsqueeze(0), True) if input.ndim == 2 else (input, False)
    kernel, dilation = ntuple(kernel_size, 2, "kernel_size"), ntuple(dilation, 2, "dilation")
    padding, stride = ntuple(padding, 2, "padding"), ntuple(stride, 2, "stride")
    size = ntuple(output_size, 2, "output_size")
    k = kernel[0] * kernel[1]
    n, ck, length = x.shape
    if ck % k:
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the product of kernel_size, "
                           f"but got input.size(1)={ck} and kernel_size={kernel}")
    oh, ow = (out_size(s, kk, st, d, 2 * p) for s, kk, st, d, p in zip(size, kernel, stride, dilation, padding))
    if oh * ow != length:
        raise RuntimeError(f"Given output_size={size}, kernel_size={kernel}, dilation={dilation}, padding={padding}, "
                           f"stride={stride}, expected size of input's dimension 2 to match the calculated number of "
                           f"sliding blocks {oh} * {ow} = {oh * ow}, but got input.size(2)={length}.")
    c = ck // k
    w = eye(k, dtype=x.dtype, device=x.device).reshape(k, 1, *kernel).repeat(c, 1, 1, 1)
    full = tuple((s + 2 * p) - ((o - 1) * st + d * (kk - 1) + 1)
                 for s, p, o, st, d, kk in zip(size, padding, (oh, ow), stride, dilation, kernel))
    y = conv_transpose2d(x.reshape(n, ck, oh, ow), w, None, stride, 0, 0, c, dilation)
    y = _pad(y, (0, full[1], 0, full[0]))                            # positions no window reaches
    y = _pad(y, (-padding[1], -padding[1], -padding[0], -padding[0]))
    return y.squeeze(0) if unbatched else y


class _ConvNd(Module):
    _nsp = 2
    transposed = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, padding_mode: str = "zeros", device=None, dtype=None,
                 output_padding=0):
        super().__init__()
        nsp = self._nsp
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be one of ['zeros', 'reflect', 'replicate', 'circular'], "
                             f"but got padding_mode='{padding_mode}'")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = ntuple(kernel_size, nsp, "kernel_size")
        self.stride, self.dilation = ntuple(stride, nsp, "stride"), ntuple(dilation, nsp, "dilation")
        if isinstance(padding, str):
            _padding_pairs(padding, nsp, self.kernel_size, self.stride, self.dilation)  # validates
            self.padding = padding
        else:
            self.padding = ntuple(padding, nsp, "padding")
        self.output_padding = ntuple(output_padding, nsp, "output_padding")
        self.padding_mode = padding_mode
        shape = (in_channels, out_channels // groups) if self.transposed else (out_channels, in_channels // groups)
        _weight_and_bias(self, shape + self.kernel_size, bias, out_channels, device, dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init._layer_default_(self.weight, self.bias, zero_fan_in_bias=False)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * len(self.padding):
            s += f", padding={self.padding}"
        if self.dilation != (1,) * len(self.dilation):
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * len(self.output_padding):
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def _conv_forward(self, input: Tensor, weight: Tensor, bias) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            pairs = _padding_pairs(self.padding, self._nsp, self.kernel_size, self.stride, self.dilation)
            widths = [w for b, a in reversed(pairs) for w in (b, a)]
            input = _pad(input, widths, mode=self.padding_mode)
            padding = 0
        return _conv(input, weight, bias, self.stride, padding, self.dilation, self.groups, self._nsp,
                     f"conv{self._nsp}d")

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, self.weight, self.bias)


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L) input."""
    _nsp = 1


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) input, with PyTorch's arguments and initialisation.

    >>> nn.Conv2d(1, 32, 3, 1)(ember.randn(4, 1, 28, 28)).shape
    ember.Size([4, 32, 26, 26])
    """
    _nsp = 2


class Conv3d(_ConvNd):
    _nsp = 3


class _ConvTransposeNd(_ConvNd):
    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 groups: int = 1, bias: bool = True, dilation=1, padding_mode: str = "zeros", device=None,
                 dtype=None):
        if padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for {type(self).__name__}')
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype, output_padding)

    def _output_padding(self, input: Tensor, output_size) -> tuple:
        if output_size is None:
            return self.output_padding
        nsp = self._nsp
        size = tuple(output_size)[-nsp:]
        pads = []
        for i in range(nsp):
            n = input.shape[input.ndim - nsp + i]
            least = (n - 1) * self.stride[i] - 2 * self.padding[i] + self.dilation[i] * (self.kernel_size[i] - 1) + 1
            extra = size[i] - least
            if not 0 <= extra < max(self.stride[i], self.dilation[i]):
                raise ValueError(f"requested an output size of {list(size)}, but valid sizes range from {least} to "
                                 f"{least + max(self.stride[i], self.dilation[i]) - 1} (for an input of {n})")
            pads.append(extra)
        return tuple(pads)

    def forward(self, input: Tensor, output_size=None) -> Tensor:
        return _conv_transpose(input, self.weight, self.bias, self.stride, self.padding,
                               self._output_padding(input, output_size), self.groups, self.dilation, self._nsp,
                               f"conv_transpose{self._nsp}d")


class ConvTranspose1d(_ConvTransposeNd):
    _nsp = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-D convolution (a learnable upsampling); weight is (C_in, C_out/groups, kh, kw)."""
    _nsp = 2


class ConvTranspose3d(_ConvTransposeNd):
    _nsp = 3


class Unfold(Module):
    """nn.Unfold: F.unfold as a module."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, input: Tensor) -> Tensor:
        return unfold(input, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Module):
    """nn.Fold: F.fold as a module."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, input: Tensor) -> Tensor:
        return fold(input, self.output_size, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")
