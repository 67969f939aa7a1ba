"""Is an evaluation scoring data the checkpoint was trained on? Seeds and a content check.

``seeds_from_checkpoint``: evaluate.py's ``seed``/``data_seed`` left unset (null) take the
checkpoint's, so ``dataset=...`` rebuilds the split the network was trained with.
``training_overlap``: the checkpoint's train and val splits are rebuilt from its stored dataset
config and compared by content (``leakage.find_overlaps``: the same file, a flipped copy, a
shared strip) with the evaluated split; overlap is refused unless explicitly allowed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from mitoseg.data.leakage import find_overlaps_cached
from mitoseg.errors import InputError

log = logging.getLogger(__name__)
SEEDS = ("seed", "data_seed")
SEEN = {"val": ("train",), "test": ("train", "val")}  # what the checkpoint saw, per split scored
WHAT = {"train": "training", "val": "validation"}


def seeds_from_checkpoint(cfg: DictConfig, stored: dict[str, Any]) -> dict[str, str]:
    """Set unset (null) seeds of ``cfg`` to the checkpoint's; returns where each came from."""
    origin = {}
    for key in SEEDS:
        with open_dict(cfg):
            if cfg.get(key) is None:
                if stored.get(key) is None:
                    raise InputError(f"the checkpoint stores no '{key}'; give {key}=<int>")
                cfg[key] = int(stored[key])
                origin[key] = "checkpoint"
            else:
                origin[key] = "command line"
    if not cfg.get("dataset") and cfg.data_seed != stored.get("data_seed"):
        raise InputError(
            f"data_seed={cfg.data_seed} differs from the checkpoint's ({stored.get('data_seed')}) "
            "but no dataset=... is given, so the checkpoint's own dataset config and split "
            "would be used; give dataset=<name> to score another split")
    return origin


def _split_masks(datamodule: Any, split: str) -> tuple[list[str], list[np.ndarray]] | None:
    """(ids, masks) of a data module's split, or None where it has no mask files (EM)."""
    dataset = getattr(datamodule, "datasets", {}).get(split)
    masks = getattr(dataset, "masks", None)
    if masks is None:
        return None
    if hasattr(masks, "ids"):  # a MaskSet
        return list(masks.ids), list(masks.masks)
    return list(dataset.ids), list(masks)


def training_overlap(stored: dict[str, Any], datamodule: Any, split: str,
                     allow: bool) -> dict[str, Any]:
    """Which masks of ``split`` share a region with masks the checkpoint has seen: its
    training split, and for split=test also its validation split (which picked the checkpoint).

    Raises InputError when some do, unless ``allow``. split=train is training data by choice.
    """
    if split == "train":
        return {"checked": False, "split": split, "reason": "split=train: training data by choice"}
    if "overlap" not in (stored.get("dataset") or {}):
        return _unchecked(
            "the checkpoint was trained before leak-free splits (its dataset config has no "
            "'overlap'), so its training split cannot be rebuilt", split, allow)
    evaluated = _split_masks(datamodule, split)
    if evaluated is None or not hasattr(datamodule, "overlap"):
        return _unchecked(f"{type(datamodule).__name__} has no mask files to compare", split,
                          allow)
    training_module = instantiate(OmegaConf.create(stored["dataset"]))
    training_module.setup()
    seen = {name: _split_masks(training_module, name) for name in SEEN[split]}
    parts = [*seen.values(), evaluated]
    if None in parts or {mask.dtype == bool for part in parts for mask in part[1]} != {True}:
        return _unchecked("the checkpoint's training data are not masks", split, allow)
    ids = [(name, i) for name, part in seen.items() for i in part[0]]
    arrays = [mask for part in seen.values() for mask in part[1]]
    report = find_overlaps_cached(arrays + evaluated[1], datamodule.overlap)
    count = len(arrays)
    crossing = sorted({(max(p.pair) - count, min(p.pair)) for p in report.pairs
                       if min(p.pair) < count <= max(p.pair)})
    shared = {name: sorted({e for e, s in crossing if ids[s][0] == name}) for name in seen}
    record = {"checked": True, "split": split, "evaluated_masks": len(evaluated[0]),
              "compared_with": {name: len(part[0]) for name, part in seen.items()},
              "overlapping_masks": {name: len(found) for name, found in shared.items()},
              "examples": [[evaluated[0][e], f"{ids[s][0]} {ids[s][1]}"]
                           for e, s in crossing[:10]],
              "rule": report.to_dict()["rule"]}
    if crossing:
        counts = ", ".join(f"{len(found)} with its {WHAT[name]} masks"
                           for name, found in shared.items())
        e, s = crossing[0]
        message = (f"{len({e for e, _ in crossing})} of the {len(evaluated[0])} {split} masks "
                   f"share a region with masks the checkpoint has seen ({counts}; e.g. "
                   f"'{evaluated[0][e]}' with {WHAT[ids[s][0]]} mask '{ids[s][1]}'): these "
                   "scores would be inflated")
        _refuse_or_warn(record, message, allow,
                        "Leave data_seed unset to use the checkpoint's split")
    return record


def volume_training_overlap(stored: dict[str, Any], datamodule: Any, allow: bool
                            ) -> dict[str, Any]:
    """Does the test volume of ``datamodule`` hold copies of slices the checkpoint trained on?

    The checkpoint's own data set is rebuilt from its stored config and every slice of its
    training volume (training and validation slices) is compared with the test volume: exact
    copies and near-copies (``em_overlap.near_copy_pairs``: correlation >= 0.98 up to a 2-px
    shift and a linear intensity change). That catches a Lucchi model tested on Lucchi++'s
    ``Test_*`` (the same images, other intensities), or a holdout that overlaps the slices a
    model trained on. Raises InputError on a copy unless ``allow``.
    """
    from mitoseg.data.em_overlap import slice_copies
    from mitoseg.data.volume_set import from_em_volumes

    training_module = instantiate(OmegaConf.create(stored["dataset"]))
    trained = from_em_volumes(training_module.volumes_factory())
    tested = datamodule.volumes
    seen_volumes = [*trained.train, *trained.val]
    exact, near, evaluated = 0, [], 0
    for test in tested.test:
        evaluated += test.depth
        for seen in seen_volumes:
            found = slice_copies(seen.image, test.image)
            exact += found.exact
            # slices by their numbers in the recording (a z range's first slice is not 0)
            test_numbers, seen_numbers = test.numbers(), seen.numbers()
            near += [(test.name, seen.name, test_numbers[p.test], seen_numbers[p.train],
                      p.correlation) for p in found.near]
    copies = sorted({(name, number) for name, _, number, _, _ in near})
    record = {"checked": True, "split": "test", "evaluated_slices": int(evaluated),
              "compared_with_training_slices": int(sum(v.depth for v in seen_volumes)),
              "exact_copies": exact, "near_copies": len(copies),
              "examples": [[int(t), int(s), round(float(r), 4)] for _, _, t, s, r in near[:10]]}
    if exact or copies:
        first = near[0] if near else None
        named = (f" (test volume '{first[0]}', training volume '{first[1]}')"
                 if first and (len(tested.test) > 1 or len(seen_volumes) > 1) else "")
        message = (f"{max(exact, len(copies))} of the {evaluated} test slices are copies "
                   f"of slices of the checkpoint's training volume ({exact} exact, "
                   f"{len(copies)} near-copies up to a shift and an intensity change, e.g. test "
                   f"slice {first[2] if first else '?'} ~ training slice "
                   f"{first[3] if first else '?'}{named}): these scores would be inflated")
        _refuse_or_warn(record, message, allow, "Evaluate on another volume")
    return record


def _refuse_or_warn(record: dict[str, Any], message: str, allow: bool, instead: str) -> None:
    """Refuse a score on seen data (InputError), or, when allowed, mark ``record`` with the
    warning summary.json puts first."""
    if not allow:
        raise InputError(f"refusing to score: {message}. {instead}, or give "
                         "allow_training_overlap=true to score anyway (summary.json then says so)")
    record["warning"] = f"SCORED ON DATA THE CHECKPOINT HAS SEEN: {message}"
    log.warning(record["warning"])


def _unchecked(reason: str, split: str, allow: bool) -> dict[str, Any]:
    if not allow:
        raise InputError(f"cannot check whether the {split} split overlaps the checkpoint's "
                         f"training data: {reason}; give allow_training_overlap=true to score "
                         "anyway (summary.json then says it was not checked)")
    record = {"checked": False, "split": split, "reason": reason,
              "warning": f"NOT CHECKED for overlap with training data: {reason}"}
    log.warning(record["warning"])
    return record
