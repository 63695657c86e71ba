"""Prepare a dataset: download scenes, compute dNBR, or synthesise one offline; then match layers.

    python prepare.py source=synthetic paths.data_dir=data
    python prepare.py stages=[match] match.lum_dir=D1 match.coh_dir=D2 match.binary_dir=D3 \
        match.dnbr_dir=D4 match.output_csv=OUT.csv
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from firedpy_nrt.cli import check_overrides, exit_with, run_entry
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.config.store import register_schemas
from firedpy_nrt.prepare.pipeline import run

register_schemas()


@hydra.main(version_base="1.3", config_path="conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    exit_with(run_entry(run, cfg, PrepareConfig))


if __name__ == "__main__":
    check_overrides(str(Path(__file__).parent / "conf"), "prepare")
    main()
