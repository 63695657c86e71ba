"""Every bad input is a one-line error naming it, raised before anything is written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from predict_standins import LumModule
from predict_support import STANDIN_ARGS, run_predict_py, save_checkpoint, write_match_csv

from firedpy_nrt.errors import ConfigError, DataError
from firedpy_nrt.predict.run import predict


@pytest.fixture
def setup(tmp_path, scene_factory):
    s = scene_factory(40, 50)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [s])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    return s, csv_path, ckpt


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_unknown_checkpoint(tmp_path, setup, predict_cfg) -> None:
    _, csv_path, _ = setup
    with pytest.raises(DataError, match=r"checkpoint .*nope\.ckpt not found") as exc:
        predict(predict_cfg(tmp_path / "nope.ckpt", csv_path))
    _one_line(exc)
    with pytest.raises(DataError, match="checkpoint best: no run under") as exc:
        predict(predict_cfg("best", csv_path))
    assert not (tmp_path / "out").exists()


def test_checkpoint_for_other_channels(tmp_path, setup, predict_cfg) -> None:
    _, csv_path, _ = setup
    ckpt = save_checkpoint(tmp_path / "two.ckpt", LumModule(num_layers=2))
    with pytest.raises(
        DataError, match=r"two\.ckpt does not fit the inputs: they have 3 layers"
    ) as exc:
        predict(predict_cfg(ckpt, csv_path))
    assert "they have 3 layers (lum_change, coh_change, dnbr;" in _one_line(exc)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layer", ["dnbr", "coh_change", "lum_change", "binary_product"])
def test_missing_layer(tmp_path, setup, predict_cfg, layer) -> None:
    s, csv_path, ckpt = setup
    getattr(s, layer).unlink()
    with pytest.raises(
        DataError, match=f"{layer} raster .*{getattr(s, layer).name}: not found"
    ) as exc:
        predict(predict_cfg(ckpt, csv_path))
    _one_line(exc)
    assert not (tmp_path / "out").exists()


def test_corrupt_layer(tmp_path, setup, predict_cfg) -> None:
    s, csv_path, ckpt = setup
    s.dnbr.write_bytes(b"not a tiff")
    with pytest.raises(DataError, match=f"{s.dnbr.name}: cannot be read"):
        predict(predict_cfg(ckpt, csv_path))


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, setup, predict_cfg) -> None:
    s, csv_path, ckpt = setup
    out = tmp_path / "out"
    out.mkdir()
    png = out / f"{s.lum_change.stem}_pred.png"
    png.write_text("an earlier quicklook")
    with pytest.raises(DataError, match=r"_pred\.png exists; set overwrite=true to replace it"):
        predict(predict_cfg(ckpt, csv_path))
    assert png.read_text() == "an earlier quicklook" and len(list(out.iterdir())) == 1
    predict(predict_cfg(ckpt, csv_path, "overwrite=true"))
    assert png.read_bytes()[:4] == b"\x89PNG"
    # evaluation.csv counts as an output too
    for p in out.glob("*_pred.*"):
        p.unlink()
    with pytest.raises(DataError, match=r"evaluation\.csv exists"):
        predict(predict_cfg(ckpt, csv_path))


def test_failure_mid_run_leaves_no_partial_files(
    tmp_path, scene_factory, predict_cfg, monkeypatch
) -> None:
    from firedpy_nrt.predict.assembly import SceneAssembler

    csv_path = write_match_csv(tmp_path / "data/match.csv", [scene_factory(150, 50)])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    real = SceneAssembler.__call__
    calls = []

    def failing(self, y0, weighted):
        calls.append(y0)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(self, y0, weighted)

    monkeypatch.setattr(SceneAssembler, "__call__", failing)
    with pytest.raises(DataError, match=r"cannot write the outputs in .*out: disk full") as exc:
        predict(predict_cfg(ckpt, csv_path))
    _one_line(exc)
    assert list((tmp_path / "out").iterdir()) == []


def test_splits(tmp_path, setup, predict_cfg) -> None:
    _, csv_path, ckpt = setup  # saved without a fire split
    with pytest.raises(ConfigError, match="config key 'split': .* has no 'test' split.*split=all"):
        predict(predict_cfg(ckpt, csv_path, "split=test"))
    other = save_checkpoint(tmp_path / "o.ckpt", LumModule(), {"test": ["777"]})
    with pytest.raises(DataError, match=r"match\.csv: no row for split=test \(fires 777\)"):
        predict(predict_cfg(other, csv_path, "split=test"))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("blend=cubic", "blend"),
        ("tta=rot", "tta"),
        ("overlap=64", "overlap"),
        ("tile_size=8", "tile_size"),
        ("threshold=1.5", "threshold"),
        ("split=train", "split"),
        ("batch_size=0", "batch_size"),
        ("trainer.precision=17", "trainer.precision"),
        ("trainer.devices=0", "trainer.devices"),
        ("+tilesize=3", "tilesize"),
        ("data.match_csv=rows.txt", "data.match_csv"),
    ],
)
def test_bad_config_names_the_key(setup, predict_cfg, override, key) -> None:
    _, csv_path, ckpt = setup
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        predict(predict_cfg(ckpt, csv_path, override))


def test_missing_csv(tmp_path, setup, predict_cfg) -> None:
    _, _, ckpt = setup
    with pytest.raises(DataError, match=r"nothere\.csv"):
        predict(predict_cfg(ckpt, tmp_path / "nothere.csv"))


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run_predict_py(tmp_path, *args)


def test_cli_prints_one_line_error_and_where_outputs_are(tmp_path, setup) -> None:
    _, csv_path, ckpt = setup
    common = [f"data.match_csv={csv_path}", *STANDIN_ARGS, f"paths.log_dir={tmp_path / 'logs'}"]
    bad = _cli(tmp_path, "ckpt=missing.ckpt", *common)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        "error: checkpoint missing.ckpt not found (ckpt is best, last or a .ckpt file)"
    )
    good = _cli(tmp_path, f"ckpt={ckpt}", *common)
    assert good.returncode == 0, good.stderr
    # the failed run has its own (empty) run folder; the good one holds the predictions
    (out,) = list((tmp_path / "logs/predict/runs").glob("*/predictions"))
    assert f"written to {out.resolve()}" in good.stdout
    assert len(list(out.glob("*_pred.h5"))) == 1 and (out / "evaluation.csv").exists()


def test_cli_mistyped_key_is_one_line(tmp_path) -> None:
    res = _cli(tmp_path, "tile_sise=256")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: config key 'tile_sise' does not exist (did you mean 'tile_size'?)"
    ]


def test_two_rasters_with_one_name(tmp_path, scene_factory, predict_cfg) -> None:
    import shutil

    s = scene_factory(30, 40)
    twin = tmp_path / "elsewhere" / s.lum_change.name
    twin.parent.mkdir()
    shutil.copy(s.lum_change, twin)
    csv_path = tmp_path / "data/match.csv"
    write_match_csv(csv_path, [s, s])
    text = csv_path.read_text().splitlines()
    text[2] = text[2].replace(text[2].split(",")[1], str(twin), 1)
    csv_path.write_text("\n".join(text) + "\n")
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    with pytest.raises(DataError, match="would both write .*_pred.h5; give the luminance-change"):
        predict(predict_cfg(ckpt, csv_path))


def test_failure_at_the_last_file_leaves_no_set_half_written(
    tmp_path, setup, predict_cfg, monkeypatch
) -> None:
    """The three files of a scene appear together: a quicklook that fails takes the HDF5 and
    GeoTIFF (already complete under temporary names) with it."""
    from firedpy_nrt.predict import assembly

    _, csv_path, ckpt = setup

    def broken(*args, **kwargs):
        raise OSError("no space left for the PNG")

    monkeypatch.setattr(assembly, "write_quicklook", broken)
    with pytest.raises(DataError, match="no space left") as exc:
        predict(predict_cfg(ckpt, csv_path))
    _one_line(exc)
    assert list((tmp_path / "out").iterdir()) == []


def test_full_disk_while_writing_is_one_line_and_keeps_finished_outputs(
    tmp_path, scene_factory, predict_cfg, monkeypatch
) -> None:
    """ENOSPC from the GeoTIFF writer midway: one line, the earlier run's outputs untouched."""
    import errno

    from firedpy_nrt.geotiff import GeoTiffWriter

    a = scene_factory(150, 60, fire="31", seed=1)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [a], ["31"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    predict(predict_cfg(ckpt, csv_path))
    finished = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    real = GeoTiffWriter.write
    calls = []

    def full(self, array, window=None):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, array, window)

    monkeypatch.setattr(GeoTiffWriter, "write", full)
    with pytest.raises(DataError, match="No space left on device") as exc:
        predict(predict_cfg(ckpt, csv_path, "overwrite=true"))
    _one_line(exc)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == finished


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_output_dir_that_cannot_hold_outputs_is_one_line(tmp_path, setup, predict_cfg, kind):
    _, csv_path, ckpt = setup
    if kind == "file":
        target = tmp_path / "out.txt"
        target.write_text("a file")
        match = r"output_dir .*out\.txt is a file, not a folder"
    else:
        target = Path("/proc/firedpy-cannot-write-here")  # refused even to root
        match = r"output_dir /proc/firedpy-cannot-write-here cannot be written"
    with pytest.raises(DataError, match=match) as exc:
        predict(predict_cfg(ckpt, csv_path, f"output_dir={target}"))
    _one_line(exc)


def test_two_runs_into_one_folder_never_replace_each_others_outputs(
    tmp_path, scene_factory, predict_cfg, monkeypatch
) -> None:
    """Unique temporary names per process, and publishing refuses an output another run
    finished meanwhile (simulated: it appears while this run is computing)."""
    from firedpy_nrt.predict import assembly

    a = scene_factory(60, 60, fire="41", seed=1)
    csv_path = write_match_csv(tmp_path / "data/match.csv", [a], ["41"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    real = assembly.SceneAssembler.commit
    other = tmp_path / "out" / f"{a.lum_change.stem}_pred.tif"

    def other_run_finishes_first(self):
        other.write_bytes(b"the other run's map")
        return real(self)

    monkeypatch.setattr(assembly.SceneAssembler, "commit", other_run_finishes_first)
    with pytest.raises(DataError, match=r"_pred\.tif was written by another run meanwhile") as exc:
        predict(predict_cfg(ckpt, csv_path))
    _one_line(exc)
    assert other.read_bytes() == b"the other run's map"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [other.name]
