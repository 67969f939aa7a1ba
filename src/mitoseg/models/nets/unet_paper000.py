"""The U-Net of paper 000 (fluorescence robustness and sensitivity study)."""

from __future__ import annotations

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import unet_features


def _double_conv(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels_in in (in_channels, out_channels):
        layers.append(nn.Conv2d(channels_in, out_channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNetPaper000(nn.Module):
    """U-Net with 14 convolutions of 3 x 3, 3 poolings, 3 up-convolutions, 3 concatenations.

    Paper 000 (after Ronneberger et al. 2015): a contracting path of 4 levels (2 convolutions
    each, 3 max-poolings in between) and an expanding path of 3 levels (2x2 up-convolution,
    concatenation with the matching contracting level, 2 convolutions); channels double at
    every down-sampling and halve at every up-sampling. Choices where the paper is silent:
    'same' padding (output size = input size), ReLU, He initialization, no batch norm unless
    asked for. The paper's last layer is a 2-class softmax; an equivalent single logit per
    pixel is returned here (sigmoid(l) = softmax([0, l])[1]), to be used with BCE-with-logits.

    Args:
        spatial_dims: must be 2.
        in_channels: input channels (1 for one fluorescence channel).
        out_channels: output logit channels (1 for binary segmentation).
        base_channels: channels of the first level (doubled at each of the 3 poolings).
        batch_norm: add batch normalization after every 3 x 3 convolution.

    Input-size constraints: any H, W >= 2; sizes that are not multiples of 8 are
    reflect-padded internally and the output cropped back, so 200 x 200 works as is.

    Example:
        >>> net = UNetPaper000(2, 1, 1, base_channels=8)
        >>> net(torch.zeros(2, 1, 200, 200)).shape
        torch.Size([2, 1, 200, 200])
    """

    levels = 4
    stride = 2 ** (levels - 1)

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 base_channels: int = 32, batch_norm: bool = False) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"UNetPaper000 is 2D only, got spatial_dims={spatial_dims}")
        if min(in_channels, out_channels, base_channels) < 1:
            raise ValueError("in_channels, out_channels and base_channels must be >= 1")
        widths = [base_channels * 2**level for level in range(self.levels)]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for width in widths:
            self.encoders.append(_double_conv(previous, width, batch_norm))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsamplers.append(nn.ConvTranspose2d(width * 2, width, kernel_size=2, stride=2))
            self.decoders.append(_double_conv(width * 2, width, batch_norm))
        self.head = nn.Conv2d(widths[0], out_channels, kernel_size=1)
        _init_he(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        x = unet_features(x, self.encoders, self.pool, self.upsamplers, self.decoders)
        return crop_to(self.head(x), size)


def _init_he(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
