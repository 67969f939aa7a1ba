"""The FCN of paper 000 (fluorescence robustness and sensitivity study)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple


def _conv_block(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(convs):
        layers += [nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3,
                             padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _bilinear_kernel(factor: int) -> torch.Tensor:
    """Weights that make a transposed convolution start out as bilinear interpolation."""
    size = 2 * factor
    center = factor - 0.5
    ramp = 1 - torch.abs(torch.arange(size, dtype=torch.float32) - center) / factor
    return (ramp[:, None] * ramp[None, :])[None, None]


class FCNPaper000(nn.Module):
    """FCN with 9 convolutions of 3 x 3, 3 max-poolings and 2 fused up-sampling paths.

    Paper 000 (after Long et al. 2015): convolution blocks of 2, 2, 3 and 2 convolutions
    (9 in all) separated by 3 max-poolings; one path scores the output of the second pooling
    (stride 4) and one the last convolution (stride 8); each score map is up-sampled to the
    input size by a learnable transposed convolution initialized as bilinear interpolation,
    and the two are fused by summation -- the fine path gives the coarse one its detail.
    Choices where the paper is silent: channel widths c, 2c, 4c, 8c, ReLU, He init, 1 x 1
    score layers. Returns one logit per pixel (equivalent to the paper's 2-class softmax).

    Args:
        spatial_dims: must be 2.
        in_channels: input channels.
        out_channels: output logit channels.
        base_channels: width c of the first block.

    Input-size constraints: any H, W >= 2; sizes that are not multiples of 8 are
    reflect-padded internally and the output cropped back (200 x 200 works as is).

    Example:
        >>> net = FCNPaper000(2, 1, 1, base_channels=8)
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    stride = 8

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 base_channels: int = 32) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"FCNPaper000 is 2D only, got spatial_dims={spatial_dims}")
        if min(in_channels, out_channels, base_channels) < 1:
            raise ValueError("in_channels, out_channels and base_channels must be >= 1")
        c = base_channels
        self.block1 = _conv_block(in_channels, c, 2)
        self.block2 = _conv_block(c, 2 * c, 2)
        self.block3 = _conv_block(2 * c, 4 * c, 3)
        self.block4 = _conv_block(4 * c, 8 * c, 2)
        self.pool = nn.MaxPool2d(2)
        self.score_pool2 = nn.Conv2d(2 * c, out_channels, 1)
        self.score_last = nn.Conv2d(8 * c, out_channels, 1)
        self.up_pool2 = self._upsampler(out_channels, 4)
        self.up_last = self._upsampler(out_channels, 8)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    @staticmethod
    def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
        layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor,
                                   padding=factor // 2, groups=channels, bias=False)
        with torch.no_grad():
            layer.weight.copy_(_bilinear_kernel(factor).expand_as(layer.weight))
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        pool2 = self.pool(self.block2(self.pool(self.block1(x))))
        last = self.block4(self.pool(self.block3(pool2)))
        fine = self.up_pool2(self.score_pool2(pool2))
        coarse = self.up_last(self.score_last(last))
        fused = fine + F.interpolate(coarse, size=fine.shape[2:]) if coarse.shape != fine.shape \
            else fine + coarse
        return crop_to(fused, size)
