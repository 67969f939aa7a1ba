"""``mitoseg-evaluate``: score a trained checkpoint on a dataset split.

    mitoseg-evaluate ckpt_path=outputs/runs/default/<run>/checkpoints/best.ckpt
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv  # (importing it registers the config resolvers)
from mitoseg.config.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mitoseg.evaluation.evaluate import evaluate

    run_guarded(evaluate, cfg)


def run() -> None:
    sys.argv = normalize_argv(sys.argv)
    main()


if __name__ == "__main__":
    run()
