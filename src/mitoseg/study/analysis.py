"""Paper 000's study after training: every method on the same test images, per-image rows.

Input: the folder of the training multirun (one job per condition x model x seed). Output:
rows in the schema of ``per_image.csv`` (``mitoseg.study.statistics.COLUMNS``: part, family,
level, train_level, method, seed, image, unit, as, abd_px, abd_um, das, dds, pred_empty,
empty_abd):

- robustness (scheme 1): each network tested at the condition it was trained at; each
  classical method on the same test images;
- cross (scheme 2): networks trained at one SNR tested at every SNR of the family;
- mixture (scheme 2): networks trained on a mixture tested at every level of its family;
- sensitivity: networks trained at SNR 4 and the classical methods on (original, deformed)
  pairs -- erosion by 1 px, dilation by 1, 2, 3 px -- with DAS (eq. 8) and DDS (eq. 9).

The test images of a condition are those the training data module makes for its test split
(same masks, same seeds), so every method and every training seed sees the very same images.
That needs one split for all runs: runs trained on different splits (another ``data_seed``,
mask source or split size) are refused before anything is scored (``check_one_data_split``),
since a network scored on another split's test images may have trained on them.
Each image carries its independent unit (the group its mask was split by: a crop with its
flips/rotations, or a cluster of overlapping crops), which the statistics test on. pred_empty
marks an empty prediction; ``empty_abd`` (diagonal or exclude) is the ABD it gets, recorded on
every row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mitoseg.errors import InputError
from mitoseg.evaluation.predictor import Predictor
from mitoseg.evaluation.protocol_card import TestSetHash
from mitoseg.metrics.segmentation import deformation_metrics, image_metrics
from mitoseg.reporting.collect import read_run
from mitoseg.runs.paths import display_runs
from mitoseg.study.plan import (FAMILIES, MIXTURES, SENSITIVITY_CONDITION, condition_of_name,
                                condition_params, method_of_model)
from mitoseg.synth.fluorescence import FluorescenceParams, synthesize_pair

log = logging.getLogger(__name__)
Segmenter = Callable[[np.ndarray], np.ndarray]  # raw image -> bool mask


@dataclass(frozen=True)
class TrainedRun:
    folder: Path
    condition: str
    model: str
    seed: int
    checkpoint: Path
    config: Mapping[str, Any]

    @property
    def method(self) -> str:
        return method_of_model(self.model)


@dataclass(frozen=True)
class TestImage:
    image_id: str
    image: np.ndarray  # raw intensities
    mask: np.ndarray
    unit: str  # the independent unit (split group) the image belongs to
    cluster: str = ""  # the split cluster (groups that share a region) of its mask


def find_trained_runs(sweep_dir: Path) -> tuple[list[TrainedRun], list[tuple[Path, str]]]:
    """The finished training jobs of a multirun, and the jobs that did not finish (why), as
    the run reader of ``report.py`` reads them (``mitoseg.reporting.collect.read_run``)."""
    runs, problems = [], []
    for job in sorted(p.parent for p in Path(sweep_dir).glob("*/.hydra")):
        record = read_run(job)
        if record.status != "finished":
            problems.append((job, record.error or record.status))
            continue
        # metrics.json names it from the project root (mitoseg.runs.paths); the job folder
        # holds it wherever the study folder now is
        checkpoint = job / "checkpoints" / Path(record.metrics.get("checkpoint") or "best.ckpt").name
        runs.append(TrainedRun(job, str(record.choices.get("condition")),
                               str(record.choices.get("model")), int(record.settings["seed"]),
                               checkpoint, record.settings))
    return runs, problems


def test_images(dataset_config: Mapping[str, Any], condition: str) -> list[TestImage]:
    """The test split of a data-module config, rendered under ``condition`` (raw images)."""
    return list(_test_images(json.dumps(dataset_config, sort_keys=True, default=str), condition))


@lru_cache(maxsize=64)
def _test_images(dataset_json: str, condition: str) -> tuple[TestImage, ...]:
    config = json.loads(dataset_json)
    base = dict(config.get("condition") or {})
    config["test_condition"] = base | condition_params(condition)
    config["train_conditions"] = None
    datamodule = instantiate(OmegaConf.create(config))
    datamodule.setup()
    test = datamodule.datasets["test"]
    images = []
    for index in range(len(test)):
        image, mask, record = test.generate(index)
        images.append(TestImage(str(record["mask_id"]), image, np.asarray(mask, bool),
                                str(record["unit"]), str(record.get("cluster", record["unit"]))))
    return tuple(images)


@dataclass(frozen=True)
class DataSplit:
    """How a data-module config deals its masks: the mask ids of each split, the masks'
    content and the seed of the test images' noise. Runs that share it were trained,
    validated and tested on the same masks, and the study's test images of a condition (made
    from the test masks with that seed) are their own test images."""
    mask_ids: tuple[tuple[str, tuple[str, ...]], ...]  # (split name, its mask ids in order)
    masks: str  # fingerprint of every split's masks (ids alone miss, e.g., a procedural shape)
    test_image_seed: int

    def ids(self, split: str) -> tuple[str, ...]:
        return dict(self.mask_ids).get(split, ())


def data_split(dataset_config: Mapping[str, Any]) -> DataSplit:
    """The split a data-module config makes, read from the data module itself (so whatever
    option moves a mask counts), without making a single image."""
    return _data_split(json.dumps(dataset_config, sort_keys=True, default=str))


@lru_cache(maxsize=64)
def _data_split(dataset_json: str) -> DataSplit:
    datamodule = instantiate(OmegaConf.create(json.loads(dataset_json)))
    datamodule.setup()
    parts = datamodule.split_masks
    content = TestSetHash().update(*(part.masks for part in parts.values()))
    return DataSplit(tuple((name, tuple(part.ids)) for name, part in parts.items()),
                     content.fingerprint(), int(datamodule.datasets["test"].seed))


def split_difference(split: DataSplit, reference: DataSplit, name: str = "split 1") -> str:
    """What ``split`` does differently from ``reference`` (called ``name``), first whether it
    trains or validates on the reference's test masks: its runs would be scored on them."""
    test, reference_test = set(split.ids("test")), set(reference.ids("test"))
    trained, validated = (reference_test & set(split.ids(part)) for part in ("train", "val"))
    found = []
    if trained or validated:
        found.append(f"{len(trained | validated)} of the {len(reference_test)} test masks of "
                     f"{name} are masks it trained or validated on ({len(trained)} training, "
                     f"{len(validated)} validation)")
    if test != reference_test:
        found.append(f"{len(test - reference_test)} of its {len(test)} test masks are not test "
                     f"masks of {name}")
    elif split.mask_ids != reference.mask_ids:
        found.append(f"the test masks of {name}, but other training or validation masks")
    if split.masks != reference.masks and not found:
        found.append(f"masks of the same names as {name} with other content")
    if split.test_image_seed != reference.test_image_seed:
        found.append(f"test images made with seed {split.test_image_seed}, not "
                     f"{reference.test_image_seed} (split_seed)")
    return "; ".join(found)


def check_one_data_split(runs: Sequence[TrainedRun]) -> None:
    """Refuse (InputError) runs that were not all trained on one data split.

    The study makes one set of test images per condition and scores every network on it, and
    pools the training seeds of a method as replicates on those images. A run of another
    split (another data_seed, mask source, limit or split size) would be scored on images it
    may have trained on. Each run's split is the one its own dataset config makes
    (``data_split``); image conditions and training seeds, which differ by design, do not
    change it."""
    by_split: dict[DataSplit, list[TrainedRun]] = {}
    for run in runs:
        by_split.setdefault(data_split(run.config["dataset"]), []).append(run)
    if len(by_split) < 2:
        return
    reference = next(iter(by_split))  # split 1, the one the others are described against
    described = []
    for number, (split, members) in enumerate(by_split.items(), start=1):
        data_seeds = dict.fromkeys(str(run.config.get("data_seed", "?")) for run in members)
        text = (f"split {number}: {display_runs([run.folder for run in members])} "
                f"(data_seed {', '.join(data_seeds)})")
        if split != reference:
            text += f": {split_difference(split, reference)}"
        described.append(text)
    raise InputError(
        f"study: the training runs were not all trained on one data split ({len(by_split)} "
        f"splits), but every network is scored on one set of test images: "
        f"{'; '.join(described)}. Analyze the runs of each split apart (a study per split), "
        "or train them all with the same data_seed and dataset options")


def network_segmenter(run: TrainedRun, postproc: Any = None) -> Segmenter:
    """Raw image -> mask with a trained network, normalized as in its training (the
    checkpoint's Predictor: whole images, its post-processing unless ``postproc``)."""
    predictor = Predictor.from_checkpoint(run.checkpoint, postproc=postproc, device="cpu")

    def segment(image: np.ndarray) -> np.ndarray:
        return predictor.masks(predictor.probabilities(image), image)

    return segment


def score_rows(segment: Segmenter, images: Iterable[TestImage], pixel_size_um: float,
               base: Mapping[str, Any], empty_abd: str = "diagonal") -> list[dict[str, Any]]:
    """AS and ABD of one method on each image (ABD of an empty prediction: ``empty_abd``)."""
    rows = []
    for item in images:
        metrics = image_metrics(item.mask, segment(item.image), pixel_size_um, empty_abd=empty_abd)
        rows.append(dict(base) | {"image": item.image_id, "unit": item.unit,
                                  "cluster": item.cluster, "as": metrics["as"],
                                  "abd_px": metrics["abd_px"], "abd_um": metrics["abd_um"],
                                  "das": "", "dds": "", "pred_empty": int(metrics["pred_empty"]),
                                  "empty_abd": empty_abd})
    return rows


def sensitivity_rows(segment: Segmenter, images: Iterable[TestImage], deformations: Iterable[int],
                     params: FluorescenceParams, pixel_size_um: float, seed: int,
                     base: Mapping[str, Any], empty_abd: str = "diagonal") -> list[dict[str, Any]]:
    """DAS and DDS of one method over (original, deformed) pairs: the same masks, Gamma field
    and noise, only the mitochondria eroded (negative px) or dilated (positive px). pred_empty:
    the prediction on the original or on the deformed image is empty (both feed DDS)."""
    rows = []
    for index, item in enumerate(images):
        for pixels in deformations:
            rng = np.random.default_rng([seed, 1000 + index, 100 + int(pixels)])
            pair = synthesize_pair(item.mask, int(pixels), params, rng)
            b, b_d = segment(pair["image"]), segment(pair["deformed_image"])
            a, a_d = pair["mask"], pair["deformed_mask"]
            metrics = deformation_metrics(a, a_d, b, b_d, empty_abd=empty_abd)
            rows.append(dict(base) | {
                "level": float(pixels), "image": item.image_id, "unit": item.unit,
                "cluster": item.cluster,
                "as": metrics["as"], "abd_px": metrics["abd"],
                "abd_um": metrics["abd"] * pixel_size_um, "das": metrics["das"],
                "dds": metrics["dds"], "pred_empty": int(not b.any() or not b_d.any()),
                "empty_abd": empty_abd})
    return rows


def study_rows(runs: list[TrainedRun], families: list[str], mixtures: list[str],
               classical: Mapping[str, Segmenter], deformations: list[int],
               postprocs: Mapping[str, Any] | None = None,
               empty_abd: str = "diagonal") -> list[dict[str, Any]]:
    """Every row of the study (see the module docstring)."""
    if not runs:
        return []
    check_one_data_split(runs)
    dataset = runs[0].config["dataset"]  # its split is every run's
    pixel_size = float(dataset.get("pixel_size_um", 0.0645))
    split_seed = int(dataset.get("split_seed", 0))
    rows: list[dict[str, Any]] = []

    def family_images(family: str) -> list[tuple[float, str, list[TestImage]]]:
        return [(level, name, test_images(dataset, name)) for level, name in FAMILIES[family]]

    for family in families:
        for level, name, images in family_images(family):
            base = {"part": "robustness", "family": family, "level": level, "train_level": ""}
            for method, segment in classical.items():
                rows += score_rows(segment, images, pixel_size, base | {"method": method, "seed": ""},
                                  empty_abd)
            for run in (r for r in runs if r.condition == name):
                variants = {"": None} | {f"+{k}": instantiate(OmegaConf.create(v))
                                         for k, v in (postprocs or {}).items()}
                for suffix, postproc in variants.items():
                    rows += score_rows(network_segmenter(run, postproc), images, pixel_size,
                                       base | {"train_level": level, "method": run.method + suffix,
                                               "seed": run.seed}, empty_abd)
    if "snr" in families:  # scheme 2: trained at one SNR, tested at every SNR
        for run in runs:
            trained = condition_of_name(run.condition)
            if trained is None or trained.family != "snr":
                continue
            segment = network_segmenter(run)
            for level, name, images in family_images("snr"):
                rows += score_rows(segment, images, pixel_size, {
                    "part": "cross", "family": "snr", "level": level,
                    "train_level": trained.level, "method": run.method, "seed": run.seed}, empty_abd)
    for mixture in mixtures:
        family = MIXTURES[mixture]
        for run in (r for r in runs if r.condition == mixture):
            segment = network_segmenter(run)
            for level, name, images in family_images(family):
                rows += score_rows(segment, images, pixel_size, {
                    "part": "mixture", "family": family, "level": level, "train_level": "mix",
                    "method": run.method, "seed": run.seed}, empty_abd)
    if deformations:
        images = test_images(dataset, SENSITIVITY_CONDITION)
        params = FluorescenceParams(**(dict(dataset.get("condition") or {})
                                       | condition_params(SENSITIVITY_CONDITION)))
        base = {"part": "sensitivity", "family": "deformation"}
        for method, segment in classical.items():
            rows += sensitivity_rows(segment, images, deformations, params, pixel_size,
                                     split_seed, base | {"train_level": "", "method": method, "seed": ""},
                                     empty_abd)
        for run in (r for r in runs if r.condition == SENSITIVITY_CONDITION):
            rows += sensitivity_rows(network_segmenter(run), images, deformations, params,
                                     pixel_size, split_seed, base | {
                                         "train_level": 4.0, "method": run.method, "seed": run.seed},
                                     empty_abd)
    return rows


def example_predictions(runs: list[TrainedRun], classical: Mapping[str, Segmenter],
                        condition: str) -> tuple[TestImage, dict[str, np.ndarray]] | None:
    """The first test image of ``condition`` and every method's mask on it (one seed each)."""
    trained = [r for r in runs if r.condition == condition]
    if not trained:
        return None
    item = test_images(trained[0].config["dataset"], condition)[0]
    predictions = {}
    for run in sorted(trained, key=lambda r: r.seed):
        predictions.setdefault(run.method, network_segmenter(run)(item.image))
    for method, segment in classical.items():
        predictions[method] = segment(item.image)
    return item, predictions
