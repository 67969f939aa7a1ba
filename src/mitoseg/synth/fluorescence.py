"""Realistic synthetic fluorescence images from binary masks (paper 000, Materials and Methods).

The image model is eq. (2) of paper 000:

    I*(x, y) = K(x, y) * I(x, y) + N(mu_bg, sigma_bg^2)

where I holds i.i.d. Gamma intensities inside the mitochondria and zero outside, K is a Gaussian
kernel (the microscope PSF of sigma 1 px when no extra blur is simulated, a chosen sigma for
space-invariant blur, or four horizontal bands of sigma 1, M/3, 2M/3, M for space-variant blur
of level 1~M), and the additive Gaussian noise is chosen so that
SNR = (mu_mito - mu_bg) / sigma_bg equals the requested value.

Every function here is pure: numpy arrays in, arrays out, randomness only through the
``numpy.random.Generator`` that the caller passes in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import disk

from mitoseg.errors import InputError

PSF_SIGMA_PX = 1.0  # paper 000: sigma of the microscope PSF for its 100x/1.40 NA setting
SPACE_VARIANT_BANDS = 4  # paper 000 (after its ref. [18]): four equal horizontal bands

BlurKind = Literal["psf", "invariant", "variant"]
SnrReference = Literal["blurred_signal", "gamma_mean"]


@dataclass(frozen=True)
class FluorescenceParams:
    """Everything that defines one synthetic image condition; recorded with every sample.

    Defaults: Gamma(shape 4, scale 25) intensities (mean 100) on a background of mean 100, the
    microscope PSF (sigma 1 px) and SNR 4 -- the middle condition of paper 000. The paper fits
    its Gamma to real DsRed-mito intensities but does not print the parameters; these defaults
    give a mean mitochondrial intensity equal to the background level, as in the reference
    runs described in the project's fidelity guide.

    snr_reference says what mu_mito - mu_bg means when choosing sigma_bg:
    ``blurred_signal`` (default) uses the mean of the blurred, noise-free signal K * I over the
    mitochondria of this image, so the SNR measured on the finished image equals the request;
    ``gamma_mean`` uses the nominal Gamma mean (shape * scale), ignoring the intensity that blur
    moves out of thin mitochondria.
    """

    snr: float = 4.0
    gamma_shape: float = 4.0
    gamma_scale: float = 25.0
    background_mean: float = 100.0
    blur: BlurKind = "psf"
    blur_sigma: float = PSF_SIGMA_PX  # for blur="invariant"
    blur_max_sigma: float = 2.0  # M of the space-variant level 1~M, for blur="variant"
    smooth_inside_sigma: float = 0.0  # >0: the "spatially correlated" variant (paper uses 1 px)
    snr_reference: SnrReference = "blurred_signal"

    def __post_init__(self) -> None:
        _require(np.isfinite(self.snr) and self.snr > 0, "snr", "a finite number > 0", self.snr)
        _require(self.gamma_shape > 0, "gamma_shape", "> 0", self.gamma_shape)
        _require(self.gamma_scale > 0, "gamma_scale", "> 0", self.gamma_scale)
        _require(np.isfinite(self.background_mean), "background_mean", "finite", self.background_mean)
        _require(self.blur in ("psf", "invariant", "variant"), "blur",
                 "one of 'psf', 'invariant', 'variant'", self.blur)
        _require(self.blur_sigma > 0, "blur_sigma", "> 0", self.blur_sigma)
        _require(self.blur_max_sigma >= PSF_SIGMA_PX, "blur_max_sigma",
                 f">= {PSF_SIGMA_PX} (level 1~M starts at the PSF)", self.blur_max_sigma)
        _require(self.smooth_inside_sigma >= 0, "smooth_inside_sigma", ">= 0",
                 self.smooth_inside_sigma)
        _require(self.snr_reference in ("blurred_signal", "gamma_mean"), "snr_reference",
                 "'blurred_signal' or 'gamma_mean'", self.snr_reference)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes: Any) -> FluorescenceParams:
        return replace(self, **changes)


def _require(ok: bool, name: str, expected: str, got: Any) -> None:
    if not ok:
        raise InputError(f"synthetic image parameter '{name}' must be {expected}, got {got!r}")


def as_binary_mask(mask: np.ndarray, where: str = "mask") -> np.ndarray:
    """Check that ``mask`` is a 2D array with values in {0, 1} (or bool) and return it as bool."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"{where}: expected a 2D mask, got shape {mask.shape}")
    if mask.dtype != bool:
        values = np.unique(mask)
        if not np.all(np.isin(values, (0, 1))):
            raise InputError(f"{where}: expected mask values in {{0, 1}}, got {values[:8].tolist()}")
        mask = mask.astype(bool)
    return mask


def gamma_intensities(mask: np.ndarray, shape: float, scale: float,
                      rng: np.random.Generator) -> np.ndarray:
    """I of eq. (2): i.i.d. Gamma(shape, scale) values inside the mask, zero outside.

    The field is drawn over the whole image and then masked, so two masks that share pixels
    (an original and its deformation) get the same intensity at every shared pixel.
    """
    field = rng.gamma(shape, scale, size=mask.shape)
    return np.where(mask, field, 0.0)


def smooth_inside(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing restricted to the mitochondria (paper 000, Supplementary Figure S5).

    Normalized convolution: each mitochondrial pixel becomes the Gaussian-weighted mean of the
    mitochondrial pixels around it, so intensity neither leaks into the background nor fades
    at the boundary; the background stays zero.
    """
    if sigma <= 0:
        return image
    weights = ndimage.gaussian_filter(mask.astype(np.float64), sigma, mode="constant")
    smoothed = ndimage.gaussian_filter(image * mask, sigma, mode="constant")
    return np.where(mask, smoothed / np.maximum(weights, 1e-12), 0.0)


def band_sigmas(max_sigma: float) -> tuple[float, ...]:
    """Sigmas of the space-variant blur of level 1~M: 1, M/3, 2M/3, M, top to bottom.

    Paper 000 writes the bands as 1, M/3, 2M/3, M; for M = 2 the second band (0.67) is below
    the PSF. We keep the paper's values as written, so level 1~2 is exactly what it says.
    """
    m = float(max_sigma)
    return (PSF_SIGMA_PX, m / 3.0, 2.0 * m / 3.0, m)


def blur(image: np.ndarray, params: FluorescenceParams) -> np.ndarray:
    """K * I of eq. (2) for the three kinds of kernel.

    Space-variant blur uses, at each output pixel, the kernel of the band that pixel lies in
    (sigma(x, y) in eq. (1)): the whole image is blurred once per band sigma and each band is
    read from its own blurred copy, so light from a neighbouring band still spreads across the
    band edge as it would under a real defocus gradient.
    """
    if params.blur == "psf":
        return ndimage.gaussian_filter(image, PSF_SIGMA_PX, mode="reflect")
    if params.blur == "invariant":
        return ndimage.gaussian_filter(image, params.blur_sigma, mode="reflect")
    height = image.shape[0]
    edges = np.linspace(0, height, SPACE_VARIANT_BANDS + 1).round().astype(int)
    out = np.empty_like(image, dtype=np.float64)
    for band, sigma in enumerate(band_sigmas(params.blur_max_sigma)):
        top, bottom = edges[band], edges[band + 1]
        out[top:bottom] = ndimage.gaussian_filter(image, sigma, mode="reflect")[top:bottom]
    return out


def background_sigma(signal: np.ndarray, mask: np.ndarray, params: FluorescenceParams) -> float:
    """sigma_bg such that (mu_mito - mu_bg) / sigma_bg = SNR.

    mu_mito - mu_bg is the mean signal above background over the mitochondria: measured on the
    blurred signal by default, or the nominal Gamma mean. An image without mitochondria falls
    back to the nominal mean, so its noise level matches that of its condition.
    """
    if params.snr_reference == "blurred_signal" and mask.any():
        contrast = float(signal[mask].mean())
    else:
        contrast = params.gamma_shape * params.gamma_scale
    return contrast / params.snr


def synthesize(mask: np.ndarray, params: FluorescenceParams, rng: np.random.Generator,
               sigma_bg: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One synthetic image (float32) from one binary mask, and the record of how it was made.

    ``sigma_bg`` fixes the noise level instead of deriving it from the SNR (used for the
    deformed twin of a pair, which must share the original's noise).
    """
    mask = as_binary_mask(mask)
    intensities = gamma_intensities(mask, params.gamma_shape, params.gamma_scale, rng)
    intensities = smooth_inside(intensities, mask, params.smooth_inside_sigma)
    signal = blur(intensities, params)
    if sigma_bg is None:
        sigma_bg = background_sigma(signal, mask, params)
    noise = rng.normal(params.background_mean, sigma_bg, size=mask.shape)
    image = (signal + noise).astype(np.float32)
    record = params.to_dict() | {
        "background_sigma": sigma_bg,
        "mito_mean_above_background": sigma_bg * params.snr,
        "foreground_fraction": float(mask.mean()),
    }
    return image, record


def deform(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Uniform erosion (pixels < 0) or dilation (pixels > 0) by a disk of radius |pixels|.

    Paper 000 simulates contraction and expansion of mitochondria this way (erosion by 1 px,
    dilation by 1-3 px). A disk keeps the displacement isotropic (a square would move
    diagonal boundaries by up to sqrt(2) times more). On the pixel grid the mean boundary
    displacement of disk(k) is a little under k (measured ABD of a large disk: 1.00, 1.75 and
    2.72 px for k = 1, 2, 3).
    """
    mask = as_binary_mask(mask)
    if pixels == 0:
        return mask.copy()
    footprint = disk(abs(int(pixels))).astype(bool)
    if pixels > 0:
        return ndimage.binary_dilation(mask, structure=footprint)
    return ndimage.binary_erosion(mask, structure=footprint, border_value=1)


def synthesize_pair(mask: np.ndarray, deformation_px: int, params: FluorescenceParams,
                    rng: np.random.Generator) -> dict[str, Any]:
    """An (original, deformed) pair for sensitivity studies, with both masks.

    Both images are drawn from the same random stream state and the same noise level: the same
    Gamma field and the same noise realization, so the only difference between them is the
    deformation itself.
    """
    mask = as_binary_mask(mask)
    deformed = deform(mask, deformation_px)
    state = rng.bit_generator.state
    original_image, original_record = synthesize(mask, params, rng)
    twin = np.random.Generator(type(rng.bit_generator)())
    twin.bit_generator.state = state
    deformed_image, deformed_record = synthesize(deformed, params, twin,
                                                 sigma_bg=original_record["background_sigma"])
    return {
        "image": original_image, "mask": mask, "record": original_record,
        "deformed_image": deformed_image, "deformed_mask": deformed,
        "deformed_record": deformed_record | {"deformation_px": int(deformation_px)},
    }


def measured_snr(image: np.ndarray, mask: np.ndarray, margin_px: float = 4.0) -> float:
    # margin_px should exceed about 3 sigma of the blur, or blurred signal counts as background
    """SNR of a finished image as paper 000 defines it, measured from its pixels.

    mu_mito is the mean over the mitochondria; mu_bg and sigma_bg come from background pixels
    farther than ``margin_px`` from any mitochondrion, where blur has left no signal.
    """
    mask = as_binary_mask(mask)
    far = ndimage.distance_transform_edt(~mask) > margin_px
    if not mask.any() or not far.any():
        raise InputError("measured_snr: the image needs both mitochondria and distant background")
    background = image[far].astype(np.float64)
    return float((image[mask].mean() - background.mean()) / background.std(ddof=1))
