"""One input normalization, stored in the checkpoint and applied by every path (issue 8, item 6).

A training slice of an EM volume must reach the network as the same numbers whether it comes
through the training data loader, the test after training, ``evaluate.py`` or ``segment.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from mitoseg.data.em_patches import TiledPatchDataset
from mitoseg.data.normalization import Normalization, fit_normalization
from mitoseg.evaluation.checkpoints import load_network
from mitoseg.evaluation.evaluate import evaluate
from mitoseg.evaluation.segment import segment
from mitoseg.errors import InputError
from mitoseg.training.train import train
from tests.conftest import compose_config
from tests.evaluation.test_em_end_to_end import EM_2D


@pytest.fixture(scope="module", params=["training_zscore", "scale"])
def zscore_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp(f"em-{request.param}")
    cfg = compose_config("train", EM_2D + [f"dataset.normalize={request.param}",
                                           "inference.protocols=[full_image]",
                                           "inference.zfilter=[0]",
                                           "inference.headline.protocol=full_image",
                                           "inference.headline.zfilter=0"], run_dir)
    train(cfg)
    return run_dir, cfg, request.param


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as stream:
        return list(csv.DictReader(stream))


def test_the_checkpoint_stores_the_fitted_normalization(zscore_run) -> None:
    run_dir, cfg, mode = zscore_run
    _, stored = load_network(run_dir / "checkpoints" / "last.ckpt")
    normalization = Normalization.from_dict(stored["normalization"])
    assert normalization.mode == mode
    if mode == "training_zscore":  # statistics of the 11 training slices, not of the 12
        from hydra.utils import instantiate
        datamodule = instantiate(cfg.dataset)
        datamodule.setup()
        expected = fit_normalization(mode, datamodule.volumes.train_image, datamodule.train_z)
        assert normalization == expected
        assert normalization.std > 1.0  # uint8 intensities: a z-score, not a [0, 1] scale


def test_a_training_slice_gets_the_same_probabilities_in_training_and_segment(
        zscore_run, tmp_path: Path) -> None:
    run_dir, cfg, _ = zscore_run
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    net, stored = load_network(checkpoint)
    from hydra.utils import instantiate
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    z = datamodule.train_z[0]
    raw = np.asarray(datamodule.volumes.train_image[z])
    # the training loader's path: the slice as one patch, scaled by the data module
    item = TiledPatchDataset(datamodule.volumes.train_image, datamodule.volumes.train_labels, [z],
                             raw.shape, datamodule.normalization)[0]
    with torch.no_grad():
        in_training = torch.sigmoid(net(item["image"][None]))[0, 0].numpy()
    # segment.py on the raw uint8 slice written as a file
    tifffile.imwrite(tmp_path / "slice.tif", raw)
    segment(compose_config("segment", [f"ckpt_path={checkpoint}",
                                       f"input={tmp_path / 'slice.tif'}",
                                       f"output_dir={tmp_path / 'out'}"]))
    segmented = tifffile.imread(tmp_path / "out" / "slice_prob.tif")
    np.testing.assert_allclose(segmented, in_training, atol=1e-6)


def test_evaluate_applies_the_stored_normalization_whatever_the_dataset_says(
        zscore_run, tmp_path: Path) -> None:
    run_dir, _, mode = zscore_run
    other = "scale" if mode == "training_zscore" else "training_zscore"
    dataset = [o for o in EM_2D if o.startswith("dataset")]
    evaluate(compose_config("evaluate", [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
                                         *dataset, f"dataset.normalize={other}",
                                         "inference=em_quick", "inference.protocols=[full_image]",
                                         "inference.zfilter=[0]",
                                         "inference.headline.protocol=full_image",
                                         "inference.headline.zfilter=0"], tmp_path))
    trained = _read_csv(run_dir / "protocols.csv")
    again = _read_csv(tmp_path / "protocols.csv")
    assert [r["iou_fg"] for r in again] == [r["iou_fg"] for r in trained]



def test_segment_refuses_an_input_in_other_units_than_training(zscore_run,
                                                                tmp_path: Path) -> None:
    """The checkpoint was trained on uint8: the same slice as uint16 (x 257) would be scored
    at another scale; segment.py stops before writing anything, for a file and a folder."""
    run_dir, cfg, mode = zscore_run
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    from hydra.utils import instantiate
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    raw = np.asarray(datamodule.volumes.train_image[0])
    assert raw.dtype == np.uint8
    (tmp_path / "folder").mkdir()
    tifffile.imwrite(tmp_path / "wide.tif", raw.astype(np.uint16) * 257)
    for z in range(2):
        tifffile.imwrite(tmp_path / "folder" / f"s{z}.tif", raw.astype(np.uint16) * 257)
    for given in (tmp_path / "wide.tif", tmp_path / "folder"):
        out = tmp_path / f"out_{given.stem}"
        with pytest.raises(InputError, match="dtype uint16, but the network was trained on "
                                             "uint8"):
            segment(compose_config("segment", [f"ckpt_path={checkpoint}", f"input={given}",
                                               f"output_dir={out}"]))
        assert not list(out.glob("*.tif"))
    out = tmp_path / "out_blockwise"  # block by block: refused before any output exists
    tifffile.imwrite(tmp_path / "wide_stack.tif", np.stack([raw] * 5).astype(np.uint16) * 257)
    with pytest.raises(InputError, match="dtype uint16, but the network was trained on uint8"):
        segment(compose_config("segment", [f"ckpt_path={checkpoint}",
                                           f"input={tmp_path / 'wide_stack.tif'}",
                                           "blockwise.enabled=true", "voxel_size_nm=[5,5,5]",
                                           f"output_dir={out}"]))
    assert not out.exists() or not any(out.iterdir())


def test_normalization_modes_on_numpy_and_torch_agree() -> None:
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 256, (5, 12, 10), dtype=np.uint8)
    for normalization in (fit_normalization("training_zscore", volume, [0, 2, 4]),
                          fit_normalization("scale", volume), Normalization("zscore"),
                          Normalization("none")):
        as_numpy = normalization(volume)
        as_torch = normalization(torch.from_numpy(volume)).numpy()
        assert as_numpy.dtype == np.float32
        np.testing.assert_allclose(as_torch, as_numpy, rtol=0, atol=1e-6)
    fitted = fit_normalization("training_zscore", volume, [0, 2, 4])
    chosen = volume[[0, 2, 4]].astype(np.float64)
    assert fitted.mean == pytest.approx(chosen.mean(), abs=1e-6)
    assert fitted.std == pytest.approx(chosen.std(), abs=1e-6)
    assert fit_normalization("scale", volume.astype(np.uint16)).scale == 65535.0
    with pytest.raises(InputError, match="integer intensities"):
        fit_normalization("scale", volume.astype(np.float32))
    with pytest.raises(InputError, match="normalize"):
        fit_normalization("zscore", volume, allowed=("scale",))


def _tiff_volumes(root: Path, test_dtype: type) -> dict:
    """A uint8 training volume and a test volume of the same intensities in ``test_dtype``
    (uint16: x 257, the same picture in 16-bit units)."""
    rng = np.random.default_rng(6)
    for name, depth in (("train", 12), ("test", 4), ("other", 4)):
        image = rng.integers(0, 256, (depth, 48, 48), dtype=np.uint8)
        if name == "test" and test_dtype is not np.uint8:
            image = image.astype(test_dtype) * (257 if test_dtype is np.uint16 else 1)
        tifffile.imwrite(root / f"{name}.tif", image, photometric="minisblack")
        tifffile.imwrite(root / f"{name}_labels.tif", (rng.random((depth, 48, 48)) < 0.2)
                         .astype(np.uint8), photometric="minisblack")
    return {"train": [{"image": "train.tif", "labels": "train_labels.tif"}],
            "test": [{"image": "test.tif", "labels": "test_labels.tif"}],
            "voxel_size_nm": [5, 5, 5], "root": str(root),
            "label_mapping": {"foreground": [1], "background": [0]}}


@pytest.mark.parametrize("mode", ["scale", "training_zscore", "none"])
def test_inputs_of_another_dtype_than_training_are_refused_on_every_path(
        tmp_path: Path, mode: str) -> None:
    """A normalization fitted on uint8 volumes means uint8 units: a uint16 (or float) test,
    validation or segmented volume would reach the network 257 times (or 1/255 of) the
    intensities it was trained on, and score without an error. Every path refuses it."""
    from mitoseg.data.em_datamodule import EMDataModule
    from mitoseg.data.em_volume_files import em_volume_files
    from mitoseg.evaluation.em_protocols import protocol_matrix
    from mitoseg.evaluation.predictor import Predictor
    from mitoseg.evaluation.reconstruction import ReconstructionSettings
    from mitoseg.models.nets.unet_paper002 import UNetPaper002

    volume = np.random.default_rng(0).integers(0, 256, (5, 12, 10), dtype=np.uint8)
    fitted = fit_normalization(mode, volume)
    assert fitted.dtype == "uint8" and Normalization.from_dict(fitted.to_dict()) == fitted
    fitted.check_input(np.uint8, "here")
    with pytest.raises(InputError, match="here: .*uint16.*trained on uint8"):
        fitted.check_input(np.uint16, "here")
    assert Normalization("zscore").dtype is None  # per image: any dtype
    Normalization.from_dict({"mode": mode, "mean": 1.0, "std": 2.0, "scale": 255.0}
                            ).check_input(np.uint16, "an older checkpoint: nothing stored")
    for dtype in (np.uint16, np.float32):
        options = _tiff_volumes(tmp_path, dtype)
        module = EMDataModule(lambda: em_volume_files(**options), patch_size=(32, 32),
                              split_seed=0, seed=0, normalize=mode)
        with pytest.raises(InputError, match="test volume 'test0'.*trained on uint8"):
            module.setup()
        mixed = dict(options, train=[*options["train"], {"image": "test.tif",
                                                          "labels": "test_labels.tif"}],
                     test=[{"image": "other.tif", "labels": "other_labels.tif"}])
        with pytest.raises(InputError, match="training volumes have different dtypes"):
            EMDataModule(lambda: em_volume_files(**mixed), patch_size=(32, 32), split_seed=0,
                         seed=0, normalize=mode).setup()
    net = UNetPaper002(spatial_dims=2, filters=[4, 8, 8, 16, 16]).eval()
    predictor = Predictor(net, fitted, 2, ReconstructionSettings("full_image", divisor=16),
                          lambda p: p > 0.5, device="cpu")
    predictor.probabilities(volume)
    with pytest.raises(InputError, match="trained on uint8"):
        predictor.probabilities(volume.astype(np.uint16))
    with pytest.raises(InputError, match="trained on uint8"):
        protocol_matrix(predictor.predict, volume.astype(np.uint16), volume > 128, 2, (8, 8),
                        lambda p: p > 0.5, protocols=["full_image"], tta=[False], zfilter=[0],
                        normalization=fitted, device="cpu")
