"""Losses: finite for any logit, zero gradient on ignored pixels, right values on easy cases."""

import pytest
import torch

from firedpy_nrt.config import Invalid
from firedpy_nrt.models.losses import BCEDiceLoss, BCELoss, DiceLoss, FocalLoss

LOSSES = [BCELoss(), BCELoss(pos_weight=3.0), DiceLoss(), FocalLoss(), BCEDiceLoss()]


def _target() -> torch.Tensor:
    t = torch.zeros(2, 8, 8, dtype=torch.uint8)
    t[:, 2:6, 2:6] = 1
    t[0, 0, :] = 255
    t[1, :, 7] = 255
    return t


@pytest.mark.parametrize("loss", LOSSES, ids=lambda m: type(m).__name__)
def test_ignored_pixels_get_zero_gradient(loss: torch.nn.Module) -> None:
    target = _target()
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    loss(logits, target).backward()
    grad = logits.grad[:, 0]
    assert torch.all(grad[target == 255] == 0)
    assert grad[target != 255].abs().sum() > 0


@pytest.mark.parametrize("loss", LOSSES, ids=lambda m: type(m).__name__)
def test_ignored_values_do_not_change_the_loss(loss: torch.nn.Module) -> None:
    target = _target()
    logits = torch.randn(2, 1, 8, 8)
    other = logits.clone()
    other[:, 0][target == 255] = 50.0  # wild logits where the label is nodata
    assert torch.allclose(loss(logits, target), loss(other, target))


@pytest.mark.parametrize("loss", LOSSES, ids=lambda m: type(m).__name__)
def test_finite_for_extreme_logits_and_all_ignored(loss: torch.nn.Module) -> None:
    target = _target()
    logits = torch.full((2, 1, 8, 8), 1e4, requires_grad=True)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    none = torch.full_like(target, 255)
    empty = loss(torch.randn(2, 1, 8, 8, requires_grad=True), none)
    assert torch.isfinite(empty)


def test_perfect_prediction_scores_near_zero_and_wrong_one_high() -> None:
    target = _target()
    y = torch.where(target == 1, 20.0, -20.0)[:, None].float()
    for loss in LOSSES:
        assert float(loss(y, target)) < 0.01, type(loss).__name__
        assert float(loss(-y, target)) > 0.5, type(loss).__name__


def test_bce_matches_torch_on_valid_pixels_and_pos_weight_weighs_burned() -> None:
    target = _target()
    logits = torch.randn(2, 1, 8, 8)
    valid = target != 255
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[:, 0][valid], target[valid].float()
    )
    assert torch.allclose(BCELoss()(logits, target), expected, atol=1e-6)
    burned_wrong = torch.where(target == 1, -3.0, -3.0)[:, None]
    assert BCELoss(pos_weight=4.0)(burned_wrong, target) > BCELoss()(burned_wrong, target)


@pytest.mark.parametrize(
    ("cls", "kwargs", "key"),
    [
        (BCELoss, {"pos_weight": 0}, "pos_weight"),
        (DiceLoss, {"smooth": -1}, "smooth"),
        (FocalLoss, {"alpha": 2}, "alpha"),
        (FocalLoss, {"gamma": -1}, "gamma"),
        (BCEDiceLoss, {"bce_weight": 0, "dice_weight": 0}, "dice_weight"),
    ],
)
def test_bad_values_name_the_key(cls, kwargs, key) -> None:
    with pytest.raises(Invalid) as info:
        cls(**kwargs)
    assert info.value.key == key
