"""Reports over many training runs: find run folders (and W&B offline runs), group them by
configuration (seed ignored), and tabulate mean +- std, min, max, n and tests against a
baseline (paper 002: a configuration is known only from many runs).

    from mitoseg.reporting import write_report
    write_report(["outputs/multirun/default/2026-01-01_10-00-00"], "reports/seeds",
                 metrics=["test/as"], baseline="model=unet_paper000")
"""

from mitoseg.reporting.collect import (Collection, RunRecord, collect_runs, find_run_folders,
                                       metric_values, read_run, wandb_run_record)
from mitoseg.reporting.stats import describe, holm, is_unstable, p_value
from mitoseg.reporting.tables import Report, markdown, summarize, write_report
from mitoseg.reporting.wandb_offline import OfflineRun, read_offline_run

__all__ = ["Collection", "OfflineRun", "Report", "RunRecord", "collect_runs", "describe",
           "find_run_folders", "holm", "is_unstable", "markdown", "metric_values", "p_value",
           "read_offline_run", "read_run", "summarize", "wandb_run_record", "write_report"]
