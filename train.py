"""Train DeepLabV3 burned-area segmentation with Lightning, configured by Hydra.

python train.py data.match_csv=data/match.csv                  # defaults: ResNet-50, BCE+Dice
python train.py experiment=demo                                # synthetic demo, minutes on CPU
python train.py ckpt_path=last                                 # resume the latest run in place
python train.py trainer=ddp trainer.devices=4                  # DDP (also under torchrun/srun)
python train.py -m optimizer.lr=1e-3,1e-4                      # grid; hparams_search=optuna
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from firedpy_nrt.cli import check_overrides, run_entry
from firedpy_nrt.config.store import register_schemas
from firedpy_nrt.config.train import TrainConfig
from firedpy_nrt.train.run import train
from firedpy_nrt.train.runs import register_resolvers

# conf/train.yaml starts from the registered schema, and hydra.run.dir uses ${firedpy_run_dir:...}:
# both must exist before @hydra.main composes.
register_schemas()
register_resolvers()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_entry(train, cfg, TrainConfig)


if __name__ == "__main__":
    # a mistyped key or group is one line before Hydra starts a run; conf/ beside this file
    check_overrides(str(Path(__file__).resolve().parent / "conf"), "train")
    main()
