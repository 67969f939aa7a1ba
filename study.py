"""Paper 000's robustness and sensitivity study as one command: a thin wrapper of
mitoseg.study.

    python study.py                                  # quick preset (CPU, minutes)
    python study.py study_preset=paper               # the paper's protocol, real masks, GPU
    python study.py analyze_only=<study folder>      # analysis and report only
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv  # (importing it registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="study")
def main(cfg: DictConfig) -> None:
    from mitoseg.study.run import run_study

    run_guarded(run_study, cfg)


if __name__ == "__main__":
    sys.argv = normalize_argv(sys.argv)
    main()
