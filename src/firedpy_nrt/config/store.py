"""The dataclass schemas registered in Hydra's ConfigStore, so composition itself is typed.

``conf/train.yaml``, ``conf/predict.yaml`` and ``conf/prepare.yaml`` list ``<name>_schema``
first in their defaults: every group option then merges onto the dataclass defaults and holds
only what differs from them, and a mistyped key or a value of the wrong type fails while Hydra
composes, naming the key. The dataclasses are the one place defaults live.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from firedpy_nrt.config.predict import PredictConfig
from firedpy_nrt.config.prepare import PrepareConfig
from firedpy_nrt.config.train import TrainConfig

SCHEMAS = {
    "train_schema": TrainConfig,
    "predict_schema": PredictConfig,
    "prepare_schema": PrepareConfig,
}


def register_schemas() -> None:
    """Store the entry points' schemas (idempotent); call before Hydra composes."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)
