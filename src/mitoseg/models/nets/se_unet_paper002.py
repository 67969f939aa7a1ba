"""The 2D/3D SE U-Net of paper 002: its U-Net with squeeze-and-excitation after the blocks."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mitoseg.models.layers import he_normal_
from mitoseg.models.nets.unet_paper002 import unet_for


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation of Hu et al. 2018: one learned gain in (0, 1) per channel.

    ``s = sigmoid(W2 relu(W1 mean(x)))`` over all spatial positions, output ``x * s``, with
    ``W1``: C -> max(1, C // ratio) and ``W2`` back to C, both without bias and with Keras'
    He normal initialization (the authors' Keras ``squeeze_excite_block``, taken from
    keras-squeeze-excite-network). At least one hidden unit: Keras would build an empty layer
    for C < ratio.

    Args:
        channels: channels of the features it rescales.
        ratio: reduction ratio r (Hu et al. and the authors use 16).

    Input-size constraints: any (N, C, *spatial) tensor with C == ``channels``.

    Example:
        >>> SqueezeExcitation(32)(torch.zeros(2, 32, 8, 8, 8)).shape
        torch.Size([2, 32, 8, 8, 8])
    """

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        if channels < 1 or ratio < 1:
            raise ValueError(f"SqueezeExcitation: channels and ratio must be >= 1, "
                             f"got {channels} and {ratio}")
        hidden = max(1, channels // ratio)
        self.excite = nn.Sequential(nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, channels, bias=False), nn.Sigmoid())
        for layer in (self.excite[0], self.excite[2]):
            he_normal_(layer.weight)

    def scales(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel gains in (0, 1), shape (N, C)."""
        return self.excite(x.mean(dim=tuple(range(2, x.dim()))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scales(x).view(*x.shape[:2], *(1,) * (x.dim() - 2))


class SEUNetPaper002(nn.Module):
    """Paper 002's SE U-Net: ``UNetPaper002`` with a ``SqueezeExcitation`` after its blocks.

    Paper 002, "Proposed Networks Vs. State-of-the-art": "we experimented with
    Squeeze-and-Excitation (SE) blocks (Hu et al., 2018) in our proposed 2D and 3D models [...]
    Their best results are obtained with SE blocks everywhere except the bottleneck, as
    suggested by Roy et al. (2018). Nevertheless, we experimented as well with inserting SE
    blocks after every convolutional layer." Built by composition: ``self.unet`` is the
    2D/3D ``UNetPaper002`` (same widths, dropout, activation, init, upsampling; every argument
    means what it means there) and an SE module is appended to each of its encoder and decoder
    blocks except the bottleneck.

    Choices where the paper is silent (following the authors' public Keras code, EM_Image_
    Segmentation ``SE_U_Net_2D``, and Hu et al. 2018):
      * Placement: after the last activation of every Fig. 2a block (encoder and decoder),
        before pooling / concatenation, so the skips carry the recalibrated features; none in
        the bottleneck (``se_in_bottleneck=True`` adds one). ``se_every_conv=True`` gives the
        paper's other variant, an SE after each convolution's activation (before the dropout),
        as in the authors' 3D code.
      * Reduction ratio 16 (``se_ratio``), as Hu et al. and the authors' code: with the
        paper's narrow layers the excitation has 1 to 8 hidden units (2D) and 1 to 3 (3D).
      * FC layers without bias, He normal (see ``SqueezeExcitation``).

    Parameters (in/out channels 1): 2D 1,946,257 (the U-Net's 1,940,817 plus 5,440 in eight SE
    modules), within the paper's "less than 2M in our proposed 2D models"; 3D 789,793 (the 3D
    U-Net's 788,817 plus 976), i.e. 0.41 of the 2D count, where the paper says its 3D networks
    have "three times fewer" parameters (this is 2.5x fewer, as for the 3D U-Net).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output logit channels.
        filters: channels per level, bottleneck last; None: 16, 32, 64, 128, 256 in 2D and
            28, 36, 48, 64 in 3D.
        dropout: one rate per level, one number for all, or None for the paper's pyramid.
        activation: "elu" or "relu".
        batch_norm: batch normalization after every 3x3 convolution.
        init: "he_normal" or "glorot_uniform" for the 3x3 convolutions.
        upsample: "transpose" or "nearest".
        se_ratio: SE reduction ratio r (hidden units = max(1, channels // r)).
        se_in_bottleneck: also put an SE after the bottleneck block.
        se_every_conv: an SE after every convolution's activation instead of one per block.
        z_pooling: 3D only; False: no pooling along z (paper 002's Kasthuri++ variant).

    Input-size constraints: any spatial size (reflect-padded to a multiple of
    2 ** (len(filters) - 1), 16 in 2D and 8 in 3D by default, and cropped back). The squeeze
    averages over the padded tensor.

    Example:
        >>> net = SEUNetPaper002(2, 1, 1)
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] | None = None,
                 dropout: float | Sequence[float] | None = None, activation: str = "elu",
                 batch_norm: bool = False, init: str = "he_normal", upsample: str = "transpose",
                 se_ratio: int = 16, se_in_bottleneck: bool = False,
                 se_every_conv: bool = False, z_pooling: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(se_ratio, bool) or not isinstance(se_ratio, int) or se_ratio < 1:
            raise ValueError(f"{name}: se_ratio must be an int >= 1, got {se_ratio!r}")
        for option, value in (("se_in_bottleneck", se_in_bottleneck),
                              ("se_every_conv", se_every_conv)):
            if not isinstance(value, bool):
                raise ValueError(f"{name}: {option} must be true or false, got {value!r}")
        self.unet = unet_for(name, spatial_dims, in_channels, out_channels, filters=filters,
                             dropout=dropout, activation=activation, batch_norm=batch_norm,
                             init=init, upsample=upsample, z_pooling=z_pooling)
        self.filters, self.dropout = self.unet.filters, self.unet.dropout
        self.stride = self.unet.stride

        def with_se(block: nn.Sequential, channels: int) -> nn.Sequential:
            layers: list[nn.Module] = []
            activations = [i for i, m in enumerate(block) if isinstance(m, (nn.ELU, nn.ReLU))]
            for index, layer in enumerate(block):
                layers.append(layer)
                if index == activations[-1] or (se_every_conv and index in activations):
                    layers.append(SqueezeExcitation(channels, se_ratio))
            return nn.Sequential(*layers)

        levels = len(self.filters)
        for level in range(levels if se_in_bottleneck else levels - 1):
            self.unet.encoders[level] = with_se(self.unet.encoders[level], self.filters[level])
        for index, level in enumerate(reversed(range(levels - 1))):
            self.unet.decoders[index] = with_se(self.unet.decoders[index], self.filters[level])

    @property
    def se_blocks(self) -> list[SqueezeExcitation]:
        """Every SE module, in encoder-then-decoder order."""
        return [m for m in self.unet.modules() if isinstance(m, SqueezeExcitation)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)
