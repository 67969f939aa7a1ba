"""segment.py for real users: EM checkpoints (2D and 3D) on stacks and volumes, with the
reconstruction chosen by ``inference=``; one prediction path shared with training and
evaluate.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hydra.utils import instantiate

from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError
from mitoseg.evaluation.checkpoints import load_network, load_weights
from mitoseg.evaluation.evaluate import evaluate
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.segment import segment
from mitoseg.evaluation.test_sets import predictor_for
from mitoseg.inference.network import net_predictor
from mitoseg.inference.protocols import reconstruct
from mitoseg.inference.zfilter import median_z_filter
from mitoseg.metrics.volume import volume_metrics
from mitoseg.training.train import train
from tests.conftest import compose_config
from tests.evaluation.test_em_end_to_end import EM_2D

FULL_IMAGE_ONLY = ["inference.protocols=[full_image]", "inference.zfilter=[0]",
                   "inference.headline.protocol=full_image", "inference.headline.zfilter=0"]


@pytest.fixture(scope="module")
def em_2d(tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("em-2d")
    cfg = compose_config("train", EM_2D + FULL_IMAGE_ONLY, run_dir)
    train(cfg)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    return run_dir, cfg, datamodule


def _segment(checkpoint: Path, image: np.ndarray, tmp_path: Path, *overrides: str
             ) -> tuple[np.ndarray, dict]:
    tifffile.imwrite(tmp_path / "input.tif", image)
    out = tmp_path / "out"
    segment(compose_config("segment", [f"ckpt_path={checkpoint}", f"input={tmp_path / 'input.tif'}",
                                       f"output_dir={out}", *overrides]))
    return (tifffile.imread(out / "input_prob.tif"),
            json.loads((out / "segmentation.json").read_text()))


def test_a_training_slice_is_segmented_identically_by_every_path(em_2d, tmp_path: Path) -> None:
    """The test after training, evaluate.py and segment.py give the same probabilities for a
    training slice: exactly (tolerance 0; the same float32 computation on the same device)."""
    run_dir, cfg, datamodule = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    raw = np.asarray(datamodule.volumes.train_image[datamodule.train_z[0]])
    # the test after training: the module's network with the best weights, the data module's
    # normalization, the inference config's headline (train.py's predictor_for)
    net = instantiate(cfg.model)
    load_weights(net, checkpoint)
    after_training = predictor_for(datamodule, net, datamodule.normalization,
                                   instantiate(cfg.postproc), cfg).probabilities(raw)
    # evaluate.py: the checkpoint's network and stored normalization
    stored_net, stored = load_network(checkpoint)
    in_evaluate = predictor_for(datamodule, stored_net,
                                Normalization.from_dict(stored["normalization"]),
                                instantiate(cfg.postproc), stored).probabilities(raw)
    segmented, record = _segment(checkpoint, raw, tmp_path)
    assert np.array_equal(after_training, in_evaluate)
    assert np.array_equal(segmented, after_training)
    assert record["reconstruction"]["reconstruction"] == "full_image"
    assert record["normalization"] == stored["normalization"]
    assert record["checkpoint"].endswith("best.ckpt") and record["postproc"]["threshold"] == 0.5


def test_the_matrix_row_is_the_predictors_reconstruction(em_2d, tmp_path: Path) -> None:
    """protocols.csv's full_image row (train.py and evaluate.py) scores the Predictor's masks."""
    run_dir, _, datamodule = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    volumes = datamodule.volumes
    masks = predictor.masks(predictor.probabilities(np.asarray(volumes.test_image)))
    expected = volume_metrics(np.asarray(volumes.test_labels) > 0, masks,
                              voxel_size=volumes.voxel_size_nm)["iou_fg"]
    with open(run_dir / "protocols.csv") as stream:
        trained = list(csv.DictReader(stream))
    assert [r["protocol"] for r in trained] == ["full_image"]
    assert float(trained[0]["iou_fg"]) == pytest.approx(expected, abs=1e-12)
    evaluate(compose_config("evaluate", [f"ckpt_path={checkpoint}"], tmp_path))
    with open(tmp_path / "protocols.csv") as stream:
        assert float(next(csv.DictReader(stream))["iou_fg"]) == pytest.approx(expected, abs=1e-12)


def test_tta_and_z_filter_chosen_by_inference_on_a_stack(em_2d, tmp_path: Path) -> None:
    run_dir, _, datamodule = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    stack = np.asarray(datamodule.volumes.test_image)
    segmented, record = _segment(checkpoint, stack, tmp_path, "inference=em_paper")
    net, stored = load_network(checkpoint)
    scaled = Normalization.from_dict(stored["normalization"])(stack)
    # em_paper: full images, 8-fold TTA, z-median 5, NHWC convolutions (channels_last)
    predict = net_predictor(net, "cpu", channels_last=True)
    raw = reconstruct(predict, scaled, "full_image", (32, 32), 2, tta=True,
                      device="cpu").probabilities.numpy()
    np.testing.assert_array_equal(segmented, median_z_filter(raw, 5))
    card = record["reconstruction"]
    assert (card["reconstruction"], card["tta"], card["zfilter"]) == (
        "full_image", 8, {"size": 5, "axis": "z"})
    mask = tifffile.imread(tmp_path / "out" / "input_mask.tif")
    assert mask.shape == stack.shape and np.array_equal(mask == 255, segmented > 0.5)


def test_an_em_folder_of_slices_is_segmented_as_one_volume_like_its_stack(em_2d,
                                                                         tmp_path: Path) -> None:
    """An EM checkpoint segments a folder of equally sized slices as one volume: the same
    probabilities as the stack TIFF of those slices, z-median included, one output pair per
    slice named after it, and a record that says the z-median ran."""
    run_dir, _, datamodule = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    stack = np.asarray(datamodule.volumes.test_image)
    (tmp_path / "slices").mkdir()
    for z, plane in enumerate(stack):  # natural order: s2 before s10
        tifffile.imwrite(tmp_path / "slices" / f"s{z}.tif", plane)
    from_stack, _ = _segment(checkpoint, stack, tmp_path, "inference=em_quick")
    out = tmp_path / "folder_out"
    record = segment(compose_config("segment", [f"ckpt_path={checkpoint}",
                                                f"input={tmp_path / 'slices'}",
                                                f"output_dir={out}", "inference=em_quick"]))
    names = [f"s{z}" for z in range(len(stack))]
    from_folder = np.stack([tifffile.imread(out / f"{name}_prob.tif") for name in names])
    np.testing.assert_array_equal(from_folder, from_stack)
    masks = np.stack([tifffile.imread(out / f"{name}_mask.tif") for name in names])
    np.testing.assert_array_equal(masks, tifffile.imread(tmp_path / "out" / "input_mask.tif"))
    assert [Path(entry["input"]).name for entry in record["images"]] == [
        f"{name}.tif" for name in names]
    assert record["reconstruction"]["zfilter"] == {"size": 5, "axis": "z"}
    assert all(entry["reconstruction"]["zfilter"]["size"] == 5 for entry in record["images"])


def test_the_record_of_a_single_image_claims_no_z_filter(em_2d, tmp_path: Path) -> None:
    """One 2D image has no neighbours along z: no z-median runs, and the record says so."""
    run_dir, _, datamodule = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    image = np.asarray(datamodule.volumes.test_image)[0]
    _, record = _segment(checkpoint, image, tmp_path, "inference=em_quick")
    assert record["reconstruction"]["zfilter"]["size"] == 0
    assert record["images"][0]["reconstruction"]["zfilter"]["size"] == 0


def _calibration(path: Path) -> tuple[float, float, float | None, str | None]:
    """(x, y pixel size in µm, z spacing in µm, unit) that a TIFF's tags and ImageJ
    metadata state."""
    with tifffile.TiffFile(path) as tif:
        tags, meta = tif.pages[0].tags, tif.imagej_metadata or {}
        x, y = (tags[name].value[1] / tags[name].value[0]
                for name in ("XResolution", "YResolution"))
        return x, y, meta.get("spacing"), meta.get("unit")


def test_em_outputs_carry_the_checkpoints_training_voxel_size(em_2d, tmp_path: Path) -> None:
    """An EM checkpoint's outputs state the voxel size it was trained at (synthetic_em:
    5 nm), not 1 µm; the pixel_size_um option replaces y and x."""
    run_dir, _, datamodule = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    stack = np.asarray(datamodule.volumes.test_image)
    _, record = _segment(checkpoint, stack, tmp_path)
    for name in ("input_prob.tif", "input_mask.tif"):
        assert _calibration(tmp_path / "out" / name) == pytest.approx((0.005, 0.005, 0.005, "um"))
    assert record["pixel_size_um"] == pytest.approx(0.005)
    assert record["voxel_size_nm"] == [5.0, 5.0, 5.0]
    assert record["training_voxel_size_nm"] == [5.0, 5.0, 5.0]
    assert record["images"][0]["voxel_size_from"] == ["checkpoint"] * 3
    given = tmp_path / "given"
    given.mkdir()
    _, record = _segment(checkpoint, stack, given, "pixel_size_um=0.004")
    assert _calibration(given / "out" / "input_prob.tif") == pytest.approx(
        (0.004, 0.004, 0.005, "um"))
    assert record["pixel_size_um"] == pytest.approx(0.004)
    assert record["images"][0]["voxel_size_from"] == ["checkpoint", "option", "option"]


def test_an_input_that_states_its_voxel_size_keeps_it(em_2d, tmp_path: Path) -> None:
    """As for OME-Zarr inputs, the outputs describe the input's own voxels where it states
    them (an ImageJ-calibrated TIFF), even where the checkpoint was trained at another size;
    the pixel_size_um option still wins for y and x."""
    run_dir, _, datamodule = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    stack = np.asarray(datamodule.volumes.test_image)
    path = tmp_path / "calibrated.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.006, 1 / 0.006),
                     metadata={"axes": "ZYX", "unit": "um", "spacing": 0.03})

    def run(out: Path, *overrides: str) -> dict:
        return segment(compose_config("segment", [f"ckpt_path={checkpoint}", f"input={path}",
                                                  f"output_dir={out}", *overrides]))

    record = run(tmp_path / "own")
    assert _calibration(tmp_path / "own" / "calibrated_prob.tif") == pytest.approx(
        (0.006, 0.006, 0.03, "um"))
    assert record["voxel_size_nm"] == pytest.approx([30, 6, 6])
    assert record["images"][0]["voxel_size_from"] == ["input"] * 3
    record = run(tmp_path / "given", "pixel_size_um=0.005")
    assert _calibration(tmp_path / "given" / "calibrated_mask.tif") == pytest.approx(
        (0.005, 0.005, 0.03, "um"))
    assert record["images"][0]["voxel_size_from"] == ["input", "option", "option"]


def test_a_colour_tiff_is_refused_before_any_output(em_2d, tmp_path: Path) -> None:
    """An RGB TIFF is not a stack of 160 slices of 160 x 3 pixels: segment.py stops, naming
    the file and its samples per pixel, and writes nothing."""
    run_dir, _, datamodule = em_2d
    plane = np.asarray(datamodule.volumes.test_image)[0]
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([plane] * 3, axis=-1), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif.*3 samples per pixel"):
        segment(compose_config("segment", [f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
                                           f"input={tmp_path / 'rgb.tif'}",
                                           f"output_dir={tmp_path / 'out'}"]))
    assert not (tmp_path / "out").exists()


def test_a_3d_checkpoint_segments_a_tiff_volume(tmp_path: Path) -> None:
    overrides = [o for o in EM_2D if not o.startswith(("model", "dataset.patch", "augmentation"))]
    overrides += ["model=unet3d_paper002", "+model.filters=[4,8,8,16]", "augmentation=paper3d",
                  "dataset.patch_size=[8,32,32]", "dataset.volumes.train_shape=[24,48,48]"]
    train(compose_config("train", overrides, tmp_path / "run"))
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    volume = np.random.default_rng(0).integers(0, 256, (10, 40, 44), dtype=np.uint8)
    segmented, record = _segment(checkpoint, volume, tmp_path)
    assert segmented.shape == volume.shape and segmented.dtype == np.float32
    expected = Predictor.from_checkpoint(checkpoint, device="cpu").probabilities(volume)
    assert np.array_equal(segmented, expected)
    # the stored headline of em_quick: blended 50 % overlap of the training window, z-median 5
    assert record["spatial_dims"] == 3 and record["reconstruction"] == {
        "reconstruction": "overlap_blend", "window": [8, 32, 32], "overlap": 0.5,
        "blending": "spline", "tta": 1, "zfilter": {"size": 5, "axis": "z"},
        "divisor": None, "precision": "32-true"}
    tifffile.imwrite(tmp_path / "flat.tif", volume[0])
    with pytest.raises(InputError, match="3D network needs a volume"):
        segment(compose_config("segment", [f"ckpt_path={checkpoint}",
                                           f"input={tmp_path / 'flat.tif'}",
                                           f"output_dir={tmp_path / 'out2'}"]))


def test_compile_switch_of_segment(em_2d, tmp_path: Path) -> None:
    """segment.py compile=true compiles the network whatever the reconstruction; null keeps
    the inference config's choice (false in the shipped configs)."""
    from mitoseg.evaluation.segment import build_predictor

    run_dir, _, _ = em_2d
    checkpoint = run_dir / "checkpoints" / "best.ckpt"

    def settings(*overrides: str):  # noqa: ANN202
        cfg = compose_config("segment", [f"ckpt_path={checkpoint}", "input=x.tif", *overrides])
        return build_predictor(cfg).settings

    stored = settings()
    assert stored.compile is False
    compiled = settings("compile=true")
    assert compiled.compile is True and compiled.describe(2) == stored.describe(2)
    assert settings("inference=em_paper", "inference.compile=true").compile is True
    assert settings("inference=em_paper", "inference.compile=true", "compile=false").compile \
        is False
