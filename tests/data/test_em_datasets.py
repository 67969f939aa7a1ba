"""Each public EM data set's facts live in one module (mitoseg.data.em_datasets); the readers,
the downloader and the configs take them from there instead of repeating them."""

from __future__ import annotations

import yaml

from mitoseg.data import download, em_volumes
from mitoseg.data.em_datasets import BY_KEY, CASSER, kasthuri_pp, lucchi, lucchi_pp
from tests.conftest import CONF, compose_config


def test_every_data_set_module_holds_its_facts() -> None:
    assert sorted(BY_KEY) == ["kasthuri++", "lucchi", "lucchi++"]
    assert sorted(CASSER) == ["kasthuri++", "lucchi++"]
    for module in BY_KEY.values():
        assert module.PAGE.startswith("https://") and module.DESCRIPTION and module.FILES
        assert len(module.VOXEL_SIZE_NM) == 3 and min(module.VOXEL_SIZE_NM) > 0
    assert lucchi.VOXEL_SIZE_NM == lucchi_pp.VOXEL_SIZE_NM == (5.0, 5.0, 5.0)
    assert kasthuri_pp.VOXEL_SIZE_NM == (30.0, 3.0, 3.0) and kasthuri_pp.IGNORE_VALUES == (2,)
    assert [f["url"].rsplit("/", 1)[1] for f in lucchi.FILES] == [
        "training.tif", "training_groundtruth.tif", "testing.tif", "testing_groundtruth.tif"]


def test_the_downloader_and_the_readers_take_the_modules_facts() -> None:
    for key, module in BY_KEY.items():
        entry = download.DATASETS[key]
        assert (entry["page"], entry["description"], entry["files"]) == (
            module.PAGE, module.DESCRIPTION, module.FILES)
        assert em_volumes.VOXEL_SIZE_NM[key] == module.VOXEL_SIZE_NM
    assert download.DATASETS["kasthuri++"]["files"][0]["sha256"].startswith("bbb78fd2")
    assert em_volumes.LUCCHI_FILES == lucchi.LAYOUT
    assert em_volumes.CASSER_FOLDERS == {"lucchi++": "Lucchi++", "kasthuri++": "Kasthuri++"}
    assert em_volumes.CASSER_IGNORE_VALUES == {"lucchi++": (), "kasthuri++": (2,)}


def test_the_configs_do_not_repeat_voxel_sizes() -> None:
    for name in ("lucchi", "lucchi_pp", "kasthuri_pp"):
        volumes = yaml.safe_load((CONF / "dataset" / f"{name}.yaml").read_text())["volumes"]
        assert volumes["voxel_size_nm"] is None, name  # null: the data set's own
        cfg = compose_config("train", [f"dataset={name}", "dataset.volumes.voxel_size_nm=[40,4,4]"])
        assert list(cfg.dataset.volumes.voxel_size_nm) == [40, 4, 4]  # still an option
