"""The torch batch AS equals the numpy reference, image by image, empty masks included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mitoseg.errors import InputError
from mitoseg.metrics.batch import area_similarity_batch
from mitoseg.metrics.segmentation import area_similarity


def test_equals_area_similarity_per_image_including_empty_masks() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random((6, 1, 17, 23)) > 0.6
    predicted = rng.random((6, 1, 17, 23)) > 0.5
    truth[1], predicted[1] = False, False  # both empty: 1.0
    truth[2] = False  # empty truth, non-empty prediction: 0.0
    predicted[3] = False  # empty prediction: 0.0
    predicted[4] = truth[4]  # perfect: 1.0
    got = area_similarity_batch(torch.from_numpy(truth), torch.from_numpy(predicted))
    expected = [area_similarity(t[0], p[0]) for t, p in zip(truth, predicted)]
    assert got.dtype == torch.float32 and got.shape == (6,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert got[1] == 1.0 and got[2] == 0.0 and got[3] == 0.0 and got[4] == 1.0


def test_rejects_probabilities_and_mismatched_shapes() -> None:
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    with pytest.raises(InputError, match="bool masks"):
        area_similarity_batch(mask, mask.float())
    with pytest.raises(InputError, match="same shape"):
        area_similarity_batch(mask, mask[:, :, :3])


def test_ignored_voxels_count_in_neither_intersection_nor_union() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random((5, 1, 9, 11)) > 0.6
    predicted = rng.random((5, 1, 9, 11)) > 0.5
    valid = rng.random((5, 1, 9, 11)) > 0.3
    valid[3] = False  # nothing valid: nothing in the union, 1.0 by the empty-mask rule
    got = area_similarity_batch(*(torch.from_numpy(a) for a in (truth, predicted, valid)))
    expected = []
    for t, p, v in zip(truth, predicted, valid):
        pairs = [(a, b) for a, b, keep in zip(t.ravel(), p.ravel(), v.ravel()) if keep]
        union = sum(a or b for a, b in pairs)
        expected.append(sum(a and b for a, b in pairs) / union if union else 1.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    assert got[3] == 1.0
    every = torch.ones(5, 1, 9, 11, dtype=torch.bool)
    plain = area_similarity_batch(torch.from_numpy(truth), torch.from_numpy(predicted))
    assert torch.equal(area_similarity_batch(torch.from_numpy(truth), torch.from_numpy(predicted),
                                             every), plain)


def test_valid_must_be_a_bool_mask_of_the_same_shape() -> None:
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    for valid in (mask.float(), mask[:, :, :3]):
        with pytest.raises(InputError, match="'valid' must be a bool mask"):
            area_similarity_batch(mask, mask, valid)
