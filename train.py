"""Train, validate and test one configuration (or a multirun): a thin wrapper of mitoseg.training.

    python train.py                              # U-Net on embedded synthetic data, CPU
    python train.py model=fcn_paper000 dataset.condition.snr=1
    python train.py -m seed=0..9                 # ten runs, seeds 0 to 9
    python train.py model=attention_unet -m seed=0..9   # the flag may sit between overrides
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from mitoseg.training.train import metric_value, train

    metrics = run_guarded(train, cfg)
    return None if metrics is None else metric_value(metrics, cfg.optimized_metric)


if __name__ == "__main__":
    sys.argv = normalize_argv(sys.argv)
    main()
