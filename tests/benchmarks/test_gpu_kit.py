"""The GPU kit's scripts (benchmarks/gpu/) parse, the files they name exist, and their training
commands run without the packages the GPU machine lacks: a GPU session has about 15 minutes of
device time, so a typo or a missing package must not cost one of its calls."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.conftest import REPO, TINY, python_command

KIT = REPO / "benchmarks" / "gpu"


@pytest.mark.parametrize("script", sorted(p.name for p in KIT.glob("*.sh")))
def test_the_script_parses(script: str) -> None:
    done = subprocess.run(["bash", "-n", str(KIT / script)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("script", ["call1.sh", "call2.sh"])
def test_the_repository_files_a_call_names_exist(script: str) -> None:
    text = (KIT / script).read_text()
    named = set(re.findall(r"\b((?:tests|benchmarks)/[\w/]+\.py)\b", text))
    assert named, script
    missing = sorted(path for path in named if not (REPO / path).is_file())
    assert not missing, f"{script} names files that do not exist: {missing}"


def load_summarize():
    import importlib.util

    spec = importlib.util.spec_from_file_location("summarize", KIT / "summarize.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    return summarize


def test_summary_says_what_each_time_holds(tmp_path, capsys) -> None:
    import json

    summarize = load_summarize()
    (tmp_path / "ref_s0.json").write_text(json.dumps({"results": {
        "iou_fg": 0.88, "iou_fg_over_volume": 0.87, "train_seconds": 32.0,
        "images_per_second": 2000.0, "protocols": {"full_image_tta_z5": {
            "iou_fg": 0.87, "iou_fg_mean_per_slice": 0.88}}}}))
    (tmp_path / "fast_s0_metrics.json").write_text(json.dumps({
        "test": {"iou_fg": {"mean": 0.86}, "iou_fg_mean_per_slice": {"mean": 0.86},
                 "iou_fg_over_volume": {"mean": 0.85}},
        "fit_seconds": 48.1}))
    seconds = (11.5, 8.5, 7.4, 9.2, 8.8, 1.8)  # as train.py logs them (mitoseg.training.progress)
    (tmp_path / "fast_s0.log").write_text("".join(
        f"[2026-12-04 17:33:56,357][mitoseg.training.progress][INFO] - epoch {n}: "
        f"train/loss_epoch 0.07 ({s} s)\n" for n, s in enumerate(seconds, 1)))
    summarize.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "fit 48.1 s (all of trainer.fit" in out
    assert "epochs 47.2 s (sum of the 6 epoch times" in out
    assert "train 32.0 s (its loop only" in out
    # the speed ratio is named as the bound it is, and the closer one beside it
    assert re.search(r"seed 0: .*train / framework fit 0\.665 .*lower bound", out)
    assert re.search(r"seed 0: .*train / framework epochs 0\.678", out)


def test_summary_reads_both_ious_from_old_and_new_results(tmp_path, capsys) -> None:
    import json

    # before 2026-12-05 the headline iou_fg was the pooled one; the protocol rows and
    # iou_fg_mean_per_slice name each IoU in both formats
    protocol = {"full_image_tta_z5": {"iou_fg": 0.881, "iou_fg_mean_per_slice": 0.8806}}
    (tmp_path / "ref_s0.json").write_text(json.dumps({"results": {
        "iou_fg": 0.881, "train_seconds": 30.0, "images_per_second": 2000.0,
        "protocols": protocol}}))
    (tmp_path / "ref_s1.json").write_text(json.dumps({"results": {
        "iou_fg": 0.8806, "iou_fg_over_volume": 0.881, "train_seconds": 30.0,
        "images_per_second": 2000.0, "protocols": protocol}}))
    (tmp_path / "fast_s0_metrics.json").write_text(json.dumps({"fit_seconds": 40.0, "test": {
        "iou_fg": {"mean": 0.8631}, "iou_fg_mean_per_slice": {"mean": 0.8628}}}))
    (tmp_path / "fast_s1_metrics.json").write_text(json.dumps({"fit_seconds": 40.0, "test": {
        "iou_fg": {"mean": 0.8628}, "iou_fg_mean_per_slice": {"mean": 0.8628},
        "iou_fg_over_volume": {"mean": 0.8631}}}))
    (tmp_path / "bench_training.json").write_text(json.dumps({"results": {"bare": []}}))
    load_summarize().main([str(tmp_path)])
    out = capsys.readouterr().out
    for seed in (0, 1):
        assert f"ref_s{seed}: iou_fg per slice 0.8806, pooled 0.8810 (per slice - pooled " \
               "-0.0004)" in out
        assert f"fast_s{seed}_metrics: iou_fg per slice 0.8628, pooled 0.8631 (per slice - " \
               "pooled -0.0003)" in out
    assert "ref: mean 0.8806" in out and "fast: mean 0.8628" in out  # per slice, the headline
    assert "bench_training" not in out  # not a Lucchi result: left out


# What the GPU machine's image lacks of mitoseg's dependencies (../.library/device/KINDS.md's
# package list, 2026-11-17): the kit carries hydra-core and omegaconf, and wandb only for
# call3.sh. A module-level import of any of these on the training path would stop call 1 and 2
# at their first command.
NOT_ON_THE_GPU_MACHINE = ("wandb", "zarr", "numcodecs", "dask", "distributed", "submitit",
                          "optuna")
BLOCKER = '''
import importlib.abc, os, sys
BLOCKED = set(os.environ["MITOSEG_TEST_BLOCKED"].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            with open(os.environ["MITOSEG_TEST_BLOCKED_LOG"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
'''
CPU_FOR_GPU = ["trainer.accelerator=cpu", "trainer.precision=32-true"]


@pytest.mark.parametrize("overrides", [
    # the README's ten-seed command's job (call1.sh), two seeds through the parallel launcher
    ["-m", "seed=0,1", "model=attention_unet", "trainer=gpu", *CPU_FOR_GPU, "logger=csv",
     "model.filters=[4,8,16,32,64]",
     *[o for o in TINY if not o.startswith(("logger=", "model."))]],
    # experiment=lucchi_fast (call2.sh), on synthetic volumes instead of Lucchi
    ["experiment=lucchi_fast", "dataset=synthetic_em", *CPU_FOR_GPU, "logger=csv",
     "trainer.max_steps=2", "dataset.batch_size=2", "dataset.eval_batch_size=2",
     "dataset.patch_size=[64,64]", "dataset.volumes.max_test_slices=5",
     "model.filters=[4,8,16,32,64]"],
], ids=["ten_seed_job", "lucchi_fast"])
def test_the_kits_training_commands_need_no_package_the_gpu_machine_lacks(
        overrides: list[str], tmp_path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    log = tmp_path / "blocked.log"
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO / "src"),
                                       os.environ.get("PYTHONPATH", "")]),
        "MITOSEG_TEST_BLOCKED": ",".join(NOT_ON_THE_GPU_MACHINE),
        "MITOSEG_TEST_BLOCKED_LOG": str(log), "HYDRA_FULL_ERROR": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(python_command("train.py", *overrides,
                                         f"paths.output_root={tmp_path / 'out'}"),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    tried = sorted(set(log.read_text().split())) if log.exists() else []
    assert done.returncode == 0, done.stderr[-3000:]
    assert not tried, f"imported on the GPU path: {tried}"
    assert len(list((tmp_path / "out").rglob("metrics.json"))) == (2 if "-m" in overrides else 1)
