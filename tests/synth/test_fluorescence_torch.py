"""The torch image model (mitoseg.synth.fluorescence_torch) against mitoseg.synth.fluorescence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from mitoseg.synth.fluorescence import (
    FluorescenceParams,
    measured_snr,
    synthesize,
)
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


@pytest.mark.parametrize("params", [FluorescenceParams(snr=4.0, blur="variant",
                                                       blur_max_sigma=4.0),
                                    FluorescenceParams(snr=1.0, smooth_inside_sigma=1.0)])
def test_images_match_the_numpy_model_in_distribution(params: FluorescenceParams) -> None:
    masks = torch.from_numpy(MASKS)
    images = synthesize_batch(masks, params, torch.Generator().manual_seed(0)).numpy()
    rng = np.random.default_rng(0)
    reference = np.stack([synthesize(m, params, rng)[0] for m in MASKS])
    assert images.dtype == np.float32 and images.shape == reference.shape
    for stat in (np.mean, np.std):
        assert stat(images) == pytest.approx(stat(reference), rel=0.03)
    snr_torch = np.mean([measured_snr(i, m) for i, m in zip(images, MASKS)])
    snr_numpy = np.mean([measured_snr(i, m) for i, m in zip(reference, MASKS)])
    assert snr_torch == pytest.approx(snr_numpy, rel=0.05)


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
