"""MultiResUNet (Ibtehaz & Rahman 2020): MultiRes blocks and Res paths, compared in paper 002."""

from __future__ import annotations

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import init_conv_

DEPTH = 4  # poolings; Res path lengths 4, 3, 2, 1 from the top


def _batch_norm(channels: int, scale: bool = True) -> nn.BatchNorm2d:
    """Keras ``BatchNormalization`` (eps 1e-3, momentum 0.99); ``scale=False`` drops gamma."""
    norm = nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01, affine=scale)
    if not scale:  # Keras' center=True, scale=False: a learned shift beta only
        norm.bias = nn.Parameter(torch.zeros(channels))
    return norm


class _ConvBN(nn.Sequential):
    """The reference ``conv2d_bn``: conv (no bias) -> BN without gamma -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, relu: bool) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False)
        init_conv_(conv, "glorot_uniform")
        layers: list[nn.Module] = [conv, _batch_norm(out_channels, scale=False)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _MultiResBlock(nn.Module):
    """Three chained 3x3 conv_bn (the 3x3, 5x5, 7x7 receptive fields) concatenated, plus a
    1x1 shortcut; widths int(W * 0.167), int(W * 0.333), int(W * 0.5) with W = alpha * U."""

    def __init__(self, in_channels: int, u: int, alpha: float) -> None:
        super().__init__()
        w = alpha * u
        widths = (int(w * 0.167), int(w * 0.333), int(w * 0.5))
        if min(widths) < 1:
            raise ValueError(f"MultiResUNet: alpha * filters = {w:g} gives an empty conv")
        self.out_channels = sum(widths)
        self.shortcut = _ConvBN(in_channels, self.out_channels, 1, relu=False)
        self.convs = nn.ModuleList(
            _ConvBN(c_in, c_out, 3, relu=True)
            for c_in, c_out in zip((in_channels,) + widths[:-1], widths))
        self.norm_concat = _batch_norm(self.out_channels)
        self.norm_out = _batch_norm(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, y = [], x
        for conv in self.convs:
            y = conv(y)
            features.append(y)
        out = self.norm_concat(torch.cat(features, dim=1)) + self.shortcut(x)
        return self.norm_out(torch.relu(out))


class _ResPath(nn.Module):
    """``length`` residual units: (3x3 conv_bn ReLU) + (1x1 conv_bn) -> ReLU -> BN."""

    def __init__(self, in_channels: int, channels: int, length: int) -> None:
        super().__init__()
        self.units = nn.ModuleList()
        for index in range(length):
            c_in = in_channels if index == 0 else channels
            self.units.append(nn.ModuleDict({
                "conv": _ConvBN(c_in, channels, 3, relu=True),
                "shortcut": _ConvBN(c_in, channels, 1, relu=False),
                "norm": _batch_norm(channels)}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for unit in self.units:
            x = unit["norm"](torch.relu(unit["conv"](x) + unit["shortcut"](x)))
        return x


class MultiResUNet(nn.Module):
    """MultiResUNet of Ibtehaz & Rahman 2020 (2D), as in their official Keras code.

    Paper 002 compares "MultiResUNet (Ibtehaz & Rahman, 2020)" ported from the official code;
    the authors' port copies it unchanged apart from a 1-class output. Structure:
      * 4 poolings; level l has U = ``filters * 2**l`` (32, 64, 128, 256, 512) and a MultiRes
        block of W = alpha * U (alpha = 1.67): three chained 3x3 conv_bn of int(0.167 W),
        int(0.333 W), int(0.5 W) filters, concatenated (51, 105, 212, 426, 853 channels),
        BN, plus a 1x1 conv_bn shortcut, then ReLU and BN.
      * Res paths on the skips with U filters and lengths 4, 3, 2, 1 (top to bottom).
      * Decoder: 2x2 stride-2 transposed convolution to U channels (with bias), concatenated
        [up, Res path], MultiRes block.
      * conv_bn = convolution without bias, then Keras BatchNormalization(scale=False) (a
        learned shift, no gamma); the other BNs have both; Keras' BN eps 1e-3 and momentum
        0.99; Glorot-uniform kernels, zero biases (Keras defaults).
      * Output: 1x1 conv_bn (as the reference code, BN included) returning logits; the
        reference's sigmoid belongs to the loss.

    Args:
        spatial_dims: must be 2 (the network is 2D only).
        in_channels: input channels.
        out_channels: output logit channels.
        filters: U of the first level (32), doubled at each of the 4 poolings.
        alpha: width multiplier of the MultiRes blocks (1.67).

    Input-size constraints: any size; reflect-padded to a multiple of 16 and cropped back. In
    training mode batch norm needs more than one value per channel, so a batch of one image
    needs an input larger than 16 x 16 (whose bottleneck is 1 x 1).

    Parameters at default (1 in, 1 out): 7,237,982 trainable; 7,262,504 with the BN running
    statistics, which Keras' "Total params" also counts. The original publication reports
    7,262,019 for MultiResUNet (0.007 % off that total, 0.3 % off the trainable count).
    Paper 002 states none.

    Example:
        >>> net = MultiResUNet()
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    stride = 2**DEPTH

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 filters: int = 32, alpha: float = 1.67) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"MultiResUNet: spatial_dims must be 2 (2D only), got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("MultiResUNet: in_channels and out_channels must be >= 1")
        if int(filters) != filters or filters < 1:
            raise ValueError(f"MultiResUNet: filters must be a positive int, got {filters}")
        if not alpha > 0:
            raise ValueError(f"MultiResUNet: alpha must be > 0, got {alpha}")
        widths = [int(filters) * 2**level for level in range(DEPTH + 1)]
        self.encoders, self.res_paths = nn.ModuleList(), nn.ModuleList()
        channels = in_channels
        for level, u in enumerate(widths):
            block = _MultiResBlock(channels, u, alpha)
            self.encoders.append(block)
            channels = block.out_channels
            if level < DEPTH:
                self.res_paths.append(_ResPath(channels, u, DEPTH - level))
        self.pool = nn.MaxPool2d(2)
        self.upsamplers, self.decoders = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(DEPTH)):
            up = nn.ConvTranspose2d(channels, widths[level], 2, stride=2)
            init_conv_(up, "glorot_uniform")
            self.upsamplers.append(up)
            block = _MultiResBlock(2 * widths[level], widths[level], alpha)
            self.decoders.append(block)
            channels = block.out_channels
        self.head = _ConvBN(channels, out_channels, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            if level < DEPTH:
                skips.append(self.res_paths[level](x))
        for up, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return crop_to(self.head(x), size)
