"""OmegaConf resolvers used by the configs (registered once, on import of mitoseg.config)."""

from __future__ import annotations

import re
import zlib

from omegaconf import OmegaConf


def folder_suffix(override_dirname: str, max_length: int = 160) -> str:
    """'_' + a folder-name form of Hydra's override_dirname, or '' when there is none.

    Run folders are named after their overrides: ``model=fcn_paper000,seed=3`` becomes
    ``model-fcn_paper000+seed-3``. '=' and ',' are replaced because they are operators of
    Hydra's override grammar: a checkpoint path holding them could not be passed back as
    ``evaluate.py ckpt_path=...``. Slashes and other characters that would nest or break
    folder names become '-'. A name longer than ``max_length`` is cut and ends in a checksum
    of the whole, so distinct overrides never share a folder name.
    """
    if not override_dirname:
        return ""
    safe = override_dirname.replace("=", "-").replace(",", "+")
    safe = re.sub(r"[^\w.+\-]", "-", safe)
    if len(safe) > max_length:
        safe = f"{safe[: max_length - 9]}.{zlib.crc32(override_dirname.encode()):08x}"
    return "_" + safe


def run_dir(resume: object, default: str) -> str:
    """``hydra.run.dir``: the folder named by ``resume=<run folder>``, else ``default``."""
    if resume is None or str(resume) in ("auto", "never"):
        return default
    return str(resume)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("mitoseg.suffix"):
        OmegaConf.register_new_resolver("mitoseg.suffix", folder_suffix)
    if not OmegaConf.has_resolver("mitoseg.run_dir"):
        OmegaConf.register_new_resolver("mitoseg.run_dir", run_dir)
