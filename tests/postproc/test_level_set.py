"""Tests for mitoseg.postproc.level_set: level-set refinement of a thresholded probability map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mitoseg.errors import InputError
from mitoseg.metrics.segmentation import area_similarity, average_boundary_distance
from mitoseg.postproc.level_set import METHODS, LevelSetRefine
from mitoseg.synth.fluorescence import FluorescenceParams, deform, synthesize

CONF = Path(__file__).resolve().parents[2] / "conf" / "postproc"


def truth_mask() -> np.ndarray:
    """Two ellipses (a thick and a thin mitochondrion) in a 96 x 96 field."""
    yy, xx = np.mgrid[:96, :96]
    return (((yy - 30) / 15) ** 2 + ((xx - 40) / 8) ** 2 < 1) | (((yy - 65) / 6) ** 2 + ((xx - 60) / 20) ** 2 < 1)


@pytest.fixture(scope="module")
def scene():
    truth = truth_mask()
    image, _ = synthesize(truth, FluorescenceParams(snr=8.0), np.random.default_rng(0))
    over = deform(truth, 2)  # an over-segmenting network: the truth dilated by 2 px
    probabilities = np.where(over, 0.8, 0.1)
    return truth, image, over, probabilities


@pytest.mark.parametrize("method", METHODS)
def test_refinement_moves_boundary_toward_truth(scene, method):
    truth, image, over, probabilities = scene
    refined = LevelSetRefine(method=method)(probabilities, image=image)
    assert refined.dtype == bool and refined.shape == truth.shape
    before, after = area_similarity(truth, over), area_similarity(truth, refined)
    assert before == pytest.approx(0.70, abs=0.02)
    assert after > before + 0.1
    assert average_boundary_distance(truth, refined) < average_boundary_distance(truth, over) - 0.5


def test_default_is_close_to_truth_and_deterministic(scene):
    truth, image, _, probabilities = scene
    refine = LevelSetRefine()
    first, second = refine(probabilities, image=image), refine(probabilities.copy(), image=image.copy())
    assert np.array_equal(first, second)
    assert area_similarity(truth, first) > 0.9


def test_only_the_thresholded_mask_matters(scene):
    truth, image, over, _ = scene
    # truth at 0.95, the 2-px rim at 0.7: threshold 0.5 starts from the dilated mask, 0.9 from the truth
    probabilities = np.where(truth, 0.95, np.where(over, 0.7, 0.05))
    for threshold, start in ((0.5, over), (0.9, truth)):
        refine = LevelSetRefine(threshold=threshold)
        expected = LevelSetRefine(threshold=0.5)(start.astype(float), image=image)
        assert np.array_equal(refine(probabilities, image=image), expected)
    # both starts converge to about the same mask; one iteration still shows where each began
    assert not np.array_equal(LevelSetRefine(threshold=0.5, iterations=1)(probabilities, image=image),
                              LevelSetRefine(threshold=0.9, iterations=1)(probabilities, image=image))


def test_threshold_is_strict_and_one_region_is_left_alone(scene):
    _, image, _, _ = scene
    refine = LevelSetRefine(threshold=0.9)
    assert not refine(np.full(image.shape, 0.9), image=image).any()  # p > threshold, not >=
    assert refine(np.full(image.shape, 0.95), image=image).all()


def test_needs_image(scene):
    _, _, _, probabilities = scene
    refine = LevelSetRefine()
    assert refine.needs_image is True and LevelSetRefine.needs_image is True
    with pytest.raises(InputError, match="needs the image"):
        refine(probabilities)


@pytest.mark.parametrize("name, threshold", [("level_set", 0.5)])
def test_yaml_instantiates(scene, name, threshold):
    truth, image, _, probabilities = scene
    refine = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(refine, LevelSetRefine) and refine.threshold == threshold
    assert refine.describe()["method"] == "morphological_chan_vese" and refine.describe()["iterations"] == 10
    assert area_similarity(truth, refine(probabilities, image=image)) > 0.9


def test_describe_round_trips(scene):
    _, image, _, probabilities = scene
    refine = LevelSetRefine(threshold=0.6, method="morphological_geodesic_active_contour", iterations=7,
                            smoothing=2, balloon=-1.0, gac_threshold=0.4, image_sigma=0.5)
    again = LevelSetRefine(**refine.describe())
    assert again.describe() == refine.describe()
    assert np.array_equal(again(probabilities, image=image), refine(probabilities, image=image))


@pytest.mark.parametrize("kwargs", [dict(threshold=0.0), dict(threshold=1.0), dict(threshold="0.5"),
                                    dict(method="snake"), dict(iterations=0), dict(iterations=2.5),
                                    dict(smoothing=-1), dict(lambda1=0), dict(lambda2=-1.0),
                                    dict(dt=0), dict(image_sigma=-1), dict(gac_threshold="high"),
                                    dict(balloon=float("nan"))])
def test_bad_options(kwargs):
    with pytest.raises(InputError, match=next(iter(kwargs))):
        LevelSetRefine(**kwargs)


def test_bad_inputs(scene):
    _, image, _, probabilities = scene
    refine = LevelSetRefine()
    with pytest.raises(InputError, match="shape"):
        refine(probabilities, image=image[:-1])
    with pytest.raises(InputError, match="0, 1"):
        refine(probabilities * 3, image=image)
    with pytest.raises(InputError, match="2D"):
        refine(np.stack([probabilities] * 2), image=image)
    with pytest.raises(InputError, match="NaN"):
        refine(probabilities, image=np.where(probabilities > 0.5, np.nan, image))
