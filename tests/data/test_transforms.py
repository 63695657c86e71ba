"""Normalize (values + validity channels) and joint batch augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from firedpy_nrt.data.transforms import BatchAugment, Normalize


def test_normalize_values_validity_and_nan_fill():
    norm = Normalize(3, mean=[1.0, 2.0, 3.0], std=[2.0, 4.0, 0.5])
    x = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1).repeat(2, 1, 2, 2)
    x[0, 0, 0, 0] = 5.0
    x[1, 2, 1, 1] = math.nan  # dNBR under cloud
    x[0, 1, 0, 1] = math.inf
    out = norm(x)
    assert out.shape == (2, 6, 2, 2) and norm.out_channels == 6
    assert out[0, 0, 0, 0] == pytest.approx(2.0)
    assert torch.isfinite(out).all()
    assert out[1, 2, 1, 1] == 0 and out[1, 5, 1, 1] == 0  # filled, and marked invalid
    assert out[0, 1, 0, 1] == 0 and out[0, 4, 0, 1] == 0
    valid = out[:, 3:]
    assert valid.sum() == 2 * 3 * 4 - 2
    assert set(valid.unique().tolist()) == {0.0, 1.0}


def test_normalize_buffers_travel_in_state_dict():
    norm = Normalize(3)
    norm.set_stats({"mean": [0.5, -1.0, 0.1], "std": [2.0, 0.0, 1.0]})
    assert norm.std.tolist() == [2.0, 1.0, 1.0]  # a constant channel is not divided by zero
    other = Normalize(3)
    other.load_state_dict(norm.state_dict())
    assert torch.equal(other.mean, norm.mean) and torch.equal(other.std, norm.std)
    with pytest.raises(ValueError):
        norm.set_stats([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError):
        norm(torch.zeros(1, 2, 4, 4))


def _batch(b=64, h=8, w=8):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(b, 3, h, w, generator=g)
    image[:, 2, 0, 0] = math.nan
    label = (image[:, 0] > 0).to(torch.uint8)
    label[:, 0, 1] = 255
    return image, label


@pytest.mark.parametrize("shape", [(8, 8), (6, 10)])
def test_augment_keeps_image_and_label_aligned(shape):
    torch.manual_seed(1)
    image, label = _batch(h=shape[0], w=shape[1])
    aug = BatchAugment(hflip=True, vflip=True, rot90=True).train()
    out_img, out_lab = aug(image, label)
    assert out_img.shape == image.shape and out_lab.shape == label.shape
    assert out_lab.dtype == torch.uint8
    # label still follows the image pixel by pixel, ignore pixels moved with the NaN pixels
    assert torch.equal((out_img[:, 0] > 0).to(torch.uint8)[out_lab != 255], out_lab[out_lab != 255])
    assert (out_lab == 255).sum() == (label == 255).sum()
    assert torch.isnan(out_img[:, 2]).sum() == torch.isnan(image[:, 2]).sum()
    # each sample is one of the 8 (square) or 4 (non-square) symmetries of its original
    changed = 0
    for i in range(image.shape[0]):
        cands = [image[i], image[i].flip(-1), image[i].flip(-2), image[i].flip(-1).flip(-2)]
        if shape[0] == shape[1]:
            cands += [torch.rot90(c, 1, (-2, -1)) for c in cands]
        assert any(torch.equal(torch.nan_to_num(out_img[i]), torch.nan_to_num(c)) for c in cands)
        changed += not torch.equal(torch.nan_to_num(out_img[i]), torch.nan_to_num(image[i]))
    assert 0 < changed < image.shape[0]
    # the inputs were not modified in place
    assert torch.equal((image[:, 0] > 0).to(torch.uint8)[label != 255], label[label != 255])


def test_augment_is_a_no_op_in_eval_and_when_disabled():
    image, label = _batch()
    out = BatchAugment().eval()(image, label)
    assert out[0] is image and out[1] is label
    off = BatchAugment(hflip=False, vflip=False, rot90=False).train()
    assert off(image, label)[0] is image
    only_h = BatchAugment(hflip=True, vflip=False, rot90=False, p=1.0).train()
    img, lab = only_h(image, label)
    assert torch.equal(torch.nan_to_num(img), torch.nan_to_num(image.flip(-1)))
    assert torch.equal(lab, label.flip(-1))


def test_augment_from_config():
    aug = BatchAugment.from_config({"hflip": False, "vflip": True, "rot90": False, "p": 0.25})
    assert (aug.hflip, aug.vflip, aug.rot90, aug.p) == (False, True, False, 0.25)
