"""A LightningDataModule of random batches in FireDataModule's batch format, for model tests.

Burned pixels are where a smooth blob field is high; the dNBR channel is high there too (with
noise and a NaN "cloud"), so a model can learn it; no rasters needed.
"""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset


class RandomChips(Dataset):
    def __init__(self, n: int, size: int, seed: int, layers: int = 3) -> None:
        g = torch.Generator().manual_seed(seed)
        field = torch.nn.functional.avg_pool2d(
            torch.rand(n, 1, size, size, generator=g), 7, stride=1, padding=3
        )[:, 0]
        burned = field > field.flatten(1).median(dim=1).values[:, None, None]
        noise = torch.randn(n, layers, size, size, generator=g)
        self.image = noise * 0.3
        self.image[:, 0] += burned * 1.5 - 3.0  # luminance change
        self.image[:, 1] += burned * 0.5  # coherence change
        self.image[:, 2] = burned * 0.3 + 0.05 * noise[:, 2]  # dNBR
        self.image[:, 2, : size // 4, : size // 4] = float("nan")  # a cloud
        self.label = burned.to(torch.uint8)
        self.label[:, -2:, :] = 255  # a nodata border
        self.ids = [f"{seed}{i}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.image[i], "label": self.label[i], "fire_id": self.ids[i]}


class RandomDataModule(LightningDataModule):
    def __init__(
        self, n: int = 8, size: int = 32, batch_size: int = 2, seed: int = 0, shuffle: bool = True
    ) -> None:
        super().__init__()
        self.shuffle = shuffle
        self.n, self.size, self.batch_size, self.seed = n, size, batch_size, seed
        self.stats = None
        self.splits = None

    def setup(self, stage: str | None = None) -> None:
        self.train_set = RandomChips(self.n, self.size, self.seed)
        self.val_set = RandomChips(max(2, self.n // 2), self.size, self.seed + 1)
        self.test_set = RandomChips(max(2, self.n // 2), self.size, self.seed + 2)
        img = self.train_set.image
        mean = [float(img[:, c][img[:, c].isfinite()].mean()) for c in range(img.shape[1])]
        std = [float(img[:, c][img[:, c].isfinite()].std()) for c in range(img.shape[1])]
        self.stats = {"mean": mean, "std": std}
        self.splits = {"train": ["1"], "val": ["2"], "test": ["3"]}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.batch_size)
