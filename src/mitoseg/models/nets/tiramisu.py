"""The one hundred layers Tiramisu (Jégou et al. 2017, FC-DenseNet), compared in paper 002."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple

FC_DENSENET103_LAYERS = (4, 5, 7, 10, 12, 15, 12, 10, 7, 5, 4)


def _he_uniform_(layer: nn.Module) -> nn.Module:
    """Lasagne's ``HeUniform(gain='relu')`` (bound sqrt(6 / fan_in)) and a zero bias."""
    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


def _bn_relu_conv(in_channels: int, out_channels: int, kernel: int,
                  dropout: float) -> nn.Sequential:
    """BN -> ReLU -> conv ('same') -> dropout: the FC-DenseNet layer (Lasagne BN settings)."""
    layers: list[nn.Module] = [
        nn.BatchNorm2d(in_channels, eps=1e-4, momentum=0.1), nn.ReLU(inplace=True),
        _he_uniform_(nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2))]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class _DenseBlock(nn.Module):
    """``n_layers`` layers, each reading the concatenation of the input and all earlier outputs.

    Returns (stack, new): the input concatenated with the new maps, and the new maps alone.
    """

    def __init__(self, in_channels: int, n_layers: int, growth_rate: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _bn_relu_conv(in_channels + index * growth_rate, growth_rate, 3, dropout)
            for index in range(n_layers))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        new = []
        for layer in self.layers:
            new.append(layer(x))
            x = torch.cat([x, new[-1]], dim=1)
        return x, torch.cat(new, dim=1)


class Tiramisu(nn.Module):
    """FC-DenseNet of Jégou et al. 2017; the default is FC-DenseNet103.

    As in the reference code (SimJeg/FC-DenseNet, Lasagne; paper 002 used a Keras port of it)
    and the publication:
      * first 3x3 convolution with 48 filters (linear, as the reference), then dense blocks of
        BN-ReLU-3x3 conv-dropout(0.2) layers with growth rate 16 and 4, 5, 7, 10, 12 layers
        down, 15 in the bottleneck, 12, 10, 7, 5, 4 up (5 poolings, stride 32);
      * transition down: BN-ReLU-1x1 conv (same width)-dropout, 2x2 max-pooling;
      * transition up: a 3x3 stride-2 transposed convolution of only the previous block's new
        maps (growth x layers channels; Lasagne's 'valid' output cropped to the skip's size,
        top-left aligned like its 'center' crop of one extra row), concatenated with the skip;
      * the final 1x1 convolution reads the whole last stack; returns logits (the reference's
        softmax over 11 CamVid classes, and the port's sigmoid, belong to the loss).
      * He-uniform kernels, zero biases, BN with Lasagne's epsilon 1e-4 and running-average
        factor 0.1; element-wise dropout. No deep supervision (the reference found none
        helped). Paper 002's Keras port also puts a ReLU on the first convolution; this
        follows the reference (a BN-ReLU comes next anyway).

    Args:
        spatial_dims: must be 2 (the network is 2D only).
        in_channels: input channels.
        out_channels: output logit channels.
        first_filters: filters of the first convolution.
        growth_rate: maps each dense layer adds.
        layers_per_block: an odd-length sequence (down blocks, bottleneck, up blocks) of
            layer counts; its length sets the poolings, (len - 1) / 2.
        dropout: rate after every convolution (0 = none).

    Input-size constraints: any size; reflect-padded to a multiple of 2 ** poolings (32 by
    default) and cropped back. In training mode batch norm needs more than one value per
    channel, so a batch of one image needs an input larger than the stride (the bottleneck of
    a 32 x 32 input is 1 x 1).

    Parameters at default (1 in, 1 out): 9,318,657 trainable; 9,421,729 counting the BN
    running statistics, as the reference's summary does (Lasagne stores them as parameters).
    Jégou et al. state 9.4 M for FC-DenseNet103 (their 3-channel, 11-class net: 9,322,091
    trainable, 9,425,163 in Lasagne's count): 0.9 % below, resp. 0.2 % above. Paper 002
    states none.

    Example:
        >>> net = Tiramisu().eval()
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 first_filters: int = 48, growth_rate: int = 16,
                 layers_per_block: Sequence[int] = FC_DENSENET103_LAYERS,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"Tiramisu: spatial_dims must be 2 (2D only), got {spatial_dims}")
        if min(in_channels, out_channels, first_filters, growth_rate) < 1:
            raise ValueError("Tiramisu: in_channels, out_channels, first_filters and "
                             "growth_rate must be >= 1")
        layers = tuple(layers_per_block)
        if len(layers) < 3 or len(layers) % 2 == 0 or any(int(n) != n or n < 1 for n in layers):
            raise ValueError("Tiramisu: layers_per_block must be an odd number (>= 3) of "
                             f"positive ints, got {layers}")
        if not 0 <= dropout < 1:
            raise ValueError(f"Tiramisu: dropout must be in [0, 1), got {dropout}")
        self.layers_per_block = layers = tuple(int(n) for n in layers)
        n_pool = (len(layers) - 1) // 2
        self.stride = 2**n_pool
        self.first = _he_uniform_(nn.Conv2d(in_channels, first_filters, 3, padding=1))
        self.down_blocks, self.transitions_down = nn.ModuleList(), nn.ModuleList()
        channels, skip_channels = first_filters, []
        for n_layers in layers[:n_pool]:
            self.down_blocks.append(_DenseBlock(channels, n_layers, growth_rate, dropout))
            channels += n_layers * growth_rate
            skip_channels.append(channels)
            self.transitions_down.append(nn.Sequential(
                _bn_relu_conv(channels, channels, 1, dropout), nn.MaxPool2d(2)))
        self.bottleneck = _DenseBlock(channels, layers[n_pool], growth_rate, dropout)
        self.transitions_up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for index, n_layers in enumerate(layers[n_pool + 1:]):
            keep = growth_rate * layers[n_pool + index]  # the previous block's new maps
            self.transitions_up.append(_he_uniform_(nn.ConvTranspose2d(keep, keep, 3, stride=2)))
            channels = keep + skip_channels[-1 - index]
            self.up_blocks.append(_DenseBlock(channels, n_layers, growth_rate, dropout))
            channels += n_layers * growth_rate
        self.head = _he_uniform_(nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        stack, skips = self.first(x), []
        for block, down in zip(self.down_blocks, self.transitions_down):
            stack, _ = block(stack)
            skips.append(stack)
            stack = down(stack)
        stack, new = self.bottleneck(stack)
        for up, block, skip in zip(self.transitions_up, self.up_blocks, reversed(skips)):
            upsampled = up(new)[..., :skip.shape[2], :skip.shape[3]]
            stack, new = block(torch.cat([upsampled, skip], dim=1))
        return crop_to(self.head(stack), size)
