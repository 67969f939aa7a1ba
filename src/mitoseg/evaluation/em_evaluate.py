"""Scoring a trained network on an EM data module's test volume, and writing the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.data.normalization import Normalization
from mitoseg.evaluation.em_protocols import matrix_table, protocol_matrix
from mitoseg.errors import InputError
from mitoseg.inference.network import net_predictor
from mitoseg.runs.files import write_new_csv, write_new_text


def evaluate_em(net: nn.Module, datamodule: EMDataModule, postprocess: Any,
                inference: DictConfig, out_dir: Path,
                normalization: Normalization | None = None) -> dict[str, Any]:
    """Run the inference matrix of ``inference`` on the test volume; write protocols.csv and
    protocols.md into ``out_dir``; return the rows and the headline row.

    The headline -- what metrics.json's ``test``, the optimized metric, the W&B summary and
    report.py show -- is the protocol ``inference.headline`` names (protocol, TTA, Z-filter);
    every other row stays in protocols.csv.

    ``normalization``: the input scaling the network was trained with (a checkpoint's); by
    default the data module's, fitted on its training slices.
    """
    choice = headline_choice(inference)
    datamodule.setup()
    volumes = datamodule.volumes
    device = inference.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
    patch_size = inference.get("patch_size") or datamodule.patch_size
    predict = net_predictor(net, device, str(inference.get("precision") or "32-true"),
                            channels_last=bool(inference.get("channels_last", False)))
    rows = protocol_matrix(
        predict, volumes.test_image, volumes.test_labels,
        datamodule.spatial_dims, patch_size, postprocess,
        protocols=list(inference.protocols), tta=list(inference.tta),
        zfilter=list(inference.zfilter), batch_size=int(inference.batch_size),
        divisor=int(inference.divisor), voxel_size_nm=volumes.voxel_size_nm, device=device,
        normalization=normalization or datamodule.normalization)
    write_new_csv(out_dir / "protocols.csv", rows)
    title = (f"{volumes.description}: test volume {tuple(volumes.test_image.shape)}, "
             f"threshold {postprocess.threshold}")
    write_new_text(out_dir / "protocols.md", matrix_table(rows, title))
    print("\n" + matrix_table(rows, title))
    headline = next(row for row in rows if _key(row) == _key(choice))
    test = {key: {"mean": headline[key], "n": 1} for key in
            ("iou_fg", "iou_bg", "iou_overall", "dice", "iou_fg_mean_per_slice")}
    return {"test": test, "headline": {k: headline[k] for k in ("protocol", "tta", "zfilter")},
            "protocols": rows}


def headline_choice(inference: DictConfig) -> dict[str, Any]:
    """The headline protocol of an inference config, checked to be one of its matrix's rows."""
    node = inference.get("headline")
    if not node:
        raise InputError("inference option 'headline' is missing: name the protocol to report, "
                         "e.g. {protocol: full_image, tta: true, zfilter: 5}")
    choice = {"protocol": str(node.protocol), "tta": bool(node.tta), "zfilter": int(node.zfilter)}
    matrix = {(str(p), bool(t), int(z)) for p in inference.protocols for t in inference.tta
              for z in inference.zfilter}
    if _key(choice) not in matrix:
        raise InputError(f"inference option 'headline' {choice} is not in the protocol matrix "
                         f"(protocols {list(inference.protocols)}, tta {list(inference.tta)}, "
                         f"zfilter {list(inference.zfilter)}); add it there or choose another")
    return choice


def _key(row: dict[str, Any]) -> tuple[str, bool, int]:
    return str(row["protocol"]), bool(row["tta"]), int(row["zfilter"])


def load_net_weights(net: nn.Module, checkpoint_path: str) -> None:
    """Put the weights of a Lightning checkpoint of our module into ``net`` (weights only)."""
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
