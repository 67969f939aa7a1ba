"""U-Net++ (Zhou et al. 2018): a U-Net with nested, dense skip pathways, compared in paper 002."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import init_conv_

DEFAULT_FILTERS = (32, 64, 128, 256, 512)


def _standard_unit(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Zhou et al.'s unit: (3x3 conv -> ReLU -> dropout) twice, He-normal kernels."""
    layers: list[nn.Module] = []
    for channels_in in (in_channels, out_channels):
        conv = nn.Conv2d(channels_in, out_channels, 3, padding=1)
        init_conv_(conv, "he_normal")
        layers += [conv, nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class UNetPlusPlus(nn.Module):
    """U-Net++ ("Nest-Net") of Zhou et al. 2018, 2D, as in the authors' official Keras code.

    Node X[i][j] (depth i, column j) is a standard unit; X[i][0] is the encoder (max-pooled
    X[i-1][0]); for j >= 1, X[i][j] sees the concatenation [up(X[i+1][j-1]), X[i][0], ...,
    X[i][j-1]] where ``up`` is a 2x2 stride-2 transposed convolution to ``filters[i]``
    channels. A 1x1 head on X[0][j] gives the output of the j-th nested U-Net; X[0][-1]'s is
    the main output.

    Choices (official code, ``Nest_Net``; paper 002 only names the network):
      * filters 32, 64, 128, 256, 512 (4 poolings); unit = (3x3 conv, ReLU, dropout 0.5) x 2,
        He-normal kernels; transposed convolutions and biases keep Keras' defaults (Glorot
        uniform, zeros). The official 1e-4 L2 kernel penalty is an optimizer setting
        (weight decay), not part of the module.
      * ``deep_supervision`` defaults to False, the official code's default: paper 002 does
        not say, and a port "obtained ... from the official site" keeps that default. Only
        the X[0][4] head then exists. With it, heads on X[0][1..3] are added and, in training
        mode, ``forward`` returns ``[main (X[0][4]), X[0][1], X[0][2], X[0][3]]`` logits, all
        at full resolution; eval mode returns the main logits (Zhou et al.'s "accurate mode"
        average of the heads and model pruning are not implemented).
      * Returns logits (the official sigmoid belongs to the loss).

    Args:
        spatial_dims: must be 2 (the network is 2D only).
        in_channels: input channels.
        out_channels: output logit channels.
        filters: channels per depth, deepest last (>= 2 depths).
        dropout: dropout rate after every convolution of every unit (0 = none).
        deep_supervision: add the heads on X[0][1..L-1] and return all heads in training.

    Input-size constraints: any size; reflect-padded to a multiple of 2 ** (len(filters) - 1)
    (16 by default) and cropped back.

    Parameters at default (1 in, 1 out): 9,041,601 -- exactly the "Total params: 9,041,601"
    the official code states for UNet++; 9,041,700 with deep supervision (3 more 1x1 heads).
    Paper 002 gives no count; its remark that 3D Vanilla U-Net, nnU-Net and U-Net++ "have
    between 2x and 5x more parameters than the other state-of-the-art approaches" does not hold
    for this official configuration (MultiResUNet, M-Net and Tiramisu have 7.2-9.3 M here),
    and the paper does not say how its U-Net++ differed.

    Example:
        >>> net = UNetPlusPlus()
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] = DEFAULT_FILTERS, dropout: float = 0.5,
                 deep_supervision: bool = False) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"UNetPlusPlus: spatial_dims must be 2 (2D only), got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("UNetPlusPlus: in_channels and out_channels must be >= 1")
        filters = tuple(filters)
        if len(filters) < 2 or any(int(f) != f or f < 1 for f in filters):
            raise ValueError(f"UNetPlusPlus: filters must be >= 2 positive ints, got {filters}")
        if not 0 <= dropout < 1:
            raise ValueError(f"UNetPlusPlus: dropout must be in [0, 1), got {dropout}")
        self.filters = filters = tuple(int(f) for f in filters)
        self.deep_supervision = bool(deep_supervision)
        depth = len(filters) - 1
        self.stride = 2**depth
        self.pool = nn.MaxPool2d(2)
        # nodes[i][j] = X[i][j]; ups[i][j] up-samples X[i+1][j] for X[i][j+1].
        self.nodes = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i in range(depth + 1):
            row = nn.ModuleList()
            for j in range(depth + 1 - i):
                channels_in = (in_channels if i == 0 else filters[i - 1]) if j == 0 \
                    else (j + 1) * filters[i]
                row.append(_standard_unit(channels_in, filters[i], dropout))
            self.nodes.append(row)
            if i < depth:
                ups = nn.ModuleList()
                for _ in range(depth - i):
                    up = nn.ConvTranspose2d(filters[i + 1], filters[i], 2, stride=2)
                    init_conv_(up, "glorot_uniform")
                    ups.append(up)
                self.ups.append(ups)
        self.heads = nn.ModuleList()
        for _ in range(depth if self.deep_supervision else 1):
            head = nn.Conv2d(filters[0], out_channels, 1)
            init_conv_(head, "he_normal")
            self.heads.append(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        x, size = pad_to_multiple(x, self.stride)
        depth = len(self.filters) - 1
        grid: list[list[torch.Tensor]] = [[] for _ in range(depth + 1)]
        for i in range(depth + 1):  # backbone first, then each new anti-diagonal
            grid[i].append(self.nodes[i][0](x if i == 0 else self.pool(grid[i - 1][0])))
            for k in range(i):  # X[i-1-k][k+1] becomes computable once X[i][0] exists
                row, col = i - 1 - k, k + 1
                up = self.ups[row][col - 1](grid[row + 1][col - 1])
                grid[row].append(self.nodes[row][col](torch.cat([up, *grid[row]], dim=1)))
        top = grid[0][1:]  # X[0][1], ..., X[0][depth]
        main = crop_to(self.heads[-1](top[-1]), size)
        if not (self.deep_supervision and self.training):
            return main
        return [main] + [crop_to(head(node), size) for head, node in zip(self.heads[:-1], top)]
