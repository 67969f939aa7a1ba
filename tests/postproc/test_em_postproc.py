"""Tests for mitoseg.postproc.em: spurious detection, watershed refinement, EMPostprocess."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy import ndimage
from skimage.measure import label as sk_label

from mitoseg.errors import InputError
from mitoseg.metrics.volume import foreground_iou
from mitoseg.postproc.em import (
    EMPostprocess,
    remove_low_confidence_components,
    remove_small_components,
    watershed_refine,
)

CONF = Path(__file__).resolve().parents[2] / "conf" / "postproc"


def disks(shape=(96, 96), spec=((25, 25, 12), (65, 60, 16), (25, 72, 9))) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape, bool)
    for cy, cx, r in spec:
        out |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return out


def blurred(truth: np.ndarray, sigma: float = 2.0, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    """A network-like probability map: the true blobs, blurred, plus noise; its 0.5 level is the true edge."""
    rng = np.random.default_rng(seed)
    return np.clip(ndimage.gaussian_filter(truth.astype(float), sigma) + rng.normal(0, noise, truth.shape), 0, 1)


def bf_remove_small(mask: np.ndarray, min_size: int, connectivity: int) -> np.ndarray:
    """Reference with skimage's labelling and a Python loop over components."""
    labels = sk_label(mask, connectivity=connectivity)
    out = np.zeros_like(mask, dtype=bool)
    for lab in range(1, labels.max() + 1):
        if np.count_nonzero(labels == lab) >= min_size:
            out |= labels == lab
    return out


# ----------------------------------------------------------------- spurious detection

@pytest.mark.parametrize("per_slice", [True, False])
def test_small_blob_removed_big_blob_kept(per_slice):
    mask = np.zeros((3, 20, 20), np.uint8)
    mask[1, 2:5, 2:5] = 1          # 9 px
    mask[1, 10:15, 10:15] = 1      # 25 px
    out = remove_small_components(mask, min_size=10, per_slice=per_slice)
    assert out.dtype == bool and out.shape == mask.shape
    assert not out[1, 2:5, 2:5].any() and out[1, 10:15, 10:15].all() and out.sum() == 25
    out_2d = remove_small_components(mask[1], min_size=10)
    assert np.array_equal(out_2d, out[1])
    assert remove_small_components(mask, min_size=9, per_slice=per_slice).sum() == 34  # size == min kept


def test_per_slice_and_3d_components_differ():
    mask = np.zeros((8, 10, 10), bool)
    mask[:, 5, 5] = True           # a thin tube: 1 px per slice, 8 voxels in 3D
    mask[3, 0:3, 0:3] = True       # a 9-voxel blob in one slice
    per_slice = remove_small_components(mask, min_size=5, per_slice=True)
    whole = remove_small_components(mask, min_size=5, per_slice=False)
    assert not per_slice[:, 5, 5].any() and per_slice[3, 0:3, 0:3].all()
    assert whole[:, 5, 5].all() and whole[3, 0:3, 0:3].all()


def test_connectivity_changes_components():
    mask = np.zeros((6, 6), bool)
    mask[1, 1] = mask[2, 2] = True  # diagonal neighbours
    assert remove_small_components(mask, 2, connectivity=2).sum() == 2
    assert remove_small_components(mask, 2, connectivity=None).sum() == 2  # None = full
    assert remove_small_components(mask, 2, connectivity=1).sum() == 0


@pytest.mark.parametrize("shape,connectivity,per_slice,density", [
    ((30, 30), 1, True, 0.35), ((30, 30), 2, True, 0.2), ((4, 16, 16), 1, False, 0.2),
    ((4, 16, 16), 3, False, 0.06), ((4, 16, 16), 2, True, 0.2)])
def test_remove_small_matches_reference_on_random_masks(shape, connectivity, per_slice, density):
    rng = np.random.default_rng(len(shape) * 10 + connectivity)
    mask = rng.random(shape) < density
    out = remove_small_components(mask, 4, connectivity=connectivity, per_slice=per_slice)
    if per_slice and mask.ndim == 3:
        expected = np.stack([bf_remove_small(m, 4, connectivity) for m in mask])
    else:
        expected = bf_remove_small(mask, 4, connectivity)
    assert np.array_equal(out, expected) and 0 < out.sum() < mask.sum()


def test_low_confidence_component_removed_even_when_last_label():
    prob = np.zeros((20, 20))
    prob[2:8, 2:8] = 0.9
    prob[12:18, 12:18] = 0.55      # above 0.5, but mean 0.55 < 0.6; last in raster order
    out = remove_low_confidence_components(prob, threshold=0.5, min_mean_probability=0.6)
    assert out[2:8, 2:8].all() and not out[12:18, 12:18].any()
    assert remove_low_confidence_components(prob, 0.5, 0.5).sum() == 72


# ---------------------------------------------------------------------------- watershed

@pytest.mark.parametrize("threshold", [0.15, 0.85])
def test_watershed_fixes_a_biased_threshold(threshold):
    truth = disks()
    prob = blurred(truth)
    plain = foreground_iou(truth, prob, threshold)
    refined = watershed_refine(prob, threshold=threshold, margin=3)
    assert plain < 0.8  # the biased threshold puts the border ~2 px off
    assert foreground_iou(truth, refined) > max(plain + 0.15, 0.93)


def test_watershed_keeps_a_good_mask_good():
    truth = disks()
    prob = blurred(truth)
    assert foreground_iou(truth, watershed_refine(prob, 0.5)) > 0.93


def test_markers_keep_their_class_and_borders_move_at_most_margin():
    rng = np.random.default_rng(7)
    prob = np.clip(ndimage.gaussian_filter(rng.random((64, 64)), 3) * 4 - 1.5, 0, 1)
    mask = prob > 0.5
    square = np.ones((3, 3), bool)
    for margin in (1, 2, 4):
        out = watershed_refine(prob, 0.5, margin=margin)
        sure_fg = ndimage.binary_erosion(mask, square, iterations=margin, border_value=1)
        sure_bg = ~ndimage.binary_dilation(mask, square, iterations=margin)
        assert sure_fg.any() and sure_bg.any()
        assert out[sure_fg].all() and not out[sure_bg].any()
        assert not np.array_equal(out, mask)  # the band in between was re-decided


def test_margin_zero_returns_the_mask():
    prob = blurred(disks(), noise=0.05)
    assert np.array_equal(watershed_refine(prob, 0.4, margin=0), prob > 0.4)


def test_thin_objects_kept_or_dropped():
    prob = np.zeros((30, 30))
    prob[10:13, 5:25] = 0.9        # 3 px wide: nothing survives 3 erosions
    prob[20:28, 5:13] = 0.9
    kept = watershed_refine(prob, margin=3, keep_all_objects=True)
    dropped = watershed_refine(prob, margin=3, keep_all_objects=False)
    assert kept[10:13, 5:25].any() and not dropped[10:13, 5:25].any()
    # the 8 x 8 square is refined alike either way (the gradient watershed may clip its corners)
    assert np.array_equal(kept[15:], dropped[15:]) and dropped[20:28, 5:13].sum() >= 60


def test_marker_threshold_drops_unconfident_objects():
    prob = np.zeros((30, 30))
    prob[3:13, 3:13] = 0.95
    prob[17:27, 17:27] = 0.6       # in the mask, but never sure foreground
    out = watershed_refine(prob, 0.5, marker_threshold=0.8, margin=2)
    assert out[3:13, 3:13].sum() >= 96 and not out[17:27, 17:27].any()


def test_image_gradient_guides_the_border():
    truth = disks(spec=((32, 32, 14),), shape=(64, 64))
    inner = disks(spec=((32, 32, 11),), shape=(64, 64))   # the edge visible in the EM image
    prob = blurred(truth, sigma=2.0, noise=0.0)
    image = np.where(inner, 80.0, 160.0) + np.random.default_rng(1).normal(0, 2, inner.shape)
    from_prob = watershed_refine(prob, 0.5, margin=4)
    from_image = watershed_refine(prob, 0.5, margin=4, image=image)
    assert foreground_iou(truth, from_prob) > foreground_iou(inner, from_prob)
    assert foreground_iou(inner, from_image) > 0.9 > foreground_iou(inner, from_prob)


def test_3d_per_slice_equals_stacked_2d():
    vol = np.stack([blurred(disks(), seed=s) for s in range(3)])
    out = watershed_refine(vol, 0.2, margin=3, per_slice=True)
    assert out.dtype == bool and out.shape == vol.shape
    assert np.array_equal(out, np.stack([watershed_refine(v, 0.2, margin=3) for v in vol]))
    out3d = watershed_refine(vol, 0.2, margin=1, per_slice=False)
    assert out3d.dtype == bool and out3d.shape == vol.shape


def test_empty_and_full_maps():
    assert not watershed_refine(np.zeros((16, 16))).any()
    assert watershed_refine(np.full((16, 16), 0.9)).all()
    # an object filling the field of view is not eroded from the image edge
    assert watershed_refine(np.full((2, 16, 16), 0.9), margin=20, per_slice=False,
                            keep_all_objects=False).all()


# ----------------------------------------------------------------------- EMPostprocess

def test_default_is_plain_threshold():
    prob = blurred(disks(), noise=0.1)
    post = EMPostprocess()
    assert np.array_equal(post(prob), prob > 0.5)
    assert post.threshold == 0.5 and post.describe()["watershed"] is False


def test_pipeline_removes_spurious_blob_then_refines():
    truth = disks()
    prob = blurred(truth)
    prob[85:88, 85:88] = 0.95      # a spurious 9-px detection
    post = EMPostprocess(threshold=0.15, min_size=30, watershed=True, margin=3)
    out = post(prob)
    assert out.dtype == bool and out.shape == prob.shape
    assert not out[80:, 80:].any()
    assert foreground_iou(truth, out) > foreground_iou(truth, prob, 0.15) + 0.15


def test_describe_round_trips():
    post = EMPostprocess(threshold=0.4, min_size=50, per_slice=False, watershed=True,
                         marker_threshold=0.7, margin=2, connectivity=1, min_mean_probability=0.6,
                         keep_all_objects=False)
    again = EMPostprocess(**post.describe())
    assert again.describe() == post.describe()
    prob = np.stack([blurred(disks(), seed=s) for s in range(2)])
    assert np.array_equal(again(prob), post(prob))


@pytest.mark.parametrize("name", ["em_default", "em_oztel"])
def test_yaml_options(name):
    post = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(post, EMPostprocess) and post.threshold == 0.5
    prob = blurred(disks())
    out = post(np.stack([prob, prob]))
    assert out.shape == (2, 96, 96) and foreground_iou(disks(), out[0]) > 0.9
    assert post.describe()["watershed"] is (name == "em_oztel")


# --------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("kwargs", [dict(threshold=0.0), dict(threshold=1.0), dict(threshold="0.5"),
                                    dict(min_size=-1), dict(min_size=2.5), dict(margin=-1),
                                    dict(marker_threshold=0.3), dict(marker_threshold=1.0),
                                    dict(connectivity=4), dict(connectivity=True), dict(per_slice="yes"),
                                    dict(watershed=1), dict(min_mean_probability=1.5)])
def test_bad_options(kwargs):
    with pytest.raises(InputError, match=next(iter(kwargs))):
        EMPostprocess(**kwargs)


@pytest.mark.parametrize("prob", [np.zeros(10), np.zeros((1, 2, 8, 8)), np.zeros((0, 5)),
                                  np.full((8, 8), 1.5), np.full((8, 8), np.nan),
                                  np.zeros((8, 8), bool)])
def test_bad_probabilities(prob):
    with pytest.raises(InputError, match="probabilities"):
        EMPostprocess(watershed=True)(prob)
    with pytest.raises(InputError, match="probabilities"):
        watershed_refine(prob)


def test_bad_function_arguments():
    prob = np.full((8, 8), 0.7)
    with pytest.raises(InputError, match="image"):
        watershed_refine(prob, image=np.zeros((8, 9)))
    with pytest.raises(InputError, match="mask"):
        watershed_refine(prob, mask=np.zeros((9, 8), bool))
    with pytest.raises(InputError, match="marker_threshold"):
        watershed_refine(prob, threshold=0.6, marker_threshold=0.55)
    with pytest.raises(InputError, match="connectivity"):
        remove_small_components(prob > 0.5, 3, connectivity=3)  # 2D: 1 or 2
    with pytest.raises(InputError, match="mask"):
        remove_small_components(prob, 3)  # probabilities are not a mask
    with pytest.raises(InputError, match="min_size"):
        remove_small_components(prob > 0.5, -2)
