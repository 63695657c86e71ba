"""End to end: CSV rows + checkpoint -> HDF5, COG, PNG and evaluation.csv on the input grid."""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from predict_standins import ConstantModule, ContextModule, LumModule
from predict_support import STANDIN_ARGS, run_predict_py, save_checkpoint, write_match_csv
from rasterio.crs import CRS

from firedpy_nrt.errors import ConfigError
from firedpy_nrt.predict.run import predict


def _sigmoid(lum: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(np.nan_to_num(lum, nan=0.0))).numpy()


def _read_h5(path: Path):
    with h5py.File(path, "r") as f:
        geo = dict(f["georeference"].attrs)
        meta = dict(f["metadata"].attrs)
        return f["prediction"][:], f["mask"][:], geo, meta


# (height, width): none a multiple of the tile (64), some smaller than one tile
SIZES = [(100, 77), (30, 45), (131, 64), (65, 190)]


def test_grid_values_and_nodata_equal_the_input(tmp_path, scene_factory, predict_cfg) -> None:
    scenes = [
        scene_factory(h, w, fire=str(1000 + i), seed=i, label=i % 2 == 0)
        for i, (h, w) in enumerate(SIZES)
    ]
    csv_path = write_match_csv(
        tmp_path / "data/match.csv", scenes, [str(1000 + i) for i in range(4)]
    )
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule(threshold=0.5))
    result = predict(predict_cfg(ckpt, csv_path))
    out = tmp_path / "out"
    assert result.output_dir == out
    for s, (h, w) in zip(scenes, SIZES, strict=True):
        stem = s.lum_change.stem
        prob, mask, geo, meta = _read_h5(out / f"{stem}_pred.h5")
        with rasterio.open(s.lum_change) as src:
            crs, transform = src.crs, src.transform
            assert (src.height, src.width) == (h, w)
        assert prob.shape == mask.shape == (h, w)
        assert CRS.from_wkt(geo["crs"]) == crs
        assert Affine.from_gdal(*geo["transform"]) == transform
        assert (geo["height"], geo["width"]) == (h, w)
        # the model's map is sigmoid(lum), stitched back (to torch's SIMD-lane rounding);
        # lum nodata is nodata, every other pixel (dNBR cloud gap included) has a probability
        nodata = np.isnan(s.lum)
        expected = _sigmoid(s.lum)
        np.testing.assert_allclose(prob[~nodata], expected[~nodata], rtol=0, atol=1e-6)
        assert np.isnan(prob[nodata]).all() and (mask[nodata] == 255).all()
        assert np.isfinite(prob[~nodata]).all()
        np.testing.assert_array_equal(mask[~nodata], (prob[~nodata] > 0.5).astype(np.uint8))
        assert meta["checkpoint"] == str(ckpt.resolve()) and meta["threshold"] == 0.5
        assert meta["source_lum_change"] == str(s.lum_change)
        # the COG holds the same probabilities on the same grid
        with rasterio.open(out / f"{stem}_pred.tif") as cog:
            assert cog.crs == crs and cog.transform == transform and cog.shape == (h, w)
            assert np.isnan(cog.nodata)
            np.testing.assert_array_equal(cog.read(1), prob)
        assert (out / f"{stem}_pred.png").stat().st_size > 1000
    # only fires with a label are scored
    rows = list(csv.DictReader((out / "evaluation.csv").open()))
    assert [r["fire_id"] for r in rows] == ["1000", "1002", ""]
    assert not list(out.glob("*.tmp")) and not (out / ".partial").exists()


@pytest.mark.parametrize("tta", ["flip", "d4"])
def test_test_time_views_are_mapped_back_to_the_tile(tmp_path, scene_factory, predict_cfg, tta):
    """A per-pixel model sees the same pixel in every mirrored or turned view: averaged over
    the views after each is turned back, its map is exactly the map without them (a view left
    turned would move a pixel's value elsewhere), on scenes that are not square."""
    scenes = [scene_factory(h, w, fire=str(1000 + i), seed=i) for i, (h, w) in enumerate(SIZES)]
    csv_path = write_match_csv(tmp_path / "data/match.csv", scenes)
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule(threshold=0.5))
    predict(predict_cfg(ckpt, csv_path, f"tta={tta}"))
    for s in scenes:
        prob, _, _, meta = _read_h5(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5")
        ok = ~np.isnan(s.lum)
        np.testing.assert_allclose(prob[ok], _sigmoid(s.lum)[ok], rtol=0, atol=1e-6)
        assert meta["tta"] == tta


def test_test_time_augmentation_averages_the_views_of_an_oriented_model() -> None:
    """A model that is not symmetric (its logit grows along the columns and down the rows) is
    averaged over the views: mirrored left-right, its ramp runs the other way, so the flip
    average is flat along the rows and columns, unlike the model's own map."""
    from firedpy_nrt.predict.predictor import TilePredictor

    class Ramp(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            h, w = image.shape[-2:]
            ramp = torch.arange(w, dtype=torch.float32) + 10 * torch.arange(h)[:, None]
            return (image[:, :1] * 0 + ramp / 100.0).expand(image.shape[0], 1, h, w)

    image = torch.zeros(2, 3, 6, 8)
    plain = TilePredictor(Ramp())(image)
    flip = TilePredictor(Ramp(), "flip")(image)
    ramp = torch.arange(8.0) + 10 * torch.arange(6.0)[:, None]
    views = [ramp, ramp.flip(-1), ramp.flip(-2), ramp.flip(-1).flip(-2)]
    expected = torch.stack([torch.sigmoid(v / 100.0) for v in views]).mean(0)
    torch.testing.assert_close(flip, expected.expand(2, 6, 8))
    assert not torch.allclose(plain, flip)
    # the four corners see the same mix of views, unlike the plain map's
    corners = flip[0, [0, 0, -1, -1], [0, -1, 0, -1]]
    torch.testing.assert_close(corners, corners[:1].expand(4))
    square = torch.zeros(1, 3, 8, 8)
    d4 = TilePredictor(Ramp(), "d4")(square)
    torch.testing.assert_close(d4[0], d4[0].T)  # the quarter turns make it symmetric too
    with pytest.raises(ValueError, match="unknown tta 'rot'"):
        TilePredictor(Ramp(), "rot")


@pytest.mark.parametrize("blend", ["linear", "gaussian"])
def test_constant_model_gives_a_constant_map(tmp_path, scene_factory, predict_cfg, blend) -> None:
    s = scene_factory(150, 97)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s])
    ckpt = save_checkpoint(tmp_path / "c.ckpt", ConstantModule(value=0.3))
    predict(predict_cfg(ckpt, csv_path, f"blend={blend}", "overlap=40", module="ConstantModule"))
    prob, _, _, _ = _read_h5(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5")
    valid = prob[~np.isnan(s.lum)]
    one_tile = torch.sigmoid(torch.tensor(ConstantModule(value=0.3).logit, dtype=torch.float32))
    assert (valid == one_tile.item()).all()  # no seams: exactly the model's value everywhere
    assert valid[0] == pytest.approx(0.3)


def test_a_scene_smaller_than_a_tile_is_seen_as_itself(tmp_path, scene_factory, predict_cfg):
    """A 32 px scene in a 64 px tile is padded by mirroring, not with nodata: a model that pools
    over the whole tile (ASPP, squeeze-and-excitation) sees the scene's own context. Mirrored to
    twice its size the tile's statistics are exactly the scene's; NaN padding would make three
    quarters of the tile empty and shift every logit."""
    s = scene_factory(32, 32)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s])
    ckpt = save_checkpoint(tmp_path / "ctx.ckpt", ContextModule())
    predict(predict_cfg(ckpt, csv_path, "overlap=0", module="ContextModule"))
    prob, _, _, _ = _read_h5(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5")
    lum = np.nan_to_num(s.lum, nan=0.0)
    expected = torch.sigmoid(torch.from_numpy(lum - np.abs(lum).mean())).numpy()
    valid = ~np.isnan(s.lum)
    np.testing.assert_allclose(prob[valid], expected[valid], rtol=0, atol=1e-5)


def test_tiles_are_the_training_chips_unless_set(tmp_path, scene_factory, predict_cfg) -> None:
    """A checkpoint that records its training chips (32 px) is mapped in 32 px tiles overlapping
    by half: the extent the network learned from. ``tile_size``/``overlap`` set by hand win; an
    overlap the chips cannot take is one line naming the key."""
    s = scene_factory(100, 77)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule(), chip_size=32)
    h5 = tmp_path / "out" / f"{s.lum_change.stem}_pred.h5"
    for extra, expected in (
        (["tile_size=null", "overlap=null"], (32, 16)),
        (["tile_size=48", "overlap=null", "overwrite=true"], (48, 24)),
        (["tile_size=null", "overlap=4", "overwrite=true"], (32, 4)),
    ):
        predict(predict_cfg(ckpt, csv_path, *extra))
        prob, _, _, meta = _read_h5(h5)
        assert (meta["tile_size"], meta["overlap"]) == expected
        valid = ~np.isnan(s.lum)
        np.testing.assert_allclose(prob[valid], _sigmoid(s.lum)[valid], rtol=0, atol=1e-6)
    with pytest.raises(ConfigError) as exc:
        predict(predict_cfg(ckpt, csv_path, "tile_size=null", "overlap=40", "overwrite=true"))
    assert str(exc.value).startswith("config key 'overlap'") and "32" in str(exc.value)
    # a checkpoint that does not record its chips: 512 px tiles, as before
    old = save_checkpoint(tmp_path / "old.ckpt", LumModule())
    predict(predict_cfg(old, csv_path, "tile_size=null", "overlap=null", "overwrite=true"))
    assert (_read_h5(h5)[3]["tile_size"], _read_h5(h5)[3]["overlap"]) == (512, 256)


def test_evaluation_against_known_labels(tmp_path, scene_factory, predict_cfg) -> None:
    a = scene_factory(90, 70, fire="11", seed=3)
    b = scene_factory(40, 130, fire="12", seed=4)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [a, b], ["11", "12"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule(threshold=0.5))
    # threshold from config beats the checkpoint's: burned where sigmoid(lum) > 0.7
    result = predict(predict_cfg(ckpt, csv_path, "threshold=0.7"))
    totals = np.zeros(4)
    rows = {r["scene"]: r for r in csv.DictReader((tmp_path / "out/evaluation.csv").open())}
    for s in (a, b):
        valid = s.label != 255
        pred = (_read_h5(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5")[0] > 0.7)[valid]
        assert (pred == (_sigmoid(s.lum) > 0.7)[valid]).mean() > 0.999
        true = (s.label == 1)[valid]
        tp, fp = np.sum(pred & true), np.sum(pred & ~true)
        fn, tn = np.sum(~pred & true), np.sum(~pred & ~true)
        totals += (tp, fp, fn, tn)
        r = rows[s.lum_change.stem]
        assert (int(r["tp"]), int(r["fp"]), int(r["fn"]), int(r["tn"])) == (tp, fp, fn, tn)
        assert float(r["burned_iou"]) == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
        assert float(r["recall"]) == pytest.approx(tp / (tp + fn), abs=1e-6)
        assert fp == 0 and fn > 0  # labels burned where lum > 0; a 0.7 threshold misses some
    tp, fp, fn, tn = totals
    overall = rows["overall"]
    assert float(overall["burned_iou"]) == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
    iou0 = tn / (tn + fn + fp)
    assert float(overall["mean_iou"]) == pytest.approx((tp / (tp + fp + fn) + iou0) / 2, abs=1e-6)
    assert float(overall["accuracy"]) == pytest.approx((tp + tn) / totals.sum(), abs=1e-6)
    assert len(result.scores) == 2


def test_rows_without_label_and_test_split(tmp_path, scene_factory, predict_cfg) -> None:
    a = scene_factory(50, 60, fire="21", label=False)
    b = scene_factory(50, 60, fire="22", label=False)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [a, b], ["21", "22"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule(), {"test": ["22"], "train": ["21"]})
    result = predict(predict_cfg(ckpt, csv_path, "split=test"))
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    stem = b.lum_change.stem
    assert names == [f"{stem}_pred.h5", f"{stem}_pred.png", f"{stem}_pred.tif"]
    assert result.evaluation is None


def test_flat_memory_rows_stream_in_bands(
    tmp_path, scene_factory, predict_cfg, monkeypatch
) -> None:
    """The writers only ever see one band of rows; no full-scene array passes through them."""
    from firedpy_nrt.predict import writers

    s = scene_factory(700, 90)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    seen: list[tuple[int, int]] = []
    real = writers.HDF5Writer.write_rows

    def spy(self, y0, prediction, mask):
        seen.append((y0, prediction.shape[0]))
        return real(self, y0, prediction, mask)

    monkeypatch.setattr(writers.HDF5Writer, "write_rows", spy)
    predict(predict_cfg(ckpt, csv_path))
    assert max(h for _, h in seen) <= 64 < 700  # at most one tile's rows at a time
    assert sum(h for _, h in seen) == 700 and [y for y, _ in seen] == sorted(y for y, _ in seen)
    with h5py.File(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5", "r") as f:
        assert f["prediction"].chunks[0] <= 256 and f["mask"].chunks[0] <= 256


def test_peak_memory_does_not_follow_the_scene_height(tmp_path, scene_factory) -> None:
    """Stitching and streaming a 10x taller scene into its outputs: Python-side peak allocations
    (numpy included) grow by far less than one full-scene probability array (only bands of rows
    are held)."""
    import tracemalloc

    from firedpy_nrt.data.raster import AlignedRow
    from firedpy_nrt.predict.assembly import SceneAssembler, ScenePlan
    from firedpy_nrt.predict.tiling import BandAccumulator, TileLayout
    from firedpy_nrt.predict.writers import OutputPaths
    from firedpy_nrt.raster_grid import RasterGrid

    def stitch(height: int, run: int) -> int:
        files = scene_factory(height, 120, fire=f"{height}{run}")
        reader = AlignedRow(files.row(), "test")
        geo = RasterGrid(reader.crs, reader.transform, reader.width, reader.height)
        tiles = TileLayout.build(height, 120, 64, 16)
        scene = ScenePlan(
            0,
            "1",
            files.row(),
            "test",
            geo,
            tiles,
            OutputPaths.for_raster(tmp_path / f"out{run}", files.lum_change),
            True,
        )
        tile = np.full((64, 64), 0.25, dtype=np.float32)
        tracemalloc.start()
        assembler = SceneAssembler(scene, reader, "gaussian", 0.5)
        acc = BandAccumulator(tiles, "gaussian", assembler)
        for i in range(len(tiles)):
            acc.add(i, tile)
        acc.finish()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assembler.commit()  # the quicklook's canvas is bounded by its 800-px thumbnails
        return peak

    stitch(300, 0)  # one-off imports and caches
    small, tall = stitch(300, 1), stitch(3000, 2)
    full_scene = 3000 * 120 * 4  # one float32 probability array of the tall scene
    assert tall - small < full_scene / 10, (small, tall)
    assert tall < full_scene, (small, tall)


def test_ckpt_best_takes_the_training_runs_csv_and_test_fires(tmp_path, scene_factory) -> None:
    """`predict.py ckpt=best` after training: newest run, its CSV, its held-out fires."""
    from predict_support import compose

    a = scene_factory(40, 50, fire="41", seed=1)
    b = scene_factory(40, 50, fire="42", seed=2)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [a, b], ["41", "42"])
    logs = tmp_path / "logs"
    run = logs / "train/runs/2026-01-02_10-00-00"
    save_checkpoint(run / "checkpoints/best.ckpt", LumModule(), {"train": ["41"], "test": ["42"]})
    older = save_checkpoint(  # an older run: not taken
        logs / "train/runs/2026-01-01_10-00-00/checkpoints/best.ckpt", LumModule(), {"test": ["41"]}
    )
    os.utime(older, (1e9, 1e9))
    # the CSV comes from the run's resolved config.yaml, not Hydra's unresolved copy
    (run / ".hydra").mkdir()
    (run / ".hydra/config.yaml").write_text("data:\n  match_csv: ${paths.data_dir}/wrong.csv\n")
    (run / "config.yaml").write_text(f"data:\n  match_csv: {csv_path}\n")
    cfg = compose(
        [
            "ckpt=best",
            f"paths.log_dir={logs}",
            f"paths.output_dir={tmp_path / 'run'}",
            "module_class=predict_standins.LumModule",
            "tile_size=32",
            "overlap=8",
            "trainer.accelerator=cpu",
        ]
    )
    result = predict(cfg)
    assert result.checkpoint == run / "checkpoints/best.ckpt"
    out = tmp_path / "run/predictions"
    assert result.output_dir == out
    assert sorted(p.name for p in out.glob("*.h5")) == [f"{b.lum_change.stem}_pred.h5"]


def test_mixed_precision(tmp_path, scene_factory, predict_cfg) -> None:
    """trainer.precision reaches prediction: bf16 autocast on the CPU gives the fp32 map to bf16's
    precision, and the outputs stay float32."""
    from predict_standins import ConvModule

    s = scene_factory(70, 50)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s])
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "conv.ckpt", ConvModule())
    maps = {}
    for precision in ("32-true", "bf16-mixed"):
        out = tmp_path / precision
        predict(predict_cfg(ckpt, csv_path, f"trainer.precision={precision}", f"output_dir={out}",
                            module="ConvModule"))  # fmt: skip
        maps[precision] = _read_h5(out / f"{s.lum_change.stem}_pred.h5")[0]
    assert maps["bf16-mixed"].dtype == np.float32
    valid = ~np.isnan(s.lum)
    diff = np.abs(maps["bf16-mixed"][valid] - maps["32-true"][valid])
    assert diff.max() < 0.02 and diff.max() > 0  # bf16 did run: not bit-identical


def test_loader_workers_give_the_same_maps(tmp_path, scene_factory, predict_cfg) -> None:
    """Tiles read in DataLoader worker processes (each opens its own rasters) arrive in order."""
    scenes = [scene_factory(90, 70, fire="61", seed=1), scene_factory(50, 130, fire="62", seed=2)]
    csv_path = write_match_csv(tmp_path / "data/match.csv", scenes, ["61", "62"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    for workers in (0, 2):
        predict(
            predict_cfg(
                ckpt,
                csv_path,
                f"data.num_workers={workers}",
                f"output_dir={tmp_path / str(workers)}",
            )
        )
    for s in scenes:
        name = f"{s.lum_change.stem}_pred.h5"
        a, b = _read_h5(tmp_path / "0" / name)[0], _read_h5(tmp_path / "2" / name)[0]
        np.testing.assert_array_equal(a, b)


# Run folders of every kind a training task writes (firedpy_nrt.train.runs); the newest
# checkpoint decides, whatever the folder's name sorts as.
RUN_KINDS = {
    "timestamp": "runs/2026-03-01_10-00-00",
    "torchrun": "runs/torchrun-4711",
    "slurm": "runs/slurm-123-0",
    "sweep job": "multiruns/2026-02-01_09-00-00/7",
}


def _runs_with_best(logs: Path, newest: str) -> dict[str, Path]:
    """A best.ckpt in a run of every kind; ``newest``'s written last, the others older."""
    paths = {}
    for i, (kind, rel) in enumerate(RUN_KINDS.items()):
        path = save_checkpoint(logs / "train" / rel / "checkpoints/best.ckpt", LumModule())
        when = time.time() - (5 if kind == newest else 1000 + 100 * i)
        os.utime(path, (when, when))
        paths[kind] = path
    return paths


@pytest.mark.parametrize("newest", list(RUN_KINDS))
def test_ckpt_best_is_the_newest_whatever_the_run_is_called(tmp_path, scene_factory, newest):
    from predict_support import compose

    scene = scene_factory(20, 20, fire="7", seed=3)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [scene], ["7"])
    logs = tmp_path / "logs"
    paths = _runs_with_best(logs, newest)
    cfg = compose(
        [
            "ckpt=best",
            f"paths.log_dir={logs}",
            f"paths.output_dir={tmp_path / 'run'}",
            f"data.match_csv={csv_path}",
            *STANDIN_ARGS,
        ]
    )
    assert predict(cfg).checkpoint == paths[newest]


def test_predict_py_ckpt_best_takes_a_newer_timestamped_run_over_torchrun(tmp_path, scene_factory):
    """The entry point itself: a torchrun run ("t" sorts after any date) older than a
    timestamped run; predict.py ckpt=best maps with the timestamped run's checkpoint."""
    scene = scene_factory(20, 20, fire="7", seed=3)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [scene], ["7"])
    logs = tmp_path / "logs"
    paths = _runs_with_best(logs, "timestamp")
    res = run_predict_py(
        tmp_path, "ckpt=best", f"paths.log_dir={logs}", f"data.match_csv={csv_path}", *STANDIN_ARGS
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (h5,) = list((logs / "predict/runs").glob("*/predictions/*_pred.h5"))
    _, _, _, meta = _read_h5(h5)
    assert meta["checkpoint"] == str(paths["timestamp"].resolve())


def test_tiles_without_luminance_change_skip_the_model(tmp_path, scene_factory, predict_cfg):
    """A scene that is mostly nodata: only tiles touching valid luminance change reach the
    model (and only the luminance change is read there); the map equals a full run's."""
    from firedpy_nrt.predict import predictor as predictor_module

    s = scene_factory(256, 256, fire="61", seed=4)
    with rasterio.open(s.lum_change, "r+") as ds:
        data = ds.read(1)
        data[:, 100:] = ds.nodata  # 60% of the scene outside the swath
        ds.write(data, 1)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s], ["61"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    seen: list[int] = []
    real_forward = predictor_module.TilePredictor.forward

    def counting(self, image):
        seen.append(image.shape[0])
        return real_forward(self, image)

    predictor_module.TilePredictor.forward = counting
    try:
        result = predict(predict_cfg(ckpt, csv_path, "batch_size=4"))
    finally:
        predictor_module.TilePredictor.forward = real_forward
    (scene,) = result.scenes
    n_tiles = len(scene.tiles)
    valid_tiles = sum(1 for w in scene.tiles.windows() if w.col_off < 100)
    # one blank tile checks the checkpoint against the inputs first, then only the valid tiles
    assert n_tiles == 25 and seen[0] == 1 and sum(seen[1:]) == valid_tiles < n_tiles
    prob, mask, _, _ = _read_h5(tmp_path / "out" / f"{s.lum_change.stem}_pred.h5")
    assert np.isnan(prob[:, 100:]).all() and (mask[:, 100:] == 255).all()
    lum = s.lum.copy()
    lum[:, 100:] = np.nan
    valid = ~np.isnan(lum)
    np.testing.assert_allclose(prob[valid], _sigmoid(lum)[valid], rtol=1e-5, atol=1e-6)


def test_evaluation_reads_labels_with_the_trainings_threshold(tmp_path, scene_factory, predict_cfg):
    """A product whose burned pixels hold 0.4: burned for a training that used
    data.label_threshold=0.3 (stored with its split), unburned at 0.5 (an override)."""
    s = scene_factory(40, 40, fire="71", seed=7)
    with rasterio.open(s.binary_product, "r+") as ds:
        raw = ds.read(1)
        ds.write(np.where(raw > 0, np.float32(0.4), raw).astype(raw.dtype), 1)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s], ["71"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    raw_ckpt = torch.load(ckpt, weights_only=False)
    raw_ckpt["FireDataModule"] = {"splits": {"test": ["71"]}, "label_threshold": 0.3}
    torch.save(raw_ckpt, ckpt)

    def burned_labels(*extra: str) -> int:
        result = predict(predict_cfg(ckpt, csv_path, *extra))
        (score,) = result.scores
        return score.confusion.tp + score.confusion.fn

    assert burned_labels() > 0
    assert burned_labels("data.label_threshold=0.5", f"output_dir={tmp_path / 'o2'}") == 0
