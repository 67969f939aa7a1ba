"""Scoring a trained network on an EM data module's test volume, and writing the tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from mitoseg.data.em_datamodule import EMDataModule
from mitoseg.evaluation.em_protocols import matrix_table, protocol_matrix
from mitoseg.inference.network import net_predictor
from mitoseg.runs.files import write_new_csv, write_new_text


def evaluate_em(net: nn.Module, datamodule: EMDataModule, postprocess: Any,
                inference: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Run the inference matrix of ``inference`` on the test volume; write protocols.csv and
    protocols.md into ``out_dir``; return the rows and the headline (first) row."""
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
        divisor=int(inference.divisor), voxel_size_nm=volumes.voxel_size_nm, device=device)
    write_new_csv(out_dir / "protocols.csv", rows)
    title = (f"{volumes.description}: test volume {tuple(volumes.test_image.shape)}, "
             f"threshold {postprocess.threshold}")
    write_new_text(out_dir / "protocols.md", matrix_table(rows, title))
    print("\n" + matrix_table(rows, title))
    headline = rows[0]
    test = {key: {"mean": headline[key], "n": 1} for key in
            ("iou_fg", "iou_bg", "iou_overall", "dice", "iou_fg_mean_per_slice")}
    return {"test": test, "headline": {k: headline[k] for k in ("protocol", "tta", "zfilter")},
            "protocols": rows}


def load_net_weights(net: nn.Module, checkpoint_path: str) -> None:
    """Put the weights of a Lightning checkpoint of our module into ``net`` (weights only)."""
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["state_dict"]
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
