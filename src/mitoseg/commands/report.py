"""Summarize many training runs (seeds x configurations): ``mitoseg-report``.

    mitoseg-report outputs/multirun/default/2026-01-01_10-00-00 --metric test/as \\
        --baseline model=unet_paper000 --test welch --unstable-std 0.01 --out reports/seeds
    mitoseg-report outputs/multirun/lucchi/ --metric iou_fg_over_volume \\
        --metric iou_fg_mean_per_slice --baseline model=unet2d_paper002 --out reports/lucchi
        # per inference protocol: the IoU pooled over all voxels, and its mean over slices

Writes report.md, summary.csv, runs.csv and boxplot_<metric>.png into --out (never over an
existing file). Failed and unfinished runs are listed, not dropped. W&B offline runs
(wandb/offline-run-*, e.g. copied from a cluster without their run folders) are read too.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mitoseg.console import console_logging
from mitoseg.errors import InputError

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("roots", nargs="+",
                        help="run folders, W&B offline run folders, or folders of them "
                             "(searched recursively)")
    parser.add_argument("--metric", action="append", default=[],
                        help="split/key from metrics.json (test/as, test/abd_px, test/iou_fg) "
                             "or a protocols.csv column (iou_fg_mean_per_slice; iou_fg_over_volume "
                             "or iou_fg: pooled over all voxels); each table names its average; "
                             "repeat for several; "
                             "default: the runs' optimized_metric")
    parser.add_argument("--baseline", default=None,
                        help="configuration label to test the others against (as printed in "
                             "the report, e.g. model=unet_paper000)")
    parser.add_argument("--test", choices=("welch", "student", "mannwhitney"), default="welch",
                        help="two-sided test against the baseline (default: welch)")
    parser.add_argument("--unstable-std", type=float, default=0.01,
                        help="flag a configuration whose std over runs exceeds this (0.01)")
    parser.add_argument("--unstable-std-for", action="append", default=[],
                        metavar="METRIC=STD", help="the threshold for one metric, e.g. "
                        "test/abd_px=0.5 (a distance needs another scale); repeatable")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help="an override key to leave out of the configuration identity "
                             "(besides seed, paths, logger, ...); repeatable")
    parser.add_argument("--mixed-protocols", action="store_true",
                        help="compare runs whose protocol cards (metrics.json protocol_card: "
                             "reconstruction, window, TTA, threshold, test set, ...) differ; "
                             "by default such a table is refused")
    parser.add_argument("--mixed-configs", action="store_true",
                        help="pool runs of one configuration (the same overrides) whose "
                             "composed config (.hydra/config.yaml) differs (other defaults: "
                             "another commit, an edited conf/ file); by default refused, the "
                             "keys named")
    parser.add_argument("--out", required=True, help="folder for the report files")
    return parser.parse_args(argv)


def per_metric(specs: list[str]) -> dict[str, float]:
    """['test/abd_px=0.5'] -> {'test/abd_px': 0.5}."""
    thresholds = {}
    for spec in specs:
        metric, _, value = spec.rpartition("=")
        try:
            thresholds[metric] = float(value)
        except ValueError:
            raise InputError(f"option '--unstable-std-for': expected METRIC=STD (e.g. "
                             f"test/abd_px=0.5), got '{spec}'") from None
        if not metric:
            raise InputError(f"option '--unstable-std-for': no metric in '{spec}'")
    return thresholds


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console_logging()
    from mitoseg.reporting import write_report

    try:
        written = write_report(args.roots, args.out, metrics=args.metric,
                               baseline=args.baseline, test=args.test,
                               unstable_std=args.unstable_std,
                               unstable_std_by_metric=per_metric(args.unstable_std_for),
                               ignore=args.ignore, mixed_protocols=args.mixed_protocols,
                               mixed_configs=args.mixed_configs)
    except InputError as error:
        log.error("mitoseg: error: %s", error)
        return 2
    log.info("Report written to %s: %s", written["report.md"].parent, ", ".join(written))
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
