"""A network as the ``predict`` callable of the inference functions, with the speed options.

bf16 autocast, channels_last and torch.compile are what make a small U-Net fast on a recent
GPU; the inference functions only ever see ``predict(batch) -> probabilities``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from mitoseg.errors import InputError

log = logging.getLogger(__name__)

PRECISIONS = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def net_predictor(net: nn.Module, device: str | torch.device = "cpu",
                  precision: str = "32-true", channels_last: bool = False,
                  compile: bool = False, sigmoid: bool = True
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    """(B, C, *patch) inputs -> float32 probabilities (or logits), on ``device``, no gradients.

    Args:
        net: a network returning logits; it is put in eval mode and moved to ``device``.
        precision: "32-true", "bf16-mixed" or "16-mixed" (autocast; outputs are float32).
        channels_last: 2D networks only; convolutions in NHWC layout (faster with autocast
            on recent GPUs).
        compile: wrap the network in ``torch.compile`` (compiles on the first calls; should
            that fail, e.g. without a C++ compiler, it says so once and runs uncompiled).
        sigmoid: return probabilities (True) or logits.
    """
    if precision not in PRECISIONS:
        raise InputError(f"'precision' must be one of {sorted(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    dtype = PRECISIONS[precision]
    net = net.eval().to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = CompiledOrEager(net) if compile else net

    @torch.no_grad()
    def predict(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(device, non_blocking=True)
        if channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(batch)
        return torch.sigmoid(out.float()) if sigmoid else out.float()

    return predict


class CompiledOrEager:
    """``torch.compile(net)``, falling back to ``net`` itself for good when compiling fails.

    Compiling needs a working backend (a C++ compiler on the CPU, Triton on a GPU); where there
    is none, prediction still runs, uncompiled, after one warning. A fault of the input is not
    hidden: the uncompiled call raises it again.
    """

    def __init__(self, net: nn.Module) -> None:
        self.net, self.compiled = net, torch.compile(net)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(batch)
            except Exception as error:  # noqa: BLE001 (any backend failure; eager re-raises input faults)
                log.warning("torch.compile failed (%s: %s); predicting without it",
                            type(error).__name__, str(error).splitlines()[0][:200])
                self.compiled = None
        return self.net(batch)
