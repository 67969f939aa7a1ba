"""Learning-rate schedules that need the run's step count (stepped after every optimizer step).

The module hands every scheduler factory with a ``total_steps`` argument the run's number of
optimizer steps (``trainer.estimated_stepping_batches``) and steps it per step, not per epoch.
"""

from __future__ import annotations

import torch


def cosine_by_steps(optimizer: torch.optim.Optimizer, total_steps: int,
                    eta_min: float = 0.0) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Cosine annealing from the optimizer's lr to ``eta_min`` over ``total_steps`` steps, no
    warm-up (half a cosine period, as ``CosineAnnealingLR(T_max=total_steps)``)."""
    if int(total_steps) < 1:
        raise ValueError(f"cosine_by_steps: total_steps must be >= 1, got {total_steps}")
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(total_steps),
                                                      eta_min=eta_min)
