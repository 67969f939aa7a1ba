"""The 2D/3D Residual U-Net of paper 002: its U-Net with full pre-activation residual blocks."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mitoseg.models.layers import BATCH_NORM, CONV, activation_layer, init_conv_
from mitoseg.models.nets.unet_paper002 import unet_for

DEFAULT_FILTERS = {2: (16, 32, 64, 128, 256), 3: (28, 36, 48, 64, 80)}
DEFAULT_DROPOUT = (0.1, 0.1, 0.2, 0.2, 0.3)  # five levels in 2D and in 3D


class ResidualBlock(nn.Module):
    """Full pre-activation residual block (He et al. 2016, "Identity mappings"), Fig. 2b.

    ``out = residual(x) + shortcut(x)`` with
    ``residual = [BN] -> act -> conv3x3 -> dropout -> [BN] -> act -> conv3x3`` and
    ``shortcut`` a 1x1 convolution when the channel count changes, the identity otherwise.
    Nothing follows the addition: the next block's pre-activation (or the network's 1x1 head)
    takes the raw sum, as in the identity-mapping design.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        activation: "elu" or "relu".
        dropout: rate of the element-wise dropout between the two convolutions (0 = none).
        batch_norm: batch normalization before each activation.
        init: "he_normal" or "glorot_uniform" for the 3x3 and shortcut convolutions.
        preactivate: False for the network's first block, which sees the raw image: no
            [BN] -> act before its first convolution (the authors' ``first_block``).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 activation: str = "elu", dropout: float = 0.0, batch_norm: bool = False,
                 init: str = "he_normal", preactivate: bool = True) -> None:
        super().__init__()
        conv, norm = CONV[spatial_dims], BATCH_NORM[spatial_dims]
        layers: list[nn.Module] = []
        if preactivate:
            if batch_norm:
                layers.append(norm(in_channels))
            # Not in place: the shortcut still needs the block's input.
            layers.append(activation_layer(activation, inplace=batch_norm))
        layers.append(conv(in_channels, out_channels, 3, padding=1, bias=not batch_norm))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        if batch_norm:
            layers.append(norm(out_channels))
        layers.append(activation_layer(activation, inplace=True))
        layers.append(conv(out_channels, out_channels, 3, padding=1))
        for layer in layers:
            if isinstance(layer, conv):
                init_conv_(layer, init)
        self.residual = nn.Sequential(*layers)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = conv(in_channels, out_channels, 1)
            init_conv_(self.shortcut, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x) + self.shortcut(x)


class ResidualUNetPaper002(nn.Module):
    """Paper 002's Residual U-Net: ``UNetPaper002`` with every Fig. 2a block made residual.

    Paper 002, "Proposed Networks": the Residual U-Net "is formed by full pre-activation
    (He et al., 2016b) residual blocks (two 3 x 3 convolutional layers with a shortcut, Fig. 2b)";
    "In 2D, this network is identical to our best basic U-Net architecture but swapping each
    convolutional block by a residual block" (16-32-64-128-256 filters, dropout 0.1 -> 0.3 -> 0.1,
    ELU, He normal, transposed convolutions); "For the 3D residual approach, we achieved our best
    results going one level deeper than the non-residual 3D network and 28, 36, 48, 64 and 80
    (bottleneck) filters per level".

    Built by composition: ``self.unet`` is a ``UNetPaper002`` (pooling, up-sampling, [up, skip]
    concatenation, 1x1 head, padding) whose encoder and decoder blocks are replaced by
    ``ResidualBlock``s of the same widths and dropout rates (the discarded Fig. 2a blocks still
    draw from the torch RNG when built, so a given seed always gives the same network).

    Choices where the paper is silent (following the authors' public Keras code, EM_Image_
    Segmentation / BiaPy ``ResUNet``, and He et al. 2016b):
      * Block (``ResidualBlock``): [BN] -> act -> conv3x3 -> dropout -> [BN] -> act -> conv3x3,
        added to the shortcut; dropout sits between the two convolutions, where Fig. 2a has it
        and where the authors put it. No activation after the addition.
      * The first encoder block skips its pre-activation (the input is the raw image), as the
        authors' ``first_block`` does.
      * Shortcut: a 1x1 convolution (with bias, initialized like the 3x3 kernels) when the
        channel count changes, else the identity. Every block of the default networks changes
        channels (the encoder widens, the decoder narrows the concatenation), so every one has
        the 1x1 projection, exactly as the authors' code (which always projects).
      * ``batch_norm`` (off by default: the authors' setting and Table 5) puts BN before each
        activation, as He et al.; the authors' code also adds a BN after the second convolution,
        which is not done here. The convolution followed by BN drops its redundant bias.
      * Dropout: ``dropout[i]`` in encoder level i and in the decoder level at the same depth,
        ``dropout[-1]`` in the bottleneck, as ``UNetPaper002``. The 3D default reuses the 2D
        pyramid 0.1, 0.1, 0.2, 0.2, 0.3 (the paper gives no 3D rates; five levels as in 2D).
      * Transposed convolutions and the head: Glorot uniform (Keras' default), biases 0.

    Parameters (in/out channels 1): 2D 2,028,609 (the U-Net's 1,940,817 plus 87,792 in the
    1x1 shortcuts); the paper says "less than 2M in our proposed 2D models", which this exceeds
    by 1.4 % because of the authors' projection shortcuts. 3D 1,501,293, i.e. 0.74 of the 2D
    count, where the paper says its 3D networks have "three times fewer" parameters: the extra
    level at 80 filters makes this one 1.9x the 3D U-Net (788,817).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output logit channels.
        filters: channels per level, bottleneck last (>= 2 levels). None: 16, 32, 64, 128, 256
            in 2D and 28, 36, 48, 64, 80 in 3D.
        dropout: one rate per level, one number for all levels, or None: 0.1, 0.1, 0.2, 0.2,
            0.3 for five levels (otherwise ``UNetPaper002``'s default for that length).
        activation: "elu" or "relu".
        batch_norm: batch normalization before each activation of every block.
        init: "he_normal" or "glorot_uniform" for the 3x3 and shortcut convolutions.
        upsample: "transpose" or "nearest" (the decoder block then sees
            ``filters[i+1] + filters[i]`` channels).
        z_pooling: 3D only; False: no pooling along z (paper 002's Kasthuri++ variant).

    Input-size constraints: any spatial size; sizes that are not multiples of
    2 ** (len(filters) - 1) (16 in 2D and in 3D by default) are reflect-padded internally and
    the output cropped back, so 200 x 200 crops and 20 x 28 x 36 volumes work as they are.

    Example:
        >>> net = ResidualUNetPaper002(2, 1, 1)
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
        >>> ResidualUNetPaper002(3)(torch.zeros(1, 1, 16, 20, 24)).shape
        torch.Size([1, 1, 16, 20, 24])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] | None = None,
                 dropout: float | Sequence[float] | None = None, activation: str = "elu",
                 batch_norm: bool = False, init: str = "he_normal",
                 upsample: str = "transpose", z_pooling: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        if spatial_dims not in (2, 3):
            raise ValueError(f"{name}: spatial_dims must be 2 or 3, got {spatial_dims}")
        if filters is None:
            filters = DEFAULT_FILTERS[spatial_dims]
        if dropout is None and isinstance(filters, Sequence) \
                and len(filters) == len(DEFAULT_DROPOUT):
            dropout = DEFAULT_DROPOUT
        self.unet = unet_for(name, spatial_dims, in_channels, out_channels, filters=filters,
                             dropout=dropout, activation=activation, batch_norm=batch_norm,
                             init=init, upsample=upsample, z_pooling=z_pooling)
        self.filters, self.dropout = self.unet.filters, self.unet.dropout
        self.stride = self.unet.stride

        def block(channels_in: int, level: int, preactivate: bool = True) -> ResidualBlock:
            return ResidualBlock(spatial_dims, channels_in, self.filters[level], activation,
                                 self.dropout[level], batch_norm, init, preactivate)

        levels = len(self.filters)
        self.unet.encoders = nn.ModuleList(
            block(in_channels if level == 0 else self.filters[level - 1], level, level > 0)
            for level in range(levels))
        self.unet.decoders = nn.ModuleList(
            block((self.filters[level] if upsample == "transpose" else self.filters[level + 1])
                  + self.filters[level], level)
            for level in reversed(range(levels - 1)))

    @property
    def encoders(self) -> nn.ModuleList:
        """The encoder residual blocks, finest first; the last one is the bottleneck."""
        return self.unet.encoders

    @property
    def decoders(self) -> nn.ModuleList:
        """The decoder residual blocks, deepest first."""
        return self.unet.decoders

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)
