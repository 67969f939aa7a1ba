"""What a run folder records at start-up: command, seeds, environment, code version."""

from __future__ import annotations

import datetime as dt
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mitoseg.runs.paths import display_command

PACKAGES = ("mitoseg", "torch", "pytorch-lightning", "hydra-core", "omegaconf", "numpy",
            "scipy", "scikit-image", "torchmetrics", "wandb")


def environment() -> dict[str, Any]:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {
        "python": sys.version.split()[0], "platform": platform.platform(),
        "hostname": socket.gethostname(), "packages": versions,
        "torch_threads": torch.get_num_threads(), "cuda_available": cuda,
        "cuda_device": torch.cuda.get_device_name(0) if cuda else None,
    }


def git_state(folder: Path | None = None) -> dict[str, Any]:
    folder = folder or Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": None if status is None else bool(status)}


def run_info(seed: int, data_seed: int, extra: dict[str, Any] | None = None,
             data_root: str | None = None) -> dict[str, Any]:
    """The start-up record of a run; paths in the command are named as
    ``mitoseg.runs.paths.display_path`` names them (``data_root``: ``paths.shared_data``)."""
    argv = display_command(sys.argv, data_root)
    return {
        "command": " ".join([Path(sys.argv[0]).name, *argv[1:]]), "argv": argv,
        "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed, "data_seed": data_seed,
        "git": git_state(), "environment": environment(), **(extra or {}),
    }
