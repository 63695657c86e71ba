"""Schema of ``train.py``: model, loss, optimizer, scheduler, trainer, callbacks, loggers, run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.utils import get_method

from firedpy_nrt.config import Invalid, require, require_plain_name
from firedpy_nrt.config.data import DataConfig
from firedpy_nrt.config.paths import PathsConfig

BACKBONES = ("resnet50", "resnet101", "mobilenet_v3_large")
#: Heads: torchvision's DeepLabV3 (its output stride, 16 or 8, upsampled straight to full
#: resolution), or DeepLabV3+'s light decoder with a skip connection from stride 4, which keeps
#: burn-scar edges where the plain head draws blobs (models/networks.py builds both).
DECODERS = ("deeplabv3", "deeplabv3plus")
#: Normalisation layers of the whole network: torchvision's BatchNorm, or GroupNorm in its place
NORMS = ("batch", "group")
#: torchvision's ASPP: its width and dilation rates (the defaults of model.net.aspp_channels and
#: model.net.atrous_rates; with them the head is torchvision's own)
TORCHVISION_ASPP_CHANNELS = 256
TORCHVISION_ATROUS_RATES = (12, 24, 36)
#: Lightning's precision values, for training and prediction alike.
PRECISIONS = (
    "32-true", "32", 32, "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "64", 64,
    "16", 16, "bf16", "transformer-engine",
)  # fmt: skip


@dataclass
class NetConfig:
    backbone: str = "resnet50"
    weights_backbone: str | None = None  # torchvision weights name, read from the local cache only
    weights_path: str | None = None  # a local weights file
    bn_momentum: float | None = 0.1  # BatchNorm running-stat momentum; null keeps torchvision's
    #: ``batch`` (torchvision's BatchNorm) or ``group`` (GroupNorm: each chip normalised on its
    #: own, the same in training and evaluation, whatever the batch size)
    norm: str = "batch"
    #: ``deeplabv3`` (torchvision's head) or ``deeplabv3plus`` (a light decoder with a skip
    #: connection from stride 4: sharper edges)
    decoder: str = "deeplabv3"
    #: ASPP width and dilation rates (torchvision's: 256, [12, 24, 36], made for 513 px crops).
    #: On small chips the deepest features are a few cells wide (64 px at output stride 16: 4x4)
    #: and a rate of 12 only sees zero padding: [2, 4, 6] and 128 channels are as expressive
    #: there and train about 1.8x faster on a CPU (``experiment=demo``).
    aspp_channels: int = TORCHVISION_ASPP_CHANNELS
    atrous_rates: list[int] = field(default_factory=lambda: list(TORCHVISION_ATROUS_RATES))

    def check(self) -> None:
        require(
            isinstance(self.aspp_channels, int) and self.aspp_channels >= 8,
            "aspp_channels",
            f"must be a whole number >= 8 (got {self.aspp_channels!r})",
        )
        rates = list(self.atrous_rates or [])
        require(
            bool(rates) and all(isinstance(r, int) and r >= 1 for r in rates),
            "atrous_rates",
            f"must be a non-empty list of whole numbers >= 1 (got {self.atrous_rates!r})",
        )
        require(
            self.decoder in DECODERS,
            "decoder",
            f"unknown decoder {self.decoder!r} (choose from: {', '.join(DECODERS)})",
        )
        require(
            self.norm in NORMS,
            "norm",
            f"unknown norm {self.norm!r} (choose from: {', '.join(NORMS)})",
        )
        require(
            self.bn_momentum is None or 0 < self.bn_momentum <= 1,
            "bn_momentum",
            "must be in (0, 1] or null",
        )
        require(
            self.backbone in BACKBONES,
            "backbone",
            f"unknown backbone {self.backbone!r} (choose from: {', '.join(BACKBONES)})",
        )


@dataclass
class ModelConfig:
    """The ``model`` group: the network and how it is trained and scored. The input layers are
    not set here: they are the datamodule's channels (``train()`` passes them on)."""

    net: NetConfig = field(default_factory=NetConfig)
    threshold: float = 0.5  # probability above which a pixel is burned
    backbone_lr_mult: float = 0.1  # backbone learning rate = optimizer.lr * this
    scheduler_monitor: str = "val/iou"  # what a plateau scheduler watches
    dnbr_threshold: float = 0.1  # the test baseline: burned where dNBR >= this
    channels_last: bool = False  # NHWC memory format (faster with mixed precision on GPUs)

    def check(self) -> None:
        require(0 < self.threshold < 1, "threshold", "must be in (0, 1)")
        require(self.backbone_lr_mult >= 0, "backbone_lr_mult", "must be >= 0")


def _check_partial(node: Any, key: str) -> None:
    """Build the target once with its keyword values so range errors show at start-up."""
    if node is None:
        return
    require(isinstance(node, dict) and "_target_" in node, key, "needs a _target_")
    kwargs = {k: v for k, v in node.items() if not (k.startswith("_") and k.endswith("_"))}
    try:
        target = get_method(node["_target_"])
    except Exception:
        raise Invalid(f"{key}._target_", f"cannot import {node['_target_']!r}") from None
    return target, kwargs


def _check_scheduler(node: Any) -> None:
    """Build the scheduler once on a throwaway optimizer: a bad value (``scheduler.warmup=2``,
    ``scheduler.T_max=abc``) is one line naming the key, at start-up rather than after the
    data is loaded."""
    built = _check_partial(node, "scheduler")
    if built is None:
        return
    target, kwargs = built
    import torch  # only here: the schema module stays light for prepare.py

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    try:
        target(optimizer, **kwargs)
    except Invalid as exc:
        raise Invalid(f"scheduler.{exc.key}", exc.message) from None
    except (TypeError, ValueError) as exc:
        raise Invalid("scheduler", f"{node['_target_']}: {exc}") from None


def _check_callbacks(nodes: Any) -> None:
    """Build each callback once (``callbacks.<name>``, a ``_target_`` node or null for off), so
    that a bad value (``callbacks.ema.decay=1.5``) is one line naming the key at start-up."""
    require(
        nodes is None or isinstance(nodes, dict),
        "callbacks",
        "must be a mapping of name to callback",
    )
    for name, node in (nodes or {}).items():
        built = _check_partial(node, f"callbacks.{name}")
        if built is None:
            continue
        target, kwargs = built
        try:
            target(**kwargs)
        except Exception as exc:  # Lightning raises MisconfigurationException, ValueError...
            raise Invalid(f"callbacks.{name}", f"{node['_target_']}: {exc}") from None


#: Trainer keys that take whole numbers, and those that take a number (a fraction or a count).
_TRAINER_INTS = (
    "max_epochs", "min_epochs", "max_steps", "min_steps", "num_nodes", "accumulate_grad_batches",
    "log_every_n_steps", "check_val_every_n_epoch", "num_sanity_val_steps",
)  # fmt: skip
_TRAINER_NUMBERS = (
    "limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
    "val_check_interval", "gradient_clip_val", "overfit_batches",
)  # fmt: skip


def _is_number(value: Any, whole: bool) -> bool:
    kinds = (int,) if whole else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool)


def _check_trainer_types(trainer: dict) -> None:
    """The Trainer's numeric keys hold numbers (``trainer.max_epochs=abc`` is one line)."""
    for key in (*_TRAINER_INTS, *_TRAINER_NUMBERS):
        value = trainer.get(key)
        whole = key in _TRAINER_INTS
        require(
            value is None or _is_number(value, whole),
            f"trainer.{key}",
            f"must be {'a whole number' if whole else 'a number'} (got {value!r})",
        )
    devices = trainer.get("devices")
    require(
        devices is None
        or _is_number(devices, True)
        or (isinstance(devices, str) and (devices == "auto" or devices.lstrip("-").isdigit()))
        or (isinstance(devices, list) and all(_is_number(d, True) for d in devices)),
        "trainer.devices",
        f"must be a count, -1, 'auto' or a list of device ids (got {devices!r})",
    )


@dataclass
class TrainConfig:
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: Any = field(default_factory=dict)
    optimizer: Any = field(default_factory=dict)
    scheduler: Any = None
    trainer: Any = field(default_factory=dict)
    callbacks: Any = field(default_factory=dict)
    logger: Any = field(default_factory=dict)
    task_name: str = "train"  # runs live in <paths.log_dir>/<task_name>/ (firedpy_nrt.train.runs)
    seed: int | None = 42  # seeds python, numpy, torch and dataloader workers; null for none
    train: bool = True  # fit; false with ckpt_path=... only tests that checkpoint
    test: bool = True  # test the best checkpoint on the test fires after fitting
    ckpt_path: str | None = None  # "last" (the task's newest last.ckpt) or a .ckpt path: resume
    optimized_metric: str = "val/iou"  # returned by train() for sweepers

    def check(self) -> None:
        require_plain_name(self.task_name, "task_name")
        loss_target = _check_partial(self.loss, "loss")
        if loss_target is not None:
            target, kwargs = loss_target
            try:
                target(**kwargs)
            except Invalid as exc:
                raise Invalid(f"loss.{exc.key}", exc.message) from None
        opt = _check_partial(self.optimizer, "optimizer")
        require(opt is not None, "optimizer", "an optimizer is required (e.g. optimizer=adamw)")
        lr = self.optimizer.get("lr")
        require(lr is not None and float(lr) > 0, "optimizer.lr", "must be > 0")
        _check_scheduler(self.scheduler)
        _check_callbacks(self.callbacks)
        require(
            isinstance(self.trainer, dict) and "_target_" in self.trainer,
            "trainer",
            "needs a _target_ (e.g. trainer=cpu)",
        )
        precision = self.trainer.get("precision")
        require(
            precision is None or str(precision) in PRECISIONS,
            "trainer.precision",
            f"must be one of {', '.join(dict.fromkeys(map(str, PRECISIONS)))} (got {precision!r})",
        )
        _check_trainer_types(self.trainer)
        for key in ("num_nodes", "accumulate_grad_batches"):
            value = self.trainer.get(key)
            if value is not None:
                require(value >= 1, f"trainer.{key}", "must be >= 1")
        devices = self.trainer.get("devices")
        if isinstance(devices, int):
            require(devices >= 1 or devices == -1, "trainer.devices", "must be >= 1 or -1")
        max_epochs = self.trainer.get("max_epochs")
        if max_epochs is not None:
            require(max_epochs == -1 or max_epochs >= 1, "trainer.max_epochs", "must be >= 1 or -1")
        clip = self.trainer.get("gradient_clip_val")
        require(clip is None or float(clip) >= 0, "trainer.gradient_clip_val", "must be >= 0")
        require(self.train or self.test, "train", "train and test are both false: nothing to do")
        require(
            self.optimized_metric.startswith(("val/", "test/", "train/")),
            "optimized_metric",
            f"must be a logged metric such as val/iou (got {self.optimized_metric!r})",
        )
        require(self.seed is None or self.seed >= 0, "seed", "must be >= 0 or null")
