"""The one LightningModule: a network, a loss, an optimizer and metrics, composed from config."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from mitoseg.errors import InputError
from mitoseg.evaluation.modality import network_spatial_dims
from mitoseg.metrics.batch import area_similarity_batch, foreground_counts, pooled_foreground_iou
from mitoseg.postproc.binarize import Binarize
from mitoseg.training.finite_check import LaggedFiniteCheck, diverged
from mitoseg.training.loss_log import EpochMean, ends_epoch, step_is_written
from mitoseg.training.losses import DeepSupervisionLoss, takes_valid

log = logging.getLogger(__name__)


class SegmentationModule(pl.LightningModule):
    """Binary segmentation with any network that returns logits.

    Args:
        net: the network (an ``nn.Module`` returning one logit per pixel).
        loss: a loss on (logits, target).
        optimizer: a partial optimizer, completed here with the network's parameters.
        scheduler: an optional partial LR scheduler, completed with the optimizer.
        binarize: probability map -> mask, used for the validation IoU and the test metrics.
        pixel_size_um: pixel size for boundary distances in micrometres.
        monitor: the metric a plateau scheduler watches.
        config: the run's resolved config, stored in every checkpoint so that a checkpoint
            alone can rebuild its network.
        channels_last: convolutions in NHWC layout (2D networks; faster with bf16 on a GPU).
        compile: run the network through ``torch.compile`` (compiles during the first steps).
            Checkpoints keep the plain network's parameter names either way.
        normalization: the data's input scaling (``Normalization.to_dict()``), stored in every
            checkpoint so that every later prediction scales inputs as training did.
    """

    def __init__(self, net: nn.Module, loss: nn.Module, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, binarize: Binarize | None = None,
                 pixel_size_um: float = 0.0645, monitor: str = "val/loss",
                 config: dict[str, Any] | None = None, channels_last: bool = False,
                 compile: bool = False, normalization: dict[str, Any] | None = None) -> None:
        super().__init__()
        # NHWC is a 2D layout: a network with 3D convolutions has none to take
        self.channels_last = bool(channels_last) and network_spatial_dims(net) == 2
        if channels_last and not self.channels_last:
            log.info("speed.channels_last: a 3D network keeps its layout (channels-last is for "
                     "2D convolutions)")
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        self.net, self.loss = net, with_deep_supervision(net, loss)
        self._loss_takes_valid = takes_valid(self.loss)  # checked once, not at every step
        # Not registered as a submodule: the state dict keeps the plain network's names.
        object.__setattr__(self, "_compiled_net", torch.compile(net) if compile else None)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.binarize = binarize or Binarize()
        self.pixel_size_um, self.monitor = pixel_size_um, monitor
        self.config = config or {}
        self.normalization = dict(normalization or {})
        self._finite_check = LaggedFiniteCheck()  # training losses on an accelerator
        self._epoch_loss = EpochMean()  # logged once an epoch (mitoseg.training.loss_log)
        self._val_counts: torch.Tensor | None = None  # TP, FP, FN, valid voxels: val/iou_fg

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.channels_last and image.ndim == 4:
            image = image.contiguous(memory_format=torch.channels_last)
        net = self.net if self._compiled_net is None else self._compiled_net
        return net(image)

    def _shared_step(self, batch: dict[str, Any], split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and logits of a batch (the loss checked to be finite)."""
        outputs = self(batch["image"])  # [main, aux...] from deep-supervision nets in training
        valid = batch.get("valid")  # absent when no voxel is ignored: the loss runs as always
        if valid is None:
            loss = self.loss(outputs, batch["mask"])
        else:
            if not self._loss_takes_valid:
                raise InputError(f"loss: the batch marks ignored voxels ('valid'), but "
                                 f"{type(self.loss).__name__} takes no 'valid' argument; choose a "
                                 "loss from conf/loss (mitoseg.training.losses)")
            loss = self.loss(outputs, batch["mask"], valid)
        logits = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        self._check_finite(loss, split)
        return loss, logits

    def _bar_shown(self) -> bool:
        """Whether a progress bar shows the logged values. Lightning turns every value logged
        with ``prog_bar=True`` into a Python number after every batch, whether a bar is shown
        or not: on a GPU that read makes the CPU wait for each step to finish instead of
        preparing the next one. Without a bar (``trainer=gpu``) nothing is read back per step."""
        trainer = self._trainer
        return trainer is None or trainer.progress_bar_callback is not None

    def _check_finite(self, loss: torch.Tensor, split: str) -> None:
        """A non-finite loss stops the run: at once on the CPU and in validation; in training
        on an accelerator a group of steps later, without waiting for the device
        (``mitoseg.training.finite_check``)."""
        if split == "train" and loss.device.type != "cpu":
            self._finite_check.add(self.global_step, loss)
        elif not torch.isfinite(loss):
            raise diverged(split, loss.item(), self.global_step)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """The batch's loss, added on the device to the epoch's (``mitoseg.training.loss_log``:
        each ``self.log`` costs about 1 ms of CPU time, most of a small GPU step's overhead)."""
        loss, logits = self._shared_step(batch, "train")
        valid = batch.get("valid")
        self._epoch_loss.add(loss, len(logits) if valid is None else _scored(valid).sum())
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Logs ``train/loss_step`` on the steps the loggers get (every step while a bar shows
        it) and ``train/loss_epoch`` after the epoch's last batch."""
        bar = self._bar_shown()
        if bar or step_is_written(self.trainer):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=bar,
                     batch_size=1)
        if ends_epoch(self.trainer, batch_idx):
            self._log_epoch_loss()

    def _log_epoch_loss(self) -> None:
        mean = self._epoch_loss.pop()
        if mean is None:
            return
        self.log("train/loss_epoch", mean, on_step=False, on_epoch=True,
                 prog_bar=self._bar_shown(), batch_size=1)
        # the name a scheduler or checkpoint monitoring the training loss asks for
        self.log("train/loss", mean, on_step=False, on_epoch=True, logger=False, batch_size=1)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_loss()  # an epoch cut short before its last batch (e.g. max_time)
        self._finite_check.flush()

    def on_train_end(self) -> None:
        self._finite_check.flush()

    def foreground(self, logits: torch.Tensor) -> torch.Tensor:
        """Thresholded probabilities of ``logits``, computed in float32: under bf16 autocast
        sigmoid rounds every logit in (0, 0.008] to exactly 0.5, i.e. to background."""
        return torch.sigmoid(logits.float()) > self.binarize.threshold

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Log ``val/loss`` and ``val/as``, the mean AS (foreground IoU) per validation image,
        and add the batch's TP, FP and FN to the epoch's (``val/iou_fg``, logged at its end).

        ``val/as`` is ``metrics.batch.area_similarity_batch`` (the torch twin of
        ``metrics.segmentation.area_similarity``, computed on the device) of the thresholded
        probability map ``sigmoid(logits) > binarize.threshold`` against the mask. That is the
        configured post-processing's output when the post-processing is a plain threshold
        (``Binarize`` or ``EMPostprocess`` with nothing after the threshold, the default).
        When it does more -- small-object removal, hole filling, a watershed, or a level set,
        which needs the image -- ``val/as`` still scores the threshold step alone: running the
        full post-processing would copy every prediction to the CPU at every validation. The
        test metrics (``test/*``) always score the full post-processing. The name is the same
        for fluorescence and EM runs (paper 002's foreground IoU is the same quantity).

        A batch with ``valid`` (ignored voxels, 0; EM validation tiles always carry it, see
        ``TiledPatchDataset``) scores each image on its valid voxels only. ``val/as`` averages
        over the images that have any, weighted by that count; ``val/loss`` is weighted by the
        number of valid voxels, so a loss that is a mean over voxels (BCE) gives the mean over
        every validation voxel once, whatever the batches, tile sizes and DDP ranks (the two
        counts: one read per validation step). A batch where no image has a valid voxel adds
        nothing (it is logged with weight 0, so that every DDP rank reduces the same keys). If
        no validation image of the epoch has a valid voxel, ``val/as`` is nan.
        """
        valid = batch.get("valid")
        scored = None if valid is None else _scored(valid)
        # the images and the voxels that count: one read per validation step
        count, voxels = (None, None) if scored is None else \
            torch.stack([scored.sum(), (valid > 0.5).sum()]).tolist()
        loss, logits = self._shared_step(batch, "val")
        self.log("val/loss", loss, on_epoch=True, prog_bar=self._bar_shown(),
                 batch_size=len(logits) if scored is None else voxels, sync_dist=True)
        predicted = self.foreground(logits)
        per_image = area_similarity_batch(batch["mask"] > 0.5, predicted,
                                          None if valid is None else valid > 0.5)
        if scored is None:
            mean, weight = per_image.mean(), len(logits)
        else:  # logged even when no image counts (weight 0): under DDP every rank must reduce
            # the same keys at the epoch's end, or the ranks' collective calls no longer pair up
            mean = per_image[scored].mean() if count else per_image.new_zeros(())
            weight = count
        self.log("val/as", mean, on_epoch=True, prog_bar=self._bar_shown(), batch_size=weight,
                 sync_dist=True)
        counts = foreground_counts(batch["mask"] > 0.5, predicted,
                                   None if valid is None else valid > 0.5)
        self._val_counts = counts if self._val_counts is None else self._val_counts + counts

    def on_validation_epoch_start(self) -> None:
        self._val_counts = None

    def on_validation_epoch_end(self) -> None:
        """Log ``val/iou_fg``: the foreground IoU of all of the epoch's validation voxels
        pooled, TP / (TP + FP + FN) summed over every batch and every DDP rank (valid voxels
        only; 1.0 if no voxel is foreground in either mask, nan if none is valid).

        ``val/as`` averages the AS of each validation image (EM: each tile), so an image
        without mitochondria scores 1 when nothing is predicted in it and 0 for a single false
        voxel; with many such tiles (Lucchi's 128 x 128 tiles: about half) it follows the
        false positives in empty tiles more than the segmentation (0.44 for a network that
        predicts nothing, falling as it learns). ``val/iou_fg`` weighs every voxel alike, as
        the test's ``iou_fg_over_volume`` does over the test volume."""
        counts = self._val_counts
        if counts is None:  # no validation batch on this rank: it still joins the reduction
            counts = torch.zeros(4, dtype=torch.int64, device=self.device)
        if self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        self._val_counts = None
        self.log("val/iou_fg", pooled_foreground_iou(counts), prog_bar=self._bar_shown(),
                 batch_size=1)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        if takes_total_steps(self.scheduler_factory):  # e.g. one-cycle: stepped every step
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=total)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mitoseg_config"] = self.config
        if self.normalization:
            checkpoint["mitoseg_normalization"] = self.normalization


def takes_total_steps(factory: Callable[..., Any]) -> bool:
    """A scheduler factory with a ``total_steps`` argument (``OneCycleLR``) schedules the whole
    run by optimizer steps: it gets the run's step count and is stepped after every step."""
    try:
        return "total_steps" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def with_deep_supervision(net: nn.Module, loss: nn.Module) -> nn.Module:
    """The loss to train ``net`` with: a network with auxiliary outputs (``deep_supervision``
    on) gets its plain loss wrapped in ``DeepSupervisionLoss``; weights left unset come from
    the network's ``deep_supervision_weights`` when it has them."""
    if not getattr(net, "deep_supervision", False):
        return loss
    if not isinstance(loss, DeepSupervisionLoss):
        loss = DeepSupervisionLoss(loss)
    if loss.weights is None and getattr(net, "deep_supervision_weights", None):
        loss.weights = [float(w) for w in net.deep_supervision_weights]
    return loss


def _scored(valid: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the images of a batch that hold at least one valid (not ignored) voxel."""
    return (valid > 0.5).flatten(1).any(1)
