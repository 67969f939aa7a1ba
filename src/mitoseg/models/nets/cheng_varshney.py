"""Cheng & Varshney 2017: asymmetric 2D/3D FCN, factorized convolutions, stochastic downsampling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mitoseg.inference.padding import crop_to, pad_to_multiple
from mitoseg.models.layers import BATCH_NORM, CONV, CONV_TRANSPOSE, MAX_POOL, init_conv_

ENCODER_STAGES = (2, 3, 6)  # plain residual blocks after the input block / each downsampling
DECODER_STAGES = ((64, 4), (32, 2))  # (width, bottleneck blocks) after each upsampling
DOWNSAMPLINGS = ("stochastic", "max")


class StochasticDownsampling(nn.Module):
    """Cheng & Varshney's stochastic downsampling ("feature-level augmentation").

    Each spatial axis (length a multiple of ``region``) is cut into bands of ``region``
    positions; in training mode each band keeps ``region // 2`` distinct positions drawn at
    random (kept in order), so a ``region^d`` cell keeps the ``(region / 2)^d`` samples on the
    chosen rows x columns (x slices) and every axis is halved. The draw is made once per call
    from the torch global RNG (so ``torch.manual_seed`` reproduces it) and shared by the whole
    batch and all channels. In eval mode the pattern is the regular one, positions 0, 2, 4, ...
    (= ``x[..., ::2, ::2]``), itself one of the training patterns.
    """

    def __init__(self, region: int = 4) -> None:
        super().__init__()
        if isinstance(region, bool) or int(region) != region or region < 2 or region % 2:
            raise ValueError(f"StochasticDownsampling: region must be an even int >= 2, "
                             f"got {region}")
        self.region = int(region)

    def positions(self, length: int) -> torch.Tensor:
        """Kept indices along an axis of ``length``: random in training, 0, 2, 4... in eval."""
        if length % self.region:
            raise ValueError(f"StochasticDownsampling: axis length {length} is not a multiple "
                             f"of region={self.region}")
        if not self.training:
            return torch.arange(0, length, 2)
        bands = length // self.region
        draws = torch.rand(bands, self.region).argsort(dim=1)[:, : self.region // 2]
        offsets = draws.sort(dim=1).values
        return (offsets + self.region * torch.arange(bands)[:, None]).flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis in range(2, x.dim()):
            x = x.index_select(axis, self.positions(x.shape[axis]).to(x.device))
        return x


class FactorizedConv(nn.Module):
    """A k^d convolution factorized into d parallel 1-D convolutions, outputs concatenated.

    2D: 1 x k and k x 1 each give half the channels; 3D: 1 x 1 x k, 1 x k x 1, k x 1 x 1 each
    give a third (the first ones take the remainder). Zero 'same' padding; ``stride`` applies
    to every axis of every branch.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        shares = [out_channels // spatial_dims + (index < out_channels % spatial_dims)
                  for index in range(spatial_dims)]
        self.branches = nn.ModuleList()
        for axis, share in zip(reversed(range(spatial_dims)), shares):
            size, pad = [1] * spatial_dims, [0] * spatial_dims
            size[axis], pad[axis] = kernel, kernel // 2
            conv = CONV[spatial_dims](in_channels, share, tuple(size), stride=stride,
                                      padding=tuple(pad))
            init_conv_(conv, "he_normal")
            self.branches.append(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def _pre_activation(spatial_dims: int, channels: int) -> list[nn.Module]:
    return [BATCH_NORM[spatial_dims](channels), nn.PReLU(channels)]


class _EncoderBlock(nn.Module):
    """Pre-activation residual block (PyramidNet-style widening by zero-padded shortcut)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, dropout: float,
                 downsample: nn.Module | None) -> None:
        super().__init__()
        stride = 1 if downsample is None else 2
        self.body = nn.Sequential(
            *_pre_activation(spatial_dims, in_channels),
            FactorizedConv(spatial_dims, in_channels, out_channels, stride=stride),
            *([nn.Dropout(dropout)] if dropout > 0 else []),
            *_pre_activation(spatial_dims, out_channels),
            FactorizedConv(spatial_dims, out_channels, out_channels))
        self.extra_channels = out_channels - in_channels
        self.shortcut = None
        if downsample is not None or self.extra_channels < 0:  # narrowing: project, not pad
            projection = CONV[spatial_dims](in_channels, out_channels, 1)
            init_conv_(projection, "glorot_uniform")
            self.shortcut = nn.Sequential(*([downsample] if downsample else []), projection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            skip = self.shortcut(x)
        else:  # zero channels appended: (0, 0) per spatial axis, then (0, extra) for channels
            skip = F.pad(x, (0, 0) * (x.dim() - 2) + (0, self.extra_channels))
        return skip + self.body(x)


class _DecoderBlock(nn.Module):
    """Bottleneck residual block: 1x1 (c -> c/4), 3x3, 1x1 (-> c), plus a 1x1-conv shortcut."""

    def __init__(self, spatial_dims: int, channels: int, preactivation: bool) -> None:
        super().__init__()
        inner = max(channels // 4, 1)
        layers: list[nn.Module] = []
        for index, (c_in, c_out, kernel) in enumerate(
                ((channels, inner, 1), (inner, inner, 3), (inner, channels, 1))):
            if preactivation:
                layers += _pre_activation(spatial_dims, c_in)
            conv = CONV[spatial_dims](c_in, c_out, kernel, padding=kernel // 2)
            init_conv_(conv, "he_normal")
            layers.append(conv)
        self.body = nn.Sequential(*layers)
        self.shortcut = CONV[spatial_dims](channels, channels, 1)
        init_conv_(self.shortcut, "glorot_uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.body(x)


def _upsample(spatial_dims: int, in_channels: int, out_channels: int, kernel: int) -> nn.Module:
    """Keras ``ConvTranspose(kernel, strides=2, padding='same')``: exactly doubles every axis."""
    layer = CONV_TRANSPOSE[spatial_dims](in_channels, out_channels, kernel, stride=2,
                                         padding=(kernel - 1) // 2, output_padding=kernel % 2)
    init_conv_(layer, "glorot_uniform")
    return layer


class ChengVarshneyNet(nn.Module):
    """Cheng & Varshney (2017), "Volume segmentation using convolutional neural networks with
    limited training data" (ICIP): the asymmetric 2D/3D network that paper 002 reproduced.

    Layer plan (from paper 002's description -- asymmetric U-Net-like network, factorized
    convolutions, stochastic downsampling -- and the paper 002 authors' public Keras
    reproduction built from the publication's network figure,
    ``sota_implementations/cheng_2017``; the publication's own text was not available to us).
    ``d`` = spatial_dims, widths for ``init_filters=16``, ``growth=8``:

      1. input block (1/2 resolution): concat[3^d conv stride 2 (16 ch), 2^d max-pool of the
         input] -> 16 + in_channels channels;
      2. encoder, all pre-activation residual blocks ``x + F(x)`` with
         F = BN -> PReLU -> factorized conv -> dropout -> BN -> PReLU -> factorized conv, each
         block widening by ``growth`` (pyramidal; the identity shortcut is zero-padded in
         channels): 2 blocks (24, 32); a downsampling block (40, 1/4 resolution); 3 blocks
         (48, 56, 64); a downsampling block (72, 1/8); 6 blocks (80 ... 120). A downsampling
         block has stride 2 in its first factorized conv and the shortcut
         ``downsample -> 1^d conv`` where ``downsample`` is the stochastic downsampling layer
         (region ``t = region``, default 4) or, with ``downsampling="max"``, 2^d max-pooling;
      3. decoder (no long skip connections -- "asymmetric"): 3^d transposed conv stride 2 to
         64 channels (1/4), 4 bottleneck blocks ``1^d conv(x) + [1^d (c/4), 3^d, 1^d (c)](x)``;
         3^d transposed conv to 32 (1/2), 2 bottleneck blocks; 2^d transposed conv stride 2 to
         ``out_channels`` at full resolution -> LOGITS (the original softmax over 2 classes is
         the loss's business; out_channels=2 gives that head).

    A "factorized convolution" is d parallel 1-D convolutions (1x3 | 3x1, or 1x1x3 | 1x3x1 |
    3x1x1) whose outputs are concatenated, each giving 1/d of the channels (Szegedy et al.
    2016's expanded filter bank; paper 002's reading of the publication).

    Choices where the sources are silent or differ:
      * ``dropout=0.1`` after the first factorized conv of every encoder block (the
        "original" configuration of paper 002's templates); paper 002's "modified"
        configuration removes it (``dropout=0``, no layer at all).
      * The decoder bottleneck blocks carry no BN/activation in the reproduction, so the
        decoder is linear (non-linearity lives in the encoder); ``decoder_preactivation=True``
        adds BN -> PReLU before each of their convs (an option, not the default).
      * Stochastic downsampling is random only in training mode, drawn from the torch global
        RNG, shared over batch and channels; eval keeps positions 0, 2, 4, ... (see
        ``StochasticDownsampling``). Paper 002's 2D port fell back to max-pooling on its
        dynamically sized inputs (``downsampling="max"`` reproduces that); its 3D port used the
        stochastic layer.
      * PReLU: one slope per channel, initialised at 0.25 (He et al.); convs He normal, 1^d
        shortcuts and transposed convs Glorot uniform, biases zero (Keras defaults of the
        reproduction). The L2 weight penalty (0.01) of the reproduction is a training setting.

    Parameters at the default config (1 in, 1 out): 2D 591,780; 3D 788,036. Paper 002 states
    no count for these networks, so there is no published figure to match.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output logit channels.
        init_filters: channels of the input block's strided conv.
        growth: channels added by every encoder block.
        dropout: rate inside every encoder block, in [0, 1); 0 removes the layers.
        downsampling: shortcut downsampling of the two downsampling blocks, "stochastic" or
            "max".
        region: band size ``t`` of the stochastic downsampling (even, >= 2).
        decoder_preactivation: BN -> PReLU before each decoder bottleneck conv.

    Input-size constraints: any size; the total downsampling is 8, and the stochastic layers
    (at 1/2 and 1/4 resolution) need multiples of ``region`` there, so inputs are
    reflect-padded to multiples of ``self.stride`` = lcm(8, 4 * region) (16 by default; 8 with
    ``downsampling="max"``) and the output cropped back. In training mode BatchNorm needs more
    than one value per channel at 1/8 resolution (e.g. batch 1 of a single 8 x 8 input fails).

    Example:
        >>> ChengVarshneyNet(2)(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
        >>> ChengVarshneyNet(3).eval()(torch.zeros(1, 1, 16, 20, 24)).shape
        torch.Size([1, 1, 16, 20, 24])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 init_filters: int = 16, growth: int = 8, dropout: float = 0.1,
                 downsampling: str = "stochastic", region: int = 4,
                 decoder_preactivation: bool = False) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"ChengVarshneyNet: spatial_dims must be 2 or 3, got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("ChengVarshneyNet: in_channels and out_channels must be >= 1")
        for name, value in (("init_filters", init_filters), ("growth", growth)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"ChengVarshneyNet: {name} must be a positive int, got {value}")
        if not 0 <= dropout < 1:
            raise ValueError(f"ChengVarshneyNet: dropout must be in [0, 1), got {dropout}")
        if downsampling not in DOWNSAMPLINGS:
            raise ValueError(f"ChengVarshneyNet: downsampling must be one of {DOWNSAMPLINGS}, "
                             f"got {downsampling!r}")
        if isinstance(region, bool) or int(region) != region or region < 2 or region % 2:
            raise ValueError(f"ChengVarshneyNet: region must be an even int >= 2, got {region}")
        self.spatial_dims, self.dropout_rate = spatial_dims, float(dropout)
        self.downsampling, self.region = downsampling, int(region)
        self.stride = math.lcm(8, 4 * self.region) if downsampling == "stochastic" else 8

        self.stem = CONV[spatial_dims](in_channels, init_filters, 3, stride=2, padding=1)
        init_conv_(self.stem, "he_normal")
        self.stem_pool = MAX_POOL[spatial_dims](2)

        blocks: list[nn.Module] = []
        width = init_filters + in_channels
        for stage, repeats in enumerate(ENCODER_STAGES):
            for index in range(repeats + (stage > 0)):
                down = None
                if stage > 0 and index == 0:
                    down = (StochasticDownsampling(self.region) if downsampling == "stochastic"
                            else MAX_POOL[spatial_dims](2))
                target = init_filters + growth * (len(blocks) + 1)
                blocks.append(_EncoderBlock(spatial_dims, width, target, dropout, down))
                width = target
        self.encoder = nn.Sequential(*blocks)

        decoder: list[nn.Module] = []
        for channels, repeats in DECODER_STAGES:
            decoder.append(_upsample(spatial_dims, width, channels, 3))
            decoder += [_DecoderBlock(spatial_dims, channels, decoder_preactivation)
                        for _ in range(repeats)]
            width = channels
        decoder.append(_upsample(spatial_dims, width, out_channels, 2))
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(x, self.stride)
        x = torch.cat([self.stem(x), self.stem_pool(x)], dim=1)
        return crop_to(self.decoder(self.encoder(x)), size)
