"""Is an evaluation scoring data the checkpoint was trained on? Seeds and a content check.

``seeds_from_checkpoint``: evaluate.py's ``seed``/``data_seed`` left unset (null) take the
checkpoint's, so ``dataset=...`` rebuilds the split the network was trained with.
``training_overlap``: the checkpoint's train and val splits are rebuilt from its stored dataset
config and compared by content (``leakage.find_overlaps``: the same file, a flipped copy, a
shared strip) with the evaluated split; overlap is refused unless explicitly allowed.
``volume_training_overlap``: the same for EM test volumes: test slices closer than the
training split's gap to seen slices of the same recording (``slice_gap``), and copies.
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
    """(ids, masks) of a data module's split, or None where it has no mask files (EM): the
    masks it dealt to the split (``split_masks``; its training dataset may hold none, e.g. with
    images made on the device), else those its dataset holds."""
    dealt = (getattr(datamodule, "split_masks", None) or {}).get(split)
    if dealt is not None:
        return list(dealt.ids), list(dealt.masks)
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


def volume_training_overlap(stored: dict[str, Any], datamodule: Any, allow: bool,
                            checkpoint: str | None = None) -> dict[str, Any]:
    """Does the test volume of ``datamodule`` hold slices the checkpoint trained on, or their
    neighbours?

    The checkpoint's own data set is rebuilt from its stored config (nothing is set up: its
    volumes only). Two checks, each raising InputError unless ``allow``:

    - the slice gap (``slice_gap``): a test volume read from the same recording as a training
      or validation volume (``volume_set.Recording``: the same resolved file and shape) must
      keep the gap the training split kept, e.g. ``dataset=lucchi`` tested with a larger
      ``holdout_slices`` (test slices inside the gap, or next to training slice 121);
    - copies in any file: every slice of its training volumes (training and validation slices)
      is compared with the test volume: exact copies and near-copies
      (``em_overlap.near_copy_pairs``: correlation >= 0.98 up to a 2-px shift and a linear
      intensity change). That catches a Lucchi model tested on Lucchi++'s ``Test_*`` (the same
      images, other intensities). A neighbouring slice (correlation about 0.89 on Lucchi) is
      no copy: only the first check keeps the test away from it.

    ``checkpoint``: its path, for the messages.
    """
    from mitoseg.data.em_overlap import slice_copies
    from mitoseg.data.volume_set import from_em_volumes

    training_module = instantiate(OmegaConf.create(stored["dataset"]))
    trained = from_em_volumes(training_module.volumes_factory())
    tested = datamodule.volumes
    seen_volumes = [*trained.train, *trained.val]
    gap = slice_gap(seen_volumes, tested.test, trained.notes)
    record: dict[str, Any] = {"checked": True, "split": "test", "slice_gap": gap}
    if gap["too_close_slices"]:
        _refuse_or_warn(record, _gap_message(gap, checkpoint), allow,
                        "Use the training run's split (evaluate without dataset=..., or with its "
                        "slice options as the checkpoint stores them), or leave at least "
                        f"{gap['required_gap_slices']} unused slice(s) between the test slices "
                        "and those")
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
    record |= {"evaluated_slices": int(evaluated),
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


# A split that states no gap (``test_gap_slices`` null: separate files, or a user's own
# ``z_range`` volumes) still keeps one slice between test and seen slices: a neighbouring slice
# is nearly the same image (Lucchi: correlation 0.89, label IoU 0.92; ``em_overlap``). Not the
# 3D patch depth: a network's input at a test slice holds test slices only; what a near slice
# leaks is its likeness, the same for 2D and 3D networks.
UNSTATED_GAP_SLICES = 1


def required_gap(notes: dict[str, Any]) -> tuple[int, str]:
    """(slices, where from): how many slices must lie between a test slice and any slice the
    checkpoint saw in the same recording: the gap its training split kept (the training data
    set's ``test_gap_slices``, e.g. ``lucchi_volumes``' option), else ``UNSTATED_GAP_SLICES``."""
    stated = notes.get("test_gap_slices")
    if stated is not None:
        return int(stated), "test_gap_slices of the checkpoint's data set"
    return UNSTATED_GAP_SLICES, ("the checkpoint's data set states no test_gap_slices: at least "
                                 "one slice (a neighbouring slice is nearly the same image)")


def slices_too_close(test_numbers: list[int], seen_numbers: list[int], gap: int
                     ) -> list[tuple[int, int]]:
    """(test slice, nearest seen slice) for every test slice with fewer than ``gap`` slices
    between it and the nearest of ``seen_numbers`` (the same slice: none between)."""
    seen = np.unique(np.asarray(seen_numbers, np.int64))
    if not seen.size:
        return []
    found = []
    for number in sorted(test_numbers):
        at = int(np.searchsorted(seen, number))
        nearest = min((int(s) for s in seen[max(at - 1, 0):at + 1]),
                      key=lambda s: abs(s - number))
        if abs(nearest - number) <= gap:
            found.append((int(number), nearest))
    return found


def slice_gap(seen_volumes: list[Any], test_volumes: list[Any], notes: dict[str, Any]
              ) -> dict[str, Any]:
    """The slice-gap record: for each test volume read from the same recording as seen
    (training or validation) volumes, its slices closer to theirs than ``required_gap``.
    Volumes without a recording (procedural) or from other files are not compared here."""
    gap, source = required_gap(notes)
    compared, close = [], []
    for test in test_volumes:
        seen = [v for v in seen_volumes if test.recording and v.recording == test.recording]
        if not seen:
            continue
        found = slices_too_close(test.numbers(), [n for v in seen for n in v.numbers()], gap)
        compared.append({"test_volume": test.name, "seen_volumes": [v.name for v in seen],
                         "recording": str(test.recording), "too_close_slices": len(found),
                         "test_slices": len(test.numbers())})
        close += [(test.name, number, nearest) for number, nearest in found]
    return {"required_gap_slices": gap, "gap_from": source, "same_recording": compared,
            "too_close_slices": len(close),
            "examples": [[name, number, nearest] for name, number, nearest in close[:10]]}


def _gap_message(gap: dict[str, Any], checkpoint: str | None) -> str:
    """What a ``slice_gap`` record with slices too close says: the checkpoint, the volume and
    its recording, a few slices with their nearest seen slice, then the count."""
    first = next(v for v in gap["same_recording"] if v["too_close_slices"])
    shown = [(number, nearest) for name, number, nearest in gap["examples"]
             if name == first["test_volume"]][:5]
    listed = ", ".join(f"{number} (nearest seen: {nearest})" for number, nearest in shown)
    more = gap["too_close_slices"] - len(shown)
    seen = ", ".join(f"'{name}'" for name in first["seen_volumes"])
    named = f"checkpoint '{checkpoint}'" if checkpoint else "the checkpoint"
    return (f"{gap['too_close_slices']} test slice(s) lie closer to slices that {named} "
            f"trained or validated on than the {gap['required_gap_slices']}-slice "
            f"gap its training split kept ({gap['gap_from']}): test volume "
            f"'{first['test_volume']}' and the checkpoint's volume(s) {seen} are slices of one "
            f"recording, {first['recording']}; test slices {listed}"
            f"{f' and {more} more' if more > 0 else ''}. Slices this near are nearly the same "
            "images, so these scores would be inflated")


def _refuse_or_warn(record: dict[str, Any], message: str, allow: bool, instead: str) -> None:
    """Refuse a score on seen data (InputError), or, when allowed, mark ``record`` with the
    warning summary.json puts first."""
    if not allow:
        raise InputError(f"refusing to score: {message}. {instead}, or give "
                         "allow_training_overlap=true to score anyway (summary.json then says so)")
    warning = f"SCORED ON DATA THE CHECKPOINT HAS SEEN: {message}"
    log.warning(warning)
    record["warning"] = f"{record['warning']}; {warning}" if "warning" in record else warning


def _unchecked(reason: str, split: str, allow: bool) -> dict[str, Any]:
    if not allow:
        raise InputError(f"cannot check whether the {split} split overlaps the checkpoint's "
                         f"training data: {reason}; give allow_training_overlap=true to score "
                         "anyway (summary.json then says it was not checked)")
    record = {"checked": False, "split": split, "reason": reason,
              "warning": f"NOT CHECKED for overlap with training data: {reason}"}
    log.warning(record["warning"])
    return record
