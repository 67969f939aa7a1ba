"""``mitoseg-train``: train, validate and test one configuration (or a multirun).

    mitoseg-train                              # U-Net on embedded synthetic data, CPU
    mitoseg-train model=fcn_paper000 dataset.condition.snr=1
    mitoseg-train -m seed=0..9                 # ten runs, seeds 0 to 9
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv
from mitoseg.config.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> float | None:
    from mitoseg.training.train import metric_value, train

    metrics = run_guarded(train, cfg)
    return None if metrics is None else metric_value(metrics, cfg.optimized_metric)


def run() -> None:
    sys.argv = normalize_argv(sys.argv)
    main()


if __name__ == "__main__":
    run()
