"""The 2D/3D Attention U-Net of paper 002: its U-Net with attention gates on every skip."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mitoseg.models.layers import CONV, init_conv_
from mitoseg.models.nets.unet_paper002 import UNetPaper002
from mitoseg.models.resize import linear_resize


class AttentionGate(nn.Module):
    """Additive attention gate of Schlemper et al. 2019 (Attention U-Net), grid-gated.

    ``alpha = resample(sigmoid(psi(relu(W_x(skip) + W_g(gate)))))`` and the output is
    ``skip * alpha``: one coefficient in [0, 1] per skip pixel, shared by all its channels.
    The gating signal ``gate`` is the decoder's feature map one level coarser than ``skip``.

    Choices (Schlemper's paper and reference code; paper 002 gives no detail beyond citing it):
      * W_x takes the skip to the gating grid with a 2x2 (2x2x2) convolution of stride 2
        (``factor``: 1x2x2 with stride 1, 2, 2 in a U-Net that does not pool z), without
        bias (a strided 1x1 would ignore 3/4 (7/8) of the skip's pixels); W_g and psi are 1x1
        convolutions with bias; intermediate channels = skip_channels // 2.
      * The coefficients are resampled to the skip's size with (bi/tri)linear interpolation
        (``linear_resize``: its gradient is deterministic on a GPU too).
      * No batch norm and no output 1x1 transform inside the gate; Glorot-uniform kernels and
        zero biases (Keras' defaults, as in the authors' code).

    Args:
        spatial_dims: 2 or 3.
        skip_channels: channels of the skip (encoder) features that are gated.
        gate_channels: channels of the coarser gating features.
        inter_channels: channels of W_x / W_g; None: ``max(1, skip_channels // 2)``.
        factor: the pooling factor per axis between skip and gate; None: 2 along each axis.

    Input-size constraints: ``gate`` is about half the skip's size per axis (any mismatch,
    e.g. odd skip sizes, is bridged by interpolation).

    Example:
        >>> gate = AttentionGate(2, 16, 32)
        >>> gate(torch.zeros(1, 16, 64, 64), torch.zeros(1, 32, 32, 32)).shape
        torch.Size([1, 16, 64, 64])
    """

    def __init__(self, spatial_dims: int, skip_channels: int, gate_channels: int,
                 inter_channels: int | None = None, *,
                 factor: Sequence[int] | None = None) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"AttentionGate: spatial_dims must be 2 or 3, got {spatial_dims}")
        inter_channels = max(1, skip_channels // 2) if inter_channels is None else inter_channels
        if min(skip_channels, gate_channels, inter_channels) < 1:
            raise ValueError("AttentionGate: channel counts must be >= 1")
        factor = (2,) * spatial_dims if factor is None else tuple(int(f) for f in factor)
        if len(factor) != spatial_dims or min(factor) < 1:
            raise ValueError(f"AttentionGate: factor needs {spatial_dims} values >= 1, got {factor}")
        conv = CONV[spatial_dims]
        self.w_x = conv(skip_channels, inter_channels, factor, stride=factor, bias=False)
        self.w_g = conv(gate_channels, inter_channels, 1)
        self.psi = conv(inter_channels, 1, 1)
        for layer in (self.w_x, self.w_g, self.psi):
            init_conv_(layer, "glorot_uniform")

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Attention coefficients in [0, 1], shape (N, 1, *skip's spatial shape)."""
        theta = self.w_x(skip)
        phi = self.w_g(gate)
        if phi.shape[2:] != theta.shape[2:]:
            phi = linear_resize(phi, theta.shape[2:])
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        return linear_resize(alpha, skip.shape[2:])

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.coefficients(skip, gate)


class AttentionUNetPaper002(nn.Module):
    """Paper 002's Attention U-Net: ``UNetPaper002`` with an ``AttentionGate`` on every skip.

    Paper 002: "the same as Basic U-Net but incorporating attention gates (Schlemper et al.,
    2019) in the features passed by the skip connections (Fig. 3)". Built by composition: the
    U-Net (``self.unet``) is given ``AttentionGate`` as its ``skip_gate``; every argument
    means exactly what it means for ``UNetPaper002`` (see its docstring for the choices).
    Each gate multiplies the encoder skip, gated by the decoder features one level below,
    before the concatenation. (The authors' Keras code gates the up-sampled decoder features
    instead of the skip; Schlemper's definition is followed here.)

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output logit channels.
        filters: channels per level, bottleneck last; None: the paper's 2D / 3D widths.
        dropout: one rate per level, one number for all, or None for the paper's pyramid.
        activation: "elu" or "relu".
        batch_norm: batch normalization after every 3x3 convolution (not inside the gates).
        init: "he_normal" or "glorot_uniform" for the 3x3 convolutions.
        upsample: "transpose" or "nearest".
        z_pooling: 3D only; False: no pooling along z (paper 002's Kasthuri++ variant), the
            gates' W_x then spans 1x2x2.

    Input-size constraints: any spatial size (reflect-padded to a multiple of
    2 ** (len(filters) - 1), not along z without z pooling, and cropped back), as for
    ``UNetPaper002``.

    Example:
        >>> net = AttentionUNetPaper002(2, 1, 1)
        >>> net(torch.zeros(1, 1, 200, 200)).shape
        torch.Size([1, 1, 200, 200])
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 filters: Sequence[int] | None = None,
                 dropout: float | Sequence[float] | None = None, activation: str = "elu",
                 batch_norm: bool = False, init: str = "he_normal",
                 upsample: str = "transpose", z_pooling: bool = True) -> None:
        super().__init__()
        self.unet = UNetPaper002(spatial_dims, in_channels, out_channels, filters=filters,
                                 dropout=dropout, activation=activation, batch_norm=batch_norm,
                                 init=init, upsample=upsample, skip_gate=AttentionGate,
                                 z_pooling=z_pooling)
        self.stride = self.unet.stride

    @property
    def gates(self) -> nn.ModuleList:
        """The attention gates, coarsest skip first."""
        return self.unet.gates

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)
