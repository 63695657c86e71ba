"""SegmentationModule: one training step per loss and backbone, metrics, checkpoints."""

import math

import pytest
import torch
from quiet_trainer import quiet_trainer

from firedpy_nrt.models.segmentation import SegmentationModule, segmentation_metrics

LOSSES = {
    "bce": {"_target_": "firedpy_nrt.models.losses.BCELoss", "pos_weight": 2.0},
    "dice": {"_target_": "firedpy_nrt.models.losses.DiceLoss"},
    "focal": {"_target_": "firedpy_nrt.models.losses.FocalLoss"},
    "bce_dice": {"_target_": "firedpy_nrt.models.losses.BCEDiceLoss"},
}


def _one_step_changes_weights(module: SegmentationModule, data, tmp_path) -> None:
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    loss = trainer.callback_metrics["train/loss_step"]
    assert math.isfinite(float(loss))
    changed = [k for k, v in module.net.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed)
    assert any(k.startswith("classifier.") for k in changed)
    # statistics came from the datamodule at fit start
    assert torch.allclose(module.normalize.mean, torch.tensor(data.stats["mean"]))


@pytest.fixture(scope="module")
def mobilenet() -> SegmentationModule:
    return SegmentationModule(net={"backbone": "mobilenet_v3_large"})


@pytest.mark.parametrize("loss", list(LOSSES))
def test_one_training_step_per_loss(loss, mobilenet, tiny_data) -> None:
    # The module's own loss, optimizer and batch hooks, stepped by hand (the Trainer path is
    # covered per backbone below): the loss is finite and moves backbone and head.
    tiny_data.setup("fit")
    module = mobilenet
    module.criterion = SegmentationModule(
        net={"backbone": "mobilenet_v3_large"}, loss=LOSSES[loss]
    ).criterion
    module.normalize.set_stats(tiny_data.stats["mean"], tiny_data.stats["std"])
    module.train()
    optimizer = module.configure_optimizers()  # no scheduler configured: the optimizer itself
    before = {k: v.clone() for k, v in module.net.named_parameters()}
    batch = module.on_after_batch_transfer(next(iter(tiny_data.train_dataloader())), 0)
    loss_value = module.training_step(batch, 0)
    assert torch.isfinite(loss_value)
    optimizer.zero_grad()
    loss_value.backward()
    optimizer.step()
    changed = [k for k, v in module.net.named_parameters() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed)
    assert any(k.startswith("classifier.") for k in changed)


@pytest.mark.parametrize(
    "backbone",
    ["mobilenet_v3_large", "resnet50", pytest.param("resnet101", marks=pytest.mark.slow)],
)
def test_one_training_step_per_backbone(backbone, tiny_data, tmp_path) -> None:
    module = SegmentationModule(net={"backbone": backbone})
    _one_step_changes_weights(module, tiny_data, tmp_path)


def test_backbone_gets_its_own_learning_rate() -> None:
    module = SegmentationModule(
        net={"backbone": "mobilenet_v3_large"},
        optimizer={"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.01},
        backbone_lr_mult=0.1,
        scheduler={"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "mode": "max"},
    )
    config = module.configure_optimizers()
    groups = {g["name"]: g for g in config["optimizer"].param_groups}
    assert groups["head"]["lr"] == pytest.approx(0.01)
    assert groups["backbone"]["lr"] == pytest.approx(0.001)
    n_params = sum(len(g["params"]) for g in groups.values())
    assert n_params == len(list(module.net.parameters()))
    assert config["lr_scheduler"]["monitor"] == "val/iou"


def test_metrics_ignore_255() -> None:
    metrics = segmentation_metrics("m/")
    target = torch.tensor([[0, 1, 1, 255, 255]])
    preds = torch.tensor([[0.1, 0.9, 0.2, 0.9, 0.1]])  # last two are wrong-ish but ignored
    out = {k: float(v) for k, v in metrics(preds, target).items()}
    assert out["m/iou"] == pytest.approx(0.5)  # burned: tp 1, fp 0, fn 1
    assert out["m/miou"] == pytest.approx((0.5 + 0.5) / 2)  # unburned: tp 1, fn 0, fp 1
    assert out["m/acc"] == pytest.approx(2 / 3)
    assert out["m/precision"] == pytest.approx(1.0)
    assert out["m/recall"] == pytest.approx(0.5)
    flipped = target.clone()
    flipped[target == 255] = 1
    assert float(segmentation_metrics("m/")(preds, flipped)["m/acc"]) != out["m/acc"]


def test_checkpoint_rebuilds_the_module_and_forward_takes_raw_nan_images(
    tiny_data, tmp_path
) -> None:
    module = SegmentationModule(net={"backbone": "mobilenet_v3_large"}, threshold=0.4)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_data)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = SegmentationModule.load_from_checkpoint(path).eval()
    assert loaded.hparams.threshold == 0.4
    assert torch.equal(loaded.normalize.mean, module.normalize.mean)
    image = torch.randn(1, 3, 32, 32)
    image[:, 2, :8] = float("nan")
    module.eval()
    with torch.no_grad():
        out = loaded(image)
        assert out.shape == (1, 1, 32, 32) and torch.isfinite(out).all()
        assert torch.allclose(out, module(image))
    ckpt = torch.load(path, weights_only=False)
    # the input layers travel by name; the fire split is the datamodule's to save, not the model's
    assert ckpt["hyper_parameters"]["channels"] == ["lum_change", "coh_change", "dnbr"]
    assert loaded.dnbr_channel == 2
    assert not any("split" in str(k) for k in ckpt)


def test_test_step_logs_model_and_both_baselines(tiny_data, tmp_path) -> None:
    module = SegmentationModule(net={"backbone": "mobilenet_v3_large"})
    trainer = quiet_trainer(tmp_path)
    (result,) = trainer.test(module, datamodule=tiny_data, verbose=False)
    for prefix in ("test/", "test/dnbr_", "test/all_burned_"):
        for name in ("iou", "miou", "f1", "precision", "recall", "acc"):
            assert prefix + name in result
    # "everything burned": recall 1, IoU = precision = burned share of the valid pixels
    assert result["test/all_burned_recall"] == pytest.approx(1.0)
    assert result["test/all_burned_iou"] == pytest.approx(result["test/all_burned_precision"])
    labels = torch.cat([tiny_data.test_set.label])
    valid = labels != 255
    share = float((labels[valid] == 1).float().mean())
    assert result["test/all_burned_iou"] == pytest.approx(share, abs=1e-5)
    # the dNBR baseline counts its NaN cloud as unburned, so burned pixels there are misses
    dnbr = tiny_data.test_set.image[:, 2]
    pred = (dnbr >= 0.1) & valid
    truth = (labels == 1) & valid
    iou = float((pred & truth).sum() / (pred | truth).sum())
    assert result["test/dnbr_iou"] == pytest.approx(iou, abs=1e-5)
