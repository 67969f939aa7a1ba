"""nnU-Net's plain convolutional U-Net (2D and 3D) as its planner configures it for Lucchi."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from mitoseg.inference.padding import crop_to, pad_spatial
from mitoseg.models.layers import BATCH_NORM, CONV, CONV_TRANSPOSE, INSTANCE_NORM
from mitoseg.models.resize import linear_resize

# Per-stage strides (first stage unstrided) and the patch size nnU-Net v1 plans for Lucchi
# (165 x 768 x 1024 isotropic voxels); see NNUNetPlain's docstring for the derivation.
PLANNED_STRIDES = {2: ((1, 1),) + ((2, 2),) * 7 + ((1, 2),),
                   3: ((1, 1, 1),) + ((2, 2, 2),) * 3 + ((1, 2, 2),)}
PLANNED_PATCH_SIZE = {2: (768, 1024), 3: (40, 208, 288)}
BASE_FEATURES = 32
MAX_FEATURES = {2: 480, 3: 320}  # Generic_UNet's MAX_FILTERS_2D / MAX_NUM_FILTERS_3D
NORMS = ("instance", "batch")

PerAxis = int | Sequence[int]


def _per_axis(values: Sequence[PerAxis], spatial_dims: int,
              name: str) -> tuple[tuple[int, ...], ...]:
    """Expand ints to per-axis tuples and check every entry is a positive int."""
    out = []
    for value in values:
        entry = (value,) * spatial_dims if isinstance(value, int) else tuple(value)
        if len(entry) != spatial_dims or any(not isinstance(v, int) or v < 1 for v in entry):
            raise ValueError(f"NNUNetPlain: every {name} entry must be a positive int or "
                             f"{spatial_dims} positive ints, got {value!r}")
        out.append(entry)
    return tuple(out)


def padded_size(size: Sequence[int], axis_strides: Sequence[int]) -> tuple[int, ...]:
    """Smallest size >= ``size`` that is a multiple of ``axis_strides`` per axis and leaves at
    least 2 bottleneck voxels (InstanceNorm cannot normalize a single value in training)."""
    target = [max(1, math.ceil(n / m)) * m for n, m in zip(size, axis_strides)]
    if target == list(axis_strides):
        target[-1] *= 2
    return tuple(target)


def _he_init_(layer: nn.Module) -> None:
    """nnU-Net's InitWeights_He(1e-2): Kaiming normal for a LeakyReLU(0.01), zero bias."""
    nn.init.kaiming_normal_(layer.weight, a=1e-2)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _ConvNormAct(nn.Sequential):
    """nnU-Net's ConvDropoutNormNonlin without dropout (p = 0 in its trainer)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 kernel: tuple[int, ...], stride: tuple[int, ...], norm: str) -> None:
        conv = CONV[spatial_dims](in_channels, out_channels, kernel, stride,
                                  padding=tuple(k // 2 for k in kernel), bias=True)
        _he_init_(conv)
        norm_layer = (INSTANCE_NORM[spatial_dims](out_channels, eps=1e-5, affine=True)
                      if norm == "instance" else BATCH_NORM[spatial_dims](out_channels, eps=1e-5))
        super().__init__(conv, norm_layer, nn.LeakyReLU(1e-2, inplace=True))


class NNUNetPlain(nn.Module):
    """nnU-Net's plain U-Net (Isensee et al. 2021, Nature Methods) with its Lucchi plan.

    Paper 002 "extracted the optimal architecture found following the nnU-Net regular
    processing and plugged it into our own workflow" (2021, i.e. nnU-Net v1, ``Generic_UNet``;
    v2 calls the same network ``PlainConvUNet``). Stage s: ``n_conv_per_stage`` x (conv ->
    InstanceNorm(affine) -> LeakyReLU(0.01)), the first conv strided by ``strides[s]`` (no
    pooling); decoder: transposed conv (kernel = stride) to the skip's width, concatenation
    [upsampled, skip], ``n_conv_per_stage`` convs; a 1x1 segmentation head per decoder stage.

    Defaults = what nnU-Net v1's default planners (ExperimentPlanner2D_v21 / 3D_v21, 8 GB GPU
    reference) plan for Lucchi (one 165 x 768 x 1024 volume, isotropic 5 nm, 2 classes),
    re-derived from their code:
      * 2D: the patch starts as the median slice, 768 x 1024. ``get_pool_and_conv_props``
        pools every axis within a factor 2 of the finest spacing while its feature map is
        >= 8 (2 x the 4-voxel minimum edge): 7 pools of (2, 2) leave 6 x 8, then only the
        1024 axis may pool once more -> (1, 2); 8 pools, 9 stages, all kernels 3x3, total
        stride (128, 256). VRAM proxy (base 30, cap 512) 233.5 M < reference 493.5 M
        (19739648 x 50 / 2): the full slice is kept, batch 4. Features 32 doubling, capped
        at 480 (Generic_UNet's MAX_FILTERS_2D; the planner's 512 only enters its estimate):
        32-64-128-256-480-480-480-480-480. This is exactly the authors' Keras port
        (BiaPy ``nnUNet_2d.py``: 8 poolings, the last (1, 2), max 480 filters).
      * 3D full resolution: a 512^3 start clipped to the median, 165 x 512 x 512, then the
        axis largest relative to the median is shrunk by its divisibility step until the VRAM
        proxy (base 32, cap 320) drops below 520 M x 32 / 30 = 554.7 M: 40 x 208 x 288 (517 M,
        batch 2). Once the 40 axis is down to 5 the in-plane axes pool once more and stop
        (v1 pools only axes within a factor 2 of the finest spacing of *all* axes):
        3 x (2, 2, 2) + (1, 2, 2), 5 stages, all kernels 3x3x3, features 32-64-128-256-320,
        total stride (8, 16, 16).
      * nnU-Net v2's default planner (same 8 GB target) gives, for comparison, 2D 768 x 1024
        with 7 (2, 2) pools, features capped at 512 (``features=[32,64,128,256,512,512,512,
        512]``, ``strides=[1,2,2,2,2,2,2,2]``), and 3D 48 x 192 x 256 with strides
        ``[1,2,2,2,[1,2,2],[1,2,2]]``, features 32-64-128-256-320-320 (its ``< 2 x min`` rule
        on the finest *poolable* axis pools further); pass those to get v2's networks.

    Choices where the sources differ or are silent:
      * v1 details: conv bias on, transposed convs and heads without bias; He init with
        a = 0.01 (InitWeights_He). ``norm="batch"`` gives the authors' port (BatchNorm).
      * Deep supervision: nnU-Net weights the decoder outputs 1, 1/2, 1/4, ... (highest
        resolution first) and gives the lowest-resolution one weight 0, so that head is not
        built here; in training mode ``forward`` returns the remaining
        ``max(1, n_stages - 2)`` outputs ``[main, aux1, ...]`` (aux1 one stage below the
        top), each (bi/tri)linearly upsampled to the input size (nnU-Net downsamples the
        target instead). Their normalized weights are in ``self.deep_supervision_weights``.
      * Decoder stage s uses ``kernel_sizes[s]`` (v2's convention; v1 shifts by one stage,
        identical here as all kernels are 3).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output logit channels.
        features: channels per stage, bottleneck last. None: ``min(32 * 2**s, cap)`` for
            each stage of ``strides`` (cap 480 in 2D, 320 in 3D).
        strides: per-stage stride of the first conv (int or one int per axis); the first is
            normally 1. None: the planned strides above.
        kernel_sizes: per-stage conv kernel (odd ints). None: 3 everywhere.
        n_conv_per_stage: convolutions per encoder and decoder stage (2 in nnU-Net).
        norm: "instance" (nnU-Net) or "batch" (the paper 002 authors' port).
        deep_supervision: build the auxiliary heads and return them in training mode.

    Attributes:
        axis_strides: total stride per axis, (128, 256) in 2D and (8, 16, 16) in 3D by
            default; each input axis is reflect-padded to a multiple of its own total.
        stride: one int every axis size may be a multiple of: the lcm (= largest) of
            ``axis_strides``, 256 in 2D and 16 in 3D by default.

    Input-size constraints: any size; each axis is reflect-padded to a multiple of its total
    stride (and, if that would leave a single bottleneck voxel, which InstanceNorm cannot
    normalize in training, the last axis to twice it) and the output cropped back: 200 x 200
    runs at 256 x 256, 37 x 53 at 128 x 512; a Lucchi slice 768 x 1024, the planned 3D patch
    40 x 208 x 288 and paper 002's 80^3 need no padding.

    Parameters at the default config (in/out channels 1, deep supervision on): 2D 52,095,072
    (52,095,552 in nnU-Net / the authors' port, which also keep the unused lowest head),
    3D 16,218,688 (16,218,944). Paper 002 states no figure for it, only that nnU-Net, the 3D
    Vanilla U-Net and U-Net++ "have between 2x and 5x more parameters than the other
    state-of-the-art approaches".

    Example:
        >>> net = NNUNetPlain(2).eval()
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 features: Sequence[int] | None = None,
                 strides: Sequence[PerAxis] | None = None,
                 kernel_sizes: Sequence[PerAxis] | None = None, n_conv_per_stage: int = 2,
                 norm: str = "instance", deep_supervision: bool = True) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"NNUNetPlain: spatial_dims must be 2 or 3, got {spatial_dims}")
        if min(in_channels, out_channels) < 1:
            raise ValueError("NNUNetPlain: in_channels and out_channels must be >= 1")
        strides = _per_axis(PLANNED_STRIDES[spatial_dims] if strides is None else strides,
                            spatial_dims, "strides")
        n_stages = len(strides)
        if n_stages < 2:
            raise ValueError(f"NNUNetPlain: strides needs >= 2 stages, got {n_stages}")
        if features is None:
            features = [min(BASE_FEATURES * 2**s, MAX_FEATURES[spatial_dims])
                        for s in range(n_stages)]
        features = tuple(features)
        if len(features) != n_stages or any(not isinstance(f, int) or f < 1 for f in features):
            raise ValueError(f"NNUNetPlain: features must be {n_stages} positive ints (one per "
                             f"stage of strides), got {features}")
        kernels = _per_axis([3] * n_stages if kernel_sizes is None else kernel_sizes,
                            spatial_dims, "kernel_sizes")
        if len(kernels) != n_stages or any(k % 2 == 0 for kernel in kernels for k in kernel):
            raise ValueError(f"NNUNetPlain: kernel_sizes must be {n_stages} odd sizes, "
                             f"got {kernel_sizes}")
        if not isinstance(n_conv_per_stage, int) or n_conv_per_stage < 1:
            raise ValueError(f"NNUNetPlain: n_conv_per_stage must be >= 1, got {n_conv_per_stage}")
        if norm not in NORMS:
            raise ValueError(f"NNUNetPlain: norm must be one of {NORMS}, got {norm!r}")
        self.features, self.strides, self.kernel_sizes = features, strides, kernels
        self.deep_supervision = bool(deep_supervision)
        self.axis_strides = tuple(math.prod(s[axis] for s in strides)
                                  for axis in range(spatial_dims))
        self.stride = math.lcm(*self.axis_strides)

        def stage(channels_in: int, channels: int, kernel: tuple[int, ...],
                  stride: tuple[int, ...]) -> nn.Sequential:
            convs = [_ConvNormAct(spatial_dims, channels_in, channels, kernel, stride, norm)]
            convs += [_ConvNormAct(spatial_dims, channels, channels, kernel, (1,) * spatial_dims,
                                   norm) for _ in range(n_conv_per_stage - 1)]
            return nn.Sequential(*convs)

        self.encoder = nn.ModuleList(
            stage(in_channels if s == 0 else features[s - 1], features[s], kernels[s], strides[s])
            for s in range(n_stages))
        self.upsamplers, self.decoder = nn.ModuleList(), nn.ModuleList()
        for s in reversed(range(n_stages - 1)):  # deepest decoder stage first
            up = CONV_TRANSPOSE[spatial_dims](features[s + 1], features[s], strides[s + 1],
                                              strides[s + 1], bias=False)
            _he_init_(up)
            self.upsamplers.append(up)
            self.decoder.append(stage(2 * features[s], features[s], kernels[s],
                                      (1,) * spatial_dims))
        # Heads for the top max(1, n_stages - 2) decoder stages, top (main) first.
        n_heads = max(1, n_stages - 2) if self.deep_supervision else 1
        self.heads = nn.ModuleList()
        for s in range(n_heads):
            head = CONV[spatial_dims](features[s], out_channels, 1, bias=False)
            _he_init_(head)
            self.heads.append(head)
        weights = [0.5**i for i in range(n_heads)]
        self.deep_supervision_weights = tuple(w / sum(weights) for w in weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        size = tuple(x.shape[2:])
        padded = padded_size(size, self.axis_strides)
        x = pad_spatial(x, padded)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = skips.pop()
        decoded = []  # deepest decoder stage first, the top stage last
        for up, stage, skip in zip(self.upsamplers, self.decoder, reversed(skips)):
            x = stage(torch.cat([up(x), skip], dim=1))
            decoded.append(x)
        main = crop_to(self.heads[0](decoded[-1]), size)
        if not (self.deep_supervision and self.training):
            return main
        outputs = [main]
        for below_top, head in enumerate(self.heads[1:], start=1):
            logits = linear_resize(head(decoded[-1 - below_top]), padded)
            outputs.append(crop_to(logits, size))
        return outputs
