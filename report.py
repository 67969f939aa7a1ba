"""Summarize many training runs (seeds x configurations): a thin wrapper of mitoseg.reporting
(``mitoseg-report`` after ``pip install``, from any folder).

    python report.py outputs/multirun/default/2026-01-01_10-00-00 --metric test/as \\
        --baseline model=unet_paper000 --test welch --unstable-std 0.01 --out reports/seeds
    python report.py outputs/multirun/lucchi/ --metric iou_fg_over_volume \\
        --metric iou_fg_mean_per_slice --baseline model=unet2d_paper002 --out reports/lucchi
        # per inference protocol: the IoU pooled over all voxels, and its mean over slices

Writes report.md, summary.csv, runs.csv and boxplot_<metric>.png into --out (never over an
existing file). Failed and unfinished runs are listed, not dropped. W&B offline runs
(wandb/offline-run-*, e.g. copied from a cluster without their run folders) are read too.
"""

from mitoseg.commands.report import run
from mitoseg.commands.report import main  # noqa: F401  (its argument parser, for the docs tests)

if __name__ == "__main__":
    run()
