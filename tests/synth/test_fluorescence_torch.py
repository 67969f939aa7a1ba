"""The torch image model (mitoseg.synth.fluorescence_torch) against mitoseg.synth.fluorescence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from mitoseg.errors import InputError
from mitoseg.synth import fluorescence_torch
from mitoseg.synth.fluorescence import FluorescenceParams, synthesize
from mitoseg.synth.fluorescence_torch import (
    blur,
    gaussian_blur,
    random_dihedral,
    standard_gamma,
    synthesize_batch,
    zscore,
)
from mitoseg.synth.fluorescence import blur as numpy_blur  # noqa: E402
from mitoseg.synth.procedural_masks import ProceduralMaskConfig, generate_masks  # noqa: E402

MASKS = generate_masks(0, 12, ProceduralMaskConfig(shape=(96, 96)))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 4.0 / 3, 4.0, 30.0])
def test_gaussian_blur_is_scipys(sigma: float) -> None:
    """Same kernel and 'reflect' borders, even with a kernel wider than the image."""
    images = np.random.default_rng(0).gamma(4.0, 25.0, size=(2, 40, 57))
    expected = np.stack([ndimage.gaussian_filter(i, sigma, mode="reflect") for i in images])
    got = gaussian_blur(torch.from_numpy(images), sigma).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("params", [FluorescenceParams(), FluorescenceParams(blur="invariant",
                                    blur_sigma=3.0),
                                    FluorescenceParams(blur="variant", blur_max_sigma=4.0)])
def test_blur_kinds_are_the_numpy_ones(params: FluorescenceParams) -> None:
    images = np.random.default_rng(1).gamma(4.0, 25.0, size=(2, 96, 96))
    expected = np.stack([numpy_blur(i, params) for i in images])
    got = blur(torch.from_numpy(images), params).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("shape", [0.6, 4.0])
def test_gamma_draws_have_the_gamma_moments(shape: float) -> None:
    draws = standard_gamma(shape, (200_000,), torch.Generator().manual_seed(0),
                           torch.device("cpu")).double()
    assert float(draws.min()) > 0
    assert float(draws.mean()) == pytest.approx(shape, rel=0.02)
    assert float(draws.var()) == pytest.approx(shape, rel=0.04)


# ---- same distribution as the numpy model -------------------------------------------------
# Image by image, on the same masks: features that the image model fixes (background level and
# noise; per band of the space-variant blur: contrast, variance and neighbour covariance inside
# the mitochondria, which move with the Gamma variance and the band's sigma), compared between
# the torch and the numpy images of each mask by a paired t-test (the masks differ a lot, the
# two images of one mask only by their random draws). A Bonferroni-adjusted p below ALPHA
# rejects "same distribution"; test_distribution_check_rejects_mutants shows its power.

DIST_MASKS = generate_masks(0, 48, ProceduralMaskConfig(shape=(96, 96)))
ALPHA = 1e-3
BANDS = 4
FEATURES = ["background mean", "background std"] + [
    f"band {b} {name}" for b in range(BANDS)
    for name in ("contrast", "inner variance", "inner neighbour covariance")]
SVB4 = FluorescenceParams(snr=4.0, blur="variant", blur_max_sigma=4.0)
SNR8 = FluorescenceParams(snr=8.0)
SNR1_SMOOTH = FluorescenceParams(snr=1.0, smooth_inside_sigma=1.0)
ID = {SVB4: "svb4", SNR8: "snr8", SNR1_SMOOTH: "snr1_smooth"}


def image_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """FEATURES of one image; nan where a band has no inner mitochondrion pixels."""
    image = image.astype(np.float64)
    far = ndimage.distance_transform_edt(~mask) > 4  # background out of the blur's reach
    inner = ndimage.binary_erosion(mask)
    background = image[far].mean()
    out = [background, image[far].std()]
    edges = np.linspace(0, mask.shape[0], BANDS + 1).round().astype(int)
    for top, bottom in zip(edges[:-1], edges[1:]):
        x, m, i = image[top:bottom] - background, mask[top:bottom], inner[top:bottom]
        pair = i[:, :-1] & i[:, 1:]  # horizontal neighbours both inside
        left, right = x[:, :-1][pair], x[:, 1:][pair]
        enough = pair.sum() > 1
        out += [x[m].mean() if m.any() else np.nan, x[i].var() if enough else np.nan,
                np.mean((left - left.mean()) * (right - right.mean())) if enough else np.nan]
    return np.array(out)


def distribution_p(params: FluorescenceParams) -> tuple[float, str, int]:
    """Bonferroni-adjusted smallest p of the paired tests, its feature, and the masks used."""
    masks = torch.from_numpy(DIST_MASKS)
    images = synthesize_batch(masks, params, torch.Generator().manual_seed(0)).numpy()
    rng = np.random.default_rng(0)
    reference = [synthesize(m, params, rng)[0] for m in DIST_MASKS]
    assert images.dtype == np.float32 and images.shape == DIST_MASKS.shape
    ours = np.stack([image_features(i, m) for i, m in zip(images, DIST_MASKS)])
    theirs = np.stack([image_features(i, m) for i, m in zip(reference, DIST_MASKS)])
    complete = np.isfinite(ours).all(1) & np.isfinite(theirs).all(1)
    p = stats.ttest_rel(ours[complete], theirs[complete], axis=0).pvalue
    worst = int(np.argmin(p))
    return min(1.0, float(p[worst]) * len(FEATURES)), FEATURES[worst], int(complete.sum())


@pytest.mark.parametrize("params", list(ID), ids=list(ID.values()))
def test_images_match_the_numpy_model_in_distribution(params: FluorescenceParams) -> None:
    p, feature, used = distribution_p(params)
    assert used >= 32  # most masks reach every band, so the test keeps its power
    assert p >= ALPHA, f"torch and numpy images differ in {feature} (adjusted p = {p:.2g})"


def _gamma_variance_times(factor: float):
    """Gamma draws with the same mean and ``factor`` times the variance (shape / factor)."""
    def draws(shape, size, generator, device):
        return standard_gamma(shape / factor, size, generator, device) * factor
    return draws


def _one_blur_sigma(sigma: float):
    """The four bands of the space-variant blur replaced by one sigma (2.0 fooled the old
    moment test, which compared only the image mean and std and the mean SNR)."""
    def blurred(images, params):
        return (gaussian_blur(images, sigma) if params.blur == "variant"
                else blur(images, params))
    return blurred


MUTANTS = {
    "half gamma variance": ("standard_gamma", _gamma_variance_times(0.5), [SVB4, SNR8]),
    "4x gamma variance": ("standard_gamma", _gamma_variance_times(4.0), [SVB4, SNR8]),
    "one blur sigma 2.0": ("blur", _one_blur_sigma(2.0), [SVB4]),
    "one blur sigma 2.25 (band mean)": ("blur", _one_blur_sigma(2.25), [SVB4]),
}


@pytest.mark.parametrize("mutant, params", [
    pytest.param(name, params, id=f"{name}-{ID[params]}")
    for name, (_, _, conditions) in MUTANTS.items() for params in conditions])
def test_distribution_check_rejects_mutants(mutant: str, params: FluorescenceParams,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Power: a torch model with a wrong Gamma variance or a single blur sigma is rejected."""
    name, replacement, _ = MUTANTS[mutant]
    monkeypatch.setattr(fluorescence_torch, name, replacement)
    p, feature, _ = distribution_p(params)
    assert p < ALPHA, f"mutant '{mutant}' passed as the same distribution (p = {p:.2g})"


def test_dihedral_and_zscore() -> None:
    masks = torch.from_numpy(MASKS)
    turned = random_dihedral(masks, torch.Generator().manual_seed(0))
    assert turned.shape == masks.shape and turned.dtype == torch.bool
    assert torch.equal(turned.sum(dim=(1, 2)), masks.sum(dim=(1, 2)))
    assert not torch.equal(turned, masks)
    z = zscore(torch.rand(3, 8, 8) * 5 + 2)
    torch.testing.assert_close(z.mean(dim=(1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(1, 2), unbiased=False), torch.ones(3), atol=1e-5,
                               rtol=0)


def test_one_generator_per_mask_makes_each_image_from_its_own_draws() -> None:
    """Per-mask generators: an image depends on its mask and its generator only, not on the
    batch around it (the same draws alone or in any order; blur rounding aside)."""
    params = FluorescenceParams(blur="variant", blur_max_sigma=4.0, smooth_inside_sigma=1.0)
    masks = torch.from_numpy(MASKS[:4])
    seeds = [11, 12, 13, 14]
    batch = synthesize_batch(masks, params, [torch.Generator().manual_seed(s) for s in seeds])
    backwards = synthesize_batch(masks.flip(0), params,
                                 [torch.Generator().manual_seed(s) for s in seeds[::-1]])
    torch.testing.assert_close(backwards.flip(0), batch, rtol=0, atol=1e-3)
    for k, seed in enumerate(seeds):
        alone = synthesize_batch(masks[k:k + 1], params, [torch.Generator().manual_seed(seed)])
        torch.testing.assert_close(alone[0], batch[k], rtol=0, atol=1e-3)  # intensities ~100
    assert not torch.allclose(batch[0], synthesize_batch(
        masks[:1], params, [torch.Generator().manual_seed(99)])[0], rtol=0, atol=1.0)
    with pytest.raises(InputError, match="3 generators for 4 masks"):
        synthesize_batch(masks, params, [torch.Generator() for _ in range(3)])
