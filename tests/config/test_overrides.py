import pytest

from mitoseg.config.overrides import expand_range_overrides
from mitoseg.config.resolvers import folder_suffix


def test_inclusive_range_becomes_hydra_range() -> None:
    assert expand_range_overrides(["train.py", "-m", "seed=0..9"]) == [
        "train.py", "-m", "seed=range(0,10,1)"]
    assert list(range(0, 10, 1)) == list(range(0, 9 + 1))  # 10 jobs, 0 and 9 included


def test_other_arguments_untouched() -> None:
    argv = ["train.py", "seed=3", "lr=0.1", "seed=range(0,3)", "name=a..b", "path=/x/0..1/y"]
    assert expand_range_overrides(argv) == argv


def test_prefixed_nested_and_descending_ranges() -> None:
    assert expand_range_overrides(["+data_seed=2..4"]) == ["+data_seed=range(2,5,1)"]
    assert expand_range_overrides(["dataset.condition.snr=3..1"]) == [
        "dataset.condition.snr=range(3,0,-1)"]
    assert expand_range_overrides(["seed=-1..1"]) == ["seed=range(-1,2,1)"]


def test_folder_suffix_is_safe() -> None:
    assert folder_suffix("") == ""
    assert folder_suffix("model=fcn,seed=3") == "_model-fcn+seed-3"
    assert "/" not in folder_suffix("dataset.masks.path=/data/x y")


@pytest.mark.parametrize("overrides", ["model=fcn_paper000,seed=3", "dataset.patch_size=[64,64]",
                                       "+trainer.limit_train_batches=3,x=a b", "y" * 300])
def test_paths_to_run_folders_pass_through_hydra_overrides(overrides: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = f"outputs/runs/default/2026-01-01_10-00-00{folder_suffix(overrides)}/checkpoints/best.ckpt"
    parsed = OverridesParser.create().parse_overrides([f"ckpt_path={path}"])
    assert parsed[0].value() == path


def test_long_folder_names_stay_distinct() -> None:
    a = folder_suffix("x" * 300 + ",seed=1")
    b = folder_suffix("x" * 300 + ",seed=2")
    assert len(a) <= 161 and len(b) <= 161 and a != b


@pytest.mark.parametrize("seed", ["0", "7", "-3", "12345"])
def test_long_folder_names_keep_the_seed_in_front(seed: str) -> None:
    overrides = f"dataset.condition.snr=4,model.encoder_channels=[{','.join(['64'] * 40)}]," \
                f"seed={seed},trainer.max_epochs=200"
    name = folder_suffix(overrides)
    assert name.startswith(f"_seed-{seed}+dataset.condition.snr-4+model.encoder_channels-")
    assert len(name) == 161 and name.count(f"seed-{seed}") == 1
    assert name != folder_suffix(overrides.replace("max_epochs=200", "max_epochs=201"))


def test_short_folder_names_keep_hydras_order() -> None:
    assert folder_suffix("a=1,seed=3,z=2") == "_a-1+seed-3+z-2"
    assert folder_suffix("myseed=3," + "x" * 200).startswith("_myseed-3+x")
    assert folder_suffix("seed=" + "1" * 200).startswith("_seed-111")


def test_multirun_flag_moves_before_the_overrides() -> None:
    from mitoseg.config.overrides import normalize_argv

    assert normalize_argv(["train.py", "model=attention_unet", "-m", "seed=0..9"]) == [
        "train.py", "-m", "model=attention_unet", "seed=range(0,10,1)"]
    assert normalize_argv(["train.py", "a=1", "--multirun", "b=2"]) == [
        "train.py", "--multirun", "a=1", "b=2"]
    assert normalize_argv(["train.py", "a=1"]) == ["train.py", "a=1"]
