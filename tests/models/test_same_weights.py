"""Every network builds bit for bit what it built before a refactor: same modules, same
parameter order, same initial values, and the same outputs.

``same_weights.json`` holds, per model config of conf/model/ (plus a few option variants that
take other code paths), fingerprints recorded with the code of commit e0bbd3b, before the
layer vocabulary (models/layers.py) and the padding helper (inference/padding.py) were
shared:

- ``structure``: sha256 of the state_dict's (name, shape, dtype) list, in order;
- ``values``: sha256 of the state_dict's bytes, in order, after ``torch.manual_seed(0)``;
- ``outputs64``: the eval-mode outputs on fixed inputs of sizes off the network's stride, a
  tiny one included (the padding's replication fallback), computed in float64 and summarized
  (``float64_outputs.signature``), compared to 1e-8 of their scale. They were a hash of the
  float32 bytes, which held only on the CPU that recorded them (a CPU with AVX2 but not
  AVX-512 gives other last bits, amplified to ~1e-3 by deep networks); they were recorded
  again in float64 with the code of e0bbd3b (``python tests/models/float64_outputs.py
  tests/models/same_weights.json <e0bbd3b worktree>/conf/model``, that worktree's ``src`` on
  PYTHONPATH), F.interpolate in the networks that now resize with ``linear_resize`` (equal to
  1e-12 in float64, ``test_resize.py``).

Regenerate on purpose only, with MITOSEG_UPDATE_WEIGHTS=1 (a change of architecture or
initialization must be a decision, not an accident).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.models.float64_outputs import differences, signature

CONF_MODEL = Path(__file__).resolve().parents[2] / "conf" / "model"
FIXTURE = Path(__file__).with_name("same_weights.json")
SIZES = {2: [(72, 72), (37, 53), (5, 7)], 3: [(16, 16, 16), (13, 18, 22), (3, 5, 6)]}
# Option variants that exercise code paths the default configs do not.
VARIANTS = {
    "unet2d_paper002+bn_nearest_relu_glorot": (
        "unet2d_paper002", {"batch_norm": True, "upsample": "nearest", "activation": "relu",
                            "init": "glorot_uniform", "filters": [8, 16, 32], "dropout": 0.1}),
    "residual_unet+bn_nearest": (
        "residual_unet", {"batch_norm": True, "upsample": "nearest", "filters": [8, 16, 24],
                          "dropout": [0.1, 0.0, 0.2]}),
    "se_unet+every_conv_bottleneck": (
        "se_unet", {"se_every_conv": True, "se_in_bottleneck": True, "batch_norm": True}),
    "attention_unet+nearest_bn": (
        "attention_unet", {"upsample": "nearest", "batch_norm": True, "filters": [8, 16, 32],
                           "dropout": 0.2}),
    "unet3d_cicek+no_bn": ("unet3d_cicek", {"batch_norm": False, "filters": [4, 8, 16, 32]}),
    "unet_paper000+bn": ("unet_paper000", {"batch_norm": True, "base_channels": 8}),
    "nnunet2d+batch_norm": ("nnunet2d", {"norm": "batch"}),
}
CASES = sorted(p.stem for p in CONF_MODEL.glob("*.yaml")) + sorted(VARIANTS)


def config(case: str, conf_model: Path = CONF_MODEL):
    name, overrides = VARIANTS.get(case, (case, {}))
    return OmegaConf.merge(OmegaConf.load(conf_model / f"{name}.yaml"), overrides)


def sha256(chunks) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk if isinstance(chunk, bytes) else str(chunk).encode())
    return digest.hexdigest()


def tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().contiguous().cpu().numpy().tobytes()


def fingerprint(case: str, conf_model: Path = CONF_MODEL) -> dict[str, Any]:
    cfg = config(case, conf_model)
    torch.manual_seed(0)
    net = instantiate(cfg).eval()
    state = net.state_dict()
    structure = sha256((n, tuple(t.shape), t.dtype) for n, t in state.items())
    values = sha256(tensor_bytes(t) for t in state.values())
    dims = int(cfg.get("spatial_dims", 2))
    net = net.double()
    outputs = []
    for index, size in enumerate(SIZES[dims]):
        x = torch.rand((1, 1, *size), generator=torch.Generator().manual_seed(index))
        with torch.no_grad():
            outputs.append(signature(net(x.double())))
    return {"tensors": len(state), "structure": structure, "values": values,
            "outputs64": outputs}


def stored() -> dict:
    return json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else {}


@pytest.mark.parametrize("case", CASES)
def test_network_is_bit_identical_to_the_recorded_one(case: str) -> None:
    got = fingerprint(case)
    if os.environ.get("MITOSEG_UPDATE_WEIGHTS") == "1":
        data = stored() | {case: got, "_torch": torch.__version__}
        FIXTURE.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")
    expected = stored().get(case)
    assert expected is not None, f"no fingerprint for {case}: run with MITOSEG_UPDATE_WEIGHTS=1"
    for key in ("tensors", "structure", "values"):
        assert got[key] == expected[key], f"{case}: {key} differs from the recorded network"
    assert len(got["outputs64"]) == len(expected["outputs64"])
    dims = int(config(case).get("spatial_dims", 2))
    for size, have, want in zip(SIZES[dims], got["outputs64"], expected["outputs64"]):
        assert not differences(have, want), f"{case} {size}: {differences(have, want)}"
