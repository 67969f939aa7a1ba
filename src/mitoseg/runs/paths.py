"""How result files name paths: relative to the project root or to the data root.

Run records (run_info.json, data.json, metrics.json, summary.json, segmentation.json) and
reports name every file or folder so that they read the same on every machine:

- inside the project root, the folder the command runs in (where the configured relative
  paths start: ``outputs/``, ``../shared/data``): relative to it, e.g.
  ``outputs/runs/lucchi_unet2d/<run>/checkpoints/best.ckpt``;
- inside the data root (``paths.shared_data``: ``$MITOSEG_SHARED_DATA``, else
  ``../shared/data``): ``${paths.shared_data}/`` and the path below it, e.g.
  ``${paths.shared_data}/lucchi``, as the dataset configs write it;
- inside both (a data root under the project, or the reverse): the deeper root's form;
- anything else (a temporary folder, another disk): the absolute path, since no root holds it.
  A relative path outside both roots stays as it was given (``../elsewhere/x``).

The resolved ``config.yaml``, checkpoints and Hydra's own ``.hydra/`` files keep the paths
the code ran with: resuming a run and the study's analysis read them back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

DATA_ROOT = "${paths.shared_data}"


def default_data_root() -> str:
    """The data root of ``conf/paths/default.yaml`` (``paths.shared_data``) when not given."""
    return os.environ.get("MITOSEG_SHARED_DATA") or "../shared/data"


def _below(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (both absolute) when ``root`` holds it, else None."""
    if path == root:
        return "."
    prefix = root.rstrip(os.sep) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else None


def display_path(path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> str:
    """``path`` as result files name it (see the module docstring); POSIX separators.

    Args:
        path: absolute, or relative to the working directory (as the code opens it).
        data_root: ``paths.shared_data`` of the run; None: ``default_data_root()``.
    """
    given = os.fspath(path)
    roots = {"": os.getcwd(), DATA_ROOT: os.fspath(data_root or default_data_root())}
    best: tuple[int, str] | None = None
    # lexical paths first (a symlinked outputs/ stays inside the project), then real ones
    for resolve in (os.path.abspath, os.path.realpath):
        target = resolve(given)
        for name, root in roots.items():
            root = resolve(root)
            rest = _below(target, root)
            if rest is not None and (best is None or len(root) > best[0]):
                joined = rest if not name else name if rest == "." else f"{name}/{rest}"
                best = (len(root), Path(joined).as_posix())
        if best is not None:
            return best[1]
    return os.path.normpath(given) if not os.path.isabs(given) else given


def display_argument(argument: str, data_root: str | os.PathLike | None = None) -> str:
    """A command-line argument with an absolute path in it (the script, or the value of a
    ``key=/abs/path`` override) in ``display_path`` form; anything else unchanged."""
    key, equals, value = argument.partition("=") if "=" in argument else ("", "", argument)
    if not os.path.isabs(value):
        return argument
    return f"{key}{equals}{display_path(value, data_root)}"


def display_command(argv: Sequence[str], data_root: str | os.PathLike | None = None) -> list[str]:
    return [display_argument(str(argument), data_root) for argument in argv]


SHOWN_RUNS = 3  # run folders a message names, then a count


def display_runs(folders: Sequence[str | os.PathLike]) -> str:
    """Run folders as messages name them: how many, the first few (``display_path``), then a
    count of the rest: ``5 run(s): outputs/a, outputs/b, outputs/c and 2 more``."""
    shown = ", ".join(display_path(folder) for folder in folders[:SHOWN_RUNS])
    more = len(folders) - SHOWN_RUNS
    return f"{len(folders)} run(s): {shown}" + (f" and {more} more" if more > 0 else "")
