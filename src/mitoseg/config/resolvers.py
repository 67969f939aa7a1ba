"""OmegaConf resolvers used by the configs (registered once, on import of mitoseg.config)."""

from __future__ import annotations

import re
import zlib
from typing import Any

from omegaconf import OmegaConf


def folder_suffix(override_dirname: str, max_length: int = 160) -> str:
    """'_' + a folder-name form of Hydra's override_dirname, or '' when there is none.

    Run folders are named after their overrides: ``model=fcn_paper000,seed=3`` becomes
    ``model-fcn_paper000+seed-3``. '=' and ',' are replaced because they are operators of
    Hydra's override grammar: a checkpoint path holding them could not be passed back as
    ``evaluate.py ckpt_path=...``. Slashes and other characters that would nest or break
    folder names become '-'. A name longer than ``max_length`` is cut and ends in a checksum
    of the whole, so distinct overrides never share a folder name; before the cut, a seed
    override moves to the front (Hydra sorts overrides by key, which puts ``seed`` late), so
    the runs of a seed sweep stay told apart by eye.
    """
    if not override_dirname:
        return ""
    checksum = zlib.crc32(override_dirname.encode())
    safe = _folder_form(override_dirname)
    if len(safe) > max_length:
        safe = _folder_form(_seed_first(override_dirname))
        safe = f"{safe[: max_length - 9]}.{checksum:08x}"
    return "_" + safe


def _folder_form(override_dirname: str) -> str:
    safe = override_dirname.replace("=", "-").replace(",", "+")
    return re.sub(r"[^\w.+\-]", "-", safe)


_SEED = re.compile(r"(?:^|,)(seed=-?\d+)(?=,|$)")


def _seed_first(override_dirname: str) -> str:
    """``a=1,seed=3,z=2`` -> ``seed=3,a=1,z=2``; unchanged without a plain integer seed."""
    match = _SEED.search(override_dirname)
    if match is None:
        return override_dirname
    rest = override_dirname[:match.start()] + override_dirname[match.end():]
    return ",".join(part for part in (match.group(1), rest.lstrip(",")) if part)


def run_dir(*folders_then_default: object) -> str:
    """``hydra.run.dir``: the first folder given to continue (``resume=<run folder>``,
    ``analyze_only=<study folder>``; None, 'auto' and 'never' name none), else the last
    argument, the new folder."""
    *folders, default = folders_then_default
    return _continued(folders) or str(default)


def hydra_subdir(*continued_then_time: object) -> str:
    """``hydra.output_subdir``: ``.hydra`` for a new folder; ``.hydra/continued-<time>`` when a
    command continues a folder (``resume=<run folder>``, ``analyze_only=<study folder>``), so
    Hydra's record of the command that made the folder (its ``overrides.yaml``, which
    ``report.py`` groups runs by) is not replaced by the continuing command's."""
    *folders, time = continued_then_time
    return f".hydra/continued-{time}" if _continued(folders) else ".hydra"


def _continued(folders: list[object]) -> str | None:
    """The first of ``folders`` that names a folder to continue (not None, 'auto', 'never')."""
    return next((str(f) for f in folders if f is not None and str(f) not in ("auto", "never")),
                None)


ACCELERATORS = ("gpu", "cuda", "mps", "tpu")


def on_accelerator(accelerator: object, when_accelerator: str, otherwise: str) -> str:
    """``when_accelerator`` if the trainer's accelerator is a named accelerator (gpu, cuda,
    mps, tpu), else ``otherwise``. 'auto' counts as not one, so a command gives the same result
    on a machine with and without a GPU unless the GPU is asked for (trainer=gpu)."""
    return when_accelerator if str(accelerator).lower() in ACCELERATORS else otherwise


def for_dims(spatial_dims: object, for_2d: Any, for_3d: Any) -> Any:
    """``for_3d`` when ``spatial_dims`` is 3, else ``for_2d``: a data set's patch size follows
    the chosen model (``${mitoseg.for_dims:${oc.select:model.spatial_dims,2},[256,256],[80,80,80]}``),
    so a 3D model gets 3D patches without a further option."""
    return for_3d if int(spatial_dims) == 3 else for_2d


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("mitoseg.for_dims"):
        OmegaConf.register_new_resolver("mitoseg.for_dims", for_dims)
    if not OmegaConf.has_resolver("mitoseg.on_accelerator"):
        OmegaConf.register_new_resolver("mitoseg.on_accelerator", on_accelerator)
    if not OmegaConf.has_resolver("mitoseg.suffix"):
        OmegaConf.register_new_resolver("mitoseg.suffix", folder_suffix)
    if not OmegaConf.has_resolver("mitoseg.run_dir"):
        OmegaConf.register_new_resolver("mitoseg.run_dir", run_dir)
    if not OmegaConf.has_resolver("mitoseg.hydra_subdir"):
        OmegaConf.register_new_resolver("mitoseg.hydra_subdir", hydra_subdir)
