"""OmegaConf resolvers used by the configs (registered once, on import of mitoseg.config)."""

from __future__ import annotations

import re

from omegaconf import OmegaConf


def folder_suffix(override_dirname: str, max_length: int = 120) -> str:
    """'_' + a file-name-safe form of Hydra's override_dirname, or '' when there is none.

    Run folders are named after their overrides (seed=3,model=fcn_paper000); slashes and
    other characters that would nest or break folder names are replaced.
    """
    if not override_dirname:
        return ""
    safe = re.sub(r"[^\w=,.+\-]", "-", override_dirname)
    return "_" + safe[:max_length]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("mitoseg.suffix"):
        OmegaConf.register_new_resolver("mitoseg.suffix", folder_suffix)
