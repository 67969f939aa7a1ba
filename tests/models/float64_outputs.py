"""Network outputs in float64, summarized: what the output regression tests of tests/models
compare (``same_weights.json``, ``regression_outputs.json``, ``interpolate_outputs.json``).

float32 outputs differ between CPUs in their last bits (oneDNN and BLAS pick other kernels
with AVX2 than with AVX-512), and a deep network with normalization layers amplifies that to
about 1e-3 of its outputs: a hash of float32 bytes, or a tolerance of 1e-5, held only on the
machine that recorded it. In float64 one network agrees across machines to about 1e-12, so a
signature is compared at ``TOLERANCE`` of its mean absolute value: far below what any change
of the computation gives (a flipped ``align_corners`` at one call site changes the outputs by
about 1e-2), far above the machine's rounding.

``python tests/models/float64_outputs.py <fixture> <conf/model folder>`` (re)records a fixture
with whatever ``mitoseg`` is importable (a worktree of the recording commit on PYTHONPATH).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

TOLERANCE = 1e-8  # of the recorded mean absolute value
PICKS = 9  # evenly spaced values kept per output


def signature(output: torch.Tensor) -> dict[str, Any]:
    """Shape, mean, mean absolute value, std and ``PICKS`` evenly spaced values (float64)."""
    flat = output.detach().double().flatten()
    picks = torch.linspace(0, flat.numel() - 1, PICKS).long()
    return {"shape": list(output.shape), "mean": float(flat.mean()),
            "abs_mean": float(flat.abs().mean()), "std": float(flat.std()),
            "values": [float(v) for v in flat[picks]]}


def differences(got: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """What differs beyond ``TOLERANCE`` (empty: the same outputs)."""
    if got["shape"] != expected["shape"]:
        return [f"shape {got['shape']} != {expected['shape']}"]
    allowed = TOLERANCE * max(expected["abs_mean"], 1e-12)
    pairs = [(key, got[key], expected[key]) for key in ("mean", "abs_mean", "std")]
    pairs += [(f"values[{i}]", a, b) for i, (a, b) in enumerate(zip(got["values"],
                                                                    expected["values"]))]
    return [f"{key}: {a!r} != {b!r} (allowed {allowed:.1e})" for key, a, b in pairs
            if abs(a - b) > allowed]


TRAINING_INPUT = {2: (2, 1, 72, 72), 3: (2, 1, 16, 16, 16)}


def training_outputs(name: str, conf_model: Path) -> list[torch.Tensor]:
    """Model config ``name``'s outputs in training mode with dropout off (deep-supervision
    outputs included), in float64, seed 0, on a fixed input: what ``interpolate_outputs.json``
    holds for the networks that resize in their forward."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(conf_model / f"{name}.yaml")
    torch.manual_seed(0)
    net = instantiate(cfg).train().double()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
    size = TRAINING_INPUT[int(cfg.get("spatial_dims", 2))]
    x = torch.rand(size, generator=torch.Generator().manual_seed(2)).double()
    with torch.no_grad():
        outputs = net(x)
    return outputs if isinstance(outputs, list) else [outputs]


def main(argv: list[str]) -> None:
    fixture, conf_model = Path(argv[0]), Path(argv[1])
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here.parents[1]))
    if fixture.name == "same_weights.json":
        from tests.models.test_same_weights import CASES, fingerprint
        data = json.loads(fixture.read_text())
        for case in CASES:
            got = fingerprint(case, conf_model)
            kept = {key: data[case][key] for key in ("tensors", "structure", "values")}
            if {key: got[key] for key in kept} != kept:  # the recording commit's own network
                raise SystemExit(f"{case}: the network differs from the recorded one")
            data[case] = kept | {"outputs64": got["outputs64"]}
            print(case, "recorded", flush=True)
    elif fixture.name == "interpolate_outputs.json":
        data = {name: [signature(out) for out in training_outputs(name, conf_model)]
                for name in json.loads(fixture.read_text())}
    else:
        raise SystemExit(f"unknown fixture {fixture}")
    fixture.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
