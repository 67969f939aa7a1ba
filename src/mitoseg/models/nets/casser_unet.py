"""The lightweight 2D U-Net of Casser et al. 2020 (fast mitochondria detection), as in paper 002."""

from __future__ import annotations

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import init_conv_

LEVELS = 5  # four poolings: start_filters * (1, 2, 4, 8, 16), bottleneck last


def _conv(in_channels: int, out_channels: int, kernel: int,
          init: str = "he_normal") -> nn.Module:
    """Keras ``Conv2D(padding='same')``: an even kernel is padded after only, as TensorFlow does."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2 if kernel % 2 else 0)
    init_conv_(conv, init)
    return conv if kernel % 2 else nn.Sequential(nn.ZeroPad2d((0, kernel - 1, 0, kernel - 1)), conv)


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, out_channels, 3), nn.ReLU(inplace=True),
                         _conv(out_channels, out_channels, 3), nn.ReLU(inplace=True))


class CasserUNet(nn.Module):
    """Casser et al. (2020), "Fast mitochondria detection for connectomics" (MIDL), 2D U-Net.

    Paper 002 reproduced this model by plugging the authors' public Keras network
    (github.com/mpsych/mitochondria, ``get_unet``; ported by the paper 002 authors as
    ``sota_implementations/casser_2018/casser_unet.py``) into its own workflow. Layer plan
    (``f = start_filters``; every 3x3 conv is 'same'-padded, ReLU, He normal):

      * encoder: two 3x3 convs at ``f, 2f, 4f, 8f`` with 2x2 max-pooling between levels;
        dropout after the 8f level (its output is both the skip and the pooled input);
      * bottleneck: two 3x3 convs at 16f, then dropout;
      * decoder, per level: 2x nearest upsampling -> 2x2 conv + ReLU ("up-convolution") ->
        concatenate [skip, up] -> two 3x3 convs. Up-convolution widths 8f, 4f, 4f, f and block
        widths 8f, 4f, 2f, f. The third up-convolution keeping 4f (not 2f) is how the public
        code is written; it is kept because it is the network paper 002 trained;
      * head: 3x3 conv to 2 channels + ReLU, then a 1x1 conv (Keras' Glorot uniform init) to
        ``out_channels`` LOGITS (the original's sigmoid belongs to the loss).

    Choices where the sources differ or are silent:
      * ``start_filters=16`` and ``dropout=0.2``: the defaults of paper 002's port (the
        mpsych code's own defaults are 8 and 0.5: ``CasserUNet(start_filters=8,
        dropout=0.5)`` gives that variant, 490,181 parameters). Dropout is element-wise
        (``nn.Dropout`` = Keras ``Dropout``); 0 removes the layers.
      * Biases start at zero (Keras). One input channel (the code's ``MEMORY = 1``).

    Parameters at the default config (1 in, 1 out): 1,958,533 (about 1.96 M). Paper 002 gives
    no count for this model, so there is no published figure to match.

    Args:
        in_channels: input channels.
        out_channels: output logit channels.
        start_filters: channels of the first level (``f``), doubled at each pooling.
        dropout: rate after the deepest encoder level and after the bottleneck, in [0, 1).

    Input-size constraints: any 2D size; sizes that are not multiples of 16 (four poolings)
    are reflect-padded internally and the output cropped back.

    Example:
        >>> CasserUNet()(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, start_filters: int = 16,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if min(in_channels, out_channels) < 1:
            raise ValueError("CasserUNet: in_channels and out_channels must be >= 1")
        if isinstance(start_filters, bool) or int(start_filters) != start_filters \
                or start_filters < 1:
            raise ValueError(f"CasserUNet: start_filters must be a positive int, "
                             f"got {start_filters}")
        if not 0 <= dropout < 1:
            raise ValueError(f"CasserUNet: dropout must be in [0, 1), got {dropout}")
        f = int(start_filters)
        widths = [f * 2**level for level in range(LEVELS)]
        self.start_filters, self.dropout_rate = f, float(dropout)
        self.stride = 2 ** (LEVELS - 1)

        self.encoders = nn.ModuleList(
            _double_conv(in_channels if level == 0 else widths[level - 1], widths[level])
            for level in range(LEVELS))
        self.pool = nn.MaxPool2d(2)
        self.drop_deep = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.drop_bottleneck = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

        up_widths = (8 * f, 4 * f, 4 * f, f)  # deepest first; 4f twice as in the public code
        self.up_convs, self.decoders = nn.ModuleList(), nn.ModuleList()
        coarse = widths[-1]
        for up_width, level in zip(up_widths, reversed(range(LEVELS - 1))):
            self.up_convs.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                               _conv(coarse, up_width, 2), nn.ReLU(inplace=True)))
            self.decoders.append(_double_conv(widths[level] + up_width, widths[level]))
            coarse = widths[level]
        self.head = nn.Sequential(_conv(f, 2, 3), nn.ReLU(inplace=True),
                                  _conv(2, out_channels, 1, init="glorot_uniform"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            if level == LEVELS - 2:
                x = self.drop_deep(x)
            skips.append(x)
        x = self.drop_bottleneck(skips.pop())
        for up_conv, decoder in zip(self.up_convs, self.decoders):
            x = decoder(torch.cat([skips.pop(), up_conv(x)], dim=1))
        return crop_to(self.head(x), size)
