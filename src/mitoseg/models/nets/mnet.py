"""M-Net (Fu et al. 2018): multi-scale input U-Net with fused side outputs (paper 002)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import init_conv_

DEFAULT_FILTERS = (32, 64, 128, 256, 512)


def _conv_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    init_conv_(conv, "glorot_uniform")
    return [conv, nn.ReLU(inplace=True)]


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(*_conv_relu(in_channels, out_channels),
                         *_conv_relu(out_channels, out_channels))


def fuse_probabilities(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logit of the mean of sigmoid(logits): M-Net's average of side-output probabilities.

    Computed in log space (log-sum-exp of log-sigmoids), so it stays finite for any logits.
    """
    stacked = torch.stack(list(logits), dim=0)
    return (torch.logsumexp(F.logsigmoid(stacked), dim=0)
            - torch.logsumexp(F.logsigmoid(-stacked), dim=0))


class MNet(nn.Module):
    """M-Net of Fu et al. 2018 (optic disc/cup segmentation), as paper 002's port builds it.

    Structure (Fu et al.'s public Keras ``Model_MNet``, which paper 002's authors copied with
    a 1-class sigmoid output):
      * Multi-scale input: the image is average-pooled 2x, 4x and 8x; at encoder levels 1..3
        a 3x3 conv + ReLU of that scale (``filters[l]`` channels) is concatenated with the
        max-pooled features before the level's two convolutions.
      * U-shaped body: levels of two 3x3 conv + ReLU, 32-64-128-256-512 filters, 2x2
        max-pooling, 2x2 stride-2 transposed convolutions, concatenated skips.
      * Side outputs: a 1x1 convolution on each of the 4 decoder levels, up-sampled to full
        size by nearest neighbour (the reference up-samples first, then applies the 1x1
        convolution: the same map); the fused output is the average of the four side
        probabilities. ``forward`` returns that average as a logit (``fuse_probabilities``),
        so ``sigmoid(main)`` is exactly the reference's fused output.
      * Glorot-uniform kernels and zero biases (Keras defaults); no batch norm, no dropout.
      * Not applicable here: Fu et al.'s polar transformation around the optic disc centre
        and their 2-label (disc/cup) output -- mitochondria have no single centre to unwrap
        around; paper 002's port drops both too.

    Deep supervision (on by default: Fu et al.'s training script puts a loss on every side
    output and on the fused one, weighted 0.1 each and 0.6): in training mode ``forward``
    returns ``[fused, side_0, side_1, side_2, side_3]`` logits at full size, finest decoder
    level first; in eval mode (or with ``deep_supervision=False``) the fused logits only.
    With it off, the fused output alone still trains every side (it averages them).

    Args:
        spatial_dims: must be 2 (the network is 2D only).
        in_channels: input channels.
        out_channels: output logit channels.
        filters: channels per level, bottleneck last (>= 2 levels); the multi-scale inputs
            enter levels 1 .. len(filters) - 2.
        deep_supervision: return the side outputs too in training mode.

    Input-size constraints: any size; reflect-padded to a multiple of 2 ** (len(filters) - 1)
    (16 by default) and cropped back.

    Parameters at default (1 in, 1 out): 8,538,596 (paper 002 and Fu et al. state none).

    Example:
        >>> net = MNet().eval()
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] = DEFAULT_FILTERS, deep_supervision: bool = True) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"MNet: spatial_dims must be 2 (2D only), got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("MNet: in_channels and out_channels must be >= 1")
        filters = tuple(filters)
        if len(filters) < 2 or any(int(f) != f or f < 1 for f in filters):
            raise ValueError(f"MNet: filters must be >= 2 positive ints, got {filters}")
        self.filters = filters = tuple(int(f) for f in filters)
        self.deep_supervision = bool(deep_supervision)
        # Fu et al.'s training weights: 0.6 for the fused output, 0.1 for each side output
        self.deep_supervision_weights = (0.6, 0.1, 0.1, 0.1, 0.1)
        depth = len(filters) - 1
        self.stride = 2**depth
        self.pool = nn.MaxPool2d(2)
        self.downscale = nn.AvgPool2d(2)
        # scale_inputs[l - 1] reads the image average-pooled 2**l times, for levels 1..depth-1.
        self.scale_inputs = nn.ModuleList(
            nn.Sequential(*_conv_relu(in_channels, filters[level])) for level in range(1, depth))
        self.encoders = nn.ModuleList()
        for level in range(depth + 1):
            if level == 0:
                channels_in = in_channels
            elif level < depth:
                channels_in = filters[level] + filters[level - 1]
            else:
                channels_in = filters[level - 1]
            self.encoders.append(_double_conv(channels_in, filters[level]))
        self.upsamplers, self.decoders, self.sides = nn.ModuleList(), nn.ModuleList(), \
            nn.ModuleList()
        for level in reversed(range(depth)):
            up = nn.ConvTranspose2d(filters[level + 1], filters[level], 2, stride=2)
            init_conv_(up, "glorot_uniform")
            self.upsamplers.append(up)
            self.decoders.append(_double_conv(2 * filters[level], filters[level]))
            side = nn.Conv2d(filters[level], out_channels, 1)
            init_conv_(side, "glorot_uniform")
            self.sides.append(side)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x, size = pad_to_multiple(x, self.stride)
        depth = len(self.filters) - 1
        image, skips, sides = x, [], []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                x = self.pool(x)
            if 0 < level < depth:
                image = self.downscale(image)
                x = torch.cat([self.scale_inputs[level - 1](image), x], dim=1)
            x = encoder(x)
            skips.append(x)
        full = skips[0].shape[2:]
        for index, (up, decoder, side) in enumerate(zip(self.upsamplers, self.decoders,
                                                         self.sides)):
            x = decoder(torch.cat([up(x), skips[-2 - index]], dim=1))
            logits = side(x)
            if logits.shape[2:] != full:
                logits = F.interpolate(logits, size=full, mode="nearest")
            sides.append(logits)
        sides = [crop_to(s, size) for s in reversed(sides)]  # finest decoder level first
        fused = fuse_probabilities(sides)
        if not (self.deep_supervision and self.training):
            return fused
        return [fused, *sides]

