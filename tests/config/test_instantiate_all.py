"""Every option of every config group composes and instantiates into a working object."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate

from mitoseg.data.fluo_datamodule import FluorescenceDataModule
from mitoseg.training.loggers import build_loggers
from tests.conftest import CONF, SHARED_DATA, compose_config, cpu_stand_in


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml")
                  if not path.stem.startswith("_"))  # _name: a base other options extend


GROUPS = ["dataset", "model", "augmentation", "loss", "optimizer", "scheduler", "postproc",
          "trainer", "callbacks", "logger", "paths", "experiment", "inference"]


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), f"config group '{group}' has no options"


def write_pairs(folder: Path, count: int = 8, shape: tuple[int, int] = (200, 200)) -> list[str]:
    import numpy as np
    import tifffile

    rng = np.random.default_rng(0)
    (folder / "images").mkdir()
    (folder / "masks").mkdir()
    for index in range(count):
        mask = np.zeros(shape, np.uint8)  # rectangles of different sizes: no shared region
        mask[20:40 + index, 10 + index: 60 + 2 * index] = 255
        tifffile.imwrite(folder / "images" / f"{index}.tif",
                         (rng.normal(100, 5, shape) + (mask > 0) * 50).astype(np.float32))
        tifffile.imwrite(folder / "masks" / f"{index}.tif", mask)
    return [f"dataset.images_dir={folder / 'images'}", f"dataset.masks_dir={folder / 'masks'}"]


FLUO_DATASETS = ["fluo_masks", "fluo_pairs", "fluo_procedural"]
EM_DATASETS = ["em_volumes", "em_volumes_example", "kasthuri_pp", "lucchi", "lucchi_pp",
               "synthetic_em"]


def test_dataset_lists_are_complete() -> None:
    assert sorted(FLUO_DATASETS + EM_DATASETS) == options("dataset")


def dataset_overrides(option: str, tmp_path: Path) -> list[str]:
    if option == "fluo_masks":  # the first 180 masks are one cluster of overlapping crops
        return ["dataset.masks.limit=300"]
    if option == "fluo_pairs":
        return write_pairs(tmp_path)
    return ["dataset.masks.count=40"]


@pytest.mark.parametrize("option", FLUO_DATASETS)
def test_fluorescence_dataset_options(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"dataset={option}", *dataset_overrides(option, tmp_path)],
                         tmp_path)
    datamodule = instantiate(cfg.dataset)
    assert hasattr(datamodule, "describe") and datamodule.pixel_size_um > 0
    if option == "fluo_masks" and not (SHARED_DATA / "fluo-masks").is_dir():
        pytest.skip(f"real masks not present at {SHARED_DATA / 'fluo-masks'}")
    datamodule.split_sizes = {"val": 1, "test": 1}
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape[1:] == (1, 200, 200)
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("option", EM_DATASETS)
def test_em_dataset_options(option: str, tmp_path: Path) -> None:
    from mitoseg.data.em_datamodule import EMDataModule
    from mitoseg.errors import InputError

    overrides = [f"dataset={option}", "augmentation=none", f"paths.cache_dir={tmp_path}",
                 f"paths.shared_data={SHARED_DATA}", "dataset.num_workers=0"]
    if option == "synthetic_em":
        overrides += ["dataset.volumes.train_shape=[20,128,128]",
                      "dataset.volumes.test_shape=[4,128,128]"]
    if option == "em_volumes_example":
        overrides.append(f"paths.output_root={tmp_path}")
    datamodule = instantiate(compose_config("train", overrides, tmp_path).dataset)
    assert isinstance(datamodule, EMDataModule)
    if option == "em_volumes":  # a template: the error says what to fill in
        with pytest.raises(InputError, match=r"dataset.volumes.train: no train volumes given"):
            datamodule.setup()
        return
    if option == "kasthuri_pp":  # not in shared/: the error names the layout
        with pytest.raises(InputError, match="Train_In"):
            datamodule.setup()
        return
    if option in ("lucchi", "lucchi_pp") and not (SHARED_DATA / option).is_dir():
        pytest.skip(f"{option} data not present at {SHARED_DATA / option}")
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape[1:] == (1, *datamodule.patch_size)
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert datamodule.pixel_size_um == pytest.approx(0.005)


@pytest.mark.parametrize("option", options("model"))
def test_model_options(option: str) -> None:
    cfg = compose_config("train", [f"model={option}"])
    net = instantiate(cfg.model).eval()  # eval: deep-supervision nets return the main output
    shape = (1, 1, 200, 200) if cfg.model.get("spatial_dims", 2) == 2 else (1, 1, 16, 24, 24)
    with torch.no_grad():
        assert net(torch.zeros(shape)).shape == shape


MASK_AUGMENTATIONS = ["dihedral", "none"]  # fluorescence: transform masks before synthesis


@pytest.mark.parametrize("option", MASK_AUGMENTATIONS)
def test_mask_augmentation_options(option: str) -> None:
    import numpy as np

    augment = instantiate(compose_config("train", [f"augmentation={option}"]).augmentation)
    mask = np.zeros((8, 8), bool)
    mask[0, :3] = True
    out = augment(mask, np.random.default_rng(0))
    assert out.shape == mask.shape and out.sum() == mask.sum()


@pytest.mark.parametrize("option", [o for o in options("augmentation") if o != "dihedral"])
def test_em_batch_augmentation_options(option: str) -> None:
    augment = instantiate(compose_config("train", [f"augmentation={option}"]).augmentation)
    shape = (2, 1, 16, 32, 32) if option.endswith("3d") else (2, 1, 32, 32)
    mask = (torch.rand(shape, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    image, out_mask = augment(mask.clone(), mask.clone(), torch.Generator().manual_seed(1))
    assert image.shape == shape and out_mask.shape == shape
    assert set(out_mask.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("option", options("loss"))
def test_loss_options(option: str) -> None:
    cfg = compose_config("train", [f"loss={option}"])
    loss = instantiate(cfg.loss)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    value = loss(logits, (torch.rand(2, 1, 8, 8) > 0.5).float())
    value.backward()
    assert torch.isfinite(value) and logits.grad is not None


@pytest.mark.parametrize("option", options("optimizer"))
def test_optimizer_options(option: str) -> None:
    cfg = compose_config("train", [f"optimizer={option}"])
    parameter = torch.nn.Parameter(torch.ones(3))
    optimizer = instantiate(cfg.optimizer)(params=[parameter])
    parameter.sum().backward()
    optimizer.step()
    assert not torch.equal(parameter.detach(), torch.ones(3))


@pytest.mark.parametrize("option", options("scheduler"))
def test_scheduler_options(option: str) -> None:
    cfg = compose_config("train", [f"scheduler={option}"])
    from mitoseg.training.module import takes_total_steps

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, momentum=0.9)
    factory = instantiate(cfg.scheduler)
    # a step-wise scheduler (one-cycle) is given the run's step count by the module
    extra = {"total_steps": 10} if takes_total_steps(factory) else {}
    scheduler = factory(optimizer=optimizer, **extra)
    assert scheduler.optimizer is optimizer


@pytest.mark.parametrize("option", options("postproc"))
def test_postproc_options(option: str) -> None:
    import numpy as np

    cfg = compose_config("train", [f"postproc={option}"])
    binarize = instantiate(cfg.postproc)
    # the contract the training module and the evaluators rely on
    assert 0 < binarize.threshold < 1 and isinstance(binarize.describe(), dict)
    probabilities = np.full((20, 20), 0.95)
    image = {"image": np.full((20, 20), 100.0)} if getattr(binarize, "needs_image", False) else {}
    assert binarize(probabilities, **image).all()
    assert not binarize(np.full((20, 20), 0.05), **image).any()


@pytest.mark.parametrize("option", options("trainer"))
def test_trainer_options(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"trainer={option}"], tmp_path)
    trainer = instantiate(cpu_stand_in(cfg.trainer), logger=False, default_root_dir=str(tmp_path))
    assert isinstance(trainer, pl.Trainer)


@pytest.mark.parametrize("option", options("callbacks"))
def test_callbacks_options(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"callbacks={option}"], tmp_path)
    callbacks = [instantiate(node) for node in cfg.callbacks.values()]
    assert callbacks and all(isinstance(c, pl.Callback) for c in callbacks)


@pytest.mark.parametrize("option", options("logger"))
def test_logger_options(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"logger={option}"], tmp_path)
    loggers = build_loggers(cfg)
    assert len(loggers) == len(cfg.logger)


@pytest.mark.parametrize("option", options("paths"))
def test_paths_options(option: str, tmp_path: Path) -> None:
    cfg = compose_config("train", [f"paths={option}"], tmp_path)
    assert cfg.paths.output_dir == str(tmp_path) and cfg.paths.output_root


@pytest.mark.parametrize("option", options("experiment"))
def test_experiment_options(option: str, tmp_path: Path) -> None:
    from mitoseg.data.em_datamodule import EMDataModule

    cfg = compose_config("train", [f"experiment={option}"], tmp_path)
    assert isinstance(instantiate(cfg.dataset), (FluorescenceDataModule, EMDataModule))
    assert isinstance(instantiate(cfg.model), torch.nn.Module)


@pytest.mark.parametrize("name", ["evaluate", "segment"])
def test_entry_point_configs_compose(name: str) -> None:
    overrides = ["ckpt_path=x.ckpt"] + (["input=y"] if name == "segment" else [])
    cfg = compose_config(name, overrides)
    assert cfg.ckpt_path == "x.ckpt"


@pytest.mark.parametrize("option", options("inference"))
def test_inference_options(option: str) -> None:
    import numpy as np

    from mitoseg.evaluation.em_protocols import protocol_matrix

    cfg = compose_config("train", [f"inference={option}"]).inference
    image = np.random.default_rng(0).integers(0, 256, (6, 40, 48), dtype=np.uint8)
    rows = protocol_matrix(lambda batch: batch, image, image > 127, 2, (32, 32),
                           lambda p: p > 0.5, protocols=list(cfg.protocols), tta=list(cfg.tta),
                           zfilter=list(cfg.zfilter), batch_size=cfg.batch_size,
                           divisor=cfg.divisor)
    assert len(rows) == len(cfg.protocols) * len(cfg.tta) * len(cfg.zfilter)
    unfiltered = [r for r in rows if r["zfilter"] == 0]
    assert all(r["iou_fg"] == 1.0 for r in unfiltered)  # identity "network": exact everywhere
