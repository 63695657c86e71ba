"""The LightningModule: DeepLabV3 burned-area segmentation with ignore-aware loss and metrics.

Split like torchgeo's trainers into ``configure_models`` / ``configure_losses`` /
``configure_metrics``. Batches are dicts ``{"image": raw float [B, C, H, W] with NaN = nodata,
"label": uint8 [B, H, W] in {0, 1, 255}}``; ``on_after_batch_transfer`` augments (training only)
and normalises on the device. Hyperparameters are plain values, so
``SegmentationModule.load_from_checkpoint(path)`` rebuilds the module with no other input and
``forward(raw_image)`` gives logits with the normalisation statistics saved in the checkpoint.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassJaccardIndex,
)

from firedpy_nrt.config.train import NetConfig
from firedpy_nrt.data.raster import CHANNELS
from firedpy_nrt.data.transforms import Normalize
from firedpy_nrt.models.losses import IGNORE_INDEX
from firedpy_nrt.models.networks import build_deeplabv3
from firedpy_nrt.models.schedule import WarmupCosine

log = logging.getLogger(__name__)

DEFAULT_LOSS = {"_target_": "firedpy_nrt.models.losses.BCEDiceLoss"}
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}


class _MeanIoU(MulticlassJaccardIndex):
    """Mean IoU over unburned and burned: the figure the original scripts reported as IoU."""

    def __init__(self, threshold: float = 0.5, **kwargs: Any) -> None:
        super().__init__(num_classes=2, average="macro", ignore_index=IGNORE_INDEX, **kwargs)
        self.threshold = threshold

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        if preds.is_floating_point():
            preds = preds >= self.threshold
        super().update(preds.long(), target.long())


def segmentation_metrics(prefix: str, threshold: float = 0.5) -> MetricCollection:
    """Burned IoU (``iou``), mean IoU of both classes (``miou``), F1, precision, recall, accuracy.

    All ignore label 255; updated with probabilities or hard 0/1 predictions ``[B, H, W]``.
    """
    kw = {"threshold": threshold, "ignore_index": IGNORE_INDEX}
    return MetricCollection(
        {
            "iou": BinaryJaccardIndex(**kw),
            "miou": _MeanIoU(threshold),
            "f1": BinaryF1Score(**kw),
            "precision": BinaryPrecision(**kw),
            "recall": BinaryRecall(**kw),
            "acc": BinaryAccuracy(**kw),
        },
        prefix=prefix,
        compute_groups=False,
    )


def _numpy_state() -> list:
    # Tensors and plain values only, so checkpoints still load with torch's weights_only=True
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]


def _python_state() -> list:
    version, internal, gauss_next = random.getstate()
    return [version, list(internal), gauss_next]


class SegmentationModule(LightningModule):
    """DeepLabV3 burned-area segmentation from raw layer stacks (NaN = nodata)."""

    def __init__(
        self,
        channels: Sequence[str] = CHANNELS,
        net: dict[str, Any] | None = None,
        threshold: float = 0.5,
        loss: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        scheduler_monitor: str = "val/iou",
        backbone_lr_mult: float = 0.1,
        dnbr_threshold: float = 0.1,
        channels_last: bool = False,
        augmentation: nn.Module | None = None,
    ) -> None:
        super().__init__()
        # Plain values only, so checkpoints load without pickled objects or config files; the
        # channel names travel with the checkpoint so prediction can check its inputs by name.
        self.save_hyperparameters(ignore=["augmentation"])
        self.hparams.channels = [str(c) for c in channels]
        self.augmentation = augmentation
        #: Image channel of the raw dNBR, for the test baseline (None: no dNBR layer).
        self.dnbr_channel = self.hparams.channels.index("dnbr") if "dnbr" in channels else None
        self.normalize = Normalize(len(self.hparams.channels))
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # -- construction -------------------------------------------------------------------------
    def configure_models(self) -> None:
        net = {**asdict(NetConfig()), **(self.hparams.net or {})}
        self.net = build_deeplabv3(
            backbone=net["backbone"],
            in_channels=self.normalize.out_channels,
            weights_backbone=net.get("weights_backbone"),
            weights_path=net.get("weights_path"),
            bn_momentum=net.get("bn_momentum"),
            decoder=net.get("decoder") or "deeplabv3",
            aspp_channels=int(net["aspp_channels"]),  # NetConfig's defaults fill older hparams
            atrous_rates=list(net["atrous_rates"]),
            norm=net["norm"],
        )
        if self.hparams.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def configure_losses(self) -> None:
        self.criterion = instantiate(self.hparams.loss or DEFAULT_LOSS)

    def configure_metrics(self) -> None:
        thr = self.hparams.threshold
        self.val_metrics = segmentation_metrics("val/", thr)
        self.test_metrics = segmentation_metrics("test/", thr)
        # Baselines on the same test chips: a dNBR >= 0.1 threshold and "everything burned"
        # (what the original scripts' IoU 0.32 / accuracy 0.62 amounted to).
        self.test_dnbr_metrics = segmentation_metrics("test/dnbr_", 0.5)
        self.test_all_burned_metrics = segmentation_metrics("test/all_burned_", 0.5)
        # Where fusion pays: burned IoU where the dNBR is valid (clear) and where it is not
        # (cloud), for the model and the dNBR threshold.
        self.test_condition_iou = nn.ModuleDict(
            {
                f"{who}iou_{cond}": BinaryJaccardIndex(
                    threshold=thr if who == "" else 0.5, ignore_index=IGNORE_INDEX
                )
                for who in ("", "dnbr_")
                for cond in ("clear", "cloud")
            }
        )

    def configure_optimizers(self) -> Any:
        spec = dict(self.hparams.optimizer or DEFAULT_OPTIMIZER)
        spec["_partial_"] = True
        make_optimizer = instantiate(spec)
        lr = float(spec.get("lr", 1e-3))
        backbone = [p for p in self.net.backbone.parameters() if p.requires_grad]
        head = [p for n, p in self.net.named_parameters() if not n.startswith("backbone.")]
        groups = [
            {"params": backbone, "lr": lr * self.hparams.backbone_lr_mult, "name": "backbone"},
            {"params": head, "lr": lr, "name": "head"},
        ]
        optimizer = make_optimizer(groups)
        if not self.hparams.scheduler:
            return optimizer
        sched_spec = dict(self.hparams.scheduler)
        sched_spec["_partial_"] = True
        scheduler = instantiate(sched_spec)(optimizer)
        if isinstance(scheduler, WarmupCosine):
            scheduler.follow(self.trainer)  # it reads the run's progress: steps and time
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.hparams.scheduler_monitor,
                "interval": getattr(scheduler, "interval", "epoch"),
                "strict": False,
            },
        }

    # -- data on the device -------------------------------------------------------------------
    def on_fit_start(self) -> None:
        # On resume the checkpoint's statistics stay: the model was trained with them.
        if self.trainer.ckpt_path is not None:
            return
        stats = getattr(self.trainer.datamodule, "stats", None)
        if stats is None:
            log.warning("the datamodule has no stats: inputs are not normalised (mean 0, std 1)")
            return
        self.normalize.set_stats(stats["mean"], stats["std"])

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict:
        if not isinstance(batch, dict) or "image" not in batch:
            return batch
        image, label = batch["image"], batch.get("label")
        # BatchAugment is also a no-op in eval mode; the trainer check keeps it off in
        # validation even when a custom augmentation does not follow that convention.
        trainer = self._trainer
        if trainer is not None and trainer.training and self.augmentation is not None:
            image, label = self.augmentation(image, label)
            batch["image"], batch["label"] = image, label
        batch["input"] = self.normalize(image)
        return batch

    # -- forward ------------------------------------------------------------------------------
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)["out"]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, 1, H, W]`` of burned for a raw image ``[B, C, H, W]`` (NaN = nodata)."""
        return self._logits(self.normalize(image))

    def _input(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["input"] if "input" in batch else self.normalize(batch["image"])

    # -- steps --------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self._logits(self._input(batch))
        loss = self.criterion(logits, batch["label"])
        bs = logits.shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str, metrics: MetricCollection) -> Any:
        logits = self._logits(self._input(batch))
        label = batch["label"]
        loss = self.criterion(logits, label)
        bs = logits.shape[0]
        self.log(f"{stage}/loss", loss, on_epoch=True, sync_dist=True, batch_size=bs)
        probs = torch.sigmoid(logits.squeeze(1).float())
        metrics.update(probs, label)
        self.log_dict(metrics, on_epoch=True, on_step=False, batch_size=bs)
        return probs

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        probs = self._eval_step(batch, "test", self.test_metrics)
        label = batch["label"]
        bs = label.shape[0]
        if self.dnbr_channel is not None:
            dnbr = batch["image"][:, self.dnbr_channel]
            # NaN >= t is False: nodata counts as unburned, as a plain threshold map would
            dnbr_map = (dnbr >= self.hparams.dnbr_threshold).long()
            self.test_dnbr_metrics.update(dnbr_map, label)
            self.log_dict(self.test_dnbr_metrics, on_epoch=True, on_step=False, batch_size=bs)
            clear = torch.isfinite(dnbr)
            for cond, keep in (("clear", clear), ("cloud", ~clear)):
                lab = torch.where(keep, label, torch.full_like(label, IGNORE_INDEX))
                for who, pred in (("", probs), ("dnbr_", dnbr_map)):
                    metric = self.test_condition_iou[f"{who}iou_{cond}"]
                    metric.update(pred, lab)
                    self.log(f"test/{who}iou_{cond}", metric, on_epoch=True, on_step=False,
                             batch_size=bs)  # fmt: skip
        self.test_all_burned_metrics.update(torch.ones_like(label, dtype=torch.long), label)
        self.log_dict(self.test_all_burned_metrics, on_epoch=True, on_step=False, batch_size=bs)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        image = batch["image"] if isinstance(batch, dict) else batch
        return torch.sigmoid(self(image))

    # -- checkpoints --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The weights are in the state dict: a rebuilt module must not look for the files again.
        hp = checkpoint.get("hyper_parameters")
        if hp is not None and hp.get("net"):
            hp["net"] = {**hp["net"], "weights_backbone": None, "weights_path": None}
        # Lightning does not keep random states; with them a resumed run draws the same
        # shuffles, dropout masks and augmentations as one that was never stopped.
        checkpoint["firedpy_rng"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _numpy_state(),
            "python": _python_state(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("firedpy_rng")
        trainer = self._trainer
        # Only when resuming a fit on one process: other ranks had other states.
        if not rng or trainer is None or not trainer.training or trainer.world_size > 1:
            return
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        kind, keys, pos, has_gauss, gauss = rng["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = rng["python"]
        random.setstate((version, tuple(internal), gauss_next))
