"""Segment your own images with a trained checkpoint: a thin wrapper of mitoseg.evaluation.

    python segment.py ckpt_path=<run>/checkpoints/best.ckpt input=<image, stack or folder>
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv  # (importing it registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="segment")
def main(cfg: DictConfig) -> None:
    from mitoseg.evaluation.segment import segment

    run_guarded(segment, cfg)


if __name__ == "__main__":
    sys.argv = normalize_argv(sys.argv)
    main()
