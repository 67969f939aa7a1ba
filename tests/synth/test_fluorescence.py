"""The image model of paper 000: I* = K * I + N(mu_bg, sigma_bg^2), checked piece by piece.

Statistical checks use fixed seeds, and their tolerances are set from the sampling spread
(several standard errors), so they hold for other seeds too, not just the ones written here.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
from scipy import ndimage, stats

from mitoseg.errors import InputError
from mitoseg.metrics.segmentation import average_boundary_distance
from mitoseg.synth.fluorescence import (
    PSF_SIGMA_PX,
    FluorescenceParams,
    as_binary_mask,
    band_sigmas,
    blur,
    deform,
    gamma_intensities,
    measured_snr,
    smooth_inside,
    synthesize,
    synthesize_pair,
)
from mitoseg.synth.procedural_masks import ProceduralMaskConfig, generate_masks


def _disk(shape: tuple[int, int], radius: float, center: tuple[float, float] | None = None) -> np.ndarray:
    cy, cx = center if center is not None else ((shape[0] - 1) / 2, (shape[1] - 1) / 2)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def _kernel_radius(sigma: float) -> int:
    """Support of scipy's Gaussian filter (truncate=4): a change moves pixels this far at most."""
    return int(4.0 * sigma + 0.5)


@pytest.fixture(scope="module")
def realistic_masks() -> np.ndarray:
    """Procedural masks with the real crops' look, dense enough for a precise mean inside."""
    return generate_masks(11, 24, ProceduralMaskConfig(foreground_fraction=(0.10, 0.20)))


# ---------------------------------------------------------------------------------------------
# SNR: the requested value is what one measures on the finished image
# ---------------------------------------------------------------------------------------------

BLURS = [
    ("psf", {}, PSF_SIGMA_PX),
    ("invariant", {"blur_sigma": 2.0}, 2.0),
    ("invariant", {"blur_sigma": 3.0}, 3.0),
    ("invariant", {"blur_sigma": 4.0}, 4.0),
    ("variant", {"blur_max_sigma": 2.0}, 2.0),
    ("variant", {"blur_max_sigma": 3.0}, 3.0),
    ("variant", {"blur_max_sigma": 4.0}, 4.0),
]


@pytest.mark.parametrize("smooth", [0.0, 1.0], ids=["iid", "smooth1"])
@pytest.mark.parametrize("blur_kind, blur_options, max_sigma", BLURS,
                         ids=["psf", "inv2", "inv3", "inv4", "var1~2", "var1~3", "var1~4"])
@pytest.mark.parametrize("snr", [1.0, 4.0, 8.0])
def test_measured_snr_matches_request(realistic_masks, snr, blur_kind, blur_options, max_sigma,
                                      smooth):
    # One image at SNR 1 measures its SNR with a spread of about 1.7 % (the mean over ~5000
    # mitochondrial pixels carries noise sigma_bg / sqrt(5000) on a contrast of 1 sigma_bg),
    # so 2 % would fail about one image in four. The mean over 24 images has a spread of about
    # 0.35 %: 2 % is more than 5 standard deviations (checked over 25 groups of seeds).
    params = FluorescenceParams(snr=snr, blur=blur_kind, smooth_inside_sigma=smooth,
                                **blur_options)
    margin = 3.0 * max_sigma + 1.0
    measured = []
    for index, mask in enumerate(realistic_masks):
        image, record = synthesize(mask, params, np.random.default_rng([2024, index]))
        assert record["snr"] == snr
        measured.append(measured_snr(image, mask, margin_px=margin))
    relative_error = np.mean(measured) / snr - 1.0
    assert abs(relative_error) < 0.02, f"mean measured SNR {np.mean(measured):.4f} for {snr}"


def test_measured_snr_on_a_fixed_mask_single_large_image():
    # A fixed mask with many mitochondrial pixels: one image is precise enough on its own.
    mask = np.zeros((256, 256), bool)
    for cy in range(32, 256, 64):
        for cx in range(32, 256, 64):
            mask |= _disk(mask.shape, 15, (cy, cx))
    for snr in (1.0, 4.0, 8.0):
        image, _ = synthesize(mask, FluorescenceParams(snr=snr, blur="invariant", blur_sigma=2.0),
                              np.random.default_rng(5))
        assert measured_snr(image, mask, margin_px=7.0) == pytest.approx(snr, rel=0.02)


def test_gamma_mean_reference_uses_the_nominal_contrast():
    mask = _disk((64, 64), 3)  # thin: blur moves much of the signal out of the mask
    params = FluorescenceParams(snr=2.0, gamma_shape=3.0, gamma_scale=10.0,
                                snr_reference="gamma_mean")
    _, record = synthesize(mask, params, np.random.default_rng(0))
    assert record["background_sigma"] == pytest.approx(3.0 * 10.0 / 2.0)
    _, record = synthesize(mask, params.with_(snr_reference="blurred_signal"),
                           np.random.default_rng(0))
    assert record["background_sigma"] < 3.0 * 10.0 / 2.0  # blurred mean of a thin object is lower


def test_image_without_mitochondria_falls_back_to_the_nominal_contrast():
    params = FluorescenceParams(snr=4.0)
    image, record = synthesize(np.zeros((40, 40), bool), params, np.random.default_rng(0))
    assert record["background_sigma"] == pytest.approx(params.gamma_shape * params.gamma_scale / 4)
    assert record["foreground_fraction"] == 0.0
    assert np.isfinite(image).all()


# ---------------------------------------------------------------------------------------------
# I: Gamma intensities inside, zero outside
# ---------------------------------------------------------------------------------------------

def test_gamma_intensities_moments_and_distribution():
    shape, scale = 4.0, 25.0
    mask = _disk((300, 300), 120)
    values = gamma_intensities(mask, shape, scale, np.random.default_rng(123))
    assert values.shape == mask.shape
    assert np.all(values[~mask] == 0.0)
    inside = values[mask]
    assert np.all(inside > 0)
    n = inside.size
    mean, var = shape * scale, shape * scale**2
    # Standard errors: mean sqrt(var / n); sample variance var * sqrt((2 + 6 / shape) / n)
    # (the Gamma's excess kurtosis is 6 / shape). 5 standard errors: not flaky across seeds.
    assert abs(inside.mean() - mean) < 5 * np.sqrt(var / n)
    assert abs(inside.var(ddof=1) - var) < 5 * var * np.sqrt((2 + 6 / shape) / n)
    ks = stats.kstest(inside, stats.gamma(a=shape, scale=scale).cdf)
    assert ks.pvalue > 1e-3
    # And the test has power: a wrong shape (same mean) is rejected.
    wrong = stats.kstest(inside, stats.gamma(a=2 * shape, scale=scale / 2).cdf)
    assert wrong.pvalue < 1e-6


def test_gamma_field_is_shared_by_overlapping_masks():
    small = _disk((80, 80), 15)
    large = deform(small, 3)
    a = gamma_intensities(small, 4, 25, np.random.default_rng(9))
    b = gamma_intensities(large, 4, 25, np.random.default_rng(9))
    np.testing.assert_array_equal(a[small], b[small])


# ---------------------------------------------------------------------------------------------
# K: the three kinds of blur kernel
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_field() -> np.ndarray:
    mask = np.random.default_rng(1).random((200, 180)) < 0.3
    return gamma_intensities(mask, 4, 25, np.random.default_rng(2))


def _interior(a: np.ndarray, margin: int) -> np.ndarray:
    return a[margin:-margin, margin:-margin]


def test_psf_blur_is_gaussian_sigma_1(random_field):
    out = blur(random_field, FluorescenceParams(blur="psf", blur_sigma=3.0))  # blur_sigma unused
    expected = ndimage.gaussian_filter(random_field, 1.0)
    margin = _kernel_radius(1.0) + 1
    np.testing.assert_allclose(_interior(out, margin), _interior(expected, margin), rtol=1e-10,
                               atol=1e-10)
    assert not np.allclose(_interior(out, margin),
                           _interior(ndimage.gaussian_filter(random_field, 3.0), margin))


@pytest.mark.parametrize("sigma", [0.5, 2.0, 3.0, 4.0])
def test_invariant_blur_is_gaussian_of_blur_sigma(random_field, sigma):
    out = blur(random_field, FluorescenceParams(blur="invariant", blur_sigma=sigma))
    expected = ndimage.gaussian_filter(random_field, sigma)
    margin = _kernel_radius(sigma) + 1
    np.testing.assert_allclose(_interior(out, margin), _interior(expected, margin), rtol=1e-10,
                               atol=1e-10)


def test_band_sigmas_follow_the_paper():
    assert band_sigmas(2.0) == pytest.approx((1.0, 2 / 3, 4 / 3, 2.0))
    assert band_sigmas(3.0) == pytest.approx((1.0, 1.0, 2.0, 3.0))
    assert band_sigmas(4.0) == pytest.approx((1.0, 4 / 3, 8 / 3, 4.0))


@pytest.mark.parametrize("height", [200, 203, 198])
@pytest.mark.parametrize("max_sigma", [2.0, 4.0])  # four distinct band sigmas for both
def test_variant_blur_uses_four_equal_horizontal_bands(height, max_sigma):
    width = 60
    field = gamma_intensities(np.ones((height, width), bool), 4, 25,
                              np.random.default_rng(height))
    out = blur(field, FluorescenceParams(blur="variant", blur_max_sigma=max_sigma))
    sigmas = band_sigmas(max_sigma)
    candidates = [ndimage.gaussian_filter(field, s) for s in sigmas]
    margin = _kernel_radius(max(sigmas)) + 1
    # Which band's Gaussian reproduces each row (columns away from the left/right border).
    band_of_row = []
    for row in range(height):
        matches = [b for b, c in enumerate(candidates)
                   if np.allclose(out[row, margin:-margin], c[row, margin:-margin], rtol=1e-10,
                                  atol=1e-9)]
        assert len(matches) == 1, f"row {row} matches bands {matches}"
        band_of_row.append(matches[0])
    band_of_row = np.array(band_of_row)
    # Top to bottom: bands 0, 1, 2, 3 in order, each one contiguous run.
    assert band_of_row[0] == 0 and band_of_row[-1] == 3
    assert np.all(np.diff(band_of_row) >= 0)
    heights = np.bincount(band_of_row, minlength=4)
    assert heights.sum() == height
    assert heights.max() - heights.min() <= 1, heights
    if height % 4 == 0:
        assert np.all(heights == height // 4)


# ---------------------------------------------------------------------------------------------
# Smoothing inside the mitochondria (the spatially correlated variant)
# ---------------------------------------------------------------------------------------------

def test_smooth_inside_correlates_pixels_without_leaking():
    masks = generate_masks(3, 4)
    for index, mask in enumerate(masks):
        raw = gamma_intensities(mask, 4, 25, np.random.default_rng(index))
        smooth = smooth_inside(raw, mask, 1.0)
        assert np.all(smooth[~mask] == 0.0), "intensity leaked into the background"
        assert smooth[mask].mean() == pytest.approx(raw[mask].mean(), rel=0.02)
        assert smooth[mask].var() < 0.25 * raw[mask].var()
        pairs = mask[:, :-1] & mask[:, 1:]  # horizontally adjacent mitochondrial pixels
        before = np.corrcoef(raw[:, :-1][pairs], raw[:, 1:][pairs])[0, 1]
        after = np.corrcoef(smooth[:, :-1][pairs], smooth[:, 1:][pairs])[0, 1]
        assert abs(before) < 0.1  # i.i.d. to start with
        assert after > 0.6


def test_smooth_inside_sigma_0_is_the_identity_and_constant_stays_constant():
    mask = _disk((50, 50), 12)
    raw = gamma_intensities(mask, 4, 25, np.random.default_rng(0))
    np.testing.assert_array_equal(smooth_inside(raw, mask, 0.0), raw)
    # Normalized convolution: a constant inside stays that constant, up to the boundary.
    constant = np.where(mask, 7.0, 0.0)
    np.testing.assert_allclose(smooth_inside(constant, mask, 1.5)[mask], 7.0, rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# N: the additive background noise
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("background_mean, snr", [(100.0, 4.0), (30.0, 1.0), (250.0, 8.0)])
def test_background_noise_has_the_recorded_mean_and_sigma(background_mean, snr):
    mask = _disk((256, 256), 30)
    params = FluorescenceParams(snr=snr, background_mean=background_mean)
    image, record = synthesize(mask, params, np.random.default_rng(77))
    far = ndimage.distance_transform_edt(~mask) > _kernel_radius(PSF_SIGMA_PX) + 1
    background = image[far].astype(np.float64)
    n, sigma = background.size, record["background_sigma"]
    assert record["background_mean"] == background_mean
    assert abs(background.mean() - background_mean) < 5 * sigma / np.sqrt(n)
    assert abs(background.std(ddof=1) - sigma) < 5 * sigma / np.sqrt(2 * n)
    assert stats.normaltest(background).pvalue > 1e-3
    # sigma_bg is what makes the requested SNR: contrast / SNR.
    assert record["mito_mean_above_background"] == pytest.approx(sigma * snr)


# ---------------------------------------------------------------------------------------------
# Deformation of the mask (paper 000's sensitivity study)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("pixels", [1, 2, 3, 5])
def test_dilation_moves_the_boundary_by_about_k(pixels):
    disk = _disk((200, 200), 50)
    grown = deform(disk, pixels)
    assert np.all(grown[disk]), "dilation must contain the original"
    assert grown.sum() > disk.sum()
    # A discrete disk footprint moves diagonal stretches slightly less than k: within 0.35 px.
    assert average_boundary_distance(disk, grown) == pytest.approx(pixels, abs=0.35)
    radius = np.sqrt(grown.sum() / np.pi)
    assert radius - 50 == pytest.approx(pixels, abs=0.5)


@pytest.mark.parametrize("pixels", [1, 2, 3])
def test_erosion_shrinks_by_about_k(pixels):
    disk = _disk((200, 200), 50)
    shrunk = deform(disk, -pixels)
    assert not np.any(shrunk & ~disk), "erosion must stay inside the original"
    assert shrunk.sum() < disk.sum()
    assert average_boundary_distance(disk, shrunk) == pytest.approx(pixels, abs=0.35)
    radius = np.sqrt(shrunk.sum() / np.pi)
    assert 50 - radius == pytest.approx(pixels, abs=0.5)


def test_deform_distance_grows_with_k():
    disk = _disk((200, 200), 50)
    distances = [average_boundary_distance(disk, deform(disk, k)) for k in (1, 2, 3, 4)]
    assert np.all(np.diff(distances) > 0.5)


def test_deform_zero_is_a_copy():
    mask = _disk((40, 40), 10)
    same = deform(mask, 0)
    np.testing.assert_array_equal(same, mask)
    same[0, 0] = True
    assert not mask[0, 0], "deform(mask, 0) must not return the input itself"


# ---------------------------------------------------------------------------------------------
# Pairs: original and deformed images that differ only where the mask changed
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    FluorescenceParams(),
    FluorescenceParams(snr=1.0, blur="invariant", blur_sigma=3.0),
    FluorescenceParams(snr=8.0, blur="variant", blur_max_sigma=3.0),
], ids=["psf", "inv3", "var1~3"])
@pytest.mark.parametrize("pixels", [-1, 2])
def test_pair_differs_only_near_the_change(params, pixels):
    mask = generate_masks(4, 1, ProceduralMaskConfig(foreground_fraction=(0.05, 0.08)))[0]
    pair = synthesize_pair(mask, pixels, params, np.random.default_rng(31))
    changed = pair["mask"] ^ pair["deformed_mask"]
    assert changed.any()
    np.testing.assert_array_equal(pair["mask"], mask)
    np.testing.assert_array_equal(pair["deformed_mask"], deform(mask, pixels))
    sigma = {"psf": PSF_SIGMA_PX, "invariant": params.blur_sigma,
             "variant": params.blur_max_sigma}[params.blur]
    # A pixel of the (separable, truncated) Gaussian sees a square of half-size r around it.
    reach = _kernel_radius(sigma)
    chessboard = ndimage.distance_transform_cdt(~changed, metric="chessboard")
    far = chessboard > reach
    assert far.mean() > 0.3
    np.testing.assert_array_equal(pair["image"][far], pair["deformed_image"][far])
    # Euclidean distance 3 sigma + 1: the tail of the Gaussian is negligible there.
    euclid = ndimage.distance_transform_edt(~changed)
    beyond = euclid > 3 * sigma + 1
    difference = np.abs(pair["image"][beyond] - pair["deformed_image"][beyond])
    assert difference.max() < 0.005 * pair["record"]["mito_mean_above_background"]
    # ... and the images do differ where the mask changed.
    assert np.abs(pair["image"][changed] - pair["deformed_image"][changed]).mean() > 1.0
    # The records: same noise level, and the deformation is written down.
    assert pair["deformed_record"]["deformation_px"] == pixels
    assert pair["deformed_record"]["background_sigma"] == pair["record"]["background_sigma"]
    assert pair["deformed_record"]["foreground_fraction"] == pytest.approx(
        pair["deformed_mask"].mean())


def test_pair_is_reproducible_from_the_seed():
    mask = _disk((64, 64), 14)
    a = synthesize_pair(mask, 1, FluorescenceParams(), np.random.default_rng(3))
    b = synthesize_pair(mask, 1, FluorescenceParams(), np.random.default_rng(3))
    for key in ("image", "deformed_image"):
        np.testing.assert_array_equal(a[key], b[key])


# ---------------------------------------------------------------------------------------------
# Records, reproducibility, invalid input
# ---------------------------------------------------------------------------------------------

def test_record_holds_every_parameter_and_the_noise_level():
    params = FluorescenceParams(snr=2.5, gamma_shape=3.0, gamma_scale=20.0,
                                background_mean=80.0, blur="variant", blur_max_sigma=3.0,
                                smooth_inside_sigma=1.0)
    mask = _disk((64, 64), 10)
    image, record = synthesize(mask, params, np.random.default_rng(0))
    assert image.dtype == np.float32 and image.shape == mask.shape
    for field in fields(FluorescenceParams):
        assert record[field.name] == getattr(params, field.name), field.name
    assert record["background_sigma"] > 0
    assert record["foreground_fraction"] == pytest.approx(mask.mean())


def test_same_seed_same_image_different_seed_different_image():
    mask = _disk((64, 64), 10)
    params = FluorescenceParams(blur="invariant", blur_sigma=2.0, smooth_inside_sigma=1.0)
    a, ra = synthesize(mask, params, np.random.default_rng(42))
    b, rb = synthesize(mask, params, np.random.default_rng(42))
    c, _ = synthesize(mask, params, np.random.default_rng(43))
    np.testing.assert_array_equal(a, b)
    assert ra == rb
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name, value", [
    ("snr", 0.0), ("snr", -1.0), ("snr", float("nan")), ("snr", float("inf")),
    ("gamma_shape", 0.0), ("gamma_shape", float("nan")), ("gamma_scale", -2.0),
    ("background_mean", float("nan")), ("blur", "motion"), ("blur", "Psf"),
    ("blur_sigma", 0.0), ("blur_sigma", float("nan")), ("blur_max_sigma", 0.5),
    ("smooth_inside_sigma", -1.0), ("snr_reference", "peak"),
])
def test_invalid_parameters_raise_naming_the_parameter(name, value):
    with pytest.raises(InputError, match=f"'{name}'"):
        FluorescenceParams(**{name: value})
    with pytest.raises(InputError, match=f"'{name}'"):
        FluorescenceParams().with_(**{name: value})


@pytest.mark.parametrize("mask", [
    np.array([[0, 1], [2, 1]]),  # three levels
    np.zeros((2, 3, 3), bool),  # not 2D
], ids=["three-levels", "3d"])
def test_synthesize_refuses_a_non_binary_mask(mask):
    with pytest.raises(InputError):
        as_binary_mask(mask)
    with pytest.raises(InputError):
        synthesize(mask, FluorescenceParams(), np.random.default_rng(0))


def test_measured_snr_needs_mitochondria_and_background():
    image = np.zeros((20, 20), np.float32)
    with pytest.raises(InputError):
        measured_snr(image, np.zeros((20, 20), bool))
    with pytest.raises(InputError):
        measured_snr(image, np.ones((20, 20), bool))
