"""Xiao et al. 2018's deeply supervised 3D residual U-Net for EM mitochondria."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import init_conv_

DEFAULT_FILTERS = (32, 48, 64, 80)
POOL = (1, 2, 2)  # (D, H, W): never along z


def _conv_bn_elu(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    conv = nn.Conv3d(in_channels, out_channels, kernel, padding=kernel // 2)
    init_conv_(conv, "he_normal")
    return nn.Sequential(conv, nn.BatchNorm3d(out_channels), nn.ELU(inplace=True))


def _head(in_channels: int, out_channels: int) -> nn.Conv3d:
    head = nn.Conv3d(in_channels, out_channels, 1)
    init_conv_(head, "he_normal")
    return head


class _ResidualBlock(nn.Module):
    """1x1x1 conv-BN-ELU shortcut + two 3x3x3 conv-BN-ELU, summed."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shortcut = _conv_bn_elu(in_channels, out_channels, 1)
        self.body = nn.Sequential(_conv_bn_elu(in_channels, out_channels, 3),
                                  _conv_bn_elu(out_channels, out_channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


class XiaoResUNet3D(nn.Module):
    """Deeply supervised 3D residual U-Net of Xiao et al. 2018 ("Automatic mitochondria
    segmentation for EM data using a 3D supervised convolutional network", Front. Neuroanat.
    12:92), as paper 002 reproduced it.

    Paper 002: "a variant of a 3D U-Net model with residual blocks. In the decoder of the
    network, they included two auxiliary outputs to address the vanishing gradient issue";
    Xiao et al. "provided a detailed explanation of their training procedure, architecture
    and output reconstruction strategy. Thus, the only modification we made is the use of
    elastic transformations". The layer-level reading follows the authors' port (BiaPy
    ``sota_implementations/xiao_2018/unet_3d_xiao.py``) of Xiao's figure:
      * stem: 3x3x3 conv to 3 channels -> BN -> ELU;
      * residual block (every level, both paths): a 1x1x1 conv-BN-ELU shortcut added to two
        3x3x3 conv-BN-ELU;
      * encoder blocks of 32, 48, 64 and 80 (bottleneck) filters, 2x2x1 max pooling: the
        in-plane axes are pooled three times, z never (anisotropic pooling for EM stacks; the
        subvolumes were 256 x 256 x 20 voxels);
      * decoder: nearest upsampling (1, 2, 2) -> 1x1x1 conv-BN-ELU to the skip's width ->
        element-wise *sum* with the skip (not concatenation) -> residual block; at the top
        the sum is followed by the residual block, a 3x3x3 conv-BN-ELU to 3 channels and the
        1x1x1 classifier;
      * auxiliary classifier 1 on the 64-filter decoder level (after its residual block,
        upsampled x4 in-plane), auxiliary classifier 2 on the full-resolution 32-channel
        features before the top skip sum; Keras loss weights 1 (main), 0.15 (aux 1), 0.3
        (aux 2), exposed as ``self.deep_supervision_weights`` in the output order.

    Choices where the sources are silent or differ:
      * One sigmoid logit per class instead of the 2-class softmax (the project's binary
        convention); the L2 (0.01) kernel penalty of the port's classifiers and last 3x3x3
        conv belongs to the optimizer and is not part of the module.
      * The auxiliary 1x1x1 classifiers run before the nearest upsampling (identical result:
        a 1x1x1 conv commutes with nearest upsampling), so all outputs are full-size logits.
      * Kernels He normal (as in the port), biases zero, BatchNorm with PyTorch defaults.

    Args:
        spatial_dims: must be 3 (the network is 3D only).
        in_channels: input channels.
        out_channels: output logit channels.
        filters: residual-block widths of the 3 encoder levels and the bottleneck.
        stem_channels: width of the first and the last 3x3x3 conv (3 in the port).
        deep_supervision: build the two auxiliary classifiers and return
            ``[main, aux1, aux2]`` in training mode (``main`` only in eval mode).

    Input-size constraints: (N, C, D, H, W); D any size (never pooled), H and W any size,
    reflect-padded to multiples of 8 (``self.stride``) and cropped back.

    Parameters at the default config (in/out channels 1): 1,072,905 (1,072,807 without deep
    supervision; the port's 2-class softmax version has 1,073,007 trainable). Neither paper
    002's text nor Xiao et al. state a count.

    Example:
        >>> XiaoResUNet3D().eval()(torch.zeros(1, 1, 20, 28, 36)).shape
        torch.Size([1, 1, 20, 28, 36])
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] = DEFAULT_FILTERS, stem_channels: int = 3,
                 deep_supervision: bool = True) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(
                f"XiaoResUNet3D: spatial_dims must be 3 (3D only), got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("XiaoResUNet3D: in_channels and out_channels must be >= 1")
        filters = tuple(filters)
        if len(filters) != 4 or any(not isinstance(f, int) or f < 1 for f in filters):
            raise ValueError(f"XiaoResUNet3D: filters must be 4 positive ints (3 levels and the "
                             f"bottleneck), got {filters}")
        if not isinstance(stem_channels, int) or stem_channels < 1:
            raise ValueError(f"XiaoResUNet3D: stem_channels must be >= 1, got {stem_channels}")
        f1, f2, f3, f4 = self.filters = filters
        self.deep_supervision = bool(deep_supervision)
        self.stride = 8  # in-plane only
        self.stem = _conv_bn_elu(in_channels, stem_channels, 3)
        self.enc1, self.enc2 = _ResidualBlock(stem_channels, f1), _ResidualBlock(f1, f2)
        self.enc3, self.bottleneck = _ResidualBlock(f2, f3), _ResidualBlock(f3, f4)
        self.pool = nn.MaxPool3d(POOL)
        self.proj3, self.dec3 = _conv_bn_elu(f4, f3, 1), _ResidualBlock(f3, f3)
        self.proj2, self.dec2 = _conv_bn_elu(f3, f2, 1), _ResidualBlock(f2, f2)
        self.proj1, self.dec1 = _conv_bn_elu(f2, f1, 1), _ResidualBlock(f1, f1)
        self.last = _conv_bn_elu(f1, stem_channels, 3)
        self.head = _head(stem_channels, out_channels)
        if self.deep_supervision:
            self.aux1, self.aux2 = _head(f3, out_channels), _head(f1, out_channels)
            self.deep_supervision_weights = (1.0, 0.15, 0.3)
        else:
            self.deep_supervision_weights = (1.0,)

    @staticmethod
    def _up(x: torch.Tensor, times: int = 1) -> torch.Tensor:
        return F.interpolate(x, scale_factor=(1, 2**times, 2**times), mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        n, c, depth = x.shape[:3]
        # Fold z into the channels so that only H and W are padded (z is never pooled).
        flat, (height, width) = pad_to_multiple(x.reshape(n, c * depth, *x.shape[3:]),
                                                self.stride)
        x = flat.reshape(n, c, depth, *flat.shape[2:])
        size = (depth, height, width)
        s1 = self.enc1(self.stem(x))
        s2 = self.enc2(self.pool(s1))
        s3 = self.enc3(self.pool(s2))
        d3 = self.dec3(s3 + self.proj3(self._up(self.bottleneck(self.pool(s3)))))
        u2 = self._up(d3)
        d2 = self.dec2(s2 + self.proj2(u2))
        u1 = self.proj1(self._up(d2))
        main = crop_to(self.head(self.last(self.dec1(s1 + u1))), size)
        if not (self.deep_supervision and self.training):
            return main
        aux1 = crop_to(self._up(self.aux1(u2)), size)
        return [main, aux1, crop_to(self.aux2(u1), size)]
