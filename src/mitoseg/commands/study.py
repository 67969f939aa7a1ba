"""``mitoseg-study``: paper 000's robustness and sensitivity study as one command.

    mitoseg-study                                  # quick preset (CPU, minutes)
    mitoseg-study study_preset=paper               # the paper's protocol, real masks, GPU
    mitoseg-study analyze_only=<study folder>      # analysis and report only
"""

import sys

import hydra
from omegaconf import DictConfig

from mitoseg.cli import run_guarded
from mitoseg.config import normalize_argv  # (importing it registers the config resolvers)
from mitoseg.config.paths import config_dir


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="study")
def main(cfg: DictConfig) -> None:
    from mitoseg.study.run import run_study

    run_guarded(run_study, cfg)


def run() -> None:
    sys.argv = normalize_argv(sys.argv)
    main()


if __name__ == "__main__":
    run()
