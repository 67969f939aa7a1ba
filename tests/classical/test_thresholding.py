"""Otsu and local adaptive thresholding, and the input checks and noise estimate that every
classical method shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy import ndimage

from mitoseg.classical import LocalThreshold, OtsuThreshold, check_image, noise_sigma
from mitoseg.classical.thresholding import smoothed_noise_gain
from mitoseg.errors import InputError
from mitoseg.metrics.segmentation import area_similarity
from mitoseg.synth.fluorescence import FluorescenceParams, synthesize
from mitoseg.synth.procedural_masks import generate_masks

CONF = Path(__file__).resolve().parents[2] / "conf" / "classical"
METHODS = [OtsuThreshold, LocalThreshold]


def rectangles(shape: tuple[int, int] = (100, 120)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[10:40, 15:45] = True
    mask[55:90, 60:110] = True
    mask[60:85, 10:30] = True
    return mask


def separable_image(noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Two intensity levels 100 apart with a little noise: any threshold in between is right."""
    truth = rectangles()
    image = 20.0 + 100.0 * truth + np.random.default_rng(0).normal(0.0, noise, truth.shape)
    return image, truth


@pytest.fixture(scope="module")
def fluorescence() -> tuple[np.ndarray, np.ndarray]:
    mask = generate_masks(0, 1)[0]
    image, _ = synthesize(mask, FluorescenceParams(snr=4.0), np.random.default_rng(0))
    return image.astype(np.float64), mask


# --- shared checks ---------------------------------------------------------------------------

def test_check_image_returns_float64() -> None:
    out = check_image(np.arange(12, dtype=np.uint8).reshape(3, 4))
    assert out.dtype == np.float64 and out.shape == (3, 4)


@pytest.mark.parametrize("sigma", [0.5, 3.0, 40.0])
def test_noise_sigma_recovers_white_noise(sigma: float) -> None:
    image, _ = separable_image(noise=sigma)  # edges and signal must not inflate it
    assert noise_sigma(image) == pytest.approx(sigma, rel=0.05)


def test_noise_sigma_of_noise_free_and_constant_images() -> None:
    image, _ = separable_image(noise=0.0)
    assert noise_sigma(image) > 0  # the RMS fallback
    assert noise_sigma(np.full((8, 8), 3.0)) == 0.0


def test_smoothed_noise_gain_matches_measurement() -> None:
    noise = np.random.default_rng(0).normal(size=(400, 400))
    measured = ndimage.gaussian_filter(noise, 2.0).std()
    assert smoothed_noise_gain(2.0) == pytest.approx(measured, rel=0.05)
    assert smoothed_noise_gain(0.0) == 1.0


# --- behaviour -------------------------------------------------------------------------------

def border_band(truth: np.ndarray, width: int = 3) -> np.ndarray:
    """Pixels within ``width`` px of the true boundary, where smoothing spreads the edge."""
    return (ndimage.binary_dilation(truth, iterations=width)
            & ~ndimage.binary_erosion(truth, iterations=width))


def test_otsu_is_exact_on_a_separable_image() -> None:
    image, truth = separable_image(noise=0.0)
    assert np.array_equal(OtsuThreshold(smoothing_sigma=0.0)(image), truth)
    image, truth = separable_image(noise=1.0)
    # skimage's Otsu takes the first of equally good thresholds, at the top of the darker
    # class, so with noise a stray dark pixel may pass it; smoothing removes that
    assert area_similarity(truth, OtsuThreshold(smoothing_sigma=0.0)(image)) >= 0.999
    mask = OtsuThreshold()(image)
    assert area_similarity(truth, mask) >= 0.98  # smoothing rounds the corners
    away = ~border_band(truth)
    assert np.array_equal(mask[away], truth[away])


def test_local_threshold_is_correct_on_a_separable_image() -> None:
    image, truth = separable_image(noise=0.0)
    mask = LocalThreshold()(image)
    away = ~border_band(truth)
    assert np.array_equal(mask[away], truth[away])
    image, truth = separable_image(noise=1.0)
    mask = LocalThreshold()(image)
    assert area_similarity(truth, mask) >= 0.9
    assert not (truth & ~mask)[away].any()
    # flat background exceeds T(x) + 2 noise sigmas only rarely (a one-sided 2-sigma tail)
    assert np.count_nonzero((mask & ~truth)[away]) <= 0.01 * np.count_nonzero(~truth)


@pytest.mark.parametrize("method", METHODS)
def test_reasonable_on_synthetic_fluorescence(method: type, fluorescence: tuple) -> None:
    image, truth = fluorescence
    assert area_similarity(truth, method()(image)) >= 0.7  # measured: Otsu 0.89, local 0.8


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("a, b", [(3.7, -250.0), (1e-3, 5.0), (250.0, 1e4)])
def test_invariant_to_affine_intensity_changes(method: type, a: float, b: float,
                                               fluorescence: tuple) -> None:
    image, _ = fluorescence
    segment = method()
    reference, rescaled = segment(image), segment(a * image + b)
    # equal up to float rounding of pixels that sit exactly on the threshold
    assert np.count_nonzero(reference != rescaled) <= 1e-4 * image.size


@pytest.mark.parametrize("method", METHODS)
def test_constant_image_has_no_foreground(method: type) -> None:
    assert not method()(np.full((40, 40), 12.5)).any()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(64, 64), (33, 70)])
def test_returns_a_bool_mask_of_the_input_shape(method: type, shape: tuple[int, int]) -> None:
    image = np.random.default_rng(0).normal(size=shape)
    mask = method()(image)
    assert mask.dtype == bool and mask.shape == shape


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("image, message", [
    (np.zeros((3, 16, 16)), "2D"),
    (np.zeros(16), "2D"),
    (np.zeros((16, 1)), "2 x 2"),
    (np.where(np.eye(16) > 0, np.nan, 1.0), "finite"),
    (np.where(np.eye(16) > 0, -np.inf, 1.0), "finite"),
    (np.array([["a", "b"], ["c", "d"]]), "real"),
])
def test_bad_images_are_refused(method: type, image: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        method()(image)


@pytest.mark.parametrize("method, options", [
    (OtsuThreshold, {"smoothing_sigma": -1.0}),
    (OtsuThreshold, {"smoothing_sigma": float("nan")}),
    (OtsuThreshold, {"nbins": 1}),
    (LocalThreshold, {"block_size": 50}),
    (LocalThreshold, {"block_size": 1}),
    (LocalThreshold, {"block_size": 7.0}),
    (LocalThreshold, {"offset": float("inf")}),
    (LocalThreshold, {"method": "otsu"}),
    (LocalThreshold, {"smoothing_sigma": -0.5}),
    (LocalThreshold, {"mode": "edge"}),
])
def test_bad_options_are_refused(method: type, options: dict) -> None:
    with pytest.raises(InputError, match=next(iter(options))):
        method(**options)


# --- configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, method", [("otsu", OtsuThreshold),
                                          ("local_threshold", LocalThreshold)])
def test_config_instantiates_with_the_documented_defaults(name: str, method: type) -> None:
    segment = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(segment, method)
    assert segment.describe() == method().describe()
    image, truth = separable_image()
    assert area_similarity(truth, segment(image)) >= 0.9
