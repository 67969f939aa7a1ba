"""Paper 000's image model (eq. 2) for a batch of masks in torch, so it can run on the GPU.

The same steps as ``mitoseg.synth.fluorescence.synthesize``: Gamma intensities inside the
mitochondria, optional smoothing inside them, the Gaussian PSF / space-invariant / space-variant
(four horizontal bands) blur, and Gaussian background noise whose sigma gives the requested SNR.
The blur is the same computation as scipy's ``gaussian_filter(mode="reflect")`` (same kernel,
same borders), so noise-free images agree to float32 rounding; the random draws come from a
torch generator, so noisy images agree in distribution, not pixel by pixel.

The fluorescence data module uses it for ``synthesis: device`` (training images made where
the batch is, on the GPU when training there); benchmarks/bench_generator.py times it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from mitoseg.errors import InputError
from mitoseg.synth.fluorescence import (
    PSF_SIGMA_PX,
    SPACE_VARIANT_BANDS,
    FluorescenceParams,
    band_sigmas,
)


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage's 1D Gaussian: radius int(truncate * sigma + 0.5), normalized to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return kernel / kernel.sum()


def _symmetric_index(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices of scipy's 'reflect' padding (d c b a | a b c d | d c b a), any radius."""
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx < n, idx, 2 * n - 1 - idx)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, H, W) with scipy's 'reflect' borders."""
    kernel = gaussian_kernel(sigma).to(images.device, images.dtype)
    radius = (len(kernel) - 1) // 2
    _, h, w = images.shape
    x = images.index_select(1, _symmetric_index(h, radius, images.device))
    x = F.conv2d(x[:, None], kernel.view(1, 1, -1, 1))[:, 0]
    x = x.index_select(2, _symmetric_index(w, radius, images.device))
    return F.conv2d(x[:, None], kernel.view(1, 1, 1, -1))[:, 0]


def _blur_zero_border(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur with zeros outside the image (scipy mode='constant')."""
    kernel = gaussian_kernel(sigma).to(images.device, images.dtype)
    radius = (len(kernel) - 1) // 2
    x = F.conv2d(images[:, None], kernel.view(1, 1, -1, 1), padding=(radius, 0))
    return F.conv2d(x, kernel.view(1, 1, 1, -1), padding=(0, radius))[:, 0]


def blur(images: torch.Tensor, params: FluorescenceParams) -> torch.Tensor:
    """K * I of eq. (2) for (B, H, W), as ``mitoseg.synth.fluorescence.blur``."""
    if params.blur == "psf":
        return gaussian_blur(images, PSF_SIGMA_PX)
    if params.blur == "invariant":
        return gaussian_blur(images, params.blur_sigma)
    height = images.shape[1]
    edges = [round(height * k / SPACE_VARIANT_BANDS) for k in range(SPACE_VARIANT_BANDS + 1)]
    out = torch.empty_like(images)
    for band, sigma in enumerate(band_sigmas(params.blur_max_sigma)):
        top, bottom = edges[band], edges[band + 1]
        out[:, top:bottom] = gaussian_blur(images, sigma)[:, top:bottom]
    return out


def standard_gamma(shape: float, size: tuple[int, ...], generator: torch.Generator,
                   device: torch.device) -> torch.Tensor:
    """Gamma(shape, 1) draws from ``generator``, by torch's own sampler (the one
    ``torch.distributions.Gamma`` uses). Its rejection loop runs per element inside one kernel,
    so nothing is read back from the device: a loop in Python over the draws still to accept
    (Marsaglia and Tsang's, here before) reads their count every round, and on a GPU each read
    makes the CPU wait for everything queued there, about 9 times a batch."""
    return torch._standard_gamma(torch.full(size, float(shape), device=device),
                                 generator=generator)


def _field(draw: Callable[[tuple[int, ...], torch.Generator], torch.Tensor],
           masks: torch.Tensor,
           generators: torch.Generator | Sequence[torch.Generator]) -> torch.Tensor:
    """``draw(size, generator)`` of the masks' shape (B, H, W): at once from one generator,
    or image by image from one generator per mask (see ``synthesize_batch``)."""
    if isinstance(generators, torch.Generator):
        return draw(tuple(masks.shape), generators)
    return torch.stack([draw(tuple(masks.shape[1:]), generator) for generator in generators])


def synthesize_batch(masks: torch.Tensor, params: FluorescenceParams,
                     generators: torch.Generator | Sequence[torch.Generator]) -> torch.Tensor:
    """float32 images (B, H, W) from bool masks (B, H, W), on the masks' device.

    ``generators``: one generator for the whole batch (its draws then depend on the batch's
    size and order), or one per mask, so that each image depends on its own generator only,
    whatever batch it is made in (the training data module's way: a sample's image is fixed).
    """
    if not isinstance(generators, torch.Generator) and len(generators) != len(masks):
        raise InputError(f"synthesize_batch: {len(generators)} generators for {len(masks)} masks; "
                         f"give one generator, or one per mask")
    mask = masks.float()
    field = _field(lambda size, g: standard_gamma(params.gamma_shape, size, g, masks.device),
                   masks, generators)
    intensities = field * params.gamma_scale * mask
    if params.smooth_inside_sigma > 0:  # normalized convolution restricted to the mask
        weights = _blur_zero_border(mask, params.smooth_inside_sigma)
        smoothed = _blur_zero_border(intensities, params.smooth_inside_sigma)
        intensities = torch.where(masks, smoothed / weights.clamp_min(1e-12),
                                  torch.zeros_like(smoothed))
    signal = blur(intensities, params)
    nominal = params.gamma_shape * params.gamma_scale
    count = mask.sum(dim=(1, 2))
    if params.snr_reference == "blurred_signal":
        measured = (signal * mask).sum(dim=(1, 2)) / count.clamp_min(1)
        contrast = torch.where(count > 0, measured, torch.full_like(measured, nominal))
    else:
        contrast = torch.full_like(count, nominal)
    sigma_bg = contrast / params.snr
    noise = _field(lambda size, g: torch.randn(size, generator=g, device=masks.device),
                   masks, generators)
    return signal + params.background_mean + sigma_bg[:, None, None] * noise


def random_dihedral(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One of the 8 flips/rotations per (square) mask, uniformly, as RandomDihedral(p=1).

    All 8 are made and one is picked per mask: no data-dependent indexing, so no GPU sync.
    """
    choice = torch.randint(0, 8, (masks.shape[0],), generator=generator, device=masks.device)
    variants = [torch.rot90(masks, k, dims=(-2, -1)) for k in range(4)]
    variants += [v.flip(-1) for v in variants]
    return torch.stack(variants)[choice, torch.arange(masks.shape[0], device=masks.device)]


def zscore(images: torch.Tensor) -> torch.Tensor:
    """Per-image (x - mean) / std, as the data set's 'zscore' normalization (numpy's std)."""
    mean = images.mean(dim=(1, 2), keepdim=True)
    std = images.std(dim=(1, 2), keepdim=True, unbiased=False).clamp_min(1e-6)
    return (images - mean) / std
