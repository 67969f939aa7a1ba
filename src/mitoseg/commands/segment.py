"""``mitoseg-segment``: segment your own images with a trained checkpoint.

    mitoseg-segment ckpt_path=<run>/checkpoints/best.ckpt input=<image, stack or folder>
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv  # (importing it registers the config resolvers)
from mitoseg.config.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="segment")
def main(cfg: DictConfig) -> None:
    from mitoseg.evaluation.segment import segment

    run_guarded(segment, cfg)


def run() -> None:
    sys.argv = normalize_argv(sys.argv)
    main()


if __name__ == "__main__":
    run()
