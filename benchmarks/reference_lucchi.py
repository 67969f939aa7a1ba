"""The bare yardstick for Lucchi: a short plain-PyTorch training loop and its test score.

The control every Lucchi recipe of the framework is compared with, on the same split and the
same device. It takes from mitoseg only the split (the data module's volumes and training /
validation slices, so both see the same data) and the network class (paper 002's 2D U-Net,
1.94 M parameters, He init); cropping, augmentation, training, test-time augmentation,
Z-filter and IoU are written here again, plainly, so that they also check the framework's.
Voxels the data set ignores (Kasthuri++'s label 2, outside the tissue; an ``ignore`` value of
``dataset=em_volumes``) count in neither the loss nor the IoU, as in the framework.

Default recipe (``../shared/guides/fidelity.md``): all training slices scaled by their mean and
std, uniform random 256 x 256 crops, rot90 + flips, BCE, AdamW 2e-3 (weight decay 1e-4) with a
one-cycle schedule, batch 16, 4,000 steps, bf16 autocast, channels-last, last weights kept;
full-image prediction of the test volume, plain and with 8-fold TTA, each with and without a
z-median of 5. Options change one factor at a time (the ablation of issue 11):

    --scaling scale          x / the dtype's range (uint8: 255) instead of the z-score
    --rotation free          also rotate by a uniform angle, reflected borders, on half the crops
    --val-fraction 0.1       hold out the data module's validation slices (not trained on)
    --keep best              keep the weights with the lowest validation loss (needs validation)
    --schedule cosine        cosine annealing from the lr instead of one-cycle
    --placement centred      windows centred on a uniform voxel, moved inside (framework default)

    python benchmarks/reference_lucchi.py                         # GPU, shared Lucchi, holdout
    python benchmarks/reference_lucchi.py --override dataset.volumes.test=official
    python benchmarks/reference_lucchi.py --override dataset.volumes.test=tuning  # for choices
    python benchmarks/reference_lucchi.py --quick                 # CPU, synthetic EM, seconds
    python benchmarks/reference_lucchi.py --quick --device cuda   # the same on the GPU
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from _common import add_common_args, apply_threads, json_report, pick_device

CONF = Path(__file__).resolve().parents[1] / "conf"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(parser)
    parser.add_argument("--dataset", default=None,
                        help="a conf/dataset EM option (default lucchi; synthetic_em with --quick)")
    parser.add_argument("--override", nargs="*", default=[],
                        help="Hydra overrides of the data set, e.g. dataset.volumes.root=...")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default 4000 (--quick: 6)")
    parser.add_argument("--batch", type=int, default=None, help="default 16 (--quick: 2)")
    parser.add_argument("--crop", type=int, default=None, help="default 256 (--quick: 32)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--precision", default=None, choices=["bf16", "fp32"],
                        help="default bf16 on a GPU, fp32 on the CPU")
    parser.add_argument("--scaling", default="zscore", choices=["zscore", "scale"])
    parser.add_argument("--rotation", default="rot90", choices=["rot90", "free"])
    parser.add_argument("--val-fraction", type=float, default=0.0)
    parser.add_argument("--keep", default="last", choices=["last", "best"])
    parser.add_argument("--eval-every", type=int, default=250,
                        help="validation-loss check every N steps with --keep best")
    parser.add_argument("--schedule", default="onecycle", choices=["onecycle", "cosine"])
    parser.add_argument("--placement", default="uniform", choices=["uniform", "centred"])
    parser.add_argument("--max-test-slices", type=int, default=None,
                        help="score only the first N test slices (a CPU check; default all)")
    parser.add_argument("--tag", default="", help="a label copied into the JSON")
    args = parser.parse_args(argv)
    quick = args.quick
    args.device = args.device or ("cpu" if quick else None)  # a smoke test, even beside a GPU
    args.dataset = args.dataset or ("synthetic_em" if quick else "lucchi")
    args.steps = args.steps or (6 if quick else 4000)
    args.batch = args.batch or (2 if quick else 16)
    args.crop = args.crop or (32 if quick else 256)
    if args.keep == "best" and args.val_fraction <= 0:
        parser.error("--keep best needs validation slices: give --val-fraction > 0")
    return args


def load_split(args: argparse.Namespace) -> dict[str, Any]:
    """The data module's volumes and slices for this data set, split seed and overrides;
    ``*_valid``: True where a voxel counts (None when the data set ignores none)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import mitoseg.config  # noqa: F401  (registers the config resolvers)

    overrides = [f"dataset={args.dataset}", "augmentation=none",
                 f"dataset.val_fraction={args.val_fraction}",
                 "dataset.num_workers=0", *args.override]
    if args.quick:
        overrides += ["dataset.patch_size=[32,32]"]
        if args.dataset == "synthetic_em":
            overrides += ["dataset.volumes.train_shape=[10,64,64]",
                          "dataset.volumes.test_shape=[6,64,64]"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup()
    volumes = datamodule.volumes
    split: dict[str, Any] = {"train_z": datamodule.train_z, "val_z": datamodule.val_z,
                             "description": volumes.description, "data": datamodule.describe()}
    for part in ("train", "test"):
        volume = volumes.only(part)
        split[f"{part}_image"] = np.array(volume.image)
        split[f"{part}_labels"] = np.asarray(volume.labels) > 0
        split[f"{part}_valid"] = volume.valid()
    return split


def target_codes(labels: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    """Labels as one array that crops cut in one gather: 1 = mitochondrion, 0 = background,
    and with ``valid`` 2 = ignored."""
    if valid is None:
        return labels
    return np.where(valid, labels.astype(np.uint8), np.uint8(2))


def split_codes(codes: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) codes of ``target_codes`` -> (B, 2, H, W) float: mask, valid; the
    augmentation moves the valid channel exactly as the mask (and reflects it at borders)."""
    if codes.dtype == torch.bool:  # nothing ignored
        return codes.float()
    return torch.cat([codes == 1, codes != 2], 1).float()


def fit_scaling(train_raw: torch.Tensor, scaling: str) -> tuple[float, float, dict[str, Any]]:
    """(mean, std, as reported) of the input scaling x -> (x - mean) / std: "zscore" from the
    training slices, "scale" by the integer dtype's range (uint8: 255, uint16: 65535), as the
    framework's normalize=scale."""
    if scaling == "zscore":
        mean = train_raw.double().mean().item()
        std = train_raw.double().std(unbiased=False).item()
        return mean, std, {"mode": "training_zscore", "mean": round(mean, 4), "std": round(std, 4)}
    if train_raw.dtype.is_floating_point or train_raw.dtype == torch.bool:
        raise ValueError(f"--scaling scale needs integer intensities (uint8, uint16, ...), got "
                         f"{str(train_raw.dtype).removeprefix('torch.')}; use --scaling zscore")
    scale = float(torch.iinfo(train_raw.dtype).max)
    return 0.0, scale, {"mode": "scale", "scale": scale}


def crops(image: torch.Tensor, labels: torch.Tensor, batch: int, crop: int, placement: str,
          generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` random (crop x crop) windows of (N, H, W) volumes already on the device."""
    n, height, width = image.shape
    device = image.device
    z = torch.randint(n, (batch,), generator=generator, device=device)
    if placement == "uniform":
        y0 = torch.randint(height - crop + 1, (batch,), generator=generator, device=device)
        x0 = torch.randint(width - crop + 1, (batch,), generator=generator, device=device)
    else:  # centre uniform over the slice, window moved inside
        cy = torch.randint(height, (batch,), generator=generator, device=device)
        cx = torch.randint(width, (batch,), generator=generator, device=device)
        y0 = (cy - crop // 2).clamp(0, height - crop)
        x0 = (cx - crop // 2).clamp(0, width - crop)
    offsets = torch.arange(crop, device=device)
    rows = (y0[:, None] + offsets)[:, :, None]
    cols = (x0[:, None] + offsets)[:, None, :]
    return image[z[:, None, None], rows, cols][:, None], labels[z[:, None, None], rows, cols][:, None]


def augment(x: torch.Tensor, y: torch.Tensor, rotation: str,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: a quarter turn (k = 0..3), vertical and horizontal flips with p = 0.5; with
    rotation="free" also a uniform angle on half the samples (bilinear, reflected borders, the
    mask re-thresholded at 0.5)."""
    batch, device = x.shape[0], x.device
    turns = torch.randint(4, (batch,), generator=generator, device=device).view(-1, 1, 1, 1)
    flips = torch.rand((batch, 2), generator=generator, device=device) < 0.5
    # every turn computed, the drawn one selected: no data-dependent shapes, so the GPU queue
    # never has to drain (square crops keep their shape under rot90)
    out_x, out_y = x, y
    for k in range(1, 4):
        out_x = torch.where(turns == k, torch.rot90(x, k, dims=(-2, -1)), out_x)
        out_y = torch.where(turns == k, torch.rot90(y, k, dims=(-2, -1)), out_y)
    for column, axis in ((0, -2), (1, -1)):
        flip = flips[:, column].view(-1, 1, 1, 1)
        out_x = torch.where(flip, out_x.flip(axis), out_x)
        out_y = torch.where(flip, out_y.flip(axis), out_y)
    if rotation == "free":
        angle = (torch.rand(batch, generator=generator, device=device) * 2 - 1) * math.pi
        angle = torch.where(torch.rand(batch, generator=generator, device=device) < 0.5,
                            angle, torch.zeros_like(angle))
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros_like(cos)], 1),
                             torch.stack([sin, cos, torch.zeros_like(cos)], 1)], 1)
        grid = F.affine_grid(theta, list(out_x.shape), align_corners=False)
        both = torch.cat([out_x, out_y], 1)
        both = F.grid_sample(both, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)
        out_x, out_y = both[:, :1], (both[:, 1:] > 0.5).to(out_y.dtype)
    return out_x, out_y


def tta_probabilities(net: torch.nn.Module, image: torch.Tensor, tta: bool) -> torch.Tensor:
    """Sigmoid over one (1, 1, H, W) image; with ``tta`` the mean over its 8 dihedral views,
    each mapped back."""
    if not tta:
        return torch.sigmoid(net(image).float())
    total = torch.zeros_like(image)
    for k in range(4):
        for flip in (False, True):
            view = torch.rot90(image, k, dims=(-2, -1))
            view = view.flip(-1) if flip else view
            out = torch.sigmoid(net(view).float())
            out = out.flip(-1) if flip else out
            total += torch.rot90(out, -k, dims=(-2, -1))
    return total / 8


def z_median(volume: torch.Tensor, size: int) -> torch.Tensor:
    """Median over ``size`` consecutive slices, edges reflected with the edge slice repeated
    (d c b a | a b c d), as scipy's mode 'reflect'; a window wider than the volume reflects
    again (period 2 x depth), so one slice is its own median."""
    half = size // 2
    depth = volume.shape[0]
    index = [z % (2 * depth) if z % (2 * depth) < depth else 2 * depth - 1 - z % (2 * depth)
             for z in range(-half, depth + half)]
    padded = volume[torch.tensor(index, device=volume.device)]
    windows = padded.unfold(0, size, 1)  # (D, H, W, size)
    return windows.median(dim=-1).values


def iou_fg(truth: torch.Tensor, predicted: torch.Tensor,
           valid: torch.Tensor | None = None) -> tuple[float, float]:
    """Foreground IoU over the volume, and its mean over slices (empty in both: 1, in the
    volume as in a slice).

    With ``valid`` (bool, True = the voxel counts) only valid voxels count, whatever truth and
    prediction hold elsewhere, and slices without a valid voxel are left out of the mean (as
    ``mitoseg.metrics.volume`` with ``valid``)."""
    if valid is not None:
        if not valid.any():
            raise ValueError(f"every voxel of the {tuple(valid.shape)} test volume is ignored: "
                             "nothing to score")
        truth, predicted = truth & valid, predicted & valid
    inter = (truth & predicted).flatten(1).sum(1).double()
    union = (truth | predicted).flatten(1).sum(1).double()
    per_slice = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    if valid is not None:
        per_slice = per_slice[valid.flatten(1).any(1)]
    pooled = inter.sum() / union.sum() if union.sum() > 0 else 1.0  # both empty: agreement
    return float(pooled), float(per_slice.mean())


def bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Mean BCE on logits; with ``valid`` (float, 1 = counts) the mean over the valid voxels of
    the batch (0 when none is), so ignored voxels get no gradient."""
    if valid is None:
        return F.binary_cross_entropy_with_logits(logits, target)
    per_voxel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (per_voxel * valid).sum() / valid.sum().clamp(min=1)


def validation_loss(net: torch.nn.Module, image: torch.Tensor, codes: torch.Tensor,
                    crop: int, dtype: torch.dtype | None) -> float:
    """Mean BCE over non-overlapping crops tiling the validation slices (``codes`` as
    ``target_codes``; ignored voxels left out of each crop's mean)."""
    net.eval()
    _, height, width = image.shape
    losses = []
    with torch.no_grad(), torch.autocast(image.device.type, dtype=dtype or torch.float32,
                                         enabled=dtype is not None):
        for y in range(0, height - crop + 1, crop):
            for x in range(0, width - crop + 1, crop):
                logits = net(image[:, None, y:y + crop, x:x + crop])
                target = split_codes(codes[:, None, y:y + crop, x:x + crop])
                losses.append(bce(logits.float(), target[:, :1],
                                  target[:, 1:] if target.shape[1] > 1 else None).item())
    net.train()
    return float(np.mean(losses))


def run(args: argparse.Namespace, device: torch.device, report: dict[str, Any]) -> None:
    from mitoseg.models.nets.unet_paper002 import UNetPaper002

    split = load_split(args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    train_z, val_z = split["train_z"], split["val_z"]
    raw = torch.from_numpy(split["train_image"]).to(device)
    labels = torch.from_numpy(target_codes(split["train_labels"],
                                           split["train_valid"])).to(device)
    train_raw = raw[torch.tensor(train_z, device=device)]
    mean, std, normalization = fit_scaling(train_raw, args.scaling)
    scale = lambda v: (v.float() - mean) / std  # noqa: E731
    train_image = scale(train_raw)
    train_labels = labels[torch.tensor(train_z, device=device)]
    dtype = {"bf16": torch.bfloat16, "fp32": None}[args.precision or (
        "bf16" if device.type == "cuda" else "fp32")]
    channels_last = device.type == "cuda"
    net = UNetPaper002(spatial_dims=2).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    if args.schedule == "onecycle":
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr,
                                                       total_steps=args.steps)
    else:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    if val_z:
        val_index = torch.tensor(val_z, device=device)
        val_image, val_labels = scale(raw[val_index]), labels[val_index]
    best = (math.inf, None, -1)
    net.train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = crops(train_image, train_labels, args.batch, args.crop, args.placement, generator)
        x, y = augment(x, split_codes(y), args.rotation, generator)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = net(x)
        loss = bce(logits.float(), y[:, :1], y[:, 1:] if y.shape[1] > 1 else None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if args.keep == "best" and (step % args.eval_every == 0 or step == args.steps):
            value = validation_loss(net, val_image, val_labels, args.crop, dtype)
            if value < best[0]:
                best = (value, copy.deepcopy(net.state_dict()), step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_seconds = time.perf_counter() - started
    if args.keep == "best":
        net.load_state_dict(best[1])
    net.eval()
    kept = slice(0, args.max_test_slices)
    test_image = scale(torch.from_numpy(split["test_image"][kept]).to(device))
    truth = torch.from_numpy(split["test_labels"][kept]).to(device)
    valid = None if split["test_valid"] is None else \
        torch.from_numpy(split["test_valid"][kept]).to(device)
    started = time.perf_counter()
    scores: dict[str, Any] = {}
    with torch.no_grad():
        for tta in (False, True):
            probabilities = torch.stack([tta_probabilities(net, test_image[z][None, None], tta)[0, 0]
                                         for z in range(test_image.shape[0])])
            for size in (0, 5):
                filtered = z_median(probabilities, size) if size else probabilities
                volume, per_slice = iou_fg(truth, filtered > 0.5, valid)
                name = f"full_image{'_tta' if tta else ''}{f'_z{size}' if size else ''}"
                scores[name] = {"iou_fg": round(volume, 5), "iou_fg_mean_per_slice":
                                round(per_slice, 5)}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    headline = scores["full_image_tta_z5"]  # averaged over the slices, as paper 002 and the
    report["results"] = {  # framework's test/iou_fg; the voxels pooled beside it
        "iou_fg": headline["iou_fg_mean_per_slice"], "iou_fg_over_volume": headline["iou_fg"],
        "protocols": scores,
        "train_seconds": round(train_seconds, 2),
        "images_per_second": round(args.steps * args.batch / train_seconds, 1),
        "inference_seconds": round(time.perf_counter() - started, 2),
        "final_loss": round(loss.item(), 5),
        "best_step": best[2] if args.keep == "best" else None,
        "normalization": normalization,  # what this loop used (not the data module's)
        "data": {"description": split["description"], "train_slices": len(train_z),
                 "ignored_voxels": {part: 0 if split[f"{part}_valid"] is None else
                                    int((~split[f"{part}_valid"]).sum())
                                    for part in ("train", "test")},
                 "val_slices": len(val_z), "test_shape": list(split["test_image"].shape),
                 "scored_test_shape": list(test_image.shape),  # --max-test-slices cuts it
                 "split": {k: split["data"].get(k) for k in ("val_slices", "notes")}},
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    apply_threads(args)
    device = pick_device(args.device)
    settings = {k: v for k, v in vars(args).items() if k not in ("device", "threads")}
    with json_report(settings, device) as report:
        run(args, device, report)


if __name__ == "__main__":
    main()
