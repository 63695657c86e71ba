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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_transforms_run_on_the_device():
    image, label = _batch()
    image, label = image.cuda(), label.cuda()
    out_img, out_lab = BatchAugment().train()(image, label)
    assert out_img.device == image.device and out_lab.device == label.device
    assert torch.equal((out_img[:, 0] > 0).to(torch.uint8)[out_lab != 255], out_lab[out_lab != 255])
    norm = Normalize(3, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]).cuda()
    assert norm(out_img).shape == (64, 6, 8, 8)


# -- photometric augmentation ---------------------------------------------------------------------

CHANNELS = ("lum_change", "coh_change", "dnbr")


def _raw_batch(b: int = 16, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    image = torch.randn(b, 3, size, size, generator=g)
    image[:, 0] -= 2.0  # dB-like luminance change
    image[:, 2, :5, :] = float("nan")  # cloud on the dNBR
    image[:, 0, :, -3:] = float("nan")  # SAR swath edge
    image[:, 1, :, -3:] = float("nan")
    label = (torch.rand(b, size, size, generator=g) > 0.5).to(torch.uint8)
    label[:, :, -3:] = 255
    return image, label


def test_photometric_changes_leave_label_and_sar_nodata_alone():
    image, label = _raw_batch()
    aug = BatchAugment(
        hflip=False, vflip=False, rot90=False, channels=CHANNELS, dnbr_drop_p=0.3,
        dnbr_blank_p=0.5, sar_gain=0.3, sar_offset=0.5, lum_sign_p=0.5, noise_std=0.1,
    ).train()
    torch.manual_seed(0)
    out, out_label = aug(image, label)
    assert torch.equal(out_label, label)
    # SAR nodata stays nodata and nothing new becomes nodata in the SAR channels.
    for c in (0, 1):
        assert torch.equal(torch.isnan(out[:, c]), torch.isnan(image[:, c]))
    # dNBR: only ever more nodata, never less; some whole samples hidden, some rectangles.
    before, after = torch.isnan(image[:, 2]), torch.isnan(out[:, 2])
    assert not (before & ~after).any()
    hidden = (after & ~before).flatten(1).sum(1)
    full = (~before).flatten(1).sum(1)
    assert (hidden == full).any() and ((hidden > 0) & (hidden < full)).any()
    # SAR values changed: gain, offset, sign and noise.
    ok = ~torch.isnan(image[:, 0])
    assert not torch.allclose(out[:, 0][ok], image[:, 0][ok])
    flipped = (out[:, 0].nanmean(dim=(-2, -1)) > 0).sum()
    assert flipped > 0  # some luminance changes now brighten


def test_photometric_changes_are_off_in_eval_and_by_default():
    image, label = _raw_batch()
    aug = BatchAugment(channels=CHANNELS, dnbr_drop_p=1.0, noise_std=1.0).eval()
    out, out_label = aug(image, label)
    assert torch.equal(torch.isnan(out), torch.isnan(image))
    assert torch.equal(out[~torch.isnan(out)], image[~torch.isnan(image)])
    default = BatchAugment(channels=CHANNELS)
    assert default.geometric and not default.photometric


def test_photometric_with_flips_keeps_image_and_label_aligned():
    """A label-coded image: after flips and photometric changes the finite dNBR pixels still
    sit where the label says they came from."""
    b, size = 8, 16
    label = (torch.rand(b, size, size) > 0.5).to(torch.uint8)
    image = torch.stack([label.float() * 5 - 2, label.float(), label.float() * 10], dim=1)
    aug = BatchAugment(channels=CHANNELS, p=1.0, dnbr_blank_p=1.0, sar_gain=0.2).train()
    torch.manual_seed(3)
    out, out_label = aug(image, label)
    dnbr = out[:, 2]
    ok = ~torch.isnan(dnbr)
    assert torch.equal(dnbr[ok], out_label[ok].float() * 10)
    # SAR gain keeps the sign pattern of a channel's pixels (no noise, no offset here).
    assert torch.equal(out[:, 1] > 0, out_label.bool())


def test_photometric_keys_are_checked():
    with pytest.raises(ValueError, match="dnbr_drop_p"):
        BatchAugment(channels=CHANNELS, dnbr_drop_p=1.5)
    with pytest.raises(ValueError, match="noise_std"):
        BatchAugment(channels=CHANNELS, noise_std=-1)


def test_sar_gain_is_log_uniform_between_its_inverse_and_itself():
    """``sar_gain=1``: each sample's SAR changes scaled by a factor in [0.5, 2], halving as
    likely as doubling, the same factor over the whole sample."""
    b = 4000
    image = torch.ones(b, 3, 4, 4)
    label = torch.zeros(b, 4, 4, dtype=torch.uint8)
    aug = BatchAugment(hflip=False, vflip=False, rot90=False, channels=CHANNELS, sar_gain=1.0)
    torch.manual_seed(0)
    out, _ = aug.train()(image, label)
    factor = out[:, 0, 0, 0]
    assert torch.equal(out[:, 0], factor.view(b, 1, 1).expand(b, 4, 4))
    assert 0.5 - 1e-6 <= float(factor.min()) < 0.52 and 1.96 < float(factor.max()) <= 2 + 1e-6
    log2 = factor.log2()
    assert abs(float((log2 < 0).float().mean()) - 0.5) < 0.03
    assert abs(float((log2.abs() < 0.5).float().mean()) - 0.5) < 0.03  # uniform in log
    assert torch.equal(out[:, 2], image[:, 2])  # the dNBR is not SAR


def test_moisture_adds_a_smooth_field_to_the_luminance_change_only():
    """``moisture_db=2``: each sample's luminance change gains a smooth field (an offset, a tilt
    or one rise or dip: neighbouring pixels move together, unlike noise) whose size varies from
    sample to sample up to a few dB; coherence and dNBR are untouched, nodata stays nodata and
    the label is not changed."""
    image, label = _raw_batch(b=64, size=32)
    aug = BatchAugment(hflip=False, vflip=False, rot90=False, channels=CHANNELS, moisture_db=2.0)
    aug.train()
    for seed in range(6):  # offsets, tilts and bumps (one kind per batch)
        torch.manual_seed(seed)
        out, out_label = aug(image, label)
        assert torch.equal(out_label, label)
        assert torch.equal(torch.isnan(out), torch.isnan(image))
        for c in (1, 2):
            ok = ~torch.isnan(image[:, c])
            assert torch.equal(out[:, c][ok], image[:, c][ok])
        added = (out[:, 0] - image[:, 0])[:, :, :-3]  # the swath edge is NaN
        size = added.abs().amax(dim=(-2, -1))
        steps = (added[:, :, 1:] - added[:, :, :-1]).abs().amax(dim=(-2, -1))
        assert bool((steps <= 0.25 * size + 1e-5).all())  # smooth: small steps for its size
        assert float(size.max()) > 1.0 and float(size.min()) < 0.3  # U(0, 2) dB amplitude
        assert float(size.max()) < 5 * 2.0
    with pytest.raises(ValueError, match="moisture_db"):
        BatchAugment(channels=CHANNELS, moisture_db=-0.5)


def _blocks(b: int = 32, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Label-coded chips of 8 px blocks (so resampling moves only block edges): channel 0 is
    +1 / -1 where the label is 1 / 0, channel 2 (dNBR) 10 / 0, the left 8 columns nodata
    (NaN in every layer, label 255)."""
    g = torch.Generator().manual_seed(5)
    cells = (torch.rand(b, size // 8, size // 8, generator=g) > 0.5).to(torch.uint8)
    label = cells.repeat_interleave(8, 1).repeat_interleave(8, 2)
    lab = label.float()
    image = torch.stack([lab * 2 - 1, torch.full_like(lab, 0.5), lab * 10], dim=1)
    image[:, :, :, :8] = float("nan")
    label[:, :, :8] = 255
    return image, label


def test_zoom_keeps_image_label_and_nodata_aligned():
    """``scale=1``: zoom factors from 1/2 to 2. A zoom in enlarges a crop, a zoom out shrinks
    the chip into nodata; either way the label still follows the image (up to the resampled
    block edges), nodata stays label 255 and is never filled with values, and the values are
    the chip's own (no bleeding of NaN or of the fill into them)."""
    image, label = _blocks()
    aug = BatchAugment(hflip=False, vflip=False, rot90=False, channels=CHANNELS, scale=1.0,
                       scale_p=1.0).train()
    torch.manual_seed(0)
    out, out_label = aug(image, label)
    assert out.shape == image.shape and out_label.dtype == torch.uint8
    assert set(out_label.unique().tolist()) <= {0, 1, 255}
    labelled = out_label != 255
    agree = ((out[:, 0] > 0) == (out_label == 1))[labelled].float().mean()
    assert float(agree) > 0.97
    # nodata: a labelled pixel has data, a pixel without data is not labelled (to the edges)
    finite = torch.isfinite(out[:, 0])
    assert float((labelled & ~finite).float().mean()) < 0.01
    assert float((finite & ~labelled).float().mean()) < 0.01
    assert torch.equal(finite, torch.isfinite(out[:, 1]))
    ok = out[:, 1][finite]
    torch.testing.assert_close(ok, torch.full_like(ok, 0.5))  # constant stays constant
    values = out[:, 2][finite]
    assert float(values.min()) >= 0 and float(values.max()) <= 10 + 1e-4
    # both ways: some chips keep a nodata frame on every side (zoomed out), some none
    empty = ~labelled
    framed = empty[:, 0].all(-1) | empty[:, -1].all(-1) | empty[:, :, -1].all(-1)
    assert 0 < int(framed.sum()) < image.shape[0]
    assert int((~empty[:, :, 0].all(-1)).sum()) > 0  # a crop that left the nodata columns out
    # inputs untouched
    assert torch.isnan(image[:, :, :, :8]).all() and (label[:, :, :8] == 255).all()


def test_zoom_factors_are_log_uniform_and_off_in_eval():
    """The labelled share of a wholly labelled chip shrinks by f**2 for f < 1 and stays whole
    for f >= 1; half the chips are zoomed in, half out, down to half the size."""
    b, size = 400, 32
    image = torch.ones(b, 3, size, size)
    label = torch.ones(b, size, size, dtype=torch.uint8)
    aug = BatchAugment(hflip=False, vflip=False, rot90=False, channels=CHANNELS, scale=1.0,
                       scale_p=1.0)
    assert aug.eval()(image, label)[0] is image
    torch.manual_seed(1)
    _, out_label = aug.train()(image, label)
    share = (out_label == 1).float().mean(dim=(-2, -1))
    shrunk = share < 1
    assert abs(float(shrunk.float().mean()) - 0.5) < 0.08
    assert float(share.min()) >= (16 / 32) ** 2 - 1e-6 and float(share[shrunk].max()) < 1
    half = BatchAugment(channels=CHANNELS, scale=1.0, scale_p=0.0, hflip=False, vflip=False,
                        rot90=False)
    assert not half.enabled
    with pytest.raises(ValueError, match="scale"):
        BatchAugment(channels=CHANNELS, scale=-0.5)
    with pytest.raises(ValueError, match="scale_p"):
        BatchAugment(channels=CHANNELS, scale=0.5, scale_p=2.0)
