"""OmegaConf resolvers used by the configs (registered once, on import of mitoseg.config)."""

from __future__ import annotations

import re
import zlib

from omegaconf import OmegaConf


def folder_suffix(override_dirname: str, max_length: int = 160) -> str:
    """'_' + a file-name-safe form of Hydra's override_dirname, or '' when there is none.

    Run folders are named after their overrides (seed=3,model=fcn_paper000); slashes and
    other characters that would nest or break folder names are replaced. A name longer than
    ``max_length`` is cut and ends in a checksum of the whole, so distinct overrides never
    share a folder name.
    """
    if not override_dirname:
        return ""
    safe = re.sub(r"[^\w=,.+\-]", "-", override_dirname)
    if len(safe) > max_length:
        safe = f"{safe[: max_length - 9]}~{zlib.crc32(override_dirname.encode()):08x}"
    return "_" + safe


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("mitoseg.suffix"):
        OmegaConf.register_new_resolver("mitoseg.suffix", folder_suffix)
