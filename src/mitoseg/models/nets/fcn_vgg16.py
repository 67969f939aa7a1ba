"""FCN-8s / FCN-32s on a VGG16 backbone, as compared in paper 002 (Long et al. 2015)."""

from __future__ import annotations

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import init_conv_
from mitoseg.models.resize import linear_resize

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))  # (channels, 3x3 convs)
VARIANTS = ("fcn8", "fcn32")


def _vgg_block(in_channels: int, out_channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(convs):
        conv = nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1)
        init_conv_(conv, "glorot_uniform")
        layers += [conv, nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class FCNVGG16(nn.Module):
    """Fully convolutional VGG16 (Long et al. 2015) in its FCN-8s or FCN-32s form.

    Paper 002 compares "FCN 8/32 (Long et al., 2015)", implemented "using (Dai et al., 2016)"
    (a Keras port), and states "the number of trainable parameters in FCN8 is 50.38M". The
    layers follow the authors' public Keras port:
      * VGG16 encoder: 13 3x3 convolutions (64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3)
        with ReLU and 'same' padding, five 2x2 max-poolings (total stride 32), trained from
        scratch on one input channel (no ImageNet weights for grey-level EM).
      * fc6 = 3x3 convolution with 4096 filters, fc7 = 1x1 with 4096, each followed by ReLU
        and dropout 0.5 (as in Long et al.), then a 1x1 score convolution. The 3x3 fc6 is what
        gives paper 002's 50.38 M (50,378,467 here at 1 in / 1 out channel); the original
        7x7 fc6 would give 134 M.
      * FCN-8s: the score map is up-sampled 2x by a 4x4 stride-2 transposed convolution
        (no bias; Keras 'valid' then the last two rows/columns cropped), added to a 1x1 score of
        pool4, up-sampled 2x again and added to a 1x1 score of pool3, then up-sampled 8x by a
        16x16 stride-8 transposed convolution ('same', no bias).
      * FCN-32s: the score map is up-sampled 32x by fixed bilinear interpolation (the port's
        ``UpSampling2D(interpolation='bilinear')``, no parameters).
      * Initialization as in the port (Keras defaults where it names none): Glorot-uniform
        kernels and zero biases for VGG/fc layers, He normal for the 1x1 score layers, Glorot
        uniform for the learned transposed convolutions. Long et al.'s bilinear start of the
        up-sampling layers, zero-initialized down-scaled pool scores and 100-pixel input
        padding are not used (nor by the port).
      * Returns one logit channel (the port's 2-class sigmoid output belongs to the loss).

    Args:
        spatial_dims: must be 2 (the network is 2D only).
        in_channels: input channels.
        out_channels: output logit channels.
        variant: "fcn8" (skips from pool3 and pool4) or "fcn32" (no skips).
        dropout: rate of the dropout after fc6 and fc7 (0.5 as in Long et al.).

    Input-size constraints: any size; inputs are reflect-padded to a multiple of 32 (stride)
    and the output cropped back (the paper's 256 x 256 patches need no padding).

    Parameters at default (1 in, 1 out): FCN-8s 50,378,467 (paper 002: "50.38M"; the port's
    2 output classes give 50,384,198, which rounds the same), FCN-32s 50,377,409 (paper 002
    states none).

    Example:
        >>> net = FCNVGG16(variant="fcn32")
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    stride = 32

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 variant: str = "fcn8", dropout: float = 0.5) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"FCNVGG16: spatial_dims must be 2 (2D only), got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("FCNVGG16: in_channels and out_channels must be >= 1")
        if variant not in VARIANTS:
            raise ValueError(f"FCNVGG16: variant must be one of {VARIANTS}, got {variant!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"FCNVGG16: dropout must be in [0, 1), got {dropout}")
        self.variant = variant
        channels = in_channels
        blocks = []
        for width, convs in VGG16_BLOCKS:
            blocks.append(_vgg_block(channels, width, convs))
            channels = width
        self.blocks = nn.ModuleList(blocks)
        fc6, fc7 = nn.Conv2d(512, 4096, 3, padding=1), nn.Conv2d(4096, 4096, 1)
        for layer in (fc6, fc7):
            init_conv_(layer, "glorot_uniform")
        self.classifier = nn.Sequential(fc6, nn.ReLU(inplace=True), nn.Dropout(dropout),
                                        fc7, nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.score = self._score(4096, out_channels)
        if variant == "fcn8":
            self.score_pool4 = self._score(512, out_channels)
            self.score_pool3 = self._score(256, out_channels)
            self.up2_score = self._upsampler(out_channels, 4, 2, 0)
            self.up2_pool4 = self._upsampler(out_channels, 4, 2, 0)
            self.up8 = self._upsampler(out_channels, 16, 8, 4)

    @staticmethod
    def _score(in_channels: int, out_channels: int) -> nn.Conv2d:
        layer = nn.Conv2d(in_channels, out_channels, 1)
        init_conv_(layer, "he_normal")
        return layer

    @staticmethod
    def _upsampler(channels: int, kernel: int, stride: int, padding: int) -> nn.ConvTranspose2d:
        layer = nn.ConvTranspose2d(channels, channels, kernel, stride=stride, padding=padding,
                                   bias=False)
        nn.init.xavier_uniform_(layer.weight)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        pools = []
        for block in self.blocks:
            x = block(x)
            pools.append(x)
        score = self.score(self.classifier(x))
        if self.variant == "fcn32":
            out = linear_resize(score, [32 * side for side in score.shape[2:]])
            return crop_to(out, size)
        pool3, pool4 = pools[2], pools[3]
        # Keras 'valid' 4x4 stride-2 transposed conv gives 2n + 2; Cropping2D((0, 2)) keeps 2n.
        fused = self.up2_score(score)[..., :pool4.shape[2], :pool4.shape[3]]
        fused = fused + self.score_pool4(pool4)
        fused = self.up2_pool4(fused)[..., :pool3.shape[2], :pool3.shape[3]]
        fused = fused + self.score_pool3(pool3)
        return crop_to(self.up8(fused), size)
