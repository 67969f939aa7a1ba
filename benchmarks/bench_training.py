"""Training throughput: the framework loop against a bare PyTorch loop on the same work.

Framework: conf/train.yaml composed with overrides (as the tests do), the data module, the
SegmentationModule and the Lightning Trainer built as ``mitoseg.training.train`` builds them,
fitted for warm-up + measured steps (no validation, no checkpoint files, no logger, no
progress bar). Bare: a plain loop over a DataLoader of the very same dataset object (same
loader settings), the same augmentation, network architecture and initialization, loss,
optimizer, batch size and precision. Both are timed from the end of the last warm-up step to
the end of the last measured step. Runs bare, then (framework, bare) --rounds times, so drift
of a shared machine shows: each framework run is compared with the mean of the bare runs just
before and after it, and the ratio reported is the median over rounds.

    python benchmarks/bench_training.py                     # synthetic EM, 256 x 256, batch 6
    python benchmarks/bench_training.py --precision bf16-mixed --channels-last --compile --batch 64
    python benchmarks/bench_training.py --dataset fluo_procedural   # 200 x 200 fluorescence
    python benchmarks/bench_training.py --override dataset.sampling=device --workers 0
    python benchmarks/bench_training.py --quick             # seconds, smoke test
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

import mitoseg.config  # noqa: F401  (registers the config resolvers)
from _common import (
    add_common_args,
    apply_threads,
    json_report,
    pick_device,
    rounded,
    synchronize,
)
from mitoseg.data.loaders import make_loader
from mitoseg.training.module import with_deep_supervision
from mitoseg.training.seeding import EpochSeeding
from mitoseg.training.train import build_module

CONF = Path(__file__).resolve().parents[1] / "conf"
DATASETS = ("synthetic_em", "fluo_procedural")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--model", default="unet2d_paper002", help="a conf/model/ name")
    parser.add_argument("--dataset", default="synthetic_em", choices=DATASETS)
    parser.add_argument("--batch", type=int, default=None, help="default 6 (paper 002)")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: the dataset config's, 0)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps")
    parser.add_argument("--rounds", type=int, default=None,
                        help="framework runs, each between two bare runs (default 2; 1 quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="after the timed rounds, profile one framework and one bare run "
                             "(cProfile, top functions by own time to stderr): where the CPU "
                             "side of a step goes, waits for the GPU included")
    parser.add_argument("--count-syncs", action="store_true",
                        help="on a GPU, after the timed rounds, run each loop once more under "
                             "torch.cuda.set_sync_debug_mode('warn') and count the operations "
                             "that make the CPU wait for the GPU, per step")
    parser.add_argument("--override", action="append", default=[],
                        help="extra Hydra override, repeatable "
                             "(e.g. model.filters=[8,16,32,64,128])")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    gpu = device.type == "cuda"
    quick = args.quick
    return {
        "quick": quick, "model": args.model, "dataset": args.dataset,
        "patch": [64, 64] if quick else [256, 256] if args.dataset == "synthetic_em"
        else [200, 200],
        "batch": args.batch or (2 if quick else 6),
        "precision": args.precision, "channels_last": args.channels_last,
        "compile": args.compile, "workers": args.workers,
        "warmup_steps": args.warmup or (1 if quick else 20 if gpu else 2),
        "measured_steps": args.steps or (2 if quick else 200 if gpu else 8),
        "rounds": args.rounds or (1 if quick else 2),
        "seed": args.seed, "extra_overrides": list(args.override),
    }


def overrides_for(s: dict[str, Any], device: torch.device) -> list[str]:
    """conf/train.yaml overrides: the benchmark's data, model, batch and trainer."""
    steps = s["warmup_steps"] + s["measured_steps"]
    samples = steps * s["batch"]
    out = [f"model={s['model']}", f"dataset={s['dataset']}", f"seed={s['seed']}",
           f"trainer={'gpu' if device.type == 'cuda' else 'cpu'}",
           f"trainer.precision={s['precision']}", "logger=none",
           "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
           f"dataset.batch_size={s['batch']}",
           f"speed.channels_last={str(s['channels_last']).lower()}",
           f"speed.compile={str(s['compile']).lower()}"]
    if s["workers"] is not None:
        out.append(f"dataset.num_workers={s['workers']}")
    if s["dataset"] == "synthetic_em":
        side = 96 if s["quick"] else 512
        depth = 6 if s["quick"] else 24
        train_slices = depth - max(1, round(0.1 * depth))
        out += ["augmentation=paper2d", f"dataset.patch_size=[{s['patch'][0]},{s['patch'][1]}]",
                f"dataset.volumes.train_shape=[{depth},{side},{side}]",
                f"dataset.volumes.test_shape=[2,{s['patch'][0]},{s['patch'][1]}]",
                f"dataset.patches_per_image={math.ceil(samples / train_slices)}"]
    else:  # one epoch holds every step: no epoch boundary inside the measurement
        side = s["patch"][0]
        out += [f"dataset.masks.count={samples + 8}", f"dataset.masks.shape=[{side},{side}]",
                "dataset.split={val:4,test:4}"]
    return out + s["extra_overrides"]


def compose_config(overrides: list[str], output_dir: str) -> DictConfig:
    """conf/train.yaml as tests/conftest.py composes it, with a run folder that is not used."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg


class Clock:
    """Wall and process CPU time between two marks, the device's queue drained at each."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.marks = device, []

    def mark(self) -> None:
        synchronize(self.device)
        self.marks.append((time.perf_counter(), time.process_time()))

    def result(self, steps: int, batch: int) -> dict[str, Any]:
        (wall0, cpu0), (wall1, cpu1) = self.marks
        seconds = wall1 - wall0
        return {"seconds": rounded(seconds), "steps": steps,
                "images_per_s": rounded(steps * batch / seconds),
                "ms_per_step": rounded(1000 * seconds / steps),
                "process_cpu_s_per_step": rounded((cpu1 - cpu0) / steps)}


class StepTimer(pl.Callback):
    """Marks the end of step ``warmup`` and of step ``total``."""

    def __init__(self, warmup: int, total: int, clock: Clock) -> None:
        self.warmup, self.total, self.clock, self.steps = warmup, total, clock, 0

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.steps += 1
        if self.steps in (self.warmup, self.total):
            self.clock.mark()


def speed_options(net: torch.nn.Module, s: dict[str, Any]) -> torch.nn.Module:
    """The bare loop's channels_last and torch.compile; the framework gets the same through
    the config (speed.channels_last, speed.compile), applied by SegmentationModule."""
    if s["channels_last"]:
        net = net.to(memory_format=torch.channels_last)
    return torch.compile(net) if s["compile"] else net


def run_framework(cfg: DictConfig, datamodule: Any, s: dict[str, Any],
                  device: torch.device) -> dict[str, Any]:
    module = build_module(cfg, datamodule)  # speed.* from the overrides
    total = s["warmup_steps"] + s["measured_steps"]
    clock = Clock(device)
    timer = StepTimer(s["warmup_steps"], total, clock)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer: pl.Trainer = instantiate(
            cfg.trainer, callbacks=[timer, EpochSeeding(cfg.seed)], logger=False,
            default_root_dir=run_dir, max_steps=total,
            limit_val_batches=0, enable_checkpointing=False)
        trainer.fit(module, datamodule=datamodule)
    if len(clock.marks) != 2:
        raise RuntimeError(f"framework ran {timer.steps} steps, expected {total}")
    return clock.result(s["measured_steps"], s["batch"])


def run_bare(cfg: DictConfig, datamodule: Any, s: dict[str, Any],
             device: torch.device) -> dict[str, Any]:
    """The same work without Lightning: loader, augmentation, autocast, step."""
    torch.manual_seed(cfg.seed)
    net = instantiate(cfg.model).to(device).train()
    loss_fn = with_deep_supervision(net, instantiate(cfg.loss)).to(device)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    model = speed_options(net, s)
    augmentation = getattr(datamodule, "augmentation", None) if s["dataset"] == "synthetic_em" \
        else None  # fluorescence augmentation runs inside the dataset, for both loops
    loader = make_loader(datamodule.datasets["train"], s["batch"], True, datamodule.num_workers)
    autocast = s["precision"] == "bf16-mixed"
    on_device_synthesis = getattr(datamodule, "synthesis", "cpu") == "device"
    total = s["warmup_steps"] + s["measured_steps"]
    clock, step = Clock(device), 0
    while step < total:
        for batch in loader:
            if on_device_synthesis:  # the data module's own hooks: masks in, images made here
                batch = datamodule.on_before_batch_transfer(batch, 0)
                batch["mask"] = batch["mask"].to(device, non_blocking=True)
                batch = datamodule.on_after_batch_transfer(batch, 0)
            if "origin" in batch:  # dataset.sampling=device: the data module cuts the patches
                # pinned by the loader on a GPU, so the copy need not wait for the GPU
                image, mask, _ = datamodule.device_patches(
                    batch["origin"].to(device, non_blocking=True),
                    batch["volume"].to(device, non_blocking=True))
            else:
                image = batch["image"].to(device, non_blocking=True)
                mask = batch["mask"].to(device, non_blocking=True)
            if augmentation is not None:
                generator = torch.Generator(device=device)
                generator.manual_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
                image, mask = augmentation(image, mask, generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(model(image), mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step in (s["warmup_steps"], total):
                clock.mark()
            if step == total:
                break
    return clock.result(s["measured_steps"], s["batch"])


def profiled(run: Any, cfg: DictConfig, datamodule: Any, s: dict[str, Any],
             device: torch.device, top: int = 25) -> list[dict[str, Any]]:
    """One run under cProfile: the ``top`` functions by own time, printed and returned."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    run(cfg, datamodule, s, device)
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    stats.print_stats(top)
    print(stream.getvalue())
    rows = []
    for (file, line, name), (_, calls, own, total, _) in sorted(
            stats.stats.items(), key=lambda item: -item[1][2])[:top]:
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls": calls,
                     "own_s": rounded(own), "cumulative_s": rounded(total)})
    return rows


def count_syncs(run: Any, cfg: DictConfig, datamodule: Any, s: dict[str, Any],
                device: torch.device) -> dict[str, Any]:
    """One run with CUDA's sync debug mode on: the synchronizing operations it makes (item,
    copies to the host, blocking copies to the device, ...), in all and per step."""
    import warnings

    steps = s["warmup_steps"] + s["measured_steps"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run(cfg, datamodule, s, device)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message) for w in caught if "synchronizing" in str(w.message)]
    return {"syncs": len(syncs), "steps": steps, "per_step": rounded(len(syncs) / steps, 3)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args)
    device = pick_device(args.device)
    s = settings_from(args, device)
    with json_report(s, device) as report, tempfile.TemporaryDirectory() as output_dir:
        overrides = overrides_for(s, device)
        report["overrides"] = overrides
        cfg = compose_config(overrides, output_dir)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        started = time.perf_counter()
        datamodule = instantiate(cfg.dataset)
        datamodule.setup()
        report["data_setup_s"] = rounded(time.perf_counter() - started)
        report["train_samples"] = len(datamodule.datasets["train"])
        s["workers"] = datamodule.num_workers
        # Lightning sets torch's determinism flags when the Trainer is built; the bare loop
        # runs under the same flags.
        torch.use_deterministic_algorithms(bool(cfg.trainer.get("deterministic", False)))
        bare_runs = [run_bare(cfg, datamodule, s, device)]
        framework_runs = []
        for _ in range(s["rounds"]):
            framework_runs.append(run_framework(cfg, datamodule, s, device))
            bare_runs.append(run_bare(cfg, datamodule, s, device))
        ratios = [f["images_per_s"] * 2 / (before["images_per_s"] + after["images_per_s"])
                  for f, before, after in zip(framework_runs, bare_runs, bare_runs[1:])]
        report["results"] = {
            "framework": framework_runs, "bare": bare_runs,
            "framework_images_per_s": rounded(statistics.median(
                f["images_per_s"] for f in framework_runs)),
            "bare_images_per_s": rounded(statistics.median(b["images_per_s"] for b in bare_runs)),
            "ratio_per_round": [rounded(r, 3) for r in ratios],
            "ratio_framework_to_bare": rounded(statistics.median(ratios), 3),
            "target_ratio": 0.9,
        }
        report["parameters"] = sum(p.numel() for p in instantiate(cfg.model).parameters())
        if args.count_syncs:
            report["syncs"] = {name: count_syncs(run, cfg, datamodule, s, device)
                               for name, run in (("framework", run_framework),
                                                 ("bare", run_bare))} \
                if device.type == "cuda" else "a GPU only measure (CUDA's sync debug mode)"
        if args.profile:
            report["profile"] = {name: profiled(run, cfg, datamodule, s, device)
                                 for name, run in (("framework", run_framework),
                                                   ("bare", run_bare))}


if __name__ == "__main__":
    main()
