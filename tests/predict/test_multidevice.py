"""Several devices: each rank streams its share of tiles; rank 0 adds them up into the same maps."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from predict_standins import LumModule
from predict_support import save_checkpoint, write_match_csv

from firedpy_nrt.predict.run import predict


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_cpu_processes_match_one(tmp_path, scene_factory, predict_cfg) -> None:
    scenes = [scene_factory(130, 90, fire="31", seed=1), scene_factory(40, 30, fire="32", seed=2)]
    csv_path = write_match_csv(tmp_path / "data/match.csv", scenes, ["31", "32"])
    ckpt = save_checkpoint(tmp_path / "lum.ckpt", LumModule())
    one = predict(predict_cfg(ckpt, csv_path, f"output_dir={tmp_path / 'one'}"))
    two = predict(
        predict_cfg(
            ckpt,
            csv_path,
            f"output_dir={tmp_path / 'two'}",
            "trainer.devices=2",
            "trainer.strategy=ddp_spawn",
        )
    )
    assert two.evaluation is not None and two.evaluation.read_text() == one.evaluation.read_text()
    for s in scenes:
        name = f"{s.lum_change.stem}_pred.h5"
        with h5py.File(tmp_path / "one" / name) as a, h5py.File(tmp_path / "two" / name) as b:
            np.testing.assert_allclose(b["prediction"][:], a["prediction"][:], atol=1e-6)
            np.testing.assert_array_equal(b["mask"][:], a["mask"][:])
    assert not (tmp_path / "two" / ".partial").exists()
