"""Oztel et al. 2017: a 4-layer patch classifier (32 x 32 -> centre pixel), run fully
convolutionally so that a whole image gives a dense logit map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mitoseg.inference.padding import crop_to, pad_spatial
from mitoseg.models.layers import init_conv_
from mitoseg.models.resize import linear_resize

PATCH = 32  # training patch side; the network's minimum input
STEP = 8  # three stride-2 poolings: one patch logit every 8 pixels
CENTRE = PATCH // 2  # the pixel whose label a patch carries (0-based, 16 of 0..31)


def _conv(in_channels: int, out_channels: int, kernel: int, padding: int = 0) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=padding)
    init_conv_(conv, "glorot_uniform")
    return conv


class OztelCNN(nn.Module):
    """Oztel et al. (2017), "Mitochondria segmentation in electron microscopy volumes using
    deep convolutional neural network" (IEEE BIBM): the four-convolution patch classifier.

    The network classifies a 32 x 32 patch by the label of its centre pixel. Layers, as
    reproduced by paper 002's authors (``sota_implementations/oztel_2017/cnn_oztel.py``; the
    same layout as MatConvNet's CIFAR-10 example network; the publication's own text was not
    available to us):

      input BN -> conv 5x5 (32, pad 2) -> max-pool 3x3/2 -> ReLU
      -> conv 5x5 (32, pad 2) -> ReLU -> avg-pool 3x3/2 -> dropout 0.5
      -> conv 5x5 (64, pad 2) -> ReLU -> avg-pool 3x3/2                 (32 -> 16 -> 8 -> 4)
      -> conv 4x4 (64, no pad) -> ReLU          = fully connected layer 1 on the 4x4x64 maps
      -> conv 1x1 (out_channels)                = fully connected layer 2, the patch LOGIT

    Both fully connected layers are written as convolutions, so the same weights run on any
    image of side >= 32 and give a grid of patch logits (``patch_logits``).

    How the dense map is produced (``forward``):
      1. pad the input (reflection; replication when it is tiny) to multiples of 8 and at
         least 32 x 32, split as ``pad_to_multiple`` does, and crop back at the end;
      2. ``patch_logits``: run the network on the whole (padded) image. Entry (i, j) of the
         (H/8 - 3) x (W/8 - 3) grid is the logit of the 32 x 32 window whose top-left pixel is
         (8i, 8j), assigned to that window's centre pixel (8i + 16, 8j + 16);
      3. place each logit at its centre pixel and interpolate bilinearly between them
         (``align_corners=True`` on the grid of centres, so the map passes exactly through
         every patch logit); the 16 (top/left) and 15 (bottom/right) border rows and columns
         outside the outermost centres take the nearest centre's value.

    Relation to training on 32 x 32 patches: a 32 x 32 input is padded nowhere, its grid is
    1 x 1 and that entry is exactly the patch classifier's logit for the patch centre (the
    training target is the label of pixel (16, 16)); ``forward`` returns it as a constant 32 x
    32 map, so any pixel of the output (in particular the centre) carries the patch logit and
    a loss against the centre label trains exactly Oztel's classifier. On a larger image every
    grid entry sits exactly at its window centre in the dense map. It is the fully
    convolutional evaluation of the sliding window (Oztel et al. "fed the network with the full
    test images to simulate a sliding window process", paper 002), not an exact replica of
    it: inside a whole image the zero padding of the 5x5 convolutions and poolings at a
    window's edge is replaced by the real neighbouring features (the receptive field of one
    logit is 67 pixels, more than the 32-pixel patch), and logits exist only every 8 pixels.

    Choices where the sources are silent:
      * Pooling 3x3 stride 2 pads one row/column after only (MatConvNet's pad [0 1 0 1] =
        Keras 'same'); the average pooling ignores that padding (Keras). Implemented with
        ``ceil_mode=True``, exact because every pooled map has an even size.
      * The input BatchNorm (a learnt normalization, from paper 002's reproduction; 2
        parameters) can be dropped with ``input_norm=False``. Dropout 0.5 after the second
        pooling, as in that reproduction; 0 removes the layer.
      * Glorot uniform kernels and zero biases (Keras defaults); one logit channel instead of
        the original 2-way softmax (``out_channels=2`` gives that head).

    Parameters at the default config (1 in, 1 out): 143,395, i.e. paper 002's "0.14M"
    (+2.4 %; 143,460 with the original 2-class head).

    Args:
        in_channels: input channels.
        out_channels: output logit channels.
        dropout: rate after the second pooling, in [0, 1).
        input_norm: BatchNorm on the input channels before the first convolution.

    Input-size constraints: any size; inputs are padded to multiples of ``self.stride`` = 8
    and to at least 32 x 32 (the patch size), and the output is cropped back.

    Example:
        >>> net = OztelCNN().eval()
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
        >>> net.patch_logits(torch.zeros(1, 1, 32, 32)).shape  # one logit per patch
        torch.Size([1, 1, 1, 1])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, dropout: float = 0.5,
                 input_norm: bool = True) -> None:
        super().__init__()
        if min(in_channels, out_channels) < 1:
            raise ValueError("OztelCNN: in_channels and out_channels must be >= 1")
        if not 0 <= dropout < 1:
            raise ValueError(f"OztelCNN: dropout must be in [0, 1), got {dropout}")
        if not isinstance(input_norm, bool):
            raise ValueError(f"OztelCNN: input_norm must be a bool, got {input_norm!r}")
        self.stride, self.patch_size = STEP, PATCH
        self.norm = nn.BatchNorm2d(in_channels) if input_norm else nn.Identity()
        self.features = nn.Sequential(
            _conv(in_channels, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.ReLU(inplace=True),
            _conv(32, 32, 5, padding=2), nn.ReLU(inplace=True),
            nn.AvgPool2d(3, 2, ceil_mode=True),
            *([nn.Dropout(dropout)] if dropout > 0 else []),
            _conv(32, 64, 5, padding=2), nn.ReLU(inplace=True),
            nn.AvgPool2d(3, 2, ceil_mode=True))
        self.classifier = nn.Sequential(_conv(64, 64, 4), nn.ReLU(inplace=True),
                                        _conv(64, out_channels, 1))

    def patch_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of all 32 x 32 windows at steps of 8: entry (i, j) <- window (8i, 8j).

        ``x`` must have spatial sizes that are multiples of 8 and at least 32.
        """
        if x.dim() != 4:
            raise ValueError(f"OztelCNN: expected (N, C, H, W) input, got shape "
                             f"{tuple(x.shape)}")
        if any(side % STEP or side < PATCH for side in x.shape[2:]):
            raise ValueError(f"OztelCNN.patch_logits: spatial size {tuple(x.shape[2:])} must "
                             f"be multiples of {STEP} and >= {PATCH} (forward pads for you)")
        return self.classifier(self.features(self.norm(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[2:])
        target = tuple(max(PATCH, -(-side // STEP) * STEP) for side in size)
        grid = self.patch_logits(pad_spatial(x, target))
        centres = tuple(STEP * (n - 1) + 1 for n in grid.shape[2:])  # pixels 16 .. side - 16
        dense = linear_resize(grid, centres, align_corners=True)
        before, after = CENTRE, PATCH - CENTRE - 1
        dense = F.pad(dense, (before, after, before, after), mode="replicate")
        return crop_to(dense, size)
