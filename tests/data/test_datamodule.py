"""FireDataModule: split by fire, stats from training fires only, loaders, Lightning and DDP."""

from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DistributedSampler

from firedpy_nrt.config.data import AugmentConfig, DataConfig, SplitConfig
from firedpy_nrt.data.datamodule import FireDataModule, split_fires
from firedpy_nrt.data.transforms import BatchAugment
from firedpy_nrt.errors import ConfigError, DataError


def data_config(csv, **kw) -> DataConfig:
    """The ``data`` group as the entry point validates it, from keyword values."""
    from omegaconf import OmegaConf

    from firedpy_nrt.config import validate

    node = {"match_csv": str(csv), **{k: str(v) if isinstance(v, Path) else v for k, v in kw.items()}}
    try:
        return validate(OmegaConf.create(node), DataConfig)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("config key '", "config key 'data.", 1)) from None


def _dm(csv, tmp_path, **kw) -> FireDataModule:
    args = dict(chip_size=16, stride=16, cache_dir=tmp_path / "cache", batch_size=4)
    args.update(kw)
    return FireDataModule(data_config(csv, **args), progress=False)


@pytest.mark.parametrize("n", [3, 4, 7, 20])
@pytest.mark.parametrize("seed", [0, 1, 2, 42, 1234])
def test_fraction_split_puts_each_fire_in_exactly_one_split(n, seed):
    fires = [str(100 + i) for i in range(n)]
    split = SplitConfig(seed=seed)
    out = split_fires(fires, split)
    all_ = out["train"] + out["val"] + out["test"]
    assert sorted(all_) == sorted(fires) and len(set(all_)) == n
    assert out["train"] and out["val"] and out["test"]
    assert split_fires(list(reversed(fires)), split) == out  # CSV order does not matter


def test_fixed_split_lists(fires_csv, tmp_path):
    csv, fires = fires_csv
    ids = [f.fire_id for f in fires]
    dm = _dm(csv, tmp_path, split={"val": [ids[1]], "test": [int(ids[2]), ids[3]]})
    dm.prepare_data()
    dm.setup("fit")
    assert dm.splits == {"train": [ids[0], *ids[4:]], "val": [ids[1]], "test": [ids[2], ids[3]]}
    for name, ds in dm.datasets.items():
        got = {str(dm.cache.fire_ids[i]) for i in ds.indices}
        assert got == set(dm.splits[name])
    assert dm.state_dict()["splits"] == dm.splits


def test_fire_in_two_lists_is_a_config_error(fires_csv, tmp_path):
    csv, _ = fires_csv
    with pytest.raises(ConfigError, match=r"data\.split\.test.*101.*val"):
        _dm(csv, tmp_path, split={"val": ["101"], "test": ["0101"]})


def test_unknown_split_fire_and_bad_keys_are_config_errors(fires_csv, tmp_path):
    csv, _ = fires_csv
    dm = _dm(csv, tmp_path, split={"val": ["999"]})
    with pytest.raises(ConfigError, match=r"data\.split\.val.*999"):
        dm.prepare_data()
    with pytest.raises(ConfigError, match=r"data\.split\.fractions"):
        _dm(csv, tmp_path, split={"fractions": {"train": 0.9, "val": 0.3, "test": 0.0}})
    with pytest.raises(ConfigError, match=r"data\.split\.sed"):
        _dm(csv, tmp_path, split={"sed": 3})
    with pytest.raises(ConfigError, match=r"data\.on_bad_row"):
        _dm(csv, tmp_path, on_bad_row="ignore")


def test_stats_come_from_training_fires_only(geo, tmp_path):
    rows = []
    for i in range(3):
        rows.append(geo.make_fire(tmp_path / "l", str(i + 1), size=32, x0=400_000.0 + 9000 * i).row)
    for i in range(3, 5):
        f = geo.make_fire(tmp_path / "l", str(i + 1), size=32, x0=400_000.0 + 9000 * i, offset=1e4)
        rows.append(f.row)
    csv = geo.write_csv(tmp_path / "m.csv", rows)
    dm = _dm(csv, tmp_path, split={"val": ["4"], "test": ["5"]})
    dm.prepare_data()
    dm.setup("fit")
    mean, std = np.array(dm.stats["mean"]), np.array(dm.stats["std"])
    assert (np.abs(mean) < 5).all() and (std < 5).all()
    train = dm.cache.images[dm.datasets["train"].indices].astype(np.float64)
    np.testing.assert_allclose(mean, np.nanmean(train, axis=(0, 2, 3)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(std, np.nanstd(train, axis=(0, 2, 3)), rtol=1e-7, atol=1e-9)
    # the val/test fires really are far off: stats over everything would show it
    everything = np.nanmean(dm.cache.images.astype(np.float64), axis=(0, 2, 3))
    assert (everything > 1000).all()


def test_loaders_batches_and_ddp_sampler(fires_csv, tmp_path):
    csv, _ = fires_csv
    dm = _dm(csv, tmp_path, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    train = dm.train_dataloader()
    n_train = len(dm.datasets["train"])
    assert train.drop_last and len(train) == n_train // 4
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    val = dm.val_dataloader()
    assert not val.drop_last and isinstance(val.sampler, torch.utils.data.SequentialSampler)
    batch = next(iter(train))
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (4, 3, 16, 16)
    assert batch["label"].dtype == torch.uint8 and batch["label"].shape == (4, 16, 16)
    assert isinstance(batch["fire_id"], list) and len(batch["fire_id"]) == 4
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1, 255}
    # nodata reaches the model as NaN (the fixtures hold SAR borders and dNBR clouds)
    assert any(torch.isnan(b["image"]).any() for b in train)
    # What Lightning does under DDP: rebuild our loader around a DistributedSampler.
    from lightning.pytorch.utilities.data import _update_dataloader

    sampler = DistributedSampler(dm.datasets["train"], num_replicas=2, rank=1, shuffle=True)
    ddp = _update_dataloader(train, sampler)
    assert ddp.sampler is sampler and ddp.drop_last
    per_rank = -(-n_train // 2)
    seen = [f for b in ddp for f in b["fire_id"]]
    assert len(seen) == per_rank // 4 * 4
    assert set(seen) <= set(dm.splits["train"])


def test_too_few_training_chips_for_a_batch(fires_csv, tmp_path):
    csv, _ = fires_csv
    dm = _dm(csv, tmp_path, batch_size=512)
    dm.prepare_data()
    with pytest.raises(DataError, match="data.batch_size=512"):
        dm.setup("fit")


class _Probe(LightningModule):
    """The smallest module that trains on the batches: checks what the DataModule yields."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 1, 1)
        self.seen: list[str] = []

    def training_step(self, batch, batch_idx):
        x = torch.nan_to_num(batch["image"])
        y = batch["label"]
        logits = self.conv(x)[:, 0]
        keep = y != 255
        self.seen += batch["fire_id"]
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[keep], y[keep].float())

    def validation_step(self, batch, batch_idx):
        self.seen += batch["fire_id"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_fit_reads_the_cache(fires_csv, tmp_path):
    csv, _ = fires_csv
    dm = _dm(csv, tmp_path, batch_size=2, split={"val": ["101"], "test": ["102"]})
    model = _Probe()
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 3
    assert set(model.seen) - {"102"} and "102" not in model.seen
    assert dm.stats is not None and len(dm.stats["mean"]) == 3


def test_config_yaml_builds_the_datamodule(tmp_path):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from firedpy_nrt.config import validate

    conf = Path(__file__).resolve().parents[2] / "conf"
    for name, csv in (("match_csv", "match.csv"), ("synthetic", "synthetic/match.csv")):
        with initialize_config_dir(str(conf), version_base="1.3"):
            cfg = compose(overrides=[f"+data={name}", f"+paths.data_dir={tmp_path}"])
        built = validate(cfg, _Wrapper)
        assert isinstance(built.data, DataConfig)
        assert built.data.match_csv == f"{tmp_path}/{csv}"
        assert built.data.cache_dir == f"{tmp_path}/cache"
        dm = FireDataModule(built.data)  # what train() does with the group
        assert dm.cfg == built.data and dm.channels == ("lum_change", "coh_change", "dnbr")
    with initialize_config_dir(str(conf), version_base="1.3"):
        bad = compose(overrides=["+data=synthetic", "+paths.data_dir=d", "+data.stride=0"])
    with pytest.raises(ConfigError, match=r"data\.stride"):
        validate(bad, _Wrapper)
    dm = FireDataModule(
        DataConfig(match_csv="x.csv", chip_size=32, stride=16, augment=AugmentConfig(vflip=False))
    )
    assert dm.cfg.chip_size == 32
    assert isinstance(dm.augmentation, BatchAugment)
    assert (dm.augmentation.hflip, dm.augmentation.vflip, dm.augmentation.rot90) == (
        True,
        False,
        True,
    )


@dataclass
class _Paths:
    data_dir: str = "data"


@dataclass
class _Wrapper:
    paths: _Paths = field(default_factory=_Paths)
    data: DataConfig = field(default_factory=DataConfig)


def test_dataset_pickles_without_its_arrays(fires_csv, tmp_path):
    import pickle

    csv, _ = fires_csv
    dm = _dm(csv, tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    ds = dm.datasets["train"]
    _ = ds[0]  # opens the memory maps
    blob = pickle.dumps(ds)
    assert len(blob) < 20_000  # the chips themselves (~180 kB here) are not copied to workers
    again = pickle.loads(blob)
    assert torch.equal(again[3]["label"], ds[3]["label"])
    assert torch.equal(again[3]["image"].nan_to_num(), ds[3]["image"].nan_to_num())


@pytest.mark.parametrize("n_fires", [1, 2])
def test_too_few_fires_for_the_splits_is_one_line_before_training(geo, tmp_path, n_fires):
    """One fire (no validation fire) or two (no test fire): refused when the split is made,
    before an epoch runs, saying what to change."""
    fires = [
        geo.make_fire(tmp_path / "layers", str(300 + i), size=48, x0=400_000.0 + 20_000 * i)
        for i in range(n_fires)
    ]
    csv = geo.write_csv(tmp_path / f"m{n_fires}.csv", [f.row for f in fires])
    dm = _dm(csv, tmp_path, batch_size=2)
    with pytest.raises(DataError, match="cannot fill the splits data.split.fractions asks") as exc:
        dm.prepare_data()
    assert "data.split.fractions.test=0" in str(exc.value) and "\n" not in str(exc.value)
    # what the message says works: no test split asked for (and, with one fire, no validation)
    fractions = {"train": 1.0, "val": 0.0, "test": 0.0} if n_fires == 1 else {
        "train": 0.5, "val": 0.5, "test": 0.0}  # fmt: skip
    dm = _dm(csv, tmp_path, batch_size=2, split={"fractions": fractions})
    dm.prepare_data()
    dm.setup("fit")
    assert dm.splits["test"] == [] and len(dm.splits["train"]) == 1
    with pytest.raises(DataError, match="the test split .* has no fire with chips.*test=false"):
        dm.setup("test")


def test_fixed_lists_without_a_validation_fire_are_refused_at_fit(fires_csv, tmp_path):
    csv, _ = fires_csv
    dm = _dm(csv, tmp_path, split={"test": ["101"]})
    dm.prepare_data()
    with pytest.raises(DataError, match=r"the val split .* list fires in data.split.val"):
        dm.setup("fit")
