"""Networks: one logit, first conv for 2 x layers, local weights files only."""

import pytest
import torch

from firedpy_nrt.errors import ConfigError
from firedpy_nrt.models.networks import build_deeplabv3, first_conv_slot, group_count


def _conv(model):
    parent, name = first_conv_slot(model)
    return getattr(parent, name)


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v3_large"])
def test_one_logit_and_adapted_first_conv(backbone: str) -> None:
    model = build_deeplabv3(backbone, in_channels=6).eval()
    assert _conv(model).in_channels == 6
    with torch.no_grad():
        out = model(torch.randn(1, 6, 64, 48))["out"]
    assert out.shape == (1, 1, 64, 48)


@pytest.mark.slow
def test_resnet101_builds() -> None:
    model = build_deeplabv3("resnet101", in_channels=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 4, 32, 32))["out"].shape == (1, 1, 32, 32)


def test_weights_path_loads_a_torchvision_backbone_file(tmp_path) -> None:
    from torchvision.models import mobilenet_v3_large

    rgb = mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet.pth"
    torch.save(rgb.state_dict(), path)
    model = build_deeplabv3("mobilenet_v3_large", in_channels=6, weights_path=str(path))
    # inner layers copied as is; the RGB first conv spread over the 6 inputs (mean, scaled)
    assert torch.equal(model.backbone["4"].block[0][0].weight, rgb.features[4].block[0][0].weight)
    rgb_conv = rgb.features[0][0].weight
    expected = rgb_conv.mean(dim=1, keepdim=True).repeat(1, 6, 1, 1) * 0.5
    assert torch.allclose(_conv(model).weight, expected)


def test_weights_path_of_a_full_model_keeps_its_first_conv(tmp_path) -> None:
    source = build_deeplabv3("mobilenet_v3_large", in_channels=6)
    path = tmp_path / "full.pth"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_deeplabv3("mobilenet_v3_large", in_channels=6, weights_path=str(path))
    for (k, a), b in zip(source.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_bad_weights_and_backbone_are_config_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="weights_path.*no such file"):
        build_deeplabv3("mobilenet_v3_large", weights_path=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="weights_path.*cannot read"):
        build_deeplabv3("mobilenet_v3_large", weights_path=str(junk))
    other = tmp_path / "other.pth"
    torch.save({"foo.weight": torch.zeros(3)}, other)
    with pytest.raises(ConfigError, match="no weights for"):
        build_deeplabv3("mobilenet_v3_large", weights_path=str(other))
    with pytest.raises(ConfigError, match="backbone"):
        build_deeplabv3("vgg16")


def test_weights_backbone_is_never_downloaded(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="not in the local cache"):
        build_deeplabv3("mobilenet_v3_large", weights_backbone="IMAGENET1K_V1")
    with pytest.raises(ConfigError, match="not a weights name"):
        build_deeplabv3("mobilenet_v3_large", weights_backbone="NOPE")


def test_random_init_gives_each_input_channel_its_own_filters() -> None:
    conv = _conv(build_deeplabv3("mobilenet_v3_large", in_channels=6))
    w = conv.weight
    assert not torch.allclose(w[:, 0], w[:, 1])  # not one filter repeated over the channels
    assert 0.05 < float(w.std()) < 1.0


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v3_large"])
def test_deeplabv3plus_decoder_full_resolution_and_shared_backbone(backbone: str, tmp_path) -> None:
    model = build_deeplabv3(backbone, in_channels=6, decoder="deeplabv3plus").eval()
    assert _conv(model).in_channels == 6
    with torch.no_grad():
        out = model(torch.randn(2, 6, 64, 48))["out"]
    assert out.shape == (2, 1, 64, 48)
    # A full model of ours (net. prefix, DeepLabV3+ keys) loads back whole: same outputs.
    path = tmp_path / "v3plus.ckpt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in model.state_dict().items()}}, path)
    again = build_deeplabv3(
        backbone, in_channels=6, decoder="deeplabv3plus", weights_path=str(path)
    ).eval()
    x = torch.randn(1, 6, 32, 32)
    with torch.no_grad():
        assert torch.allclose(again(x)["out"], model(x)["out"], atol=1e-5)


def test_decoder_edges_are_finer_than_the_plain_head() -> None:
    """The skip connection lets the logits change within a 16-pixel cell: the plain head's
    output is a bilinear blow-up of a 4x4 map (on a 64-pixel chip) and cannot."""
    torch.manual_seed(0)
    x = torch.zeros(1, 6, 64, 64)
    x[:, 0, :, 30:] = 3.0  # a sharp edge mid-cell
    plain = build_deeplabv3("mobilenet_v3_large", 6).eval()
    plus = build_deeplabv3("mobilenet_v3_large", 6, decoder="deeplabv3plus").eval()
    with torch.no_grad():
        rough = plain(x)["out"][0, 0]
        fine = plus(x)["out"][0, 0]

    # second differences along the edge direction measure detail the head can draw
    def detail(a):
        return (a[:, 2:] - 2 * a[:, 1:-1] + a[:, :-2]).abs().mean()

    assert detail(fine) > 2 * detail(rough)


def test_unknown_decoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.net.decoder"):
        build_deeplabv3("mobilenet_v3_large", 6, decoder="unet")


@pytest.mark.parametrize("decoder", ["deeplabv3", "deeplabv3plus"])
def test_aspp_width_and_rates_are_what_the_keys_say(decoder: str) -> None:
    """``model.net.aspp_channels``/``atrous_rates`` shape the ASPP of both heads; the defaults
    are torchvision's head exactly (same parameter names and shapes)."""
    default = build_deeplabv3("mobilenet_v3_large", 6, decoder=decoder)
    if decoder == "deeplabv3":
        assert {k: v.shape for k, v in default.state_dict().items()} == torchvision_state()
    else:
        assert default.aspp.project[0].out_channels == 256
    small = build_deeplabv3(
        "mobilenet_v3_large", 6, decoder=decoder, aspp_channels=96, atrous_rates=[2, 4]
    ).eval()
    aspp = small.aspp if decoder == "deeplabv3plus" else small.classifier[0]
    dilations = [m.dilation for m in aspp.modules() if isinstance(m, torch.nn.Conv2d)]
    assert (2, 2) in dilations and (4, 4) in dilations and (12, 12) not in dilations
    assert aspp.project[0].out_channels == 96
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in default.parameters())
    with torch.no_grad():
        assert small(torch.randn(2, 6, 64, 48))["out"].shape == (2, 1, 64, 48)


def torchvision_state() -> dict:
    """Parameter shapes of torchvision's own DeepLabV3-MobileNetV3 with a 6-channel first conv."""
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    model = deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=1, aux_loss=False
    )
    conv = model.backbone["0"][0]
    model.backbone["0"][0] = torch.nn.Conv2d(6, conv.out_channels, 3, 2, 1, bias=False)
    return {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("decoder", ["deeplabv3", "deeplabv3plus"])
def test_group_norm_treats_each_chip_alone_in_training_and_evaluation(decoder: str) -> None:
    """``model.net.norm=group``: no BatchNorm left, and a chip's logits do not depend on the
    other chips of its batch nor on train/eval mode, so what validation and prediction see is
    what training optimised (with BatchNorm both differ); a batch of one trains."""
    batch = build_deeplabv3("mobilenet_v3_large", 6, decoder=decoder, aspp_channels=64)
    model = build_deeplabv3(
        "mobilenet_v3_large", 6, decoder=decoder, aspp_channels=64, norm="group"
    )
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    groups = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(groups) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules())
    # at least 8 channels a group, so a chip's mean level is not normalised away at the stem
    assert all(g.num_channels % g.num_groups == 0 for g in groups)
    assert all(g.num_channels // g.num_groups >= 8 and g.num_groups > 1 for g in groups)
    assert [group_count(c) for c in (16, 24, 40, 72, 128, 960, 7)] == [2, 2, 4, 8, 16, 32, 1]
    x = torch.randn(4, 6, 64, 64)
    x[1:] = x[1:] * 3.0 + 2.0  # batch-mates of another brightness

    def training_mode(net):  # normalisation as in training, dropout (ASPP's) held still
        net.train()
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        return net

    with torch.no_grad():
        together = training_mode(model)(x)["out"][:1]
        alone_train = model(x[:1])["out"]
        alone_eval = model.eval()(x[:1])["out"]
        training_mode(batch)
        bn_together, bn_alone = batch(x)["out"][:1], batch(torch.cat([x[:1], x[:1]]))["out"][:1]
    assert torch.allclose(together, alone_train, atol=1e-5)
    assert torch.allclose(alone_train, alone_eval, atol=1e-5)
    assert not torch.allclose(bn_together, bn_alone, atol=1e-3)  # what BatchNorm does instead
    model.train()
    loss = model(torch.randn(1, 6, 64, 64))["out"].mean()  # BatchNorm refuses a batch of one
    loss.backward()


def test_group_norm_keeps_loaded_affine_weights_and_a_bad_norm_is_a_config_error(tmp_path) -> None:
    source = build_deeplabv3("mobilenet_v3_large", in_channels=6)
    with torch.no_grad():
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    path = tmp_path / "full.pth"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_deeplabv3("mobilenet_v3_large", 6, weights_path=str(path), norm="group")
    bn = [m.weight for m in source.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    gn = [m.weight for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(bn) == len(gn) and all(torch.equal(a, b) for a, b in zip(bn, gn, strict=True))
    with pytest.raises(ConfigError, match="model.net.norm"):
        build_deeplabv3("mobilenet_v3_large", 6, norm="layer")
