"""Score a trained checkpoint on a dataset split: a thin wrapper of mitoseg.evaluation.

    python evaluate.py ckpt_path=outputs/runs/default/<run>/checkpoints/best.ckpt
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv  # (importing it registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from mitoseg.evaluation.evaluate import evaluate

    run_guarded(evaluate, cfg)


if __name__ == "__main__":
    sys.argv = normalize_argv(sys.argv)
    main()
