"""Results over many runs: find run folders (and W&B offline runs), group them by
configuration (seed ignored), and tabulate mean +- std, min, max, n and tests against a
baseline (paper 002: a configuration is known only from many runs).

The one owner of reading run folders (``collect``), of the statistics (``stats``) and of how
numbers and tables are written (``formatting``); paper 000's study (``mitoseg.study``) is a
client of all three. The configuration identity belongs to ``mitoseg.runs.identity``.

    from mitoseg.reporting import write_report
    write_report(["outputs/multirun/default/2026-01-01_10-00-00"], "reports/seeds",
                 metrics=["test/as"], baseline="model=unet_paper000")
"""

from mitoseg.reporting.collect import (Collection, RunRecord, collect_runs, find_run_folders,
                                       metric_values, read_run, wandb_run_record)
from mitoseg.reporting.stats import describe, holm, is_unstable, p_value, two_sample_test
from mitoseg.reporting.tables import Report, markdown, summarize_runs
from mitoseg.reporting.write import write_report
from mitoseg.reporting.wandb_offline import OfflineRun, read_offline_run

__all__ = ["Collection", "OfflineRun", "Report", "RunRecord", "collect_runs", "describe",
           "find_run_folders", "holm", "is_unstable", "markdown", "metric_values", "p_value",
           "read_offline_run", "read_run", "summarize_runs", "two_sample_test", "wandb_run_record",
           "write_report"]
