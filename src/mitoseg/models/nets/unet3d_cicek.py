"""The vanilla 3D U-Net of Cicek et al. 2016, with 'same' padding as paper 002 ported it."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import init_conv_, unet_features

DEFAULT_FILTERS = (32, 64, 128, 256, 512)


def _conv_bn_relu(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    conv = nn.Conv3d(in_channels, out_channels, 3, padding=1)
    init_conv_(conv, "he_normal")
    norm: list[nn.Module] = [nn.BatchNorm3d(out_channels)] if batch_norm else []
    return [conv, *norm, nn.ReLU(inplace=True)]


class UNet3DCicek(nn.Module):
    """3D U-Net (Cicek et al. 2016, "3D U-Net: Learning Dense Volumetric Segmentation from
    Sparse Annotation"), paper 002's "3D Vanilla U-Net".

    Cicek et al.: "each layer contains two 3 x 3 x 3 convolutions each followed by a
    rectified linear unit (ReLu), and then a 2 x 2 x 2 max pooling with strides of two";
    "we avoid bottlenecks by doubling the number of channels already before max pooling"
    (32-64 | 64-128 | 128-256 | bottleneck 256-512); "in the synthesis path, each layer
    consists of an upconvolution of 2 x 2 x 2 by strides of two" followed by two 3x3x3
    convolutions; "We also introduce batch normalization ("BN") before each ReLU"; a final
    1x1x1 convolution. ``filters`` lists the widths (32, 64, 128, 256, 512): encoder level i
    convolves to ``filters[i]`` then ``filters[i+1]``, the bottleneck to ``filters[-2]``,
    ``filters[-1]``; ``len(filters) - 2`` poolings.

    Choices where the paper is silent or was changed:
      * 'same' (zero) padding instead of the original valid convolutions (132 x 132 x 116 in,
        44 x 44 x 28 out), as paper 002's port (BiaPy ``vanilla_unet_3d.py``) does, so the
        output has the input's size.
      * The transposed convolutions keep their channel count (512 -> 512, 256 -> 256,
        128 -> 128, as in Cicek's Fig. 1); concatenation [upsampled, skip]; decoder convs to
        256, 128 and 64 channels.
      * BN (PyTorch defaults, with scale/shift) in encoder and decoder; every convolution,
        transposed ones included, keeps its bias as in the port (the published count implies
        bias-free upconvolutions, see below); He-normal kernels for the 3x3x3 convolutions,
        Glorot uniform for the transposed and 1x1x1 ones (the port's Keras defaults).

    Args:
        spatial_dims: must be 3 (the network is 3D only).
        in_channels: input channels.
        out_channels: output logit channels.
        filters: the widths above (>= 3 entries).
        batch_norm: BN before every ReLU (Cicek et al.); False gives the plain 3D U-Net.

    Input-size constraints: (N, C, D, H, W), any size; reflect-padded to a multiple of
    2 ** (len(filters) - 2) (8 by default) and cropped back.

    Parameters at the default config (in/out channels 1): 19,073,665. Cicek et al. state
    "The architecture has 19069955 parameters in total" for 3 input channels and 3 labels;
    this network with ``in_channels=3, out_channels=3`` has 19,075,523, and the difference is
    exactly the 4,672 BN scale/shift parameters (Caffe's BatchNorm layer learns none) plus the
    896 transposed-convolution biases (19,075,523 - 4,672 - 896 = 19,069,955).

    Example:
        >>> UNet3DCicek().eval()(torch.zeros(1, 1, 20, 28, 36)).shape
        torch.Size([1, 1, 20, 28, 36])
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] = DEFAULT_FILTERS, batch_norm: bool = True) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"UNet3DCicek: spatial_dims must be 3 (3D only), got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("UNet3DCicek: in_channels and out_channels must be >= 1")
        filters = tuple(filters)
        if len(filters) < 3 or any(not isinstance(f, int) or f < 1 for f in filters):
            raise ValueError(f"UNet3DCicek: filters must be >= 3 positive ints, got {filters}")
        self.filters = filters
        levels = len(filters) - 2
        self.stride = 2**levels
        self.encoders = nn.ModuleList(
            nn.Sequential(*_conv_bn_relu(in_channels if i == 0 else filters[i], filters[i],
                                         batch_norm),
                          *_conv_bn_relu(filters[i], filters[i + 1], batch_norm))
            for i in range(levels + 1))  # the last one is the bottleneck
        self.pool = nn.MaxPool3d(2)
        self.upsamplers, self.decoders = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(levels)):
            coarse, skip = filters[i + 2], filters[i + 1]
            up = nn.ConvTranspose3d(coarse, coarse, 2, stride=2)
            init_conv_(up, "glorot_uniform")
            self.upsamplers.append(up)
            self.decoders.append(nn.Sequential(*_conv_bn_relu(coarse + skip, skip, batch_norm),
                                               *_conv_bn_relu(skip, skip, batch_norm)))
        self.head = nn.Conv3d(filters[1], out_channels, 1)
        init_conv_(self.head, "glorot_uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        x = unet_features(x, self.encoders, self.pool, self.upsamplers, self.decoders)
        return crop_to(self.head(x), size)
