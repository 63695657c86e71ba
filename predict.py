"""Map burned area over whole luminance-change rasters with a trained checkpoint.

python predict.py ckpt=best                      # newest training run's best checkpoint
python predict.py ckpt=last run_dir=logs/train/runs/2026-01-01_12-00-00
python predict.py ckpt=path/to/model.ckpt split=all data.match_csv=data/match.csv
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from firedpy_nrt.cli import check_overrides, run_entry
from firedpy_nrt.config.predict import PredictConfig
from firedpy_nrt.config.store import register_schemas
from firedpy_nrt.predict.run import predict

register_schemas()


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_entry(predict, cfg, PredictConfig)


if __name__ == "__main__":
    check_overrides(str(Path(__file__).resolve().parent / "conf"), "predict")
    main()
