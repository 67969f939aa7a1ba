"""The configuration identity of a run: which config keys can change its result.

One list, ``RESULT_NEUTRAL_KEYS``, names the keys (and their sub-keys) that cannot change what
a run computes beyond floating-point rounding: where its files go (``paths``), how it is logged
and named (``logger``, ``experiment_name``, ``trainer.enable_progress_bar``, ...), how it is
launched or continued (``hydra``, ``resume``), how fast batches come
(``dataset.num_workers``: every random draw of a sample is keyed in the main process,
``mitoseg.data.loaders``, so any number of workers gives the same run bit for bit;
``dataset.hold_in_memory_mib``) and how fast the network runs (``torch_threads``, ``speed``:
they change the order of sums, so the weights differ in their last bits; the keys of
``ROUNDING_KEYS``; the README's "change how the network runs, not what it learns"). Every
reader of the identity uses it:

- ``runs/resume.py``: a run may be continued under a config that differs only in these keys;
- ``reporting/collect.py`` (``report.py``) and ``training/loggers.py`` (W&B groups): a
  *configuration* is the job's overrides without these keys and without ``REPLICATE_KEYS``
  (the seed: it changes the result, but the runs of a configuration differ only in it);
- ``reporting/composed_configs.py``: the runs of one configuration must hold one composed
  config (``identity_settings`` of ``.hydra/config.yaml``);
- ``conf/train.yaml``'s ``hydra.job.config.override_dirname.exclude_keys`` (run-folder
  names) leaves out only keys of this list (a test checks it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# result-neutral, but not bit for bit: a run resumed under other values of these ends with
# weights that differ from an uninterrupted run's in their last bits (resume warns)
ROUNDING_KEYS = ("torch_threads", "speed")
RESULT_NEUTRAL_KEYS = ("paths", "logger", "hydra", "resume", "experiment_name", *ROUNDING_KEYS,
                       "trainer.enable_progress_bar", "trainer.enable_model_summary",
                       "dataset.hold_in_memory_mib", "dataset.num_workers", "task_folder")
REPLICATE_KEYS = ("seed",)  # changes a result, but names a replicate, not a configuration


def override_key(override: str) -> str:
    """``+trainer.limit_train_batches=3`` -> ``trainer.limit_train_batches``."""
    return override.split("=", 1)[0].lstrip("+~")


def under(key: str, prefixes: Iterable[str]) -> bool:
    """``key`` is one of ``prefixes`` or a sub-key of one (``a.b`` and ``a/b`` are under
    ``a``: a config key and a config group such as ``hydra/launcher``)."""
    return any(key == p or key.startswith((p + ".", p + "/")) for p in prefixes)


def is_result_neutral(key: str) -> bool:
    """A config key (dotted) whose value cannot change a run's result."""
    return under(key, RESULT_NEUTRAL_KEYS)


def identity_overrides(overrides: Iterable[str], ignore: Sequence[str] = ()) -> tuple[str, ...]:
    """The overrides that define a configuration, sorted: all but the result-neutral keys, the
    seed (``REPLICATE_KEYS``) and the keys of ``ignore``."""
    dropped = (*RESULT_NEUTRAL_KEYS, *REPLICATE_KEYS, *ignore)
    return tuple(sorted(o for o in overrides if not under(override_key(o), dropped)))


def flatten_config(node: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved config as {dotted key: value}; a list is one value (its mappings flattened)."""
    if isinstance(node, Mapping):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat |= flatten_config(value, f"{prefix}.{key}" if prefix else str(key))
        return flat
    if isinstance(node, (list, tuple)):
        return {prefix: [(flatten_config(item) if isinstance(item, Mapping) else item)
                         for item in node]}
    return {prefix: node}


def identity_settings(config: Mapping[str, Any], ignore: Sequence[str] = ()) -> dict[str, Any]:
    """The flattened config of what defines a configuration: all but
    the result-neutral keys, the seed (``REPLICATE_KEYS``) and the keys of ``ignore``."""
    dropped = (*RESULT_NEUTRAL_KEYS, *REPLICATE_KEYS, *ignore)
    return {key: value for key, value in flatten_config(config).items()
            if not under(key, dropped)}
