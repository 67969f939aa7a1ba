"""The 2D/3D U-Net of paper 002 (Franco-Barranco et al. 2022, stable EM architectures)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import (ACTIVATIONS, CONV, CONV_TRANSPOSE, INITS, MAX_POOL, conv_block,
                                   init_conv_, unet_features)

# (spatial_dims, skip_channels, gate_channels, factor=...) -> module called as
# gate(skip, coarse_features); factor: the pooling's factor per spatial axis (2s, or 1 along z)
SkipGateFactory = Callable[..., nn.Module]

DEFAULT_FILTERS = {2: (16, 32, 64, 128, 256), 3: (28, 36, 48, 64)}
DEFAULT_DROPOUT = {2: (0.1, 0.1, 0.2, 0.2, 0.3), 3: (0.1, 0.1, 0.2, 0.3)}
UPSAMPLES = ("transpose", "nearest")


def _per_level(dropout: float | Sequence[float] | None, spatial_dims: int,
               levels: int) -> tuple[float, ...]:
    if dropout is None:
        return DEFAULT_DROPOUT[spatial_dims]
    if isinstance(dropout, (int, float)):
        return (float(dropout),) * levels
    return tuple(float(p) for p in dropout)


class UNetPaper002(nn.Module):
    """U-Net of paper 002: ``len(filters) - 1`` poolings, Fig. 2a blocks, concatenated skips.

    Paper 002, "Proposed Networks": 2D = "four-level U-Net with 16 filters in the initial
    level that get doubled on each level, dropout in each block (from 0.1 up to 0.3 in the
    bottleneck and reversely, from 0.3 to 0.1 in the upsampling layers), ELU activation
    functions and transposed convolutions"; 3D = "3 levels, with 28, 36, 48 and 64 (in the
    bottleneck) 3D filters". ``filters`` lists every level, bottleneck last.

    Choices where the paper is silent (following the authors' public Keras code):
      * "four-level" = four encoder levels *plus* the bottleneck, 16-32-64-128-256 (4 poolings):
        the only reading that gives the 1.94 M parameters of the 2D model (1,940,817 here;
        stopping at 128 would give 0.48 M). The 3D model has 3 poolings (stride 8).
      * Block: 3x3 conv -> [BN] -> act -> dropout -> 3x3 conv -> [BN] -> act (Fig. 2a);
        'same' zero padding; 2x2 max-pooling; 2x2 stride-2 transposed convolutions that halve
        the channels (``filters[i+1] -> filters[i]``); concatenation [upsampled, skip].
      * Dropout: ``dropout[i]`` in encoder level i and in the decoder level at the same depth
        (so 0.2, 0.2, 0.1, 0.1 going up in 2D), ``dropout[-1]`` in the bottleneck; element-wise
        ``nn.Dropout`` like Keras' ``Dropout``; no layer at all for 0. The 3D default
        (0.1, 0.1, 0.2, 0.3) drops one 0.2 level from the 2D pyramid (the paper gives none).
      * ``init`` (Keras' names, ELU alpha = 1) applies to the 3x3 convolutions; the transposed
        convolutions and the 1x1 head keep Keras' default Glorot uniform; biases start at 0.
      * With ``batch_norm`` the convolutions drop their (redundant) bias.
      * Returns logits from a 1x1 convolution (the paper's sigmoid belongs to the loss).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output logit channels.
        filters: channels per level, bottleneck last (>= 2 levels). None: 16, 32, 64, 128, 256
            in 2D and 28, 36, 48, 64 in 3D.
        dropout: one rate per level (same length as ``filters``) or one number for all
            levels (0 = no dropout). None: 0.1, 0.1, 0.2, 0.2, 0.3 in 2D and 0.1, 0.1, 0.2, 0.3
            in 3D (give it explicitly when ``filters`` has another length).
        activation: "elu" or "relu".
        batch_norm: batch normalization after every 3x3 convolution (Table 5 ablation).
        init: "he_normal" or "glorot_uniform" (Keras' definitions).
        upsample: "transpose" (learned 2x2 stride-2) or "nearest" (parameter-free; the decoder
            block then sees ``filters[i+1] + filters[i]`` channels).
        skip_gate: optional factory ``(spatial_dims, skip_channels, gate_channels, *, factor)
            -> module``; each skip is replaced by ``gate(skip, coarse)`` before concatenation,
            where coarse is the decoder's input from the level below and ``factor`` the
            pooling's factor per axis (the attention U-Net's hook).
        z_pooling: 3D only. False: pooling and upsampling leave the z axis alone (2x2 in y, x;
            factor (1, 2, 2)), paper 002's change for the anisotropic Kasthuri++ ("removing the
            z-axis downsampling in their pooling operations"); z keeps its size at every level.

    Input-size constraints: any spatial size; sizes that are not multiples of
    2 ** (len(filters) - 1) (16 in 2D, 8 in 3D by default; z: any size without z pooling) are
    reflect-padded internally and the output cropped back, so 200 x 200 crops or 37 x 53 work
    as they are.

    Example:
        >>> net = UNetPaper002(2, 1, 1)
        >>> net(torch.zeros(2, 1, 200, 200)).shape
        torch.Size([2, 1, 200, 200])
        >>> UNetPaper002(3, 1, 1)(torch.zeros(1, 1, 16, 20, 24)).shape
        torch.Size([1, 1, 16, 20, 24])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] | None = None,
                 dropout: float | Sequence[float] | None = None, activation: str = "elu",
                 batch_norm: bool = False, init: str = "he_normal", upsample: str = "transpose",
                 skip_gate: SkipGateFactory | None = None, z_pooling: bool = True) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"UNetPaper002: spatial_dims must be 2 or 3, got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("UNetPaper002: in_channels and out_channels must be >= 1")
        filters = tuple(DEFAULT_FILTERS[spatial_dims] if filters is None else filters)
        if len(filters) < 2 or any(int(f) != f or f < 1 for f in filters):
            raise ValueError(f"UNetPaper002: filters must be >= 2 positive ints, got {filters}")
        filters = tuple(int(f) for f in filters)
        rates = _per_level(dropout, spatial_dims, len(filters))
        if len(rates) != len(filters):
            raise ValueError(f"UNetPaper002: dropout needs one rate per level ({len(filters)}), "
                             f"got {len(rates)}")
        if any(not 0 <= p < 1 for p in rates):
            raise ValueError(f"UNetPaper002: dropout rates must be in [0, 1), got {rates}")
        for name, value, allowed in (("activation", activation, ACTIVATIONS),
                                     ("init", init, INITS), ("upsample", upsample, UPSAMPLES)):
            if value not in allowed:
                raise ValueError(f"UNetPaper002: {name} must be one of {allowed}, got {value!r}")
        if skip_gate is not None and not callable(skip_gate):
            raise ValueError("UNetPaper002: skip_gate must be a callable or None")
        if not isinstance(z_pooling, bool) or (spatial_dims == 2 and not z_pooling):
            raise ValueError(f"UNetPaper002: z_pooling must be true or false, and false only in "
                             f"3D (a 2D network has no z axis), got {z_pooling!r} in "
                             f"{spatial_dims}D")
        self.filters, self.dropout = filters, rates
        self.stride = 2 ** (len(filters) - 1)  # in the (y, x) plane, and along z if pooled
        factor = pooling_factor(spatial_dims, z_pooling)
        self.pooling_factor = factor
        self.size_multiple = tuple(self.stride if f == 2 else 1 for f in factor)

        def block(channels_in: int, level: int) -> nn.Sequential:
            return conv_block(spatial_dims, channels_in, filters[level], activation,
                              rates[level], batch_norm, init)

        self.encoders = nn.ModuleList(
            block(in_channels if level == 0 else filters[level - 1], level)
            for level in range(len(filters)))
        self.pool = MAX_POOL[spatial_dims](factor)
        self.upsamplers, self.decoders = nn.ModuleList(), nn.ModuleList()
        self.gates = nn.ModuleList() if skip_gate is not None else None
        for level in reversed(range(len(filters) - 1)):
            coarse, fine = filters[level + 1], filters[level]
            if upsample == "transpose":
                up: nn.Module = CONV_TRANSPOSE[spatial_dims](coarse, fine, factor, stride=factor)
                init_conv_(up, "glorot_uniform")
            else:
                up = nn.Upsample(scale_factor=tuple(float(f) for f in factor), mode="nearest")
            self.upsamplers.append(up)
            self.decoders.append(block((fine if upsample == "transpose" else coarse) + fine, level))
            if self.gates is not None:
                self.gates.append(skip_gate(spatial_dims, fine, coarse, factor=factor))
        self.head = CONV[spatial_dims](filters[0], out_channels, 1)
        init_conv_(self.head, "glorot_uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.size_multiple)
        x = unet_features(x, self.encoders, self.pool, self.upsamplers, self.decoders, self.gates)
        return crop_to(self.head(x), size)


def pooling_factor(spatial_dims: int, z_pooling: bool = True) -> tuple[int, ...]:
    """The U-Net's pooling (and upsampling) factor per spatial axis: 2 along each, or
    (1, 2, 2) in 3D without z pooling."""
    return (2,) * spatial_dims if z_pooling else (1,) + (2,) * (spatial_dims - 1)


def unet_for(owner: str, spatial_dims: int, in_channels: int, out_channels: int,
             **options: object) -> UNetPaper002:
    """The ``UNetPaper002`` a network built on it (``owner``) wraps; bad options name the owner.

    ``options`` are ``UNetPaper002``'s keyword arguments.
    """
    try:
        return UNetPaper002(spatial_dims, in_channels, out_channels, **options)
    except ValueError as error:
        raise ValueError(f"{owner}: invalid option ({error})") from error
