"""Loading a trained network from a checkpoint file, which is treated as untrusted input."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf
from torch import nn

from mitoseg.data.normalization import Normalization
from mitoseg.errors import InputError


def load_network(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a mitoseg checkpoint (eval mode) and the config it was trained with;
    the config's ``normalization`` entry is the input scaling training used (see
    ``stored_normalization``).

    ``torch.load(weights_only=True)`` refuses anything but tensors and plain containers, so a
    checkpoint from elsewhere cannot run code on load. The network is rebuilt from the config
    stored in the checkpoint, then its weights are loaded strictly; the stored sections that
    evaluation and segmentation build may name mitoseg's own classes and functions only
    (``check_stored_targets``), since Hydra would call any importable callable they name.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"checkpoint not found: '{path}' (expected a .ckpt written by train.py, "
                         "e.g. outputs/runs/<experiment>/<run>/checkpoints/best.ckpt)")
    checkpoint = _safe_load(path)
    config = checkpoint.get("mitoseg_config") if isinstance(checkpoint, dict) else None
    if not config or "model" not in config or "state_dict" not in checkpoint:
        raise InputError(f"checkpoint '{path}' is not a mitoseg checkpoint (no stored config "
                         "or state_dict)")
    check_stored_targets(config, path)
    net = instantiate(OmegaConf.create(config["model"]))
    _put_weights(net, checkpoint, path, "the stored model config")
    config = dict(config)
    config["normalization"] = stored_normalization(checkpoint, path).to_dict()
    return net.eval(), config


# the stored config sections that evaluate.py, segment.py and the Predictor build from a
# checkpoint, and the package each may take its classes and functions from
TRUSTED_PACKAGES = {"model": "mitoseg.models.", "dataset": "mitoseg.data.",
                    "postproc": "mitoseg.postproc."}
UNTRUSTED_MODULES = ("mitoseg.data.download",)  # fetches and writes files: never for a checkpoint


def check_stored_targets(config: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint whose stored model, dataset or post-processing config names, at any
    depth, a ``_target_`` that is not a class or function defined in that section's mitoseg
    package (``trusted_target``): Hydra's ``instantiate`` calls whatever it names, e.g.
    ``pathlib.Path.write_text``, so a checkpoint from elsewhere could write files even though
    ``weights_only=True`` keeps its pickle from running code."""
    for section, package in TRUSTED_PACKAGES.items():
        for where, target in _targets(config.get(section), section):
            if not trusted_target(target, package):
                raise InputError(f"checkpoint '{path}': its stored config names {target!r} at "
                                 f"'{where}'; a checkpoint may only build classes and functions "
                                 f"defined in {package}*, so it is refused (not from train.py, "
                                 "or altered)")


def trusted_target(target: Any, package: str) -> bool:
    """Whether ``target`` names a class or function defined at the top of a module of
    ``package``. The name alone does not tell: ``mitoseg.evaluation.checkpoints.Path`` is
    pathlib's ``Path``, reached through an import. So only names under ``package`` are
    resolved (that imports mitoseg's own modules only), and the object found must be defined
    there."""
    if not isinstance(target, str) or not target.startswith(package) or \
            target.startswith(UNTRUSTED_MODULES):
        return False
    try:
        found = get_object(target)
    except Exception:  # noqa: BLE001 - a name that does not resolve is not trusted
        return False
    module = str(getattr(found, "__module__", ""))
    return ((inspect.isclass(found) or inspect.isfunction(found))
            and "." not in getattr(found, "__qualname__", ".")
            and module.startswith(package) and not module.startswith(UNTRUSTED_MODULES))


def _targets(node: Any, where: str) -> list[tuple[str, Any]]:
    """(path, value) of every ``_target_`` in a config tree of dicts and lists."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_":
                found.append((f"{where}._target_", value))
            else:
                found += _targets(value, f"{where}.{key}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found += _targets(value, f"{where}[{index}]")
    return found


def stored_normalization(checkpoint: dict[str, Any], path: str | Path = "checkpoint"
                         ) -> Normalization:
    """The input scaling a checkpoint was trained with.

    Checkpoints store it (``mitoseg_normalization``). Older ones did not: their EM training
    divided uint8 intensities by 255 (whatever ``dataset.normalize`` said) and their
    fluorescence training applied ``dataset.normalize``; that is what is returned for them.
    """
    stored = checkpoint.get("mitoseg_normalization")
    if stored:
        try:
            return Normalization.from_dict(stored)
        except (InputError, TypeError) as error:
            raise InputError(f"checkpoint '{path}': unreadable input normalization {stored!r}: "
                             f"{error}") from error
    dataset = checkpoint.get("mitoseg_config", {}).get("dataset", {})
    if "em_datamodule" in str(dataset.get("_target_", "")):
        return Normalization("scale", scale=255.0)
    return Normalization(str(dataset.get("normalize", "zscore")))


def load_weights(net: nn.Module, path: str | Path) -> None:
    """Put the network weights of a checkpoint of our module into ``net`` (weights only,
    strictly: every parameter must fit)."""
    _put_weights(net, _safe_load(Path(path).expanduser()), path, "the network")


def _safe_load(path: str | Path) -> Any:
    """A checkpoint read with ``weights_only=True``: a file from elsewhere cannot run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means a bad file
        raise InputError(f"checkpoint '{path}' could not be loaded safely (weights only): "
                         f"{error}") from error


def _put_weights(net: nn.Module, checkpoint: dict[str, Any], path: str | Path,
                 target: str) -> None:
    """The module's ``net.*`` weights into ``net``, strictly."""
    prefix = "net."
    state = {key[len(prefix):]: value for key, value in checkpoint["state_dict"].items()
             if key.startswith(prefix)}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise InputError(f"checkpoint '{path}': weights do not fit {target}: {error}"
                         ) from error
