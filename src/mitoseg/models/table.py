"""The model table: every network of ``conf/model`` with its size, cost and constraints.

    python -m mitoseg.models.table                 # markdown table on stdout
    python -m mitoseg.models.table --csv models.csv

For every model config: trainable parameters (1 input and 1 output channel), the FLOPs of one
forward pass on a 256 x 256 patch (2D) or an 80^3 subvolume (3D) -- counted by
``torch.utils.flop_counter`` on the meta device, so nothing is computed and big 3D nets cost
nothing; a multiply-add counts as 2 FLOPs --, the input-size constraint (the network's total
stride; every network pads other sizes internally) and the parameter count its paper states,
where it states one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from mitoseg.config.paths import config_dir
from mitoseg.console import console_logging, emit

log = logging.getLogger(__name__)
CONF_MODEL = config_dir() / "model"
PATCH = {2: (256, 256), 3: (80, 80, 80)}

# Parameter counts as the publications state them: (count, where). Only figures a paper
# prints; paper 002's "less than 2M" (proposed 2D models) and "three times fewer" (3D) are
# checked in the tests as bounds, since they are not counts of one model.
STATED_PARAMETERS: dict[str, tuple[float, str]] = {
    "unet2d_paper002": (1.94e6, "paper 002 (its 2D U-Net, 1.94 M; see fidelity guide)"),
    "fcn8": (50.38e6, "paper 002: 'the number of trainable parameters in FCN8 is 50.38M'"),
    "oztel_cnn": (0.14e6, "paper 002: Oztel et al.'s network 'is also relatively low (0.14M)'"),
    "unet3d_cicek": (19_069_955, "Cicek et al. 2016: '19069955 parameters in total'"),
    "tiramisu": (9.4e6, "Jegou et al. 2017: FC-DenseNet103, 9.4 M"),
}


@dataclass(frozen=True)
class ModelRow:
    name: str
    network: str
    dims: int
    parameters: int
    gflops: float
    patch: str
    stride: str
    stated: str
    stated_source: str
    deep_supervision: bool


def model_names(conf_dir: Path = CONF_MODEL) -> list[str]:
    return sorted(p.stem for p in conf_dir.glob("*.yaml"))


def build(name: str, conf_dir: Path = CONF_MODEL, device: str = "meta") -> torch.nn.Module:
    """The network of ``conf/model/<name>.yaml`` (on the meta device: shapes, no storage)."""
    with torch.device(device):
        return instantiate(OmegaConf.load(conf_dir / f"{name}.yaml"))


def dims_of(name: str, conf_dir: Path = CONF_MODEL) -> int:
    return int(OmegaConf.load(conf_dir / f"{name}.yaml").get("spatial_dims", 2))


def count_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def forward_flops(net: torch.nn.Module, dims: int) -> int:
    """FLOPs of one eval-mode forward pass on one patch of ``PATCH[dims]`` (meta tensors)."""
    device = next(net.parameters()).device
    x = torch.zeros((1, 1, *PATCH[dims]), device=device)
    counter = FlopCounterMode(display=False)
    net.eval()
    with counter, torch.no_grad():
        net(x)
    return int(counter.get_total_flops())


def input_size_rule(stride: int | None, multiples: tuple[int, ...] | None) -> str:
    """What input sizes a network takes as they are (others it pads and crops back)."""
    if not stride:
        return "any"
    if multiples and 1 in multiples:  # a 3D network that does not pool z
        return f"y, x: multiple of {stride}; z: any (other sizes padded)"
    return f"multiple of {stride} (other sizes padded)"


def model_row(name: str, conf_dir: Path = CONF_MODEL) -> ModelRow:
    dims = dims_of(name, conf_dir)
    net = build(name, conf_dir)
    stride = getattr(net, "stride", None)
    multiples = getattr(getattr(net, "unet", net), "size_multiple", None)
    stated = STATED_PARAMETERS.get(name)
    return ModelRow(
        name=name, network=type(net).__name__, dims=dims, parameters=count_parameters(net),
        gflops=round(forward_flops(net, dims) / 1e9, 3),
        patch=" x ".join(map(str, PATCH[dims])),
        stride=input_size_rule(stride, multiples),
        stated=f"{stated[0] / 1e6:.2f} M" if stated else "",
        stated_source=stated[1] if stated else "",
        deep_supervision=bool(getattr(net, "deep_supervision", False)),
    )


def markdown(rows: list[ModelRow]) -> str:
    lines = ["| model | network | dims | parameters | GFLOPs / patch | patch | input size | "
             "stated by its paper | deep supervision |", "|---" * 9 + "|"]
    for r in rows:
        lines.append(f"| {r.name} | {r.network} | {r.dims}D | {r.parameters:,} | {r.gflops:.2f} | "
                     f"{r.patch} | {r.stride} | {r.stated or '-'} | {'yes' if r.deep_supervision else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Parameters, FLOPs and input constraints of "
                                                 "every model config")
    parser.add_argument("models", nargs="*", help="model config names (default: all)")
    parser.add_argument("--csv", help="also write the table as CSV (refuses to overwrite)")
    args = parser.parse_args(argv)
    console_logging()
    names = args.models or model_names()
    unknown = [n for n in names if not (CONF_MODEL / f"{n}.yaml").is_file()]
    if unknown:
        log.error("mitoseg: error: unknown model(s) %s; known: %s", unknown,
                  ", ".join(model_names()))
        return 2
    rows = [model_row(name) for name in names]
    emit(markdown(rows))
    if args.csv:
        from mitoseg.runs.files import write_new_csv
        write_new_csv(args.csv, [asdict(r) for r in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
