"""Prediction with the real SegmentationModule (DeepLabV3, MobileNetV3 backbone, random weights)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from predict_support import compose, lightning_checkpoint, write_match_csv
from rasterio.windows import Window

from firedpy_nrt.errors import DataError
from firedpy_nrt.predict.run import predict

segmentation = pytest.importorskip("firedpy_nrt.models.segmentation")

RUN = "train/runs/2026-03-01_09-00-00"


def _module(channels: tuple[str, ...] = ("lum_change", "coh_change", "dnbr")):
    torch.manual_seed(0)
    in_layers = len(channels)
    module = segmentation.SegmentationModule(
        channels=channels, net={"backbone": "mobilenet_v3_large"}, threshold=0.45
    )
    # non-trivial normalisation statistics, as a training run would store
    module.normalize.mean.copy_(torch.tensor([0.5, -0.2, 0.1][:in_layers]))
    module.normalize.std.copy_(torch.tensor([2.0, 0.5, 0.3][:in_layers]))
    # a fresh network maps everything to one value; give BatchNorm statistics and a sharper head
    # so the map varies from pixel to pixel (a misplaced tile would show)
    module.train()
    with torch.no_grad():
        for _ in range(3):
            module(torch.randn(4, in_layers, 64, 64) * 2)
    module.eval()
    head = module.net.classifier[-1]
    with torch.no_grad():
        head.weight.mul_(200.0)
        head.bias.zero_()
        head.bias.sub_(module(torch.randn(2, in_layers, 64, 64)).mean())
    return module


def _cfg(tmp_path, *extra: str):
    return compose(
        [
            "ckpt=best",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.output_dir={tmp_path / 'run'}",
            f"output_dir={tmp_path / 'out'}",
            "trainer.accelerator=cpu",
            *extra,
        ]
    )


def test_one_tile_scene_equals_the_models_own_output(tmp_path, scene_factory) -> None:
    """A scene of one tile is not blended: the map is exactly the module's forward on the raw
    aligned image (its checkpoint's normalisation included), on the input's grid."""
    from firedpy_nrt.data.raster import AlignedRow

    s = scene_factory(64, 64, fire="51")
    other = scene_factory(70, 90, fire="52", seed=5)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s, other], ["51", "52"])
    module = _module()
    lightning_checkpoint(
        tmp_path / "logs" / RUN / "checkpoints/best.ckpt", module, {"test": ["51"]}
    )
    result = predict(_cfg(tmp_path, f"data.match_csv={csv_path}", "tile_size=64", "overlap=16"))
    assert [sc.fire_id for sc in result.scenes] == ["51"]  # split=test: the held-out fire only

    with AlignedRow(s.row(), "test") as reader:
        image, _ = reader.read(Window(0, 0, 64, 64))
    with torch.no_grad():
        expected = torch.sigmoid(module(torch.from_numpy(image)[None]))[0, 0].numpy()
    with h5py.File(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5") as f:
        prob, mask = f["prediction"][:], f["mask"][:]
        assert f["metadata"].attrs["threshold"] == pytest.approx(0.45)  # the checkpoint's
    nodata = np.isnan(s.lum)
    assert expected[~nodata].std() > 0.01
    np.testing.assert_allclose(prob[~nodata], expected[~nodata], rtol=0, atol=1e-5)
    assert np.isnan(prob[nodata]).all() and (mask[nodata] == 255).all()
    np.testing.assert_array_equal(mask[~nodata], (prob[~nodata] > 0.45).astype(np.uint8))
    assert (tmp_path / "out/evaluation.csv").exists()


def test_tiled_scene_and_channel_check(tmp_path, scene_factory) -> None:
    s = scene_factory(100, 77, fire="53", label=False)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s], ["53"])
    lightning_checkpoint(tmp_path / "logs" / RUN / "checkpoints/best.ckpt", _module(), None)
    predict(_cfg(tmp_path, f"data.match_csv={csv_path}", "split=all", "tile_size=48",
                 "overlap=16", "blend=linear"))  # fmt: skip
    with h5py.File(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5") as f:
        prob = f["prediction"][:]
    assert prob.shape == (100, 77)
    assert np.isfinite(prob[~np.isnan(s.lum)]).all() and np.isnan(prob[np.isnan(s.lum)]).all()

    # a checkpoint trained on other layers is refused by their names, before any tile is read
    lightning_checkpoint(tmp_path / "two.ckpt", _module(("lum_change", "coh_change")), None)
    with pytest.raises(
        DataError,
        match=r"two\.ckpt was trained on the layers lum_change, coh_change; prediction reads "
        "lum_change, coh_change, dnbr",
    ):
        predict(_cfg(tmp_path, f"ckpt={tmp_path / 'two.ckpt'}", f"data.match_csv={csv_path}",
                     "split=all", f"output_dir={tmp_path / 'out2'}"))  # fmt: skip
