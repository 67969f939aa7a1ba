"""The layer vocabulary every network of ``models/nets`` builds from.

- 2D/3D factories: ``CONV[spatial_dims]``, ``CONV_TRANSPOSE``, ``BATCH_NORM``,
  ``INSTANCE_NORM``, ``MAX_POOL`` (MONAI's ``Conv[Conv.CONV, dim]`` in dict form);
- activations by name (``activation_layer``) and Keras' initializers (``he_normal_``,
  ``init_conv_``), which the paper-002 networks and their ports reproduce exactly;
- paper 002's Fig. 2a block (``conv_block``), the block of its U-Net and of the networks
  built on it;
- the U-Net path (``unet_features``): encoder levels with pooling between them, then decoder
  levels that concatenate [upsampled, skip], shared by the U-Nets whose forward is that loop.

Building draws from the torch RNG in a fixed order (construction order), so a seed gives the
same weights whichever network file calls these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

CONV = {2: nn.Conv2d, 3: nn.Conv3d}
CONV_TRANSPOSE = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
MAX_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
ACTIVATIONS = ("elu", "relu")
INITS = ("he_normal", "glorot_uniform")  # Keras' names


def activation_layer(name: str, inplace: bool = True) -> nn.Module:
    """``"elu"`` (alpha 1, Keras' default) or ``"relu"``."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return nn.ELU(alpha=1.0, inplace=inplace) if name == "elu" else nn.ReLU(inplace=inplace)


def he_normal_(weight: torch.Tensor) -> torch.Tensor:
    """Keras ``he_normal``: truncated normal (2 std) whose variance after truncation is 2/fan_in."""
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978  # Keras' truncation correction
    return nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)


def init_conv_(layer: nn.Module, init: str) -> None:
    """Initialize a convolution's kernel as Keras would (``init``) and zero its bias."""
    if init == "he_normal":
        he_normal_(layer.weight)
    else:
        nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def conv_block(spatial_dims: int, in_channels: int, out_channels: int, activation: str,
               dropout: float, batch_norm: bool, init: str) -> nn.Sequential:
    """Fig. 2a of paper 002: conv3x3 -> act -> dropout -> conv3x3 -> act (BN after each conv).

    The convolutions are 'same'-padded, initialized by ``init`` (Keras' name) and bias-free
    when batch norm follows them; no dropout layer at all for a rate of 0.
    """
    layers: list[nn.Module] = []
    for index, channels_in in enumerate((in_channels, out_channels)):
        conv = CONV[spatial_dims](channels_in, out_channels, 3, padding=1, bias=not batch_norm)
        init_conv_(conv, init)
        layers.append(conv)
        if batch_norm:
            layers.append(BATCH_NORM[spatial_dims](out_channels))
        layers.append(activation_layer(activation))
        if index == 0 and dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def unet_features(x: torch.Tensor, encoders: Sequence[nn.Module], pool: nn.Module,
                  upsamplers: Sequence[nn.Module], decoders: Sequence[nn.Module],
                  gates: Sequence[nn.Module] | None = None) -> torch.Tensor:
    """The U-Net path: the features of the finest decoder level (the head's input).

    ``encoders`` run finest first (the last is the bottleneck), ``pool`` between them; then
    decoder level i (deepest first) computes ``decoders[i](cat([upsamplers[i](x), skip]))``
    with the encoder output of the same resolution as skip, replaced by ``gates[i](skip, x)``
    when gates are given (x: the decoder's input from the level below).
    """
    skips = []
    for level, encoder in enumerate(encoders):
        x = encoder(x if level == 0 else pool(x))
        skips.append(x)
    for index, (upsample, decoder) in enumerate(zip(upsamplers, decoders)):
        skip = skips[-2 - index]
        if gates is not None:
            skip = gates[index](skip, x)
        x = decoder(torch.cat([upsample(x), skip], dim=1))
    return x
